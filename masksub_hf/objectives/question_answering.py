"""The sub loss of extractive question answering heads (``*ForQuestionAnswering``): where the answer starts and
where it ends, two distributions over the input's tokens.

The head scores every token as the answer's start and as its end and is trained with cross-entropy to the two
positions (``start_positions``, ``end_positions``), their mean. The sub branch learns the main branch's detached
start and end distributions: soft cross-entropy to each, their mean. Both distributions are over the real tokens
the sub branch sees, where each kept token is compared with the main score at its own original position: under
``[MASK]`` (``text``) every real token stays where it was; under token drop a dropped token has no score, and the
sub branch learns the main distribution renormalised over the tokens it kept (``kept`` maps the repacked
sequence back). Padding is never an answer in either.

Items: the inputs whose answer lies in the sequence (transformers ignores a position at or past the end, as
when an answer was cut off); an input with only one of its two positions there is a one-line error: the head's
loss would average starts and ends over different inputs.
"""

import contextlib

import torch
import torch.nn.functional as F

from .base import Objective, head_name, kept_positions, sub_outputs
from .losses import soft_cross_entropy_over

ENDS = ("start", "end")


def answered(labels, length):
    """``(B,)``: the inputs whose start and end both lie in a sequence of ``length`` tokens (as transformers'
    loss reads them: negative positions clamped to 0, those at or past the end ignored)."""
    return labels.lt(length).all(-1)


def main_at(logits, kept):
    """The detached main scores at each sub-branch token's original position (``kept``; ``None``: the same)."""
    logits = logits.detach()
    return logits if kept is None else logits.gather(1, kept.clamp(min=0))


class QuestionAnsweringObjective(Objective):
    heads = ("ForQuestionAnswering", "ForQuestionAnsweringSimple")
    trains = "extractive question answering heads (*ForQuestionAnswering)"
    label_keys = ("start_positions", "end_positions")
    # XLNet's and XLM's beam-search SQuAD heads score ends per start candidate: no two distributions to learn
    # (their *ForQuestionAnsweringSimple heads, what AutoModelForQuestionAnswering builds, are served)
    beam_search_heads = ("XLNetForQuestionAnswering", "XLMForQuestionAnswering")

    @classmethod
    def serves(cls, model):
        return super().serves(model) and head_name(model) not in cls.beam_search_heads

    def labels(self, batch):
        if any(key not in batch for key in self.label_keys):
            return None
        return torch.stack([batch[key].reshape(-1) for key in self.label_keys], -1)

    def check_batch(self, batch):
        labels, length = self.labels(batch), batch["input_ids"].shape[-1]
        if labels is None:
            raise ValueError("MaskSub trains question answering on batches with start_positions and end_positions.")
        half = labels.lt(length).any(-1) & ~answered(labels, length)
        if half.any():
            raise ValueError(f"MaskSub: {int(half.sum())} input(s) of a batch have an answer start or end past the "
                             f"sequence ({length} tokens) but not both; give both ends inside it or both outside "
                             "(transformers ignores a position past the end).")

    def main_items(self, batch, labels):
        return answered(labels, batch["input_ids"].shape[-1]).sum()

    def main_loss_sum(self, outputs, labels):
        length = outputs["start_logits"].shape[1]
        rows = answered(labels, length).to(outputs["start_logits"].device)
        positions = labels.to(rows.device)[rows].clamp(min=0)
        return sum(F.cross_entropy(outputs[f"{end}_logits"][rows].float(), positions[:, i], reduction="sum")
                   for i, end in enumerate(ENDS)) / 2

    def targets(self, outputs, inputs, labels, masking, mask):
        start = outputs["start_logits"]
        kept = kept_positions(masking, inputs, mask)
        if kept is not None:
            kept = kept.to(start.device)
            valid = kept.ge(0)
        else:  # every position stays: its real tokens
            attention = inputs.get("attention_mask")
            valid = torch.ones_like(start, dtype=torch.bool) if attention is None else attention.to(start.device).bool()
        return {**{end: main_at(outputs[f"{end}_logits"], kept) for end in ENDS}, "valid": valid,
                "rows": answered(labels, start.shape[1]).to(start.device)}

    def sub_loss_sum(self, model, inputs, labels, targets, masking, mask, forward_context=contextlib.nullcontext):
        outputs = sub_outputs(model, inputs, masking, mask, forward_context)
        per_input = sum(soft_cross_entropy_over(outputs[f"{end}_logits"], targets[end], targets["valid"])
                        for end in ENDS) / 2
        return per_input[targets["rows"]].sum()
