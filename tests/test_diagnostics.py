"""Figure-2 diagnostics: per-branch gradient norms in the logs, and the plots drawn from them."""

import copy

import pytest
import torch
from helpers import ListDataset, image_items, training_args
from PIL import Image
from test_equivalence import REFERENCE_LOSSES, make_case, reference_vit_logits

from masksub_hf import MaskSubTrainer
from masksub_hf.scripts.plot import main as plot_main


def branch_gradient_norm(model, loss):
    model.zero_grad()
    loss.backward()
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]).norm().item()


def test_logged_gradient_norms_are_each_branchs_gradient(tmp_path):
    model, items = make_case("ce")
    reference = copy.deepcopy(model)
    args = training_args(tmp_path, per_device_train_batch_size=8, max_steps=1, logging_steps=1,
                         masksub_log_grad_norm=True)
    trainer = MaskSubTrainer(model=model, args=args, train_dataset=ListDataset(items))
    trainer.train()
    (logged,) = [entry for entry in trainer.state.log_history if "loss" in entry]

    batch = {k: torch.stack([item[k] for item in items]) for k in items[0]}
    main_loss_fn, sub_loss_fn = REFERENCE_LOSSES["ce"]
    main = reference_vit_logits(reference, batch["pixel_values"])
    main_norm = branch_gradient_norm(reference, 0.5 * main_loss_fn(main, batch["labels"]))
    sub = reference_vit_logits(reference, batch["pixel_values"], batch["masksub_keep_indices"])
    sub_norm = branch_gradient_norm(reference, 0.5 * sub_loss_fn(sub, main.detach()))
    assert logged["main_grad_norm"] == pytest.approx(main_norm, rel=1e-5)
    assert logged["sub_grad_norm"] == pytest.approx(sub_norm, rel=1e-5)


def test_plots_from_trainer_state(tmp_path):
    items = image_items(32, torch.arange(32) % 3, num_keep=8)
    for name, ratio in (("baseline", 0.0), ("masksub", 0.5)):
        args = training_args(tmp_path / name, per_device_train_batch_size=4, max_steps=6, logging_steps=2,
                             masksub_ratio=ratio, masksub_log_grad_norm=ratio > 0)
        trainer = MaskSubTrainer(model=make_case("ce")[0], args=args, train_dataset=ListDataset(items))
        trainer.train()
        trainer.save_state()
    plot_main([str(tmp_path / "masksub"), "--baseline", str(tmp_path / "baseline"), "--out", str(tmp_path / "plots")])
    for name in ("losses.png", "grad_norms.png"):
        with Image.open(tmp_path / "plots" / name) as image:
            assert image.width > 300 and image.height > 200
