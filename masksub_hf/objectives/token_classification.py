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

from ..masking import TextTokenDrop
from .base import Objective, sub_logits
from .losses import soft_cross_entropy_rows


def sub_positions(inputs, labels, masking, mask):
    """``(kept, supervised)``: the original position of each sub-branch token (``None``: the same positions, as
    under ``[MASK]``; -1 marks padding) and, per sub-branch token, whether it has a target."""
    if not isinstance(masking, TextTokenDrop):
        return None, labels != -100
    kept = masking.kept_positions(inputs, mask)
    return kept, labels.gather(1, kept.clamp(min=0)).ne(-100) & kept.ge(0)


def token_sub_loss_sum(sub, main, labels, kept=None):
    """Soft cross-entropy of each supervised token's sub logits to its detached main logits, summed.

    Args:
        sub: ``(B, W, C)``; ``main``: ``(B, L, C)``; ``labels``: ``(B, L)``, -100 unsupervised.
        kept: ``(B, W)`` original position of each sub token, -1 for padding (token drop); ``None``: ``W == L``.

    Only the supervised rows are read, without copying either tensor whole (``C`` may be a vocabulary).
    """
    width, length = sub.shape[1], main.shape[1]
    positions = torch.arange(width, device=sub.device).expand(sub.shape[0], -1) if kept is None else kept
    supervised = labels.gather(1, positions.clamp(min=0)).ne(-100) & positions.ge(0)
    batch_index, sub_index = supervised.nonzero(as_tuple=True)
    sub_rows = batch_index * width + sub_index
    main_rows = batch_index * length + positions[batch_index, sub_index]
    return soft_cross_entropy_rows(sub.flatten(0, 1), sub_rows, main.flatten(0, 1), main_rows)


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

    def sub_loss_sum(self, model, inputs, labels, targets, masking, mask, forward_context=contextlib.nullcontext):
        logits = sub_logits(model, inputs, masking, mask, forward_context)
        kept, _ = sub_positions(inputs, labels, masking, mask)
        return token_sub_loss_sum(logits, targets["logits"], labels.to(logits.device), kept)
