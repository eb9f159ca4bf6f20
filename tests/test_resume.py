"""Resuming from a checkpoint restores every weight and MaskSub's own state exactly.

transformers 5 saves some models (ViT, ...) under legacy key names and ``Trainer`` reloads them with a
non-strict ``load_state_dict``, silently keeping those weights' pre-resume values; ``MaskSubTrainer``
reloads them through ``from_pretrained``. Randomness in the data pipeline (augmentations, masks drawn
by a collator) is replayed through per-sample seeds (``masksub_hf.pipeline.seeding``). Through the scripts,
with a real SIGKILL: ``test_crash_recovery.py``.
"""

import logging
import random
import shutil

import datasets
import numpy as np
import pytest
import torch
from helpers import IMAGE_SIZE, ListDataset, image_items, tiny_vit, training_args
from models import hf_model
from test_families import block_items

from masksub_hf import MaskSubImageCollator, MaskSubTrainer
from masksub_hf.batch import SEED
from masksub_hf.pipeline.seeding import SeededDataset


class NoisyImages(ListDataset):
    """Samples with a random augmentation drawn from torch's global RNG, as torchvision transforms do."""

    def __getitem__(self, index):
        item = self.items[index]
        return {**item, "pixel_values": item["pixel_values"] + torch.randn(item["pixel_values"].shape)}


def train(output_dir, build, items, resume=None, dataset_class=ListDataset, collator=None, **overrides):
    model = build()
    args = training_args(output_dir, **{**dict(per_device_train_batch_size=4, max_steps=8, save_strategy="steps",
                                               save_steps=4, learning_rate=1e-3), **overrides})
    trainer = MaskSubTrainer(model=model, args=args, train_dataset=dataset_class(items),
                             data_collator=collator(model) if collator else None)
    trainer.train(resume_from_checkpoint=resume)
    state = {n: p.detach().clone() for n, p in model.named_parameters()}
    state.update({f"owned.{i}": p.detach().clone() for i, p in enumerate(trainer._owned_parameters())})
    return state


@pytest.mark.parametrize("family", ["vit", "swin"])
@pytest.mark.parametrize("ratio", [0.5, 0.0])
def test_resume_equals_uninterrupted_training_bit_for_bit(tmp_path, family, ratio):
    if family == "vit":
        build, items, overrides = tiny_vit, image_items(32, torch.arange(32) % 3, num_keep=8), {}
    else:
        build, items, overrides = (lambda: hf_model("swin")), block_items() * 4, {"masksub_block_size": 8}
    uninterrupted = train(tmp_path / "full", build, items, masksub_ratio=ratio, **overrides)
    shutil.copytree(tmp_path / "full" / "checkpoint-4", tmp_path / "resumed" / "checkpoint-4")
    resumed = train(tmp_path / "resumed", build, items, resume=str(tmp_path / "resumed" / "checkpoint-4"),
                    masksub_ratio=ratio, **overrides)
    assert uninterrupted.keys() == resumed.keys()
    for name, value in uninterrupted.items():
        assert torch.equal(value, resumed[name]), name


def random_pipeline_runs(tmp_path, **overrides):
    """An uninterrupted and a resumed run with random augmentations and collator-drawn masks, over 2.5 epochs
    (8 steps an epoch), resumed from step 12, mid-epoch 2."""
    items = [{k: v for k, v in item.items() if not k.startswith("masksub")}
             for item in image_items(32, torch.arange(32) % 3, num_keep=8)]
    settings = dict(dataset_class=NoisyImages, collator=lambda model: MaskSubImageCollator(model, 0.5),
                    max_steps=20, save_steps=12, **overrides)
    uninterrupted = train(tmp_path / "full", tiny_vit, items, **settings)
    shutil.copytree(tmp_path / "full" / "checkpoint-12", tmp_path / "resumed" / "checkpoint-12")
    resumed = train(tmp_path / "resumed", tiny_vit, items, resume=str(tmp_path / "resumed" / "checkpoint-12"),
                    **settings)
    return uninterrupted, resumed


@pytest.mark.parametrize("overrides", [{}, {"masksub_mode": "dropout", "gradient_accumulation_steps": 2},
                                       {"dataloader_num_workers": 2, "dataloader_persistent_workers": True}],
                         ids=["collator-masks", "dropsub-ga2", "persistent-workers"])
def test_resume_replays_random_augmentations_and_masks(tmp_path, overrides):
    uninterrupted, resumed = random_pipeline_runs(tmp_path, **overrides)
    for name, value in uninterrupted.items():
        assert torch.equal(value, resumed[name]), name


def test_without_sample_seeds_resume_differs(tmp_path):
    """The failure the seeds fix: with the data pipeline on the global RNG (plain Trainer's way), it is not exact."""
    uninterrupted, resumed = random_pipeline_runs(tmp_path, masksub_sample_seeds=False)
    assert any(not torch.equal(value, resumed[name]) for name, value in uninterrupted.items())


def test_seeded_dataset_draws_per_sample_and_epoch():
    dataset = SeededDataset(NoisyImages([{"pixel_values": torch.zeros(3, IMAGE_SIZE, IMAGE_SIZE)}] * 2), seed=0)
    state = torch.get_rng_state()
    first = [dataset[i] for i in (0, 1)]
    assert torch.equal(torch.get_rng_state(), state)  # the caller's RNG stream is left untouched
    assert torch.equal(dataset[1]["pixel_values"], first[1]["pixel_values"])  # any order, any process
    assert not torch.equal(first[0]["pixel_values"], first[1]["pixel_values"])
    assert first[0][SEED] != first[1][SEED]
    dataset.set_epoch(1)
    assert not torch.equal(dataset[0]["pixel_values"], first[0]["pixel_values"])  # a new draw each epoch


def numpy_noise_rows(num_samples=32):
    """A ``datasets.Dataset`` whose transform adds noise from numpy's global RNG, image by image."""
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randn(num_samples, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)
    rows = datasets.Dataset.from_dict({"pixels": pixels.flatten(1).numpy(), "labels": list(range(3)) * 10 + [0, 1]})

    def transform(batch):
        images = [torch.tensor(np.asarray(p, dtype=np.float32)).view(3, IMAGE_SIZE, IMAGE_SIZE)
                  + torch.from_numpy(np.random.standard_normal((3, IMAGE_SIZE, IMAGE_SIZE)).astype(np.float32))
                  for p in batch["pixels"]]
        return {"pixel_values": images, "labels": batch["labels"]}

    return rows.with_transform(transform)


def test_batched_fetch_of_a_datasets_transform_is_seeded_row_by_row():
    """One Arrow read per batch, the transform per row under the row's seed: a sample does not depend on the
    batch it is fetched in, numpy's draws included, and the caller's RNGs are left as they were."""
    dataset = SeededDataset(numpy_noise_rows(), seed=0)
    states = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    batch = dataset.__getitems__([5, 1, 7])
    assert torch.equal(torch.get_rng_state(), states[0]) and np.array_equal(np.random.get_state()[1], states[1])
    assert random.getstate() == states[2]
    for sample, index in zip(batch, [5, 1, 7]):
        alone = dataset[index]
        assert torch.equal(sample["pixel_values"], alone["pixel_values"]) and sample[SEED] == alone[SEED]
    assert not torch.equal(dataset[1]["pixel_values"], dataset[2]["pixel_values"])
    dataset.set_epoch(1)
    assert not torch.equal(dataset[1]["pixel_values"], batch[1]["pixel_values"])  # a new draw each epoch


def test_resume_replays_numpy_augmentations_of_a_datasets_transform(tmp_path):
    settings = dict(collator=lambda model: MaskSubImageCollator(model, 0.5), max_steps=20, save_steps=12,
                    remove_unused_columns=False)
    rows = numpy_noise_rows()
    uninterrupted = train(tmp_path / "full", tiny_vit, rows, dataset_class=lambda items: items, **settings)
    shutil.copytree(tmp_path / "full" / "checkpoint-12", tmp_path / "resumed" / "checkpoint-12")
    resumed = train(tmp_path / "resumed", tiny_vit, rows, resume=str(tmp_path / "resumed" / "checkpoint-12"),
                    dataset_class=lambda items: items, **settings)
    for name, value in uninterrupted.items():
        assert torch.equal(value, resumed[name]), name


def test_resume_says_every_weight_was_restored_instead_of_warning_of_missing_keys(tmp_path, caplog):
    """Before: Trainer's "There were missing keys in the checkpoint model loaded: [...]" (its non-strict reload of
    legacy key names), and no line saying MaskSub then restored every weight."""
    items = image_items(32, torch.arange(32) % 3, num_keep=8)
    train(tmp_path / "full", tiny_vit, items)
    with caplog.at_level(logging.INFO):
        train(tmp_path / "full", tiny_vit, items, resume=str(tmp_path / "full" / "checkpoint-4"))
    messages = [record.getMessage() for record in caplog.records]
    assert not any(m.startswith(("There were missing keys", "There were unexpected keys")) for m in messages)
    assert any(m.startswith(f"Every weight restored from {tmp_path / 'full' / 'checkpoint-4'}") for m in messages)
