"""Random square blocks on an image, shared by pixel masking (CNNs) and mask-token masking (Swin/BEiT).

The paper masks 32x32-pixel blocks at 224 px; the default block scales with the input height.
A block mask is ``(batch, grid_h, grid_w)`` booleans, True = masked, with the same exact count of
masked blocks in every sample.
"""

import math

import torch

from .base import num_masked, uniform_noise

PAPER_BLOCK_SIZE, PAPER_IMAGE_SIZE = 32, 224


def default_block_size(image_height: int) -> int:
    """32 px at 224 px, scaled with the input (16 px at 112, 4 px at 28)."""
    return max(1, round(PAPER_BLOCK_SIZE * image_height / PAPER_IMAGE_SIZE))


def random_block_mask(batch_size: int, grid_h: int, grid_w: int, ratio: float, generator=None) -> torch.Tensor:
    num_blocks = grid_h * grid_w
    masked = min(num_masked(num_blocks, ratio), num_blocks - 1)
    ranks = uniform_noise((batch_size, num_blocks), generator).argsort(dim=1).argsort(dim=1)
    return (ranks < masked).view(batch_size, grid_h, grid_w)


def block_grid(height: int, width: int, block: int):
    """How many blocks of ``block`` units cover ``height`` x ``width`` units (the last ones may be cut)."""
    return math.ceil(height / block), math.ceil(width / block)


def expand_blocks(block_mask: torch.Tensor, block: int, height: int, width: int) -> torch.Tensor:
    """``(B, grid_h, grid_w)`` blocks -> ``(B, height, width)`` units, cropped to the input."""
    units = block_mask.repeat_interleave(block, dim=1).repeat_interleave(block, dim=2)
    return units[:, :height, :width]
