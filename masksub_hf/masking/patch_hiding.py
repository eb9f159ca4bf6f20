"""Patch-token drop for models that read patches already cut, with their own attention mask (NaFlex: SigLIP 2).

Their images arrive as ``(B, N, C * P * P)`` patch rows with a ``pixel_attention_mask`` marking the real ones
and ``spatial_shapes`` giving each image's grid: there is no image to zero blocks in and no embedding to drop
tokens after. Zeroing ``ratio`` of each image's real patches in ``pixel_attention_mask`` hides them: the
encoder's attention and the classifier's average pool read that mask, and positions come from
``spatial_shapes``, so the kept patches stay where they were. The sub branch sees the kept patches alone, at
their positions, as token drop gives a ViT; it saves no compute (the rows keep their length).
"""

import contextlib
import inspect

import torch

from ..batch import PATCH_MASK
from .base import Masking, choose_uniformly, peft_base_model


def reads_patch_rows(model) -> bool:
    """Whether ``model``'s forward takes patches already cut, with their attention mask and grid (NaFlex)."""
    parameters = inspect.signature(peft_base_model(model).forward).parameters
    return PATCH_MASK in parameters and "spatial_shapes" in parameters


class PatchHiding(Masking):
    """Sub-branch ``pixel_attention_mask`` with ``ratio`` of each image's real patches zeroed."""

    key = "masksub_hidden_patches"
    mode = "tokens"

    def __init__(self, ratio: float):
        self.ratio = ratio

    def draw(self, batch, generator=None) -> torch.Tensor:
        return choose_uniformly(batch[PATCH_MASK].bool(), self.ratio, generator)

    @contextlib.contextmanager
    def apply(self, model, inputs, hidden):
        real = inputs[PATCH_MASK]
        yield {**inputs, PATCH_MASK: real * ~hidden.to(real.device)}
