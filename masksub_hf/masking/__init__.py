"""Masking for the sub branch, one module per model family (see ``base.Masking`` for the interface).

``masking_for`` picks one from ``registry`` (one entry a mode and model kind: a predicate and a class):
``masksub_mode="auto"`` chooses by what the model is (``structure``: ViT-like embeddings, embeddings taking
``bool_masked_pos``, an image stem), other modes force one.

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

from .base import Masking, num_masked, peft_base_model
from .mask_token import MaskTokenBlocks
from .patch_hiding import PatchHiding
from .pixels import PixelMasking
from .registry import MASKSUB_MODES, masking_for, timm_model_of
from .stochastic import DropSub, PathSub
from .text import TextMasking, TextTokenDrop, text_masking
from .tokens import PatchTokenDrop

__all__ = [
    "MASKSUB_MODES",
    "DropSub",
    "MaskTokenBlocks",
    "Masking",
    "PatchHiding",
    "PatchTokenDrop",
    "PathSub",
    "PixelMasking",
    "TextTokenDrop",
    "TextMasking",
    "masking_for",
    "num_masked",
    "peft_base_model",
    "text_masking",
    "timm_model_of",
]
