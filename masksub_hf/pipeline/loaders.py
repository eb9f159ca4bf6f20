"""Trainer's data loaders, with what MaskSub changes in them: the training set seeded per sample, the collator
passing those seeds beside the batch, the repeated-augmentation sampler, evaluation never mixed.

Trainer builds every loader in ``_get_dataloader``, which reads the collator from ``trainer.data_collator``:
the loader's collator is put there while the loader is built (``collator_for_loader``) and the user's object is
back there after, so ``trainer.data_collator`` is always what the user gave.
"""

import contextlib

import datasets
import torch

from .samplers import RepeatedAugSampler
from .seeding import SampleSeedEpochCallback, SeededDataset, SeedsBesideBatch


def loader_collator(collator, is_training, sample_seeds):
    """The collator a loader uses: the user's, but for what MaskSub changes.

    Training under per-sample seeds: a collator that draws no masks is wrapped so that the samples' seeds reach
    the trainer beside the batch. Evaluation and prediction are never mixed: a ``MixupCollator`` gives its
    inner collator."""
    if not is_training:
        return getattr(collator, "evaluation_collator", collator)
    if sample_seeds and collator is not None and not getattr(collator, "uses_sample_seeds", False):
        return SeedsBesideBatch(collator)
    return collator


@contextlib.contextmanager
def collator_for_loader(trainer, is_training):
    """``trainer.data_collator`` is the loader's collator inside the block, the user's object again after."""
    collator = loader_collator(trainer.data_collator, is_training, trainer.args.masksub_sample_seeds)
    if collator is trainer.data_collator:
        yield
        return
    user_collator, trainer.data_collator = trainer.data_collator, collator
    try:
        yield
    finally:
        trainer.data_collator = user_collator


def data_seed(args):
    return args.data_seed if args.data_seed is not None else args.seed


def seeded_train_loader(trainer, build_plain_loader):
    """Trainer's training loader over the training set wrapped in a ``SeededDataset`` (per-sample seeds); a set
    that cannot be indexed (iterable) or a run without per-sample seeds gets ``build_plain_loader()``."""
    dataset = trainer.train_dataset
    with collator_for_loader(trainer, is_training=True):
        if (not trainer.args.masksub_sample_seeds or dataset is None
                or isinstance(dataset, torch.utils.data.IterableDataset)):
            return build_plain_loader()
        if isinstance(dataset, datasets.Dataset):
            dataset = trainer._remove_unused_columns(dataset, description="training")
        # Trainer's own loader, over the seeded dataset (its public method reads trainer.train_dataset).
        return trainer._get_dataloader(
            dataset=SeededDataset(dataset, data_seed(trainer.args)),
            description="Training",
            batch_size=trainer._train_batch_size,
            sampler_fn=lambda _: trainer._get_train_sampler(dataset),  # e.g. group_by_length reads the columns
            is_training=True,
        )


def repeated_aug_sampler(trainer, dataset):
    """The repeated-augmentation sampler; under per-sample seeds each copy is read with seeds of its own
    (``SeededDataset`` reads index % len)."""
    args = trainer.args
    return RepeatedAugSampler(len(dataset), args.repeated_aug_repeats, args.world_size, trainer._train_batch_size,
                              data_seed(args), distinct_copies=args.masksub_sample_seeds)


def sync_sample_seed_callback(trainer):
    """The epoch callback of per-sample seeds, there exactly when ``masksub_sample_seeds`` is on."""
    present = any(isinstance(c, SampleSeedEpochCallback) for c in trainer.callback_handler.callbacks)
    if trainer.args.masksub_sample_seeds and not present:
        trainer.add_callback(SampleSeedEpochCallback())
    elif not trainer.args.masksub_sample_seeds and present:
        trainer.remove_callback(SampleSeedEpochCallback)
