#!/usr/bin/env python
"""``python run_image_classification.py ...`` from a clone; installed, ``masksub-hf image-classification ...`` runs the same script,
``masksub_hf/scripts/run_image_classification.py``."""

from masksub_hf.scripts.run_image_classification import main

if __name__ == "__main__":
    main()
