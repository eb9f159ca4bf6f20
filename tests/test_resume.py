"""Resuming from a checkpoint restores every weight and MaskSub's own state exactly.

transformers 5 saves some models (ViT, ...) under legacy key names and ``Trainer`` reloads them with a
non-strict ``load_state_dict``, silently keeping those weights' pre-resume values; ``MaskSubTrainer``
reloads them through ``from_pretrained``. Masks here travel with the samples, so the only state is
what checkpoints hold: weights, optimizer, scheduler, RNG and a MaskSub-owned mask token.
"""

import shutil

import pytest
import torch
from helpers import ListDataset, image_items, tiny_vit, training_args
from test_families import block_items, hf_model

from masksub_hf import MaskSubTrainer


def train(output_dir, build, items, resume=None, **overrides):
    model = build()
    args = training_args(output_dir, per_device_train_batch_size=4, max_steps=8, save_strategy="steps",
                         save_steps=4, learning_rate=1e-3, **overrides)
    trainer = MaskSubTrainer(model=model, args=args, train_dataset=ListDataset(items))
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
