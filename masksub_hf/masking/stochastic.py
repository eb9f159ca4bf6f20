"""DropSub and PathSub: the sub branch sees the clean batch with stronger dropout / drop-path.

Rates are raised on the model's own modules for the sub forward only and restored exactly after it,
even if it raises. Works for any model built from ``nn.Dropout`` and drop-path modules (HF's
``*DropPath`` and timm's ``DropPath`` both keep their rate in ``drop_prob``).
"""

import contextlib

from torch import nn

from .base import Masking

DROPSUB_RATE = 0.2  # paper Sec. 4.8 / Table 13
PATHSUB_INCREASE = 0.1


def _dropout_modules(model):
    return [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]


def _drop_path_modules(model):
    return [m for m in model.modules() if isinstance(getattr(m, "drop_prob", None), float)]


@contextlib.contextmanager
def _rates(modules, attribute, new_rate):
    originals = [getattr(m, attribute) for m in modules]
    try:
        for module, rate in zip(modules, originals):
            setattr(module, attribute, new_rate(rate))
        yield
    finally:
        for module, rate in zip(modules, originals):
            setattr(module, attribute, rate)


class DropSub(Masking):
    """Every dropout module runs at ``rate`` (default 0.2) in the sub branch."""

    mode = "dropout"

    def __init__(self, model, rate: float = DROPSUB_RATE):
        if not _dropout_modules(model):
            raise ValueError(f"masksub_mode='dropout': {type(model).__name__} has no nn.Dropout module.")
        self.rate = rate

    @contextlib.contextmanager
    def apply(self, model, inputs, mask=None):
        with _rates(_dropout_modules(model), "p", lambda rate: self.rate):
            yield inputs


class PathSub(Masking):
    """Every drop-path module runs at its own rate + ``increase`` (default 0.1) in the sub branch."""

    mode = "droppath"

    def __init__(self, model, increase: float = PATHSUB_INCREASE):
        if not _drop_path_modules(model):
            raise ValueError(
                f"masksub_mode='droppath': {type(model).__name__} has no drop-path module; build it with "
                "drop_path_rate > 0 (transformers: config.drop_path_rate, timm: create_model(..., drop_path_rate=0.1))."
            )
        self.increase = increase

    @contextlib.contextmanager
    def apply(self, model, inputs, mask=None):
        with _rates(_drop_path_modules(model), "drop_prob", lambda rate: min(rate + self.increase, 0.99)):
            yield inputs
