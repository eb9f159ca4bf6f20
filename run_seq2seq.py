#!/usr/bin/env python
"""``python run_seq2seq.py ...`` from a clone; installed, ``masksub-hf seq2seq ...`` runs the same script,
``masksub_hf/scripts/run_seq2seq.py``."""

from masksub_hf.scripts.run_seq2seq import main

if __name__ == "__main__":
    main()
