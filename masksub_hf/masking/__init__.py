"""Masking for the sub branch, one module per model family (see ``base.Masking`` for the interface).

``masking_for`` picks one: ``masksub_mode="auto"`` chooses by model family, other modes force one.

| mode         | what the sub branch gets                                   | models                                 |
|--------------|------------------------------------------------------------|----------------------------------------|
| ``tokens``     | ``ratio`` of the patch tokens dropped after pos-embedding  | HF ViT / DeiT / CLIP, ViT dual encoders, timm ViT |
| ``pixels``     | ``ratio`` of 32-px blocks (at 224 px) zero-filled          | HF ResNet / ConvNeXt (V2), timm CNNs   |
| ``mask_token`` | ``ratio`` of 32-px blocks replaced by a learnable token    | HF Swin (V1/V2), BEiT                  |
| ``text``       | ``ratio`` of the real tokens replaced by ``[MASK]``        | BERT-family text classifiers           |
| ``text_drop``  | ``ratio`` of the real tokens removed, positions kept       | any text classifier (decoders too)     |
| ``dropout``    | clean input, every dropout at 0.2 (DropSub)                | any model with ``nn.Dropout``          |
| ``droppath``   | clean input, every drop-path rate + 0.1 (PathSub)          | any model with drop-path modules       |
"""

from torch import nn

from .base import Masking, num_masked, peft_base_model
from .mask_token import MASK_TOKEN_FAMILIES, MaskTokenMasking
from .pixels import PixelMasking
from .stochastic import DropSub, PathSub
from .text import TokenDrop, TokenMasking, check_takes_position_ids, text_masking
from .tokens import TOKEN_DROP_FAMILIES, PatchTokenDrop, is_timm_vit, token_drop_config

MASKSUB_MODES = ("auto", "tokens", "pixels", "mask_token", "text", "text_drop", "dropout", "droppath")
TEXT_MODES = ("text", "text_drop")
MASK_KEY_PREFIX = "masksub_"
# transformers CNNs that auto mode masks with zero-filled pixel blocks
PIXEL_FAMILIES = ("resnet", "convnext", "convnextv2")


def timm_model_of(model):
    """The timm model inside ``model`` (bare timm, or transformers' ``TimmWrapper*``), else None."""
    if not isinstance(model, nn.Module):
        return None
    inner = getattr(model, "timm_model", model)
    return inner if type(inner).__module__.startswith("timm.") else None


def _has_token_drop(config):
    return getattr(token_drop_config(config), "model_type", None) in TOKEN_DROP_FAMILIES


def auto_mode(model_or_config):
    """The mode ``auto`` picks for a model (or a transformers config), or None if no family fits."""
    timm_model = timm_model_of(model_or_config)
    if timm_model is not None:
        if is_timm_vit(timm_model):
            return "tokens"
        return None if hasattr(timm_model, "patch_embed") else "pixels"
    config = getattr(model_or_config, "config", model_or_config)
    model_type = getattr(config, "model_type", None)
    if _has_token_drop(config):
        return "tokens"
    if model_type in MASK_TOKEN_FAMILIES:
        return "mask_token"
    if model_type in PIXEL_FAMILIES:
        return "pixels"
    if getattr(model_or_config, "main_input_name", None) == "input_ids":
        return "text"
    return None


def _unsupported(model_or_config, mode):
    config = getattr(model_or_config, "config", model_or_config)
    name = type(model_or_config).__name__
    return ValueError(
        f"masksub_mode={mode!r} cannot mask {name} (model_type={getattr(config, 'model_type', None)!r}). "
        f"Supported: 'tokens' for model types {sorted(TOKEN_DROP_FAMILIES)} and timm ViTs; 'mask_token' for "
        f"{sorted(MASK_TOKEN_FAMILIES)}; 'pixels' for {list(PIXEL_FAMILIES)}, timm CNNs and any image model; "
        "'text' for BERT-family models, 'text_drop' for any text classifier. 'dropout' (DropSub) and 'droppath' "
        "(PathSub) work for any model."
    )


def masking_for(model_or_config, mode: str = "auto", ratio: float = 0.5, tokenizer=None, block_size=None):
    """The masking for ``model_or_config``.

    Given a model, the result can train it (it may own a mask token, see ``MaskTokenMasking``).
    Given a config, it only draws masks (what a collator needs). Raises a ``ValueError`` naming the
    model class and the supported families when the mode does not fit.
    """
    is_model = isinstance(model_or_config, nn.Module)
    chosen = auto_mode(model_or_config) if mode == "auto" else mode
    timm_model = timm_model_of(model_or_config)
    config = getattr(model_or_config, "config", model_or_config)
    model_type = getattr(config, "model_type", None)

    if chosen == "tokens" and timm_model is not None and is_timm_vit(timm_model):
        return PatchTokenDrop.from_timm(timm_model, ratio)
    if chosen == "tokens" and timm_model is None and _has_token_drop(config):
        return PatchTokenDrop.from_config(config, ratio)
    if chosen == "mask_token" and timm_model is None and model_type in MASK_TOKEN_FAMILIES:
        if is_model:
            return MaskTokenMasking.for_model(model_or_config, ratio, block_size)
        return MaskTokenMasking(config, ratio, block_size)
    if chosen == "pixels" and (timm_model is not None or getattr(model_or_config, "main_input_name", None)
                               in ("pixel_values", None)):
        return PixelMasking(ratio, block_size)
    if chosen in TEXT_MODES and getattr(model_or_config, "main_input_name", None) == "input_ids":
        masking = text_masking(tokenizer, ratio, mode, getattr(config, "pad_token_id", None))
        if is_model and isinstance(masking, TokenDrop):  # decided here, not at the first step
            check_takes_position_ids(model_or_config)
        return masking
    if chosen in ("dropout", "droppath"):
        if not is_model:
            return Masking()  # the sub branch sees the clean batch: nothing to draw
        return DropSub(model_or_config) if chosen == "dropout" else PathSub(model_or_config)
    raise _unsupported(model_or_config, mode)


__all__ = [
    "MASKSUB_MODES",
    "MASK_KEY_PREFIX",
    "DropSub",
    "MaskTokenMasking",
    "Masking",
    "PatchTokenDrop",
    "PathSub",
    "PixelMasking",
    "TokenDrop",
    "TokenMasking",
    "auto_mode",
    "masking_for",
    "num_masked",
    "peft_base_model",
    "text_masking",
    "timm_model_of",
]
