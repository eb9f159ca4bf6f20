"""The sub loss of seq2seq language models (BART, T5, mBART, Marian, Pegasus, ...: summarisation, translation).

The encoder reads the source, the decoder is teacher-forced on the target: at target position ``t`` it predicts
``labels[t]`` from ``labels[:t]`` (its inputs, ``decoder_input_ids``, are the labels shifted right, which the
model makes itself when given labels, or a collator made). The sub branch masks the *source* only (``[MASK]``,
or token drop: hidden from attention, since these models take no ``position_ids``; every kept token stays where
it was) and gets the labels and decoder inputs the main branch got, so its decoder reads what the main one read:
it learns, at every labelled target position (``labels != -100``: not padding), the main branch's detached
distribution over the next target token, from less of the source. (The model's own loss on that forward is not
used.) Masking the target as well would change what the decoder is asked to predict from.

Items: the labelled target tokens, for both branches (the tokens a model's own loss averages over).
"""

import contextlib

import torch.nn.functional as F

from ..masking import peft_base_model
from ..masking.structure import is_seq2seq_lm
from .base import Objective, model_outputs, unwrap
from .token_classification import selected_targets, supervised_sub_loss_sum


class Seq2SeqLMObjective(Objective):
    trains = "seq2seq language models (AutoModelForSeq2SeqLM's text models)"

    @classmethod
    def serves(cls, model):
        return is_seq2seq_lm(peft_base_model(unwrap(model)))

    def model_inputs(self, inputs):
        return dict(inputs)  # the labels too: the model makes its decoder's inputs from them

    def main_items(self, batch, labels):
        return (labels != -100).sum()

    def main_loss_sum(self, outputs, labels):
        logits = outputs["logits"].float()
        return F.cross_entropy(logits.flatten(0, 1), labels.flatten().to(logits.device), reduction="sum")

    def targets(self, outputs, inputs, labels, masking, mask):
        return selected_targets(outputs["logits"], labels.to(outputs["logits"].device))

    def sub_loss_sum(self, model, inputs, labels, targets, masking, mask, forward_context=contextlib.nullcontext):
        decoder = {key: value for key, value in inputs.items() if key.startswith("decoder_")}
        decoder["labels"] = labels.to(inputs["input_ids"].device)  # the model makes its decoder's inputs, as in main
        source = {key: value for key, value in inputs.items() if not key.startswith("decoder_")}  # labels: none here
        # the masking sees the source alone: a token drop's per-token inputs are the encoder's
        with masking.apply(unwrap(model), source, mask) as sub_source, forward_context():
            logits = model_outputs(model, {**sub_source, **decoder})["logits"]
        return supervised_sub_loss_sum(logits, targets)
