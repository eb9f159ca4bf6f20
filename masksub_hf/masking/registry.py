"""The one place that decides the masking: what a model is -> how its sub branch is masked.

Each entry is one ``masksub_mode``, one predicate on what the model is (read from its modules, never its name:
``structure``) and one way to build the masking. ``auto`` takes the first image or text entry that fits, in this
order; a forced mode takes the first entry of that mode that fits. DropSub and PathSub fit any model and are
chosen only by name. A dual encoder (CLIP, SigLIP) is an image model here: its images are what MaskSub masks.
"""

from dataclasses import dataclass
from typing import Callable

from torch import nn

from .base import Masking, peft_base_model
from .mask_token import MaskTokenBlocks
from .patch_hiding import PatchHiding, reads_patch_rows
from .pixels import PixelMasking
from .stochastic import DropSub, PathSub
from .structure import (
    is_dual_encoder,
    is_semantic_segmenter,
    mask_token_embeddings,
    module_tree,
    takes_image_grid,
    vit_embeddings,
)
from .text import TextTokenDrop, text_masking
from .tokens import PatchTokenDrop, is_timm_vit


def timm_model_of(model):
    """The timm model inside ``model`` (bare timm, or transformers' ``TimmWrapper*``), else None."""
    if not isinstance(model, nn.Module):
        return None
    inner = getattr(model, "timm_model", model)
    return inner if type(inner).__module__.startswith("timm.") else None


@dataclass
class Subject:
    """What the registry reads off a model (or a config, through its module tree on the meta device)."""

    model: object  # the model, a timm model, or a config's module tree
    is_model: bool  # a real model: its masking can train it (own a mask token, change dropout rates)
    timm: object = None  # the timm model inside, if any

    @classmethod
    def of(cls, model_or_config):
        is_model = isinstance(model_or_config, nn.Module)
        timm = timm_model_of(model_or_config)
        return cls(model_or_config if timm is not None or is_model else module_tree(model_or_config), is_model, timm)

    @property
    def main_input(self):
        return getattr(peft_base_model(self.model), "main_input_name", None)

    def reads_images(self):
        return self.timm is None and (self.main_input != "input_ids" or is_dual_encoder(self.model))

    def reads_text(self):
        return self.timm is None and self.main_input == "input_ids" and not is_dual_encoder(self.model)

    def image_input(self):
        """The argument its images go to (a dual encoder's and a timm model's: ``pixel_values``)."""
        return "pixel_values" if self.timm is not None or is_dual_encoder(self.model) else self.main_input

    def drops_patches(self):
        """Can lose patch tokens: not a dense predictor (a segmenter's decoder reads the whole patch grid)."""
        return not is_semantic_segmenter(self.model)

    def reads_pixel_grid(self):
        """Reads ``(batch, channels, height, width)`` images through a Conv2d stem."""
        return self.reads_images() and not reads_patch_rows(self.model) and takes_image_grid(self.model)

    def reads_vit_pixels(self):
        """Reads ``pixel_values`` images (the argument ViT-like and masked-image paths take)."""
        return self.reads_pixel_grid() and self.image_input() == "pixel_values"


@dataclass
class Settings:
    mode: str  # as asked: "auto" lets a text masking pick [MASK] or token drop by the tokenizer
    ratio: float
    tokenizer: object = None
    block_size: int | None = None


@dataclass(frozen=True)
class Entry:
    mode: str
    fits: Callable[[Subject], bool]
    build: Callable[[Subject, Settings], Masking]
    automatic: bool = True  # auto may choose it


def _text(subject, settings):
    config = getattr(subject.model, "config", None)
    masking = text_masking(settings.tokenizer, settings.ratio, "auto" if settings.mode == "auto" else "text",
                           getattr(config, "pad_token_id", None))
    return _fitted(masking, subject)


def _text_drop(subject, settings):
    config = getattr(subject.model, "config", None)
    return _fitted(text_masking(settings.tokenizer, settings.ratio, "text_drop", getattr(config, "pad_token_id", None)),
                   subject)


def _fitted(masking, subject):
    """A token drop is made fit for the model now (remove or hide), not at the first step."""
    return masking.for_model(subject.model) if subject.is_model and isinstance(masking, TextTokenDrop) else masking


def _mask_token(subject, settings):
    if subject.is_model:
        return MaskTokenBlocks.for_model(subject.model, settings.ratio, settings.block_size)
    return MaskTokenBlocks.from_config(subject.model, settings.ratio, settings.block_size)


def _stochastic(kind):
    # given a config, it only draws masks for a collator: the sub branch sees the clean batch, nothing to draw
    return lambda subject, settings: kind(subject.model) if subject.is_model else Masking()


REGISTRY = (
    Entry("tokens", lambda s: s.timm is not None and is_timm_vit(s.timm),
          lambda s, o: PatchTokenDrop.from_timm(s.timm, o.ratio)),
    Entry("tokens", lambda s: s.reads_images() and reads_patch_rows(s.model),  # NaFlex patch rows (SigLIP 2)
          lambda s, o: PatchHiding(o.ratio)),
    Entry("tokens", lambda s: s.reads_vit_pixels() and s.drops_patches() and vit_embeddings(s.model) is not None,
          lambda s, o: PatchTokenDrop.from_config(s.model, o.ratio)),
    Entry("mask_token", lambda s: s.reads_vit_pixels() and mask_token_embeddings(s.model) is not None, _mask_token),
    Entry("pixels", lambda s: (is_timm_vit(s.timm) or not hasattr(s.timm, "patch_embed")) if s.timm is not None
          else s.reads_pixel_grid(),
          lambda s, o: PixelMasking(o.ratio, o.block_size, s.image_input())),
    Entry("text", Subject.reads_text, _text),
    Entry("text_drop", Subject.reads_text, _text_drop),
    Entry("dropout", lambda s: True, _stochastic(DropSub), automatic=False),
    Entry("droppath", lambda s: True, _stochastic(PathSub), automatic=False),
)
MASKSUB_MODES = ("auto", *dict.fromkeys(entry.mode for entry in REGISTRY))


def fitting_modes(subject):
    """The image and text modes that fit, in ``auto``'s order of choice."""
    return list(dict.fromkeys(entry.mode for entry in REGISTRY if entry.automatic and entry.fits(subject)))


def why_nothing_fits(subject):
    """Why no image or text masking fits, read from the model."""
    if subject.timm is not None:
        return "it is a timm model with a patch embedding that is not a timm VisionTransformer"
    if subject.reads_text():
        return "it reads input_ids: 'text' or 'text_drop' mask text"
    if subject.main_input == "pixel_values" or is_dual_encoder(subject.model):
        return ("it reads pixel values already cut into patches (no Conv2d over the image channels): neither "
                "pixel blocks nor patch tokens can be masked the paper's way")
    return f"it reads {subject.main_input!r}: neither input_ids nor an image (a Conv2d over the image channels)"


def masking_for(model_or_config, mode: str = "auto", ratio: float = 0.5, tokenizer=None, block_size=None):
    """The masking for ``model_or_config``.

    Given a model, the result can train it (it may own a mask token, see ``MaskTokenBlocks``). Given a config,
    it only draws masks (what a collator needs). A mode that does not fit is a one-line ``ValueError`` naming
    the model class, why, and the modes that fit.
    """
    subject = Subject.of(model_or_config)
    for entry in REGISTRY:
        if (entry.mode == mode or (mode == "auto" and entry.automatic)) and entry.fits(subject):
            return entry.build(subject, Settings(mode, ratio, tokenizer, block_size))
    modes = fitting_modes(subject)
    config = getattr(subject.model, "config", model_or_config)
    reason = f"modes that fit it: {modes}" if modes else why_nothing_fits(subject)
    raise ValueError(
        f"masksub_mode={mode!r} cannot mask {type(subject.model).__name__} "
        f"(model_type={getattr(config, 'model_type', None)!r}): {reason}. 'dropout' (DropSub) fits any model with "
        "nn.Dropout modules, 'droppath' (PathSub) any with drop-path modules.")
