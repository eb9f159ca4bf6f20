"""Swin / BEiT masking: replace the patch embeddings of random blocks by a learnable mask token.

Hierarchical models need every patch position, so masked patches are replaced, not dropped (the
sub branch costs a full pass). The model's own ``mask_token`` is used when it has one (e.g. BEiT
built with ``use_mask_token``); otherwise MaskSub owns one: ``parameters()`` hands it to the
optimizer, the trainer checkpoints it, and it never enters the model or its saved weights.
"""

import contextlib

import torch
from torch import nn

from .base import Masking
from .blocks import block_grid, default_block_size, expand_blocks, random_block_mask
from .hooks import SubBranchHook

# config.model_type -> (embeddings class, its submodule whose output is the (B, L, D) patch sequence
# exactly where the model itself inserts its mask token, config field with the embedding width)
MASK_TOKEN_FAMILIES = {
    "swin": ("SwinEmbeddings", "norm", "embed_dim"),
    "swinv2": ("Swinv2Embeddings", "norm", "embed_dim"),
    "beit": ("BeitEmbeddings", "patch_embeddings", "hidden_size"),
}


class MaskTokenMasking(Masking):
    key = "masksub_block_mask"
    mode = "mask_token"

    def __init__(self, config, ratio: float, block_size: int | None = None, owned_mask_token=None):
        self.embeddings_class, self.patch_output, _ = MASK_TOKEN_FAMILIES[config.model_type]
        self.patch_size = config.patch_size
        self.ratio = ratio
        self.block_size = block_size
        self.owned_mask_token = owned_mask_token
        self._hook = SubBranchHook(self._insert_mask_token)

    @classmethod
    def for_model(cls, model, ratio: float, block_size: int | None = None) -> "MaskTokenMasking":
        """The masking for training ``model``: owns a mask token when the model has none."""
        masking = cls(model.config, ratio, block_size)
        if getattr(masking._embeddings(model), "mask_token", None) is None:
            width = getattr(model.config, MASK_TOKEN_FAMILIES[model.config.model_type][2])
            masking.owned_mask_token = nn.Parameter(torch.zeros(1, 1, width, device=model.device))
            nn.init.trunc_normal_(masking.owned_mask_token, std=0.02)
        return masking

    def parameters(self):
        return [] if self.owned_mask_token is None else [self.owned_mask_token]

    def _embeddings(self, model):
        return next(m for m in model.modules() if type(m).__name__ == self.embeddings_class)

    def _patch_grid_and_block(self, pixel_values):
        patches = (pixel_values.shape[-2] // self.patch_size, pixel_values.shape[-1] // self.patch_size)
        block = self.block_size or default_block_size(pixel_values.shape[-2])
        return patches, max(1, round(block / self.patch_size))

    def draw(self, batch, generator=None):
        pixel_values = batch["pixel_values"]
        patches, block = self._patch_grid_and_block(pixel_values)
        return random_block_mask(pixel_values.shape[0], *block_grid(*patches, block), self.ratio, generator)

    @staticmethod
    def _insert_mask_token(module, args, output, masked_and_token):
        masked, token = masked_and_token
        weight = masked.to(output.dtype)
        return output * (1.0 - weight) + token.to(output.dtype) * weight

    @contextlib.contextmanager
    def apply(self, model, inputs, block_mask):
        pixel_values = inputs["pixel_values"]
        patches, block = self._patch_grid_and_block(pixel_values)
        masked = expand_blocks(block_mask.to(pixel_values.device), block, *patches).flatten(1).unsqueeze(-1)
        embeddings = self._embeddings(model)
        token = self.owned_mask_token if self.owned_mask_token is not None else embeddings.mask_token
        with self._hook.active(getattr(embeddings, self.patch_output), (masked, token)):
            yield inputs

    def install_hooks(self, model):
        self._hook.install(getattr(self._embeddings(model), self.patch_output))

    def remove_hooks(self):
        self._hook.remove()
