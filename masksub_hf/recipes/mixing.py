"""Mixup / CutMix on the collated batch (timm's ``Mixup``), before MaskSub masks anything.

Both branches then see the same mixed pixels: the main branch learns the mixed targets, the sub branch
learns the main branch's output on the mixed image with the mask applied (as the official DeiT-III code).

Mixing partners come from the process's own batch (timm flips the batch). timm draws lambda, the CutMix box,
the mixup/cutmix switch and per-element choices from numpy's global RNG; under ``MaskSubTrainer`` each batch
carries its samples' seeds, and those draws are made from a numpy seed hashed from them: the mixing is a pure
function of which samples (in which epoch) form the batch, so a resumed run mixes exactly as the first.
"""

import numpy as np
import torch
from timm.data import Mixup
from timm.data.mixup import mixup_target

from ..counter_rng import hash_seeds
from ..pipeline.seeding import pop_sample_seeds, restored_global_rngs

_MIX_STREAM = 0x6D6978  # keeps these draws apart from the masks' draws from the same sample seeds


def batch_seed(seeds) -> int:
    """A 32-bit numpy seed from a batch's sample seeds (order-aware: the same samples in another order mix
    differently, as timm's flip pairs them differently)."""
    seeds = np.asarray(seeds, dtype=np.uint64)
    words = hash_seeds(seeds, np.arange(len(seeds), dtype=np.uint64), _MIX_STREAM)
    return int(hash_seeds(np.bitwise_xor.reduce(words))[0] & np.uint64(0xFFFFFFFF))


class MixupCollator:
    """Collate with ``base_collator``, then mix ``pixel_values`` and turn ``labels`` into mixed soft targets.

    Args:
        base_collator: builds ``pixel_values`` and integer ``labels``; a MaskSub collator
            (which draws masks from the sample seeds) is given the seeds, any other collator is not.
        mixup: a ``timm.data.Mixup`` (its ``label_smoothing`` smooths the targets, as DeiT's ``--smoothing``).

    Training batches only: under plain ``Trainer``, whose evaluation uses the training collator too, pass
    ``evaluation_collator`` to evaluation yourself (``MaskSubTrainer`` does).
    """

    uses_sample_seeds = True  # MaskSubTrainer passes the per-sample seeds through to this collator

    def __init__(self, base_collator, mixup: Mixup):
        self.base_collator = base_collator
        self.mixup = mixup

    @property
    def evaluation_collator(self):
        """What evaluation batches go through (no mixing): ``MaskSubTrainer`` uses it for eval and predict."""
        return self.base_collator

    def __call__(self, features):
        stripped, seeds = pop_sample_seeds(features)
        batch = self.base_collator(features if getattr(self.base_collator, "uses_sample_seeds", False) else stripped)
        if seeds is None:  # no per-sample seeds: numpy's global RNG, as timm
            return self._mix(batch)
        with restored_global_rngs():
            np.random.seed(batch_seed(seeds))
            return self._mix(batch)

    def _mix(self, batch):
        pixels, labels = batch["pixel_values"], batch["labels"]
        paired = len(pixels) - len(pixels) % 2
        # timm pairs sample i with sample B-1-i; an odd batch (an epoch's last) leaves its last sample unmixed.
        pixels[:paired], mixed = self.mixup(pixels[:paired], labels[:paired])
        if paired < len(pixels):
            unmixed = mixup_target(labels[paired:], self.mixup.num_classes, 1.0, self.mixup.label_smoothing)
            mixed = torch.cat([mixed, unmixed.to(mixed.dtype)])
        batch["pixel_values"], batch["labels"] = pixels, mixed
        return batch

