"""The sub loss of causal language models (``*ForCausalLM``, ``*LMHeadModel``): one prediction per position, of
the next token.

The main branch predicts at position ``p`` the token at ``p + 1`` (the model shifts its labels itself). The sub
branch learns, wherever that next token is supervised (``labels[p + 1] != -100``: not padding, not a prompt that
completion-only training leaves out, never the last position), the main branch's detached next-token distribution
at ``p``. Under token drop (``auto`` for decoders, whose tokenizers have no mask token) a dropped token is no
input, and each kept position is compared with the main prediction at its own original position (``kept`` maps
the repacked sequence back, as for token classifiers); the next token itself may be one that was dropped: its
prediction is still learned, from the kept context before it. Under ``[MASK]`` (a BERT-style decoder) every
position is kept.

Items: the main branch's are the supervised next tokens (the tokens a model's own loss averages over); the sub
branch's are those it predicts. Packed batches (padding-free ``position_ids``, ``cu_seq_lens``, ``shift_labels``)
are refused in one line: the masking reads each row as one sequence.
"""

import contextlib

import torch.nn.functional as F

from ..masking import peft_base_model
from ..masking.structure import is_class_of
from .base import Objective, sub_logits, unwrap
from .token_classification import sub_positions, supervised_sub_loss_sum, supervised_targets

# What padding-free / packing collators add (DataCollatorWithFlattening, TRL's padding_free): rows of several
# sequences, which the masking would read as one; ``shift_labels`` replaces the labels the model shifts.
PACKED_KEYS = ("position_ids", "cu_seq_lens_q", "cu_seq_lens_k", "seq_lengths", "shift_labels")


def next_token_labels(labels):
    """Per position ``p``, the label the model predicts there: ``labels[:, p + 1]``; the last position, none."""
    return F.pad(labels[:, 1:], (0, 1), value=-100)


def is_text_causal_lm(model):
    """A class of transformers' causal-LM mapping that reads text alone, whatever its name
    (``BertGenerationDecoder``, ``ReformerModelWithLMHead``); image- or audio-text models
    (``*ForConditionalGeneration``) are not."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return (getattr(model, "main_input_name", None) == "input_ids"
            and not type(model).__name__.endswith("ForConditionalGeneration")
            and is_class_of(model, MODEL_FOR_CAUSAL_LM_MAPPING_NAMES))


class CausalLMObjective(Objective):
    heads = ("ForCausalLM", "LMHeadModel")
    trains = "causal language models (*ForCausalLM)"

    @classmethod
    def serves(cls, model):
        return super().serves(model) or is_text_causal_lm(peft_base_model(unwrap(model)))

    def check_batch(self, batch):
        packed = [key for key in PACKED_KEYS if key in batch]
        if packed:
            raise ValueError(f"MaskSub cannot train causal LM batches packed into one row (the batch carries "
                             f"{', '.join(packed)}: padding-free or packed collation): its masking reads each row as "
                             "one sequence; pad the batch instead (e.g. DataCollatorForLanguageModeling, or "
                             "padding_free=False and packing=False in TRL).")

    def main_items(self, batch, labels):
        return (labels[:, 1:] != -100).sum()

    def sub_items(self, batch, labels, masking, mask):
        return sub_positions(batch, next_token_labels(labels), masking, mask)[1].sum()

    def main_loss_sum(self, outputs, labels):
        logits = outputs["logits"][:, :-1].float()
        return F.cross_entropy(logits.flatten(0, 1), labels[:, 1:].flatten().to(logits.device), reduction="sum")

    def targets(self, outputs, inputs, labels, masking, mask):
        logits = outputs["logits"]
        return supervised_targets(logits, inputs, next_token_labels(labels.to(logits.device)), masking, mask)

    def sub_loss_sum(self, model, inputs, labels, targets, masking, mask, forward_context=contextlib.nullcontext):
        return supervised_sub_loss_sum(sub_logits(model, inputs, masking, mask, forward_context), targets)
