"""Per-sample randomness: each training sample's augmentations and sub-branch mask come from seeds that
are a pure function of ``(seed, epoch, sample index)``.

Why: Trainer restores the global RNG on ``--resume_from_checkpoint`` only after the data loader has
produced (and prefetched) the first batches, so augmentations and masks drawn from the global RNG in the
data pipeline differ after a resume. Seeded per sample, they no longer depend on when, or in which
process or worker, a sample is loaded: a resumed run replays them exactly, and a run on N processes
draws the same ones as a run on one.
"""

import contextlib
import random
from collections.abc import Mapping

import numpy as np
import torch
from transformers import TrainerCallback

SEED_KEY = "masksub_seed"  # the sample's mask seed, carried from the dataset to the MaskSub collator
_AUGMENTATION, _MASK = 0, 1  # independent streams: a mask must not repeat the augmentation's draws


def sample_seed(seed: int, epoch: int, index: int, stream: int) -> int:
    """A well-mixed 64-bit seed for one sample, one epoch and one use (augmentation or mask)."""
    high, low = np.random.SeedSequence([seed, epoch, index, stream]).generate_state(2)
    return int(high) << 32 | int(low)


@contextlib.contextmanager
def seeded_global_rngs(seed: int):
    """torch's (CPU), numpy's and python's global RNGs seeded with ``seed`` inside the block, restored after,
    so any transform a dataset applies is reproducible and the caller's RNG streams are left untouched."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed % 2**32)
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


class SeededDataset(torch.utils.data.Dataset):
    """Wrap a map-style dataset: ``dataset[index]`` is loaded (transforms included) under the sample's
    augmentation seed, and a dict sample gains its mask seed under ``SEED_KEY``.

    The epoch lives in a shared-memory tensor, so ``set_epoch`` reaches data-loader workers, persistent
    ones included.
    """

    def __init__(self, dataset, seed: int):
        self.dataset = dataset
        self.seed = seed
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    def set_epoch(self, epoch: int):
        self._epoch.fill_(epoch)

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        epoch = int(self._epoch)
        with seeded_global_rngs(sample_seed(self.seed, epoch, index, _AUGMENTATION)):
            sample = self.dataset[index]
        if isinstance(sample, Mapping):
            sample = {**sample, SEED_KEY: sample_seed(self.seed, epoch, index, _MASK)}
        return sample


def pop_sample_seeds(features):
    """``(features without SEED_KEY, their seeds)``; seeds are ``None`` when the samples carry none."""
    if not features or not isinstance(features[0], Mapping) or SEED_KEY not in features[0]:
        return features, None
    seeds = [feature[SEED_KEY] for feature in features]
    return [{k: v for k, v in feature.items() if k != SEED_KEY} for feature in features], seeds


class WithoutSampleSeeds:
    """A collator that drops ``SEED_KEY`` before calling ``collator`` (one that draws no masks)."""

    def __init__(self, collator):
        self.collator = collator

    def __call__(self, features):
        return self.collator(pop_sample_seeds(features)[0])


class SampleSeedEpochCallback(TrainerCallback):
    """Give the seeded training set the epoch about to start (a resumed run starts mid-epoch)."""

    def on_epoch_begin(self, args, state, control, train_dataloader=None, **kwargs):
        dataset = getattr(train_dataloader, "dataset", None)
        if isinstance(dataset, SeededDataset):
            dataset.set_epoch(int(state.epoch or 0))
