"""Parameters MaskSub owns outside the model (a Swin/BEiT mask token): optimizer group, gradients, averaging."""

from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors
from transformers import TrainerCallback


class ClearOwnedGradients(TrainerCallback):
    """Trainer clears gradients with ``model.zero_grad()``; MaskSub-owned parameters live outside the model."""

    def __init__(self, parameters):
        self.parameters = parameters

    def _clear(self):
        for parameter in self.parameters:
            parameter.grad = None

    def on_train_begin(self, args, state, control, **kwargs):
        self._clear()

    def on_optimizer_step(self, args, state, control, **kwargs):
        self._clear()


def add_owned_group(optimizer, owned):
    """Train ``owned`` with the model, without weight decay (like timm's tokens), unless already there."""
    if owned and not any(p is owned[0] for group in optimizer.param_groups for p in group["params"]):
        optimizer.add_param_group({"params": owned, "weight_decay": 0.0})
    return optimizer


def average_gradients_by_hand(accelerator, parameters):
    """Average ``parameters``' gradients over processes with one all-reduce, on the syncing micro-batch.

    For what DDP does not see: an owned mask token (outside the wrapped model), or every gradient of a
    dual encoder, whose sub branch bypasses the DDP wrapper.
    """
    gradients = [p.grad for p in parameters if p.grad is not None]
    if not gradients or not accelerator.sync_gradients or accelerator.num_processes == 1:
        return
    flat = accelerator.reduce(_flatten_dense_tensors(gradients), reduction="mean")
    for gradient, averaged in zip(gradients, _unflatten_dense_tensors(flat, gradients)):
        gradient.copy_(averaged)
