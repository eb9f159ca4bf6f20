#!/usr/bin/env python
"""``python run_ner.py ...`` from a clone; installed, ``masksub-hf token-classification ...`` runs the same script,
``masksub_hf/scripts/run_ner.py``."""

from masksub_hf.scripts.run_ner import main

if __name__ == "__main__":
    main()
