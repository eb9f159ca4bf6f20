"""The paper's training recipes (timm flags, as ``recipes/*.yaml`` use them); none of them is MaskSub itself.

- ``mixing``: mixup / cutmix per batch, drawn from the samples' seeds.
- ``image_transforms``: RandAugment, random erasing, colour jitter, 3-Augment and the evaluation transform.
- ``target_losses``: the main branch's loss for mixed targets: soft-target cross-entropy, or binary cross-entropy
  (DeiT-III, ResNet strikes back).
- ``layer_decay``: layer-wise learning-rate decay groups; ``optim``: optimizers built on them, and timm's (LAMB).
"""
