"""The sub loss of classifiers with one prediction per input: image and sequence classifiers (``*ForImageClassification``,
``*ForSequenceClassification``, timm models).

The sub branch learns the main branch's detached prediction for every input the main branch is supervised on:
soft cross-entropy to ``softmax(main)`` (single-label), BCE to ``sigmoid(main)`` averaged over the labels
(multi-label), squared error to the main output averaged over the outputs (regression). An input whose integer
label is -100 carries no target in either branch (transformers' cross-entropy ignores it). Items: those inputs.
"""

import contextlib

import torch
import torch.nn.functional as F

from ..masking import timm_model_of
from .base import Objective, sub_logits, unwrap
from .losses import SUB_LOSSES_PER_ITEM, sub_loss_name


def supervised_rows(batch, labels):
    """``(B,)`` booleans: the inputs with a target (integer labels of -100 have none)."""
    if labels is None:
        rows = next(value for value in batch.values() if torch.is_tensor(value)).shape[0]
        return torch.ones(rows, dtype=torch.bool)
    if labels.dim() == 1 and not labels.is_floating_point():
        return labels != -100
    return torch.ones(labels.shape[0], dtype=torch.bool, device=labels.device)


class ClassificationObjective(Objective):
    """``sub_loss``: ``auto`` (from ``config.problem_type``, or the main loss's ``masksub_sub_loss``), ``soft_ce``,
    ``bce`` or ``mse``; resolved once, after the first main forward has set ``problem_type``."""

    heads = ("ForImageClassification", "ForSequenceClassification",
             # Perceiver's image classifiers, one per input preprocessor
             "ForImageClassificationLearned", "ForImageClassificationFourier", "ForImageClassificationConvProcessing")
    trains = "classifiers with one prediction per input (*ForImageClassification, *ForSequenceClassification, timm models)"

    @classmethod
    def serves(cls, model):
        return super().serves(model) or timm_model_of(unwrap(model)) is not None

    @classmethod
    def for_model(cls, model, sub_loss="auto"):
        return cls(getattr(unwrap(model), "config", None), sub_loss)

    def __init__(self, config=None, sub_loss="auto"):
        self.config = config
        self.requested = sub_loss
        self.sub_loss = None if sub_loss == "auto" else sub_loss_name(sub_loss)

    def _resolved(self):
        if self.sub_loss is None:
            self.sub_loss = sub_loss_name("auto", self.config)
        return self.sub_loss

    def sub_loss_name(self):
        return self._resolved()

    def main_items(self, batch, labels):
        return supervised_rows(batch, labels).sum()

    def main_loss_sum(self, outputs, labels):
        logits = outputs["logits"].float()
        kind = self._resolved()
        if kind == "soft_ce":
            return F.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1), reduction="sum")
        if kind == "bce":
            return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), reduction="none").mean(-1).sum()
        return (logits.view(labels.shape[0], -1) - labels.view(labels.shape[0], -1).to(logits.dtype)).pow(2).mean(-1).sum()

    def sub_loss_sum(self, model, inputs, labels, targets, masking, mask, forward_context=contextlib.nullcontext):
        logits = sub_logits(model, inputs, masking, mask, forward_context)
        per_item = SUB_LOSSES_PER_ITEM[self._resolved()](logits, targets["logits"])
        supervised = supervised_rows(inputs, labels).to(per_item.device)
        return per_item.masked_fill(~supervised, 0.0).sum()
