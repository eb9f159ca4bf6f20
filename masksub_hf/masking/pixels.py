"""CNN masking: zero-fill random blocks of pixels (ResNet, ConvNeXt, timm CNNs).

CNNs keep their spatial layout, so masked blocks are filled with zeros (the normalised mean) rather
than removed: the sub branch costs a full pass. ``ratio`` is the fraction of blocks *removed*.
"""

import contextlib

from ..batch import image_key
from .base import Masking
from .blocks import block_grid, default_block_size, expand_blocks, random_block_mask


class PixelMasking(Masking):
    key = "masksub_zeroed_blocks"
    mode = "pixels"

    def __init__(self, ratio: float, block_size: int | None = None, input_name: str = "pixel_values"):
        self.ratio = ratio
        self.block_size = block_size
        self.input_name = input_name  # the model's image input (Perceiver's: ``inputs``; it takes pixel_values too)

    def _block(self, pixel_values):
        return self.block_size or default_block_size(pixel_values.shape[-2])

    def draw(self, batch, generator=None):
        pixel_values = batch[image_key(batch, self.input_name)]
        grid = block_grid(*pixel_values.shape[-2:], self._block(pixel_values))
        return random_block_mask(pixel_values.shape[0], *grid, self.ratio, generator)

    @contextlib.contextmanager
    def apply(self, model, inputs, block_mask):
        key = image_key(inputs, self.input_name)
        pixel_values = inputs[key]
        masked = expand_blocks(block_mask.to(pixel_values.device), self._block(pixel_values), *pixel_values.shape[-2:])
        yield {**inputs, key: pixel_values.masked_fill(masked.unsqueeze(1), 0.0)}
