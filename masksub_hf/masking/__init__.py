"""Masking for the sub branch, one module per model family.

Every masking has the same small interface:

- ``key``: the batch key its mask travels under (``masksub_*``), so collators can draw it in the data
  pipeline and the trainer can pop it before the main forward;
- ``draw(batch, generator=None)``: a mask for a collated batch (exact count per sample);
- ``apply(model, inputs, mask)``: a context manager yielding the sub-branch inputs; whatever it
  changes on the model (a forward hook) exists only inside the block.
"""

from .counts import num_masked
from .text import TokenMasking
from .tokens import TOKEN_DROP_FAMILIES, PatchTokenDrop

MASKSUB_MODES = ("auto", "tokens", "text")
MASK_KEY_PREFIX = "masksub_"


def image_masking_for(config, mode: str, ratio: float):
    """The image masking for a model config (what :class:`MaskSubImageCollator` draws)."""
    if mode in ("auto", "tokens") and config.model_type in TOKEN_DROP_FAMILIES:
        return PatchTokenDrop.from_config(config, ratio)
    raise ValueError(
        f"masksub_mode={mode!r} cannot mask images for model_type={config.model_type!r}. "
        f"Patch-token drop supports model types {sorted(TOKEN_DROP_FAMILIES)}."
    )


def masking_for(model, mode: str, ratio: float, tokenizer=None):
    """Pick the masking for ``model``: ``auto`` chooses by model family, other modes force one.

    Raises a ``ValueError`` naming the model class and the supported families when none fits.
    """
    config = model.config
    if mode in ("auto", "tokens") and config.model_type in TOKEN_DROP_FAMILIES:
        return PatchTokenDrop.from_config(config, ratio)
    if mode in ("auto", "text") and getattr(model, "main_input_name", None) == "input_ids":
        return TokenMasking.from_tokenizer(tokenizer, ratio)
    raise ValueError(
        f"masksub_mode={mode!r} cannot mask {type(model).__name__} (model_type={config.model_type!r}). "
        f"Supported: patch-token drop for model types {sorted(TOKEN_DROP_FAMILIES)} (mode 'tokens'), "
        "and [MASK] replacement for text models taking input_ids (mode 'text')."
    )


__all__ = [
    "MASKSUB_MODES",
    "MASK_KEY_PREFIX",
    "PatchTokenDrop",
    "TokenMasking",
    "image_masking_for",
    "masking_for",
    "num_masked",
]
