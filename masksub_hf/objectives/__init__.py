"""The sub branch's loss: what the masked branch learns to match (the method's second half; ``masking/`` is the first).

- ``losses``: soft-target cross-entropy against ``softmax(main).detach()``, its sigmoid form for BCE / multi-label
  heads and the detached-output form for regression; ``sub_loss_for`` picks one from the main loss.
- ``clip``: CLIP-style dual encoders distil the N x N image-text similarity matrix.
- ``token_classification``: per supervised token, normalised as the main loss over the accumulated batch.
"""
