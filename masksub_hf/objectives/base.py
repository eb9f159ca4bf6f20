"""What every sub-branch objective shares: the interface, and the sub forward through a masking.

An objective is the method's second half for one kind of head. Per micro-batch it says which items its two losses
average over (rows, labelled tokens), gives each loss as a *sum* over those items, and the detached main-branch
targets the sub branch learns. The step (``masksub_hf.functional.masksub_step``) then applies one rule to both
branches: each sum is divided by the items of the whole accumulated batch on all processes, so that one
optimizer step equals the method on the global batch.
"""

import contextlib
from collections.abc import Mapping

from ..masking import TextTokenDrop, peft_base_model, timm_model_of


def unwrap(model):
    """The model inside a DDP / FSDP wrapper (``.module``), else ``model``."""
    return getattr(model, "module", model)


def model_outputs(model, inputs):
    """``model``'s outputs on a batch dict, as a mapping: transformers models take ``**inputs``; bare timm models
    take the pixels and give the logits."""
    if timm_model_of(unwrap(model)) is unwrap(model):
        return {"logits": model(inputs["pixel_values"])}
    outputs = model(**inputs)
    return outputs if isinstance(outputs, Mapping) else {"logits": outputs}


def sub_outputs(model, inputs, masking, mask, forward_context=contextlib.nullcontext):
    """The sub branch's outputs: ``inputs`` masked by ``masking`` (whatever it changes acts inside this call only)."""
    with masking.apply(unwrap(model), inputs, mask) as sub_inputs, forward_context():
        return model_outputs(model, sub_inputs)


def sub_logits(model, inputs, masking, mask, forward_context=contextlib.nullcontext):
    return sub_outputs(model, inputs, masking, mask, forward_context)["logits"]


def kept_positions(masking, inputs, mask):
    """``(B, W)``: the original position of each sub-branch token, -1 where there is none (padding, a hidden
    token), under token drop; ``None`` where every token stays where it was (``[MASK]``, DropSub, PathSub)."""
    return masking.kept_positions(inputs, mask) if isinstance(masking, TextTokenDrop) else None


def head_name(model):
    return type(peft_base_model(unwrap(model))).__name__


class Objective:
    """One head kind's sub-branch objective.

    - ``label_keys`` / ``labels(batch)``: the batch's keys that are targets (never given to the sub branch), and
      the targets as the methods below take them (``labels``; a question-answering head's answer positions);
    - ``check_batch(batch)``: a one-line error for a batch it cannot train, before any mask is drawn;
    - ``main_items(batch, labels)`` / ``sub_items(batch, labels, masking, mask)``: how many items each branch's
      loss averages over in this micro-batch (integer tensors);
    - ``main_loss_sum(outputs, labels)``: the head's usual loss summed over its items (the main branch of a plain
      loop, and what a model's own loss is compared with to read its normalisation);
    - ``targets(outputs, inputs, labels, masking, mask)``: the detached main outputs the sub branch learns (only
      those it will be supervised at, where they are large);
    - ``sub_loss_sum(model, inputs, labels, targets, masking, mask, forward_context)``: the sub forward and its
      relaxed loss summed over its items (``inputs`` without labels);
    - ``main_inputs(inputs)``: what the main forward gets (a dual encoder asks for its loss);
    - ``model_inputs(inputs)``: what a forward of the model gets of a batch: no targets (a seq2seq LM keeps its
      labels: its decoder reads them);
    - ``sub_bypasses_wrapper``: the sub forward runs on the bare model, outside DDP's reducer (its gradients are
      averaged by hand).

    Which heads it serves it says itself (``serves``: by default the head class names ending in ``heads``;
    ``trains``: the words the one-line error of an unsupported head lists it by), and ``for_model`` builds it:
    ``objectives.OBJECTIVES`` is the registry ``objective_for`` reads.
    """

    heads = ()  # head class-name suffixes it serves
    trains = ""
    label_keys = ("labels",)
    sub_bypasses_wrapper = False
    sub_loss = "soft_ce"  # what the sub branch's loss is, by the name --masksub_loss uses

    @classmethod
    def serves(cls, model):
        return bool(cls.heads) and head_name(model).endswith(cls.heads)

    @classmethod
    def for_model(cls, model, sub_loss="auto"):
        cls.check_sub_loss(model, sub_loss)
        return cls()

    @classmethod
    def check_sub_loss(cls, model, sub_loss):
        """``--masksub_loss`` chooses among losses only where a head has several (classifiers): elsewhere it is
        ``auto`` or the one the head's objective defines, never silently another."""
        if sub_loss not in ("auto", cls.sub_loss):
            raise ValueError(f"masksub_loss={sub_loss!r} does not fit {head_name(model)}, whose sub loss is "
                             f"{cls.sub_loss}: use masksub_loss='auto'.")

    def sub_loss_name(self):
        return self.sub_loss

    def main_inputs(self, inputs):
        return dict(inputs)

    def model_inputs(self, inputs):
        return {key: value for key, value in inputs.items() if key not in self.label_keys}

    def labels(self, batch):
        return batch.get("labels")

    def check_batch(self, batch):
        pass

    def targets(self, outputs, inputs, labels, masking, mask):
        return {"logits": outputs["logits"].detach()}

    def main_items(self, batch, labels):
        raise NotImplementedError

    def sub_items(self, batch, labels, masking, mask):
        return self.main_items(batch, labels)

    def main_loss_sum(self, outputs, labels):
        raise NotImplementedError

    def sub_loss_sum(self, model, inputs, labels, targets, masking, mask, forward_context=contextlib.nullcontext):
        raise NotImplementedError
