"""What every sub-branch masking shares: the exact-count rule and the small interface."""

import contextlib
import math


def num_masked(num_items: int, ratio: float) -> int:
    """How many of ``num_items`` a ``ratio`` masks: rounded half up (196 x 0.5 = 98, 49 x 0.5 = 25)."""
    return math.floor(num_items * ratio + 0.5)


class Masking:
    """Turns a clean batch into the sub branch's input.

    - ``key``: the batch key its mask travels under (``masksub_*``; ``None`` when there is no mask),
      so collators can draw it in the data pipeline and the trainer can pop it before the main forward;
    - ``draw(batch, generator=None)``: a mask for a collated batch, same exact count in every sample;
    - ``apply(model, inputs, mask)``: a context manager yielding the sub-branch inputs; whatever it
      changes on the model (a hook, a dropout rate) exists only inside the block;
    - ``parameters()``: trainable state the masking owns (a mask token), trained with the model.
    """

    key = None

    def parameters(self):
        return []

    def draw(self, batch, generator=None):
        return None

    @contextlib.contextmanager
    def apply(self, model, inputs, mask=None):
        yield inputs
