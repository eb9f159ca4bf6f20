#!/usr/bin/env python
"""``python run_glue.py ...`` from a clone; installed, ``masksub-hf text-classification ...`` runs the same script,
``masksub_hf/scripts/run_glue.py``."""

from masksub_hf.scripts.run_glue import main

if __name__ == "__main__":
    main()
