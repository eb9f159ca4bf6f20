#!/usr/bin/env python
"""``python run_clip.py ...`` from a clone; installed, ``masksub-hf clip ...`` runs the same script,
``masksub_hf/scripts/run_clip.py``."""

from masksub_hf.scripts.run_clip import main

if __name__ == "__main__":
    main()
