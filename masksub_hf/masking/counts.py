"""How many items a masking ratio removes, shared by every family so counts agree everywhere."""

import math


def num_masked(num_items: int, ratio: float) -> int:
    """How many of ``num_items`` a ``ratio`` masks: rounded half up (196 x 0.5 = 98, 49 x 0.5 = 25)."""
    return math.floor(num_items * ratio + 0.5)
