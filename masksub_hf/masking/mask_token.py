"""Masked-image models (Swin, BEiT, data2vec-vision, FocalNet, ...): replace random blocks of patch
embeddings by a learnable mask token, through the model's own ``bool_masked_pos`` path.

Hierarchical models need every patch position, so masked patches are replaced, not dropped (the sub
branch costs a full pass). The sub branch hands ``bool_masked_pos`` to the embeddings module that takes it
(``structure.mask_token_embeddings``), so the token goes exactly where the model itself puts it. The
model's own ``mask_token`` is used when it has one (e.g. built with ``use_mask_token``); otherwise MaskSub
owns one: ``parameters()`` hands it to the optimizer, the trainer checkpoints it, and it is lent to the
embeddings for the sub forward only, so it never enters the model's parameters or its saved weights.
"""

import contextlib
import inspect

import torch
from torch import nn

from .base import Masking
from .blocks import block_grid, default_block_size, expand_blocks, random_block_mask
from .hooks import SubBranchHook
from .structure import first_conv, mask_token_embeddings, module_tree, patch_grid, patch_size


def _embeddings_taking_masks(model):
    embeddings = mask_token_embeddings(model)
    if embeddings is None:
        raise ValueError(f"{type(model).__name__} has no embeddings that take bool_masked_pos.")
    return embeddings


class MaskTokenBlocks(Masking):
    key = "masksub_mask_token_blocks"
    mode = "mask_token"

    def __init__(self, patch_size: tuple, ratio: float, block_size: int | None = None, owned_mask_token=None):
        self.patch_size = patch_size
        self.ratio = ratio
        self.block_size = block_size
        self.owned_mask_token = owned_mask_token
        self._hook = SubBranchHook(self._give_masked_positions, _embeddings_taking_masks, on_input=True)

    @classmethod
    def from_config(cls, model_or_config, ratio: float, block_size: int | None = None) -> "MaskTokenBlocks":
        """Draws masks for a model (or config) whose embeddings take ``bool_masked_pos``; owns no token."""
        return cls(patch_size(_embeddings_taking_masks(module_tree(model_or_config))), ratio, block_size)

    @classmethod
    def for_model(cls, model, ratio: float, block_size: int | None = None) -> "MaskTokenBlocks":
        """The masking for training ``model``: owns a mask token when the model has none."""
        masking = cls.from_config(model, ratio, block_size)
        embeddings = _embeddings_taking_masks(model)
        if embeddings.mask_token is None:
            width = first_conv(embeddings).out_channels  # the patch projection's width: one token's
            masking.owned_mask_token = nn.Parameter(torch.zeros(1, 1, width, device=model.device))
            nn.init.trunc_normal_(masking.owned_mask_token, std=0.02)
        return masking

    def parameters(self):
        return [] if self.owned_mask_token is None else [self.owned_mask_token]

    @staticmethod
    def _give_masked_positions(module, args, kwargs, masked):
        bound = inspect.signature(module.forward).bind(*args, **kwargs)
        bound.arguments["bool_masked_pos"] = masked
        return bound.args, bound.kwargs

    def _patch_grid_and_block(self, pixel_values):
        block = self.block_size or default_block_size(pixel_values.shape[-2])
        return patch_grid(pixel_values, self.patch_size), max(1, round(block / self.patch_size[0]))

    def draw(self, batch, generator=None):
        pixel_values = batch["pixel_values"]
        patches, block = self._patch_grid_and_block(pixel_values)
        return random_block_mask(pixel_values.shape[0], *block_grid(*patches, block), self.ratio, generator)

    @contextlib.contextmanager
    def _owned_token_lent(self, embeddings):
        """The owned token as ``embeddings.mask_token`` (an instance attribute, not a registered parameter)."""
        if self.owned_mask_token is None:
            yield
            return
        object.__setattr__(embeddings, "mask_token", self.owned_mask_token)
        try:
            yield
        finally:
            object.__setattr__(embeddings, "mask_token", None)

    @contextlib.contextmanager
    def apply(self, model, inputs, block_mask):
        pixel_values = inputs["pixel_values"]
        patches, block = self._patch_grid_and_block(pixel_values)
        masked = expand_blocks(block_mask.to(pixel_values.device), block, *patches).flatten(1)
        with self._owned_token_lent(self._hook.module_of(model)), self._hook.active(model, masked):
            yield inputs

    def install_hooks(self, model):
        self._hook.install(model)

    def remove_hooks(self):
        self._hook.remove()
