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

from .base import Masking, choose_uniformly, peft_base_model

PATCH_MASK = "pixel_attention_mask"
# what an image model reads: pixel values, and for patch rows their mask and grid
IMAGE_INPUTS = ("pixel_values", PATCH_MASK, "spatial_shapes")


def image_inputs(batch):
    """An image model's inputs in a batch (or an example): its pixel values, and its patch rows' mask and grid."""
    return {name: batch[name] for name in IMAGE_INPUTS if name in batch}


def stack_image_inputs(examples):
    """A batch's image inputs: each example's pixel values (and patch rows' mask and grid), stacked."""
    return {name: torch.stack([torch.as_tensor(example[name]) for example in examples])
            for name in image_inputs(examples[0])}


def patch_rows(processor, images):
    """``images`` cut by a NaFlex ``processor``: per image, its patch rows, their mask and its grid (lists of rows)."""
    return {name: list(rows) for name, rows in processor(images=images, return_tensors="pt").items()}


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
