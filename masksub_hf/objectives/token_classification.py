"""The sub loss of token classifiers (NER, POS: ``*ForTokenClassification``): one prediction per token.

What the paper's rule implies per token: the sub branch learns the main branch's detached prediction wherever
the main branch is supervised, that is at every position whose label is not -100 (first sub-words, as
``run_ner.py`` labels them), and nowhere else: padding, special tokens and the sub-words ``-100`` leaves out
carry no target. Under ``[MASK]`` (``text``) the sub branch keeps every position, so a masked position still
learns its token's prediction, from context. Under token drop (``text_drop``) a dropped token has no output:
each kept token is compared with the main prediction at its own original position (never a neighbour's:
``kept`` maps the repacked sequence back), and dropped tokens add nothing.

Items: the main branch's are the labelled tokens; the sub branch's are the labelled tokens it predicts (all of
them under ``[MASK]``, the kept ones under token drop). Each loss is a mean over its own items, so the sub
branch weighs ``masksub_sub_weight`` whatever the ratio.
"""

import contextlib

import torch
import torch.nn.functional as F

from .base import Objective, kept_positions, sub_logits
from .losses import soft_cross_entropy_rows


def sub_positions(inputs, labels, masking, mask):
    """``(kept, supervised)``: the original position of each sub-branch token (``None``: the same positions, as
    under ``[MASK]``; -1 marks padding) and, per sub-branch token, whether it has a target."""
    kept = kept_positions(masking, inputs, mask)
    if kept is None:
        return None, labels != -100
    return kept, labels.gather(1, kept.clamp(min=0)).ne(-100) & kept.ge(0)


def supervised_pairs(labels, kept):
    """``(sub_rows, main_rows)``: for each supervised sub-branch token, its row in the ``(B * W, C)`` sub logits
    and the row of its original position in the ``(B * L, C)`` main logits (``kept``: see ``token_sub_loss_sum``;
    ``None``: ``W == L``)."""
    batch, length = labels.shape
    positions = torch.arange(length, device=labels.device).expand(batch, -1) if kept is None else kept
    supervised = labels.gather(1, positions.clamp(min=0)).ne(-100) & positions.ge(0)
    batch_index, sub_index = supervised.nonzero(as_tuple=True)
    return batch_index * positions.shape[1] + sub_index, batch_index * length + positions[batch_index, sub_index]


def selected_targets(main_logits, labels, kept=None):
    """The main logits of the positions the sub branch is supervised at, and where its tokens are: what the sub
    pass keeps instead of all the main logits (with a vocabulary for classes, the logits are the largest tensor of
    a step; the positions a token drop removes or labels leave out need none)."""
    sub_rows, main_rows = supervised_pairs(labels, kept)
    return {"logits": main_logits.detach().flatten(0, 1).index_select(0, main_rows), "sub_rows": sub_rows}


def supervised_sub_loss_sum(sub, targets):
    """Soft cross-entropy of each supervised sub-branch token's logits to its ``selected_targets`` row, summed."""
    rows = targets["sub_rows"].to(sub.device)
    return soft_cross_entropy_rows(sub.flatten(0, 1), rows, targets["logits"], torch.arange(len(rows), device=sub.device))


def token_sub_loss_sum(sub, main, labels, kept=None):
    """Soft cross-entropy of each supervised token's sub logits to its detached main logits, summed.

    Args:
        sub: ``(B, W, C)``; ``main``: ``(B, L, C)``; ``labels``: ``(B, L)``, -100 unsupervised.
        kept: ``(B, W)`` original position of each sub token, -1 for padding (token drop); ``None``: ``W == L``.
    """
    return supervised_sub_loss_sum(sub, selected_targets(main, labels, kept))


def supervised_targets(main_logits, inputs, labels, masking, mask):
    """``selected_targets`` for the sub branch ``masking`` and ``mask`` make of ``inputs``."""
    return selected_targets(main_logits, labels, sub_positions(inputs, labels, masking, mask)[0])


class TokenClassificationObjective(Objective):
    heads = ("ForTokenClassification",)
    trains = "token classifiers (*ForTokenClassification)"

    def main_items(self, batch, labels):
        return (labels != -100).sum()

    def sub_items(self, batch, labels, masking, mask):
        return sub_positions(batch, labels, masking, mask)[1].sum()

    def main_loss_sum(self, outputs, labels):
        logits = outputs["logits"].float()
        return F.cross_entropy(logits.flatten(0, 1), labels.flatten().to(logits.device), reduction="sum")

    def targets(self, outputs, inputs, labels, masking, mask):
        return supervised_targets(outputs["logits"], inputs, labels.to(outputs["logits"].device), masking, mask)

    def sub_loss_sum(self, model, inputs, labels, targets, masking, mask, forward_context=contextlib.nullcontext):
        return supervised_sub_loss_sum(sub_logits(model, inputs, masking, mask, forward_context), targets)
