"""MaskSub without the Trainer, for plain PyTorch and Accelerate loops (the Composer-style functional form).

    masking = masking_for(model, "auto", ratio=0.5)
    optimizer = AdamW([*model.parameters(), *masking.parameters()])   # a MaskSub-owned mask token, if any
    for batch in loader:
        labels = batch.pop("labels")
        main_loss, sub_loss = masksub_step(
            model, batch, labels, F.cross_entropy, masking,
            backward=accelerator.backward, main_no_sync=lambda: accelerator.no_sync(model))
        optimizer.step(); optimizer.zero_grad()

``MaskSubTrainer`` runs the same sub branch (``sub_branch_loss``); only its main branch goes through
``Trainer.compute_loss``.
"""

import contextlib
from collections.abc import Mapping

import torch

from .masking import timm_model_of
from .objectives.losses import soft_cross_entropy


def model_logits(model, inputs):
    """Logits of ``model`` on a batch dict: transformers models take ``**inputs``, bare timm models the pixels."""
    unwrapped = getattr(model, "module", model)  # DDP / FSDP wrappers keep the model in .module
    if timm_model_of(unwrapped) is unwrapped:
        return model(inputs["pixel_values"])
    outputs = model(**inputs)
    return outputs["logits"] if isinstance(outputs, Mapping) else outputs


def sub_branch_loss(model, inputs, main_logits, masking, mask=None, loss_fn=soft_cross_entropy,
                    forward_context=contextlib.nullcontext):
    """Sub forward on the masked batch and its relaxed loss against the (detached) main logits.

    ``inputs`` must not hold the labels: the sub branch learns the main branch, not the labels.
    ``forward_context`` wraps the forward only (e.g. autocast).
    """
    unwrapped = getattr(model, "module", model)
    with masking.apply(unwrapped, inputs, mask) as sub_inputs, forward_context():
        sub_logits = model_logits(model, sub_inputs)
    return loss_fn(sub_logits, main_logits.detach())


def masksub_step(model, inputs, labels, loss_fn, masking, mask=None, *, sub_loss_fn=soft_cross_entropy,
                 main_weight=0.5, sub_weight=0.5, backward=None, main_no_sync=contextlib.nullcontext):
    """One MaskSub forward + backward: main branch on ``inputs``, sub branch on the masked ``inputs``.

    Args:
        model: a transformers model or a bare timm model (possibly DDP-wrapped).
        inputs: the batch without labels (``pixel_values``, ``input_ids``, ...).
        labels: passed to ``loss_fn(main_logits, labels)``, the main branch's usual loss.
        masking: from ``masksub_hf.masking.masking_for``; ``mask`` is drawn from it when not given.
        backward: how to backpropagate a loss, e.g. ``accelerator.backward`` (default ``loss.backward()``).
        main_no_sync: context for the main branch, e.g. ``lambda: accelerator.no_sync(model)``, so
            gradients are all-reduced once, after the sub backward.

    Returns ``(main_loss, sub_loss)``, detached and unweighted; the optimizer step is the caller's.
    """
    backward = backward or torch.Tensor.backward
    if mask is None and masking.key is not None:
        mask = masking.draw(inputs)
    masking.install_hooks(getattr(model, "module", model))  # before the main forward: see masking/hooks.py
    with main_no_sync():
        main_logits = model_logits(model, inputs)
        main_loss = loss_fn(main_logits, labels)
        backward(main_weight * main_loss)
    sub_loss = sub_branch_loss(model, inputs, main_logits, masking, mask, sub_loss_fn)
    backward(sub_weight * sub_loss)
    return main_loss.detach(), sub_loss.detach()
