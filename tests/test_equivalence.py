"""MaskSubTrainer's gradients equal an independent plain-PyTorch MaskSub step given the same masks.

The reference below drops patch tokens by hand (no hook, no masksub_hf code), writes each loss out
in torch ops, and backpropagates ``w_main * L_main + w_sub * L_sub`` in one backward pass. The trainer
runs two backward passes, gradient accumulation, Trainer's clipping; the gradients it hands the
optimizer must match to 1e-6.
"""

import copy

import pytest
import torch
import torch.nn.functional as F
from helpers import GradientProbe, ListDataset, image_items, tiny_vit, training_args

from masksub_hf import MaskSubTrainer

NUM_SAMPLES, NUM_KEEP = 8, 8  # 16 patches, ratio 0.5


def reference_vit_logits(model, pixel_values, keep_indices=None):
    vit = model.vit
    hidden = vit.embeddings(pixel_values)
    if keep_indices is not None:
        kept = torch.stack([hidden[b, 1:][keep_indices[b]] for b in range(len(keep_indices))])
        hidden = torch.cat([hidden[:, :1], kept], dim=1)
    for layer in vit.layers:
        hidden = layer(hidden, None)
    return model.classifier(vit.layernorm(hidden)[:, 0])


REFERENCE_LOSSES = {
    # name: (main loss vs labels, sub loss vs detached main logits)
    "ce": (
        lambda z, y: F.cross_entropy(z, y),
        lambda s, t: -(t.softmax(-1) * s.log_softmax(-1)).sum(-1).mean(),
    ),
    "label_smoothing": (
        lambda z, y: F.cross_entropy(z, y, label_smoothing=0.1),
        lambda s, t: -(t.softmax(-1) * s.log_softmax(-1)).sum(-1).mean(),
    ),
    "bce": (
        lambda z, y: F.binary_cross_entropy_with_logits(z, y),
        lambda s, t: F.binary_cross_entropy_with_logits(s, t.sigmoid()),
    ),
    "mse": (
        lambda z, y: ((z.squeeze(-1) - y) ** 2).mean(),
        lambda s, t: ((s - t) ** 2).mean(),
    ),
}


CASE_ARGUMENTS = {"label_smoothing": {"label_smoothing_factor": 0.1}}


def make_case(kind, seed=0):
    generator = torch.Generator().manual_seed(seed + 1)
    if kind == "bce":
        model = tiny_vit(num_labels=3, problem_type="multi_label_classification", seed=seed)
        labels = torch.randint(0, 2, (NUM_SAMPLES, 3), generator=generator).float()
    elif kind == "mse":
        model = tiny_vit(num_labels=1, problem_type="regression", seed=seed)
        labels = torch.randn(NUM_SAMPLES, generator=generator)
    else:
        model = tiny_vit(num_labels=3, seed=seed)
        labels = torch.randint(0, 3, (NUM_SAMPLES,), generator=generator)
    return model, image_items(NUM_SAMPLES, labels, NUM_KEEP, seed=seed)


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


def assert_same_gradients(actual, expected, atol=1e-6):
    """Max abs difference <= atol, relative to a tensor's largest gradient where that exceeds 1 (fp32 rounding)."""
    assert actual.keys() == expected.keys()
    for name in expected:
        scale = max(1.0, expected[name].abs().max().item())
        difference = (actual[name] - expected[name]).abs().max().item()
        assert difference <= atol * scale, f"{name}: max abs gradient difference {difference:.3g} > {atol} x {scale:.3g}"


def test_reference_forward_matches_the_model():
    model, items = make_case("ce")
    pixels = torch.stack([item["pixel_values"] for item in items])
    torch.testing.assert_close(reference_vit_logits(model, pixels), model(pixel_values=pixels).logits)


@pytest.mark.parametrize("kind", ["ce", "bce", "mse", "label_smoothing"])
def test_gradients_match_reference(tmp_path, kind):
    model, items = make_case(kind)
    expected = reference_gradients(copy.deepcopy(model), items, kind)
    assert_same_gradients(trainer_gradients(tmp_path, model, items, **CASE_ARGUMENTS.get(kind, {})), expected)


@pytest.mark.parametrize("kind", ["ce", "bce", "mse", "label_smoothing"])
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


def test_text_gradients_match_reference(tmp_path):
    """BERT-family: the sub branch reads ``masksub_input_ids`` in place of ``input_ids``."""
    from helpers import tiny_bert

    model = tiny_bert(num_labels=2)
    generator = torch.Generator().manual_seed(3)
    input_ids = torch.randint(5, 64, (NUM_SAMPLES, 12), generator=generator)
    masked_ids = input_ids.masked_fill(torch.rand(input_ids.shape, generator=generator) < 0.15, 4)
    labels = torch.randint(0, 2, (NUM_SAMPLES,), generator=generator)
    items = [
        {"input_ids": input_ids[i], "attention_mask": torch.ones(12, dtype=torch.long), "labels": labels[i],
         "masksub_input_ids": masked_ids[i]}
        for i in range(NUM_SAMPLES)
    ]
    reference = copy.deepcopy(model)
    main_logits = reference(input_ids=input_ids).logits
    sub_logits = reference(input_ids=masked_ids).logits
    main_loss_fn, sub_loss_fn = REFERENCE_LOSSES["ce"]
    (0.5 * main_loss_fn(main_logits, labels) + 0.5 * sub_loss_fn(sub_logits, main_logits.detach())).backward()
    expected = {n: p.grad for n, p in reference.named_parameters() if p.grad is not None}
    assert_same_gradients(trainer_gradients(tmp_path, model, items), expected)
