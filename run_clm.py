#!/usr/bin/env python
"""``python run_clm.py ...`` from a clone; installed, ``masksub-hf causal-lm ...`` runs the same script,
``masksub_hf/scripts/run_clm.py``."""

from masksub_hf.scripts.run_clm import main

if __name__ == "__main__":
    main()
