"""MaskSubTrainer's gradients equal an independent plain-PyTorch MaskSub step given the same masks.

The reference below drops patch tokens by hand (no hook, no masksub_hf code), writes each loss out
in torch ops, and backpropagates ``w_main * L_main + w_sub * L_sub`` in one backward pass. The trainer
runs two backward passes, gradient accumulation, Trainer's clipping; the gradients it hands the
optimizer must match to 1e-6.
"""

import copy

import pytest
import torch
from helpers import GradientProbe, ListDataset, training_args
from models import NUM_SAMPLES, make_case
from references import REFERENCE_LOSSES, assert_same_gradients, reference_vit_logits

from masksub_hf import MaskSubTrainer

CASE_ARGUMENTS = {"label_smoothing": {"label_smoothing_factor": 0.1}}


def reference_gradients(model, items, kind, weights=(0.5, 0.5), max_grad_norm=0.0):
    batch = {k: torch.stack([item[k] for item in items]) for k in items[0]}
    main_loss_fn, sub_loss_fn = REFERENCE_LOSSES[kind]
    model.zero_grad()
    main_logits = reference_vit_logits(model, batch["pixel_values"])
    sub_logits = reference_vit_logits(model, batch["pixel_values"], batch["masksub_keep_indices"])
    loss = weights[0] * main_loss_fn(main_logits, batch["labels"]) + weights[1] * sub_loss_fn(
        sub_logits, main_logits.detach()
    )
    loss.backward()
    if max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def trainer_gradients(tmp_path, model, items, **overrides):
    probe = GradientProbe()
    overrides.setdefault("per_device_train_batch_size", NUM_SAMPLES)
    args = training_args(tmp_path, max_steps=1, masksub_ratio=0.5, **overrides)
    MaskSubTrainer(model=model, args=args, train_dataset=ListDataset(items), callbacks=[probe]).train()
    assert len(probe.gradients) == 1
    return probe.gradients[0]


def test_reference_forward_matches_the_model():
    model, items = make_case("ce")
    pixels = torch.stack([item["pixel_values"] for item in items])
    torch.testing.assert_close(reference_vit_logits(model, pixels), model(pixel_values=pixels).logits)


# CE, BCE and MSE heads at one micro-batch and under accumulation are rows of the exactness matrix
# (tests/exactness_cases.py: vit_tokens_*); here: label smoothing, with masks given as a precomputed column.
@pytest.mark.parametrize("kind", ["label_smoothing"])
def test_gradients_match_reference(tmp_path, kind):
    model, items = make_case(kind)
    expected = reference_gradients(copy.deepcopy(model), items, kind)
    assert_same_gradients(trainer_gradients(tmp_path, model, items, **CASE_ARGUMENTS.get(kind, {})), expected)


@pytest.mark.parametrize("kind", ["label_smoothing"])
def test_gradient_accumulation_equals_one_big_batch(tmp_path, kind):
    model, items = make_case(kind)
    expected = reference_gradients(copy.deepcopy(model), items, kind)
    accumulation = dict(per_device_train_batch_size=NUM_SAMPLES // 2, gradient_accumulation_steps=2)
    actual = trainer_gradients(tmp_path, model, items, **accumulation, **CASE_ARGUMENTS.get(kind, {}))
    assert_same_gradients(actual, expected)


def test_clipping_happens_once_on_the_summed_gradients(tmp_path):
    model, items = make_case("ce")
    expected = reference_gradients(copy.deepcopy(model), items, "ce", max_grad_norm=0.05)
    unclipped = reference_gradients(copy.deepcopy(model), items, "ce")
    assert torch.cat([g.flatten() for g in unclipped.values()]).norm() > 0.05  # clipping is active
    assert_same_gradients(trainer_gradients(tmp_path, model, items, max_grad_norm=0.05), expected)


def test_branch_weights(tmp_path):
    model, items = make_case("ce")
    expected = reference_gradients(copy.deepcopy(model), items, "ce", weights=(0.75, 0.25))
    actual = trainer_gradients(tmp_path, model, items, masksub_main_weight=0.75, masksub_sub_weight=0.25)
    assert_same_gradients(actual, expected)
