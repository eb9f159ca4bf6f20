"""Per-sample randomness: each training sample's augmentations and sub-branch mask come from seeds that
are a pure function of ``(seed, epoch, sample index)``. Covered: torch's, python's and numpy's global RNGs.

Why: Trainer restores the global RNG on ``--resume_from_checkpoint`` only after the data loader has
produced (and prefetched) the first batches, so augmentations and masks drawn from the global RNG in the
data pipeline differ after a resume. Seeded per sample, they no longer depend on when, or in which
process or worker, a sample is loaded: a resumed run replays them exactly, and a run on N processes
draws the same ones as a run on one.
"""

import contextlib
import random
from collections.abc import Mapping, MutableMapping

import datasets
import numpy as np
import torch
from transformers import TrainerCallback

from ..batch import SEED
from ..counter_rng import hash_seeds


def sample_seeds(seed: int, epoch: int, indices) -> tuple[list[int], list[int]]:
    """Two independent, well-mixed 63-bit seeds for each sample in one epoch: its augmentation's and its
    mask's (a mask must not repeat the augmentation's random draws); hashed for a whole batch at once."""
    words = hash_seeds(seed, epoch, np.asarray(indices, dtype=np.uint64))
    return (hash_seeds(words, 1) >> np.uint64(1)).tolist(), (hash_seeds(words, 2) >> np.uint64(1)).tolist()


@contextlib.contextmanager
def restored_global_rngs():
    """torch's (CPU), python's and numpy's global RNGs as they were before the block, whatever it draws: the
    caller's streams are left untouched. Saved once per batch (numpy's state costs ~0.1 ms to save)."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


def seed_global_rngs(seed: int):
    """Seed torch's (CPU), python's and numpy's global RNGs for one sample's transforms (torchvision draws
    from torch, albumentations-style code from numpy or python)."""
    torch.default_generator.manual_seed(seed)  # torch.manual_seed would also visit every device: 0.2 ms
    random.seed(seed)
    np.random.seed(seed & 0xFFFFFFFF)  # numpy's legacy seeding takes 32 bits


def _custom_transform(dataset):
    """``(the rows without formatting, the transform, its input columns, whether other columns pass through)``
    for a ``datasets.Dataset`` with ``set_transform``/``with_transform``; ``None`` for any other dataset."""
    if not isinstance(dataset, datasets.Dataset) or dataset.format["type"] != "custom":
        return None
    form = dataset.format
    return (dataset.with_format(None), form["format_kwargs"]["transform"], form["columns"],
            form["output_all_columns"])


class MissingColumn(KeyError):
    """The training set's transform read a column it does not have: most often one Trainer removed."""

    def __init__(self, error, columns):
        super().__init__(*error.args)
        self.message = (
            f"the training set's transform reads {error.args[0] if error.args else ''!r}, not among its columns "
            f"({', '.join(columns)}): Trainer removes the columns the model's forward does not take; pass "
            "remove_unused_columns=False, with a transform that returns the model's inputs only.")

    def __str__(self):
        return self.message


class SeededDataset(torch.utils.data.Dataset):
    """Wrap a map-style dataset: each sample is loaded (transforms included) under its augmentation seed,
    and a dict sample gains its mask seed under ``SEED``.

    A batch is fetched in one call (``__getitems__``, what the DataLoader uses): a ``datasets.Dataset``
    reads the batch's rows from Arrow at once and applies its transform row by row, each row under its own
    seed; a ``datasets.Dataset`` without a transform (nothing random to seed) uses its own batched read;
    other datasets are indexed sample by sample. The epoch lives in a shared-memory tensor, so
    ``set_epoch`` reaches data-loader workers, persistent ones included.
    """

    def __init__(self, dataset, seed: int):
        self.dataset = dataset
        self.seed = seed
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._transformed = _custom_transform(dataset)
        self._plain_rows = self._transformed is None and isinstance(dataset, datasets.Dataset)

    def set_epoch(self, epoch: int):
        self._epoch.fill_(epoch)

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        return self.__getitems__([index])[0]

    def __getitems__(self, indices):
        # An index past the end is a repeated copy (RepeatedAugSampler): its sample, with seeds of its own.
        augmentation_seeds, mask_seeds = sample_seeds(self.seed, int(self._epoch), list(indices))
        indices = [index % len(self.dataset) for index in indices]
        if self._plain_rows:
            samples = self.dataset.__getitems__(indices)  # formatting only, nothing random: one batched read
        else:
            with restored_global_rngs():
                samples = self._fetch(indices, augmentation_seeds)
        if not isinstance(samples[0], Mapping):
            return samples
        if self._transformed is None and not self._plain_rows:
            samples = [dict(sample) for sample in samples]  # the dataset's own dicts stay as they are
        for sample, mask in zip(samples, mask_seeds):
            sample[SEED] = mask
        return samples

    def _fetch(self, indices, augmentation_seeds):
        if self._transformed is not None:
            rows, transform, columns, output_all_columns = self._transformed
            batch = rows[indices]  # one Arrow read (and image decode) for the whole batch
            samples = []
            for position, seed in enumerate(augmentation_seeds):
                row = {name: values[position:position + 1] for name, values in batch.items()}
                seed_global_rngs(seed)
                try:
                    sample = transform({k: v for k, v in row.items() if columns is None or k in columns})
                except KeyError as error:
                    raise MissingColumn(error, list(row)) from error
                if output_all_columns:
                    sample = {**{k: v for k, v in row.items() if k not in sample}, **sample}
                samples.append({name: values[0] for name, values in sample.items()})
            return samples
        samples = []
        for index, seed in zip(indices, augmentation_seeds):
            seed_global_rngs(seed)
            samples.append(self.dataset[index])
        return samples


def pop_sample_seeds(features):
    """``(features without SEED, their seeds)``; seeds are ``None`` when the samples carry none."""
    if not features or not isinstance(features[0], Mapping) or SEED not in features[0]:
        return features, None
    seeds = [feature[SEED] for feature in features]
    return [{k: v for k, v in feature.items() if k != SEED} for feature in features], seeds


class SeedsBesideBatch:
    """Wrap a collator that draws no masks: it collates the samples without ``SEED``, and the batch
    gains their seeds as a tensor under ``SEED``, from which ``MaskSubTrainer`` draws the masks.

    Everything else (``tokenizer``, other attributes) reads through to the wrapped collator.
    """

    def __init__(self, collator):
        self.collator = collator

    def __getattr__(self, name):  # only called for names this wrapper does not have
        if "collator" not in self.__dict__:  # mid-unpickling (spawned DataLoader workers): nothing to read through
            raise AttributeError(name)
        return getattr(self.__dict__["collator"], name)

    def __call__(self, features):
        features, seeds = pop_sample_seeds(features)
        batch = self.collator(features)
        if seeds is not None and isinstance(batch, MutableMapping):
            batch[SEED] = torch.tensor(seeds, dtype=torch.int64)
        return batch


class SampleSeedEpochCallback(TrainerCallback):
    """Give the seeded training set the epoch about to start (a resumed run starts mid-epoch)."""

    def on_epoch_begin(self, args, state, control, train_dataloader=None, **kwargs):
        dataset = getattr(train_dataloader, "dataset", None)
        if isinstance(dataset, SeededDataset):
            dataset.set_epoch(int(state.epoch or 0))
