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


def sample_seeds(seed: int, epoch: int, index: int) -> tuple[int, int]:
    """Two independent, well-mixed 64-bit seeds for one sample in one epoch: its augmentation's and its
    mask's (a mask must not repeat the augmentation's random draws)."""
    words = [int(word) for word in np.random.SeedSequence([seed, epoch, index]).generate_state(4)]
    return words[0] << 32 | words[1], words[2] << 32 | words[3]


@contextlib.contextmanager
def seeded_global_rngs(seed: int):
    """torch's (CPU) and python's global RNGs seeded with ``seed`` inside the block, restored after, so the
    transforms a dataset applies (torchvision draws from torch) are reproducible and the caller's RNG
    streams are left untouched. numpy's global RNG is not covered: saving and restoring it costs ~0.2 ms
    a sample."""
    python_state = random.getstate()
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)  # torch.manual_seed would also visit every device: 0.2 ms
        random.seed(seed)
        try:
            yield
        finally:
            random.setstate(python_state)


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
        augmentation_seed, mask_seed = sample_seeds(self.seed, int(self._epoch), index)
        with seeded_global_rngs(augmentation_seed):
            sample = self.dataset[index]
        if isinstance(sample, Mapping):
            sample = {**sample, SEED_KEY: mask_seed}
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
