"""Masking for the sub branch, one module per model family (see ``base.Masking`` for the interface).

``masking_for`` picks one: ``masksub_mode="auto"`` chooses by what the model is (``structure``: ViT-like
embeddings, embeddings taking ``bool_masked_pos``, an image stem), other modes force one.

| mode         | what the sub branch gets                                   | models (``auto``, first that fits)     |
|--------------|------------------------------------------------------------|----------------------------------------|
| ``tokens``     | ``ratio`` of the patch tokens dropped after pos-embedding  | ViT-like: ViT, DeiT, DINOv2, SigLIP, CLIP, ..., timm ViTs |
|              | (patch rows: hidden in their ``pixel_attention_mask``)     | SigLIP 2 (NaFlex)                      |
| ``mask_token`` | ``ratio`` of 32-px blocks replaced by a learnable token    | models taking ``bool_masked_pos``: Swin, BEiT, FocalNet, ... |
| ``pixels``     | ``ratio`` of 32-px blocks (at 224 px) zero-filled          | every other image model: CNNs, hierarchical transformers |
| ``text``       | ``ratio`` of the real tokens replaced by ``[MASK]``        | BERT-family text classifiers           |
| ``text_drop``  | ``ratio`` of the real tokens removed, positions kept       | any text classifier (decoders too)     |
| ``dropout``    | clean input, every dropout at 0.2 (DropSub)                | any model with ``nn.Dropout``          |
| ``droppath``   | clean input, every drop-path rate + 0.1 (PathSub)          | any model with drop-path modules       |
"""

from torch import nn

from .base import Masking, num_masked, peft_base_model
from .mask_token import MaskTokenMasking
from .patch_hiding import PatchHiding, reads_patch_rows
from .pixels import PixelMasking
from .stochastic import DropSub, PathSub
from .structure import is_dual_encoder, mask_token_embeddings, module_tree, takes_image_grid, vit_embeddings
from .text import TokenDrop, TokenMasking, text_masking
from .tokens import PatchTokenDrop, is_timm_vit

MASKSUB_MODES = ("auto", "tokens", "pixels", "mask_token", "text", "text_drop", "dropout", "droppath")
TEXT_MODES = ("text", "text_drop")
MASK_KEY_PREFIX = "masksub_"


def timm_model_of(model):
    """The timm model inside ``model`` (bare timm, or transformers' ``TimmWrapper*``), else None."""
    if not isinstance(model, nn.Module):
        return None
    inner = getattr(model, "timm_model", model)
    return inner if type(inner).__module__.startswith("timm.") else None


def image_modes(model_or_config):
    """The image masking modes that fit a model (or a transformers config), in ``auto``'s order of choice."""
    timm_model = timm_model_of(model_or_config)
    if timm_model is not None:
        if is_timm_vit(timm_model):
            return ["tokens", "pixels"]
        return [] if hasattr(timm_model, "patch_embed") else ["pixels"]
    model = module_tree(model_or_config)
    # a dual encoder reads input_ids first, but its images are what MaskSub masks
    reads_images = getattr(model, "main_input_name", None) != "input_ids" or is_dual_encoder(model)
    if reads_images and reads_patch_rows(model):
        return ["tokens"]  # patches already cut (NaFlex): hidden through their own attention mask
    if not reads_images or not takes_image_grid(model):
        return []
    if _image_input(model) != "pixel_values":
        return ["pixels"]  # ViT-like and masked-image paths read pixel_values
    modes = ["tokens"] if vit_embeddings(model) is not None else []
    if mask_token_embeddings(model) is not None:
        modes.append("mask_token")
    return modes + ["pixels"]


def _image_input(model):
    """The argument an image model reads its images from (a dual encoder: ``pixel_values``)."""
    return "pixel_values" if is_dual_encoder(model) else getattr(model, "main_input_name", "pixel_values")


def _is_text_model(model_or_config) -> bool:
    """Reads input_ids, and is not a dual encoder (whose images are what MaskSub masks)."""
    if timm_model_of(model_or_config) is not None:
        return False
    tree = module_tree(model_or_config)
    return getattr(tree, "main_input_name", None) == "input_ids" and not is_dual_encoder(tree)


def auto_mode(model_or_config):
    """The mode ``auto`` picks for a model (or a transformers config), or None if none fits."""
    modes = image_modes(model_or_config)
    if modes:
        return modes[0]
    return "text" if _is_text_model(model_or_config) else None


def _why_no_image_masking(model):
    """Why no image masking fits ``model`` (a module tree), read from it."""
    if timm_model_of(model) is not None:
        return "it is a timm model with a patch embedding that is not a timm VisionTransformer"
    main_input = getattr(model, "main_input_name", None)
    if main_input == "input_ids" and not is_dual_encoder(model):
        return "it reads input_ids: 'text' or 'text_drop' mask text"
    if main_input == "pixel_values" or is_dual_encoder(model):
        return ("it reads pixel values already cut into patches (no Conv2d over the image channels): neither "
                "pixel blocks nor patch tokens can be masked the paper's way")
    return f"it reads {main_input!r}: neither input_ids nor an image (a Conv2d over the image channels)"


def _unsupported(model_or_config, mode, modes):
    config = getattr(model_or_config, "config", model_or_config)
    model = model_or_config if timm_model_of(model_or_config) is not None else module_tree(model_or_config)
    reason = f"modes that fit it: {modes}" if modes else _why_no_image_masking(model)
    return ValueError(
        f"masksub_mode={mode!r} cannot mask {type(model_or_config).__name__} "
        f"(model_type={getattr(config, 'model_type', None)!r}): {reason}. 'dropout' (DropSub) fits any model with "
        "nn.Dropout modules, 'droppath' (PathSub) any with drop-path modules."
    )


def masking_for(model_or_config, mode: str = "auto", ratio: float = 0.5, tokenizer=None, block_size=None):
    """The masking for ``model_or_config``.

    Given a model, the result can train it (it may own a mask token, see ``MaskTokenMasking``).
    Given a config, it only draws masks (what a collator needs). Raises a one-line ``ValueError`` naming the
    model class, why, and the modes that fit, when the mode does not fit.
    """
    is_model = isinstance(model_or_config, nn.Module)
    timm_model = timm_model_of(model_or_config)
    if timm_model is None and not is_model:
        model_or_config = module_tree(model_or_config)  # read its structure once; it draws masks only
    modes = image_modes(model_or_config)
    chosen = mode
    if mode == "auto":
        chosen = modes[0] if modes else ("text" if _is_text_model(model_or_config) else None)

    if chosen == "tokens" and chosen in modes:
        if timm_model is None and reads_patch_rows(model_or_config):
            return PatchHiding(ratio)
        if timm_model is not None:
            return PatchTokenDrop.from_timm(timm_model, ratio)
        return PatchTokenDrop.from_config(model_or_config, ratio)
    if chosen == "mask_token" and chosen in modes:
        if is_model:
            return MaskTokenMasking.for_model(model_or_config, ratio, block_size)
        return MaskTokenMasking.from_config(model_or_config, ratio, block_size)
    if chosen == "pixels" and chosen in modes:
        return PixelMasking(ratio, block_size, "pixel_values" if timm_model is not None else _image_input(model_or_config))
    if chosen in TEXT_MODES and _is_text_model(model_or_config):
        config = getattr(model_or_config, "config", None)
        masking = text_masking(tokenizer, ratio, mode, getattr(config, "pad_token_id", None))
        if is_model and isinstance(masking, TokenDrop):  # decided here, not at the first step
            return masking.for_model(model_or_config)
        return masking
    if chosen in ("dropout", "droppath"):
        if not is_model:
            return Masking()  # the sub branch sees the clean batch: nothing to draw
        return DropSub(model_or_config) if chosen == "dropout" else PathSub(model_or_config)
    raise _unsupported(model_or_config, mode, modes)


__all__ = [
    "MASKSUB_MODES",
    "MASK_KEY_PREFIX",
    "DropSub",
    "MaskTokenMasking",
    "Masking",
    "PatchHiding",
    "PatchTokenDrop",
    "PathSub",
    "PixelMasking",
    "TokenDrop",
    "TokenMasking",
    "auto_mode",
    "image_modes",
    "masking_for",
    "num_masked",
    "peft_base_model",
    "text_masking",
    "timm_model_of",
]
