"""Repeated augmentation (Hoffer et al. 2020; DeiT's ``RASampler``, timm's ``RepeatAugSampler``) for Trainer.

Each epoch shuffles the dataset, repeats every sample ``num_repeats`` times and deals the copies to the
processes in turn, so a sample's copies go to different processes, each augmenting it differently; an epoch
keeps the dataset's length (each process sees ``len / num_processes`` samples), as DeiT's.

Trainer's loader under Accelerate hands process ``p`` the batches ``p, p + P, p + 2P, ...`` of one index
sequence: this sampler writes the per-process sequences into it batch by batch (whole batches only with
several processes). With ``distinct_copies`` the k-th copy of sample ``i`` is index ``i + k * len``, which
``SeededDataset`` reads as sample ``i`` with seeds of its own (copies must not share augmentations).
"""

import math

import numpy as np
import torch

from ..counter_rng import hash_seeds


class RepeatedAugSampler(torch.utils.data.Sampler):
    def __init__(self, num_samples, num_repeats=3, num_processes=1, batch_size=1, seed=0, distinct_copies=False):
        if num_repeats < 1:
            raise ValueError(f"num_repeats must be >= 1, got {num_repeats}.")
        self.num_samples, self.num_repeats = num_samples, num_repeats
        self.num_processes, self.batch_size = num_processes, batch_size
        self.seed, self.distinct_copies = seed, distinct_copies
        self.epoch = 0
        per_process = math.ceil(num_samples / num_processes)
        if num_processes > 1:  # whole batches, so that each process's batches are its own
            per_process = max(batch_size, per_process // batch_size * batch_size)
        self.per_process = per_process

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return self.per_process * self.num_processes

    def __iter__(self):
        generator = torch.Generator().manual_seed(int(hash_seeds(self.seed, self.epoch)[0] >> np.uint64(1)))
        order = torch.randperm(self.num_samples, generator=generator)
        copies = torch.repeat_interleave(order, self.num_repeats)
        if self.distinct_copies:
            copies += torch.arange(self.num_repeats).repeat(self.num_samples) * self.num_samples
        # Process p takes positions p, p + P, ... (wrapping around), as DeiT's sampler.
        positions = torch.arange(self.per_process * self.num_processes) % len(copies)
        per_process = [copies[positions[p::self.num_processes]] for p in range(self.num_processes)]
        batches = [per_process[p][start:start + self.batch_size]
                   for start in range(0, self.per_process, self.batch_size) for p in range(self.num_processes)]
        return iter(torch.cat(batches).tolist())
