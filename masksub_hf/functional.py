"""MaskSub as one function: the step ``MaskSubTrainer`` runs, usable in plain PyTorch and Accelerate loops.

    masking = masking_for(model, "auto", ratio=0.5)
    objective = objective_for(model)
    optimizer = AdamW([*model.parameters(), *masking.parameters()])   # a MaskSub-owned mask token, if any
    for batch in loader:                                               # a dict holding "labels"
        main_loss, sub_loss = masksub_step(model, batch, masking, objective, backward=accelerator.backward,
                                           main_no_sync=lambda: accelerator.no_sync(model))
        optimizer.step(); optimizer.zero_grad()

The rule that makes a step the method on the whole batch: each branch's loss is a sum over its items (rows,
labelled tokens) divided by the items of the accumulated batch on all processes (``StepItems``), times the
processes (gradients are averaged over them). Without ``items`` a step is its own batch on one process.
"""

import contextlib
import functools
from dataclasses import dataclass

import torch

from .objectives.base import model_outputs, unwrap


@dataclass
class StepItems:
    """What one optimizer step averages each branch over: the items of every micro-batch on every process."""

    main: torch.Tensor | int
    sub: torch.Tensor | int
    processes: int = 1

    def share(self, loss_sum, branch_items):
        """A branch's sum over one micro-batch's items -> its share of the step's mean (times the processes, whose
        gradients are averaged)."""
        return loss_sum * self.processes / torch.as_tensor(branch_items, device=loss_sum.device).clamp(min=1)


def batch_items(objective, inputs, masking, mask):
    """The items of one batch: ``(main, sub)``."""
    labels = objective.labels(inputs)
    return objective.main_items(inputs, labels), objective.sub_items(inputs, labels, masking, mask)


def masksub_step(model, inputs, masking, objective, mask=None, *, items=None, main_branch=None, main_weight=0.5,
                 sub_weight=0.5, backward=None, main_no_sync=contextlib.nullcontext,
                 forward_context=contextlib.nullcontext, one_backward=False):
    """One MaskSub forward + backward on a micro-batch: main branch on ``inputs``, sub branch on the masked inputs.

    Args:
        model: a transformers model or a bare timm model (possibly DDP-wrapped or FSDP2-sharded).
        inputs: the micro-batch, labels included (``inputs["labels"]``, or the head's ``objective.label_keys``);
            never changed.
        masking / objective: from ``masking_for`` and ``objective_for``; ``mask`` is drawn when not given.
        items: :class:`StepItems` of the whole optimizer step; default: this batch's, one process.
        main_branch: ``(model, inputs) -> (main loss summed over the batch's items, outputs)``; default: the
            head's usual loss (``objective.main_loss_sum``). ``MaskSubTrainer`` passes ``Trainer.compute_loss``.
        backward: how to backpropagate a loss, e.g. ``accelerator.backward`` (default ``loss.backward()``).
        main_no_sync: context for the main branch's backward, e.g. ``lambda: accelerator.no_sync(model)``, so
            gradients are reduced once, after the sub backward.
        forward_context: wraps each forward (e.g. autocast).
        one_backward: backpropagate both branches' losses in one backward (the main output's targets detached
            first) instead of one backward per branch: both graphs are held at once (a higher peak), and an engine
            that reduces gradients on every backward (DeepSpeed ZeRO, FSDP2 without ``no_sync``) reduces once.
            ``main_no_sync`` is then unused.

    Returns ``(main, sub)``, detached and unweighted: each branch's share of the step's loss, so that summed over
    the step's micro-batches (and averaged over processes) they are the two losses of the method. The optimizer
    step is the caller's.
    """
    backward = backward or torch.Tensor.backward
    labels = objective.labels(inputs)  # read before the main branch: a compute_loss may pop them from its inputs
    objective.check_batch(inputs)
    if mask is None and masking.key is not None:
        mask = masking.draw(inputs)
    if items is None:
        items = StepItems(*batch_items(objective, inputs, masking, mask))
    masking.install_hooks(unwrap(model))  # before the main forward: see masking/hooks.py
    main_branch = main_branch or functools.partial(head_loss, objective=objective)

    with contextlib.nullcontext() if one_backward else main_no_sync():
        with forward_context():
            main_sum, outputs = main_branch(model, objective.main_inputs(inputs))
        targets = objective.targets(outputs, inputs, labels, masking, mask)
        del outputs
        main = items.share(main_sum, items.main)
        if not one_backward:
            backward(main_weight * main)
    # the sub branch learns the main branch only
    sub_inputs = {k: v for k, v in inputs.items() if k not in objective.label_keys}
    sub_sum = objective.sub_loss_sum(model, sub_inputs, labels, targets, masking, mask, forward_context)
    sub = items.share(sub_sum, items.sub)
    backward(main_weight * main + sub_weight * sub if one_backward else sub_weight * sub)
    return main.detach(), sub.detach()


def head_loss(model, inputs, objective):
    """The default main branch: the model's outputs and the head's usual loss, summed over the batch's items."""
    outputs = model_outputs(model, objective.model_inputs(inputs))
    return objective.main_loss_sum(outputs, objective.labels(inputs)), outputs
