"""MaskSub for token classifiers (``*ForTokenClassification``): the sub loss at supervised tokens only.

- ``token_sub_loss``: unsupervised positions (label -100) and padding add nothing; under token drop each kept
  token is compared with the main prediction at its own position, not a neighbour's;
- a MaskSubTrainer step (BERT with ``[MASK]`` and with token drop; a Qwen2 decoder with token drop, left
  padding; MPT, ALiBi without position_ids, its dropped tokens hidden from attention), gradient accumulation 2, equals a plain PyTorch step written out token by token, each loss a mean over
  its branch's labelled tokens in the accumulated batch.
"""

import copy

import pytest
import torch
import torch.nn.functional as F
from helpers import GradientProbe, ListDataset, RecordingCollator, training_args
from models import NUM_TAGS, model_and_tokenizer, tagged_items
from transformers import (
    DataCollatorForTokenClassification,
    Trainer,
)

from masksub_hf import MaskSubMixin, MaskSubTrainer
from masksub_hf.objectives.token_classification import token_sub_loss_sum


def test_unsupervised_positions_and_neighbours_carry_no_target():
    generator = torch.Generator().manual_seed(0)
    main = torch.randn(2, 5, NUM_TAGS, generator=generator)
    sub = torch.randn(2, 5, NUM_TAGS, generator=generator)
    labels = torch.tensor([[-100, 1, -100, 2, 0], [0, -100, 1, -100, -100]])
    base = token_sub_loss_sum(sub, main, labels)
    changed = main.clone()
    changed[labels == -100] += 100.0  # what the main branch says where nothing is supervised does not matter
    assert torch.equal(token_sub_loss_sum(sub, changed, labels), base)
    expected = [-(torch.softmax(main[b, t], -1) * torch.log_softmax(sub[b, t], -1)).sum()
                for b in range(2) for t in range(5) if labels[b, t] != -100]
    torch.testing.assert_close(base, torch.stack(expected).sum())
    # Token drop: row 0 keeps positions 1 and 3, row 1 keeps 0 and 2; the sub tokens map back to them only.
    kept = torch.tensor([[1, 3], [0, 2]])
    dropped_sub = sub[:, :2]
    mapped = [-(torch.softmax(main[b, kept[b, j]], -1) * torch.log_softmax(dropped_sub[b, j], -1)).sum()
              for b in range(2) for j in range(2)]
    torch.testing.assert_close(token_sub_loss_sum(dropped_sub, main, labels, kept=kept), torch.stack(mapped).sum())
    neighbours = main.clone()
    neighbours[:, [2, 4]] += 100.0  # positions 2 (row 0) and 4 are neighbours of kept tokens, not kept ones
    neighbours[1, 1] += 100.0
    assert torch.equal(token_sub_loss_sum(dropped_sub, neighbours, labels, kept=kept),
                       token_sub_loss_sum(dropped_sub, main, labels, kept=kept))


def reference_gradients(model, batches, mode, main_weight=0.5, hides=False):
    """Both branches written out token by token; the main loss summed over the accumulated batch's labelled tokens
    and divided by their count, the sub loss over the labelled tokens the sub branch predicts (all under [MASK],
    the kept ones under token drop) and divided by theirs. Token drop: each row's kept tokens alone at their
    positions, or (``hides``) the whole row with the dropped tokens' attention-mask entries zeroed."""
    count = sum(int((batch["labels"] != -100).sum()) for batch in batches)
    sub_count = count if mode == "text" else sum(
        int(((batch["labels"] != -100) & batch["attention_mask"].bool() & ~batch["masksub_drop_mask"]).sum())
        for batch in batches)
    for batch in batches:
        batch = dict(batch)
        labels = batch.pop("labels")
        mask = batch.pop("masksub_input_ids" if mode == "text" else "masksub_drop_mask")
        main_logits = model(**batch).logits
        main_loss = F.cross_entropy(main_logits.flatten(0, 1), labels.flatten(), reduction="sum") / count
        sub_terms = []
        for row in range(labels.shape[0]):
            real = batch["attention_mask"][row].bool()
            if mode == "text":
                logits = model(input_ids=mask[row][None], attention_mask=batch["attention_mask"][row][None]).logits[0]
                positions = list(range(labels.shape[1]))
            elif hides:
                positions = [i for i in range(labels.shape[1]) if real[i] and not mask[row, i]]
                seen = (real & ~mask[row]).long()[None]
                logits = model(input_ids=batch["input_ids"][row][None], attention_mask=seen).logits[0, positions]
            else:
                positions = [i for i in range(labels.shape[1]) if real[i] and not mask[row, i]]
                kept = torch.tensor(positions)
                # the mask given: without one, transformers >= 5.25 reads gapped positions as packed sequences
                logits = model(input_ids=batch["input_ids"][row, kept][None], position_ids=kept[None],
                               attention_mask=torch.ones(1, len(kept), dtype=torch.long)).logits[0]
            for j, position in enumerate(positions):
                if labels[row, position] != -100:
                    target = torch.softmax(main_logits[row, position].detach(), -1)
                    sub_terms.append(-(target * torch.log_softmax(logits[j], -1)).sum())
        sub_loss = torch.stack(sub_terms).sum() / sub_count
        (main_weight * main_loss + 0.5 * sub_loss).backward()
    return {n: p.grad for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("family,mode", [("bert", "text"), ("bert", "text_drop"), ("qwen2", "text_drop"),
                                         ("mpt", "text_drop")])
def test_gradients_match_a_token_by_token_reference_over_accumulated_batches(tmp_path, family, mode):
    model, tokenizer = model_and_tokenizer(family, tmp_path)
    reference = copy.deepcopy(model)
    collator = RecordingCollator(tokenizer, 0.3, mode=mode, base_collator=DataCollatorForTokenClassification(tokenizer))
    probe = GradientProbe()
    args = training_args(tmp_path / "out", per_device_train_batch_size=4, gradient_accumulation_steps=2, max_steps=1,
                         masksub_ratio=0.3, masksub_mode=mode)
    trainer = MaskSubTrainer(model=model, args=args, train_dataset=ListDataset(tagged_items(tokenizer)),
                             data_collator=collator, callbacks=[probe])
    trainer.train()
    assert len(collator.batches) == 2
    assert getattr(trainer.masking, "hides", False) == (family == "mpt")
    expected = reference_gradients(reference, collator.batches, mode, hides=family == "mpt")
    assert expected.keys() == probe.gradients[0].keys()
    for name, gradient in expected.items():
        torch.testing.assert_close(probe.gradients[0][name], gradient, rtol=1e-4, atol=1e-6, msg=name)


class UsersPoppingTrainer(Trainer):
    """A user's Trainer subclass with a custom ``compute_loss`` as transformers' documentation writes one: it pops
    the labels from its inputs."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        loss = F.cross_entropy(outputs.logits.flatten(0, 1), labels.flatten())  # a micro-batch mean
        return (loss, outputs) if return_outputs else loss


class PoppingTrainer(MaskSubMixin, UsersPoppingTrainer):
    """MaskSub added to the user's own Trainer subclass."""


@pytest.mark.parametrize("mode", ["text", "text_drop"])
@pytest.mark.parametrize("main_loss", ["label_smoothing", "popping_compute_loss"])
def test_main_losses_that_take_the_labels_away(tmp_path, mode, main_loss):
    """Trainer's label smoothing and a user's Trainer subclass whose compute_loss pops "labels", under MaskSubMixin
    (before: KeyError 'labels' at step 1); under
    accumulation both branches as the method: label smoothing divides by the step's labelled tokens, the popping
    loss is a micro-batch mean that MaskSub reads as one."""
    model, tokenizer = model_and_tokenizer("bert", tmp_path)
    reference, sub_reference = copy.deepcopy(model), copy.deepcopy(model)
    collator = RecordingCollator(tokenizer, 0.3, mode=mode, base_collator=DataCollatorForTokenClassification(tokenizer))
    probe = GradientProbe()
    smoothing = 0.1 if main_loss == "label_smoothing" else 0.0
    args = training_args(tmp_path / "out", per_device_train_batch_size=3, gradient_accumulation_steps=2, max_steps=1,
                         masksub_ratio=0.3, masksub_mode=mode, label_smoothing_factor=smoothing)
    trainer_class = PoppingTrainer if main_loss == "popping_compute_loss" else MaskSubTrainer
    trainer_class(model=model, args=args, train_dataset=ListDataset(tagged_items(tokenizer)[:5]),
                  data_collator=collator, callbacks=[probe]).train()
    assert [len(batch["labels"]) for batch in collator.batches] == [3, 2]

    count = sum(int((batch["labels"] != -100).sum()) for batch in collator.batches)
    smoothed_main = []
    for batch in collator.batches:  # the main loss written out: (1 - e) * nll + e * mean over classes of -log p
        labels = batch["labels"]
        log_probs = torch.log_softmax(reference(input_ids=batch["input_ids"],
                                                attention_mask=batch["attention_mask"]).logits, -1)[labels != -100]
        nll = -log_probs.gather(1, labels[labels != -100].unsqueeze(1)).squeeze(1)
        smoothed_main.append((1 - smoothing) * nll - smoothing * log_probs.mean(-1))
    main_part = 0.5 * torch.cat(smoothed_main).sum() / count
    main_part.backward()
    sub_only = reference_gradients(sub_reference, collator.batches, mode, main_weight=0.0)
    assert sub_only.keys() == probe.gradients[0].keys()
    for name, gradient in sub_only.items():
        expected = gradient + dict(reference.named_parameters())[name].grad
        torch.testing.assert_close(probe.gradients[0][name], expected, rtol=1e-4, atol=1e-6, msg=name)


class StatedTrainer(MaskSubTrainer):
    """A custom ``compute_loss`` that says how it normalises (``loss_is_scaled_for_ga``, Trainer's contract)."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        loss = F.cross_entropy(outputs.logits.flatten(0, 1), labels.flatten(), reduction="sum")
        loss = loss / num_items_in_batch if self.loss_is_scaled_for_ga else loss / (labels != -100).sum()
        return (loss, outputs) if return_outputs else loss


def summed_over_accumulated_batch(outputs, labels, num_items_in_batch):
    return F.cross_entropy(outputs["logits"].flatten(0, 1), labels.flatten(), reduction="sum") / num_items_in_batch


@pytest.mark.parametrize("how", ["model's own", "scaled for accumulation", "a micro-batch mean",
                                 "compute_loss_func"])
def test_the_main_loss_normalisation_follows_trainers_contract(tmp_path, how):
    """Each way Trainer's contract lets a main loss be normalised, under accumulation with unequal labelled tokens,
    gives the method's gradient: read by rule (loss_is_scaled_for_ga, compute_loss_func, else a mean over the
    micro-batch), never by comparing values."""
    if how in ("scaled for accumulation", "a micro-batch mean") and not hasattr(MaskSubTrainer, "loss_is_scaled_for_ga"):
        pytest.skip("loss_is_scaled_for_ga: transformers >= 5.23")
    model, tokenizer = model_and_tokenizer("bert", tmp_path)
    reference = copy.deepcopy(model)
    collator = RecordingCollator(tokenizer, 0.3, mode="text", base_collator=DataCollatorForTokenClassification(tokenizer))
    probe = GradientProbe()
    args = training_args(tmp_path / "out", per_device_train_batch_size=3, gradient_accumulation_steps=2, max_steps=1,
                         masksub_ratio=0.3, masksub_mode="text")
    trainer_class, kwargs = MaskSubTrainer, {}
    if how == "compute_loss_func":
        kwargs["compute_loss_func"] = summed_over_accumulated_batch
    elif how != "model's own":
        trainer_class = type("Stated", (StatedTrainer,), {"loss_is_scaled_for_ga": how == "scaled for accumulation"})
    trainer_class(model=model, args=args, train_dataset=ListDataset(tagged_items(tokenizer)[:5]),
                  data_collator=collator, callbacks=[probe], **kwargs).train()
    counts = [int((batch["labels"] != -100).sum()) for batch in collator.batches]
    assert len(counts) == 2 and counts[0] != counts[1]  # a micro-batch mean and an accumulated mean differ
    expected = reference_gradients(reference, collator.batches, "text")
    for name, gradient in expected.items():
        torch.testing.assert_close(probe.gradients[0][name], gradient, rtol=1e-4, atol=1e-6, msg=name)
