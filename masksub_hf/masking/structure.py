"""What an image model is, read from its modules, not its name: how ``auto`` masks any transformers family.

- **token drop** needs a ViT-like model: one embeddings module that turns the image into patch tokens and
  adds absolute positions to them (so a token keeps its position when its neighbours are gone), followed by
  a plain stack of blocks (no stages that merge tokens on a grid, no relative or rotary positions tied to the
  full grid). ViT, DeiT, DINOv2 (with registers), IJEPA, ViT-MSN, CLIP, MetaCLIP 2, SigLIP.
- **mask token** needs an embeddings module that takes ``bool_masked_pos`` and has a ``mask_token`` slot:
  the model's own masked-image path (Swin, BEiT, data2vec-vision, FocalNet, Donut-Swin).
- **pixels** needs an image tensor ``(batch, channels, height, width)``: a ``Conv2d`` stem over the image
  channels. Every CNN and hierarchical transformer.

A config is read through an uninitialised model built on the meta device (no memory, no weights).
"""

import inspect

import torch
from torch import nn

PATCH_EMBEDDING_NAMES = ("patch_embeddings", "patch_embedding")
POSITION_EMBEDDING_NAMES = ("position_embeddings", "position_embedding")
# position schemes that tie every token to the full patch grid: a dropped token breaks them
GRID_BOUND_POSITIONS = ("relativeposition", "rotary", "rope")


def is_dual_encoder(model) -> bool:
    """An image-text model trained on pairs (CLIP, VisionTextDualEncoder): its images are masked."""
    return all(hasattr(model, name) for name in ("get_image_features", "get_text_features", "logit_scale"))


def is_class_of(model, mapping) -> bool:
    """Whether ``model``'s class, or a class it derives from (a user's subclass), is one of the classes a
    transformers auto mapping names (``{model_type: class name}``, e.g. ``MODEL_FOR_CAUSAL_LM_MAPPING_NAMES``)."""
    names = set(mapping.values())
    return any(cls.__name__ in names for cls in type(model).__mro__)


def is_seq2seq_lm(model) -> bool:
    """An encoder-decoder language model reading text (BART, T5, Marian, ...: a class of transformers'
    seq2seq-LM mapping): trained with its decoder teacher-forced on the labels, never fed ``input_ids`` (an
    encoder-decoder *classifier*'s decoder reads the input itself)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES

    return (getattr(getattr(model, "config", None), "is_encoder_decoder", False)
            and getattr(model, "main_input_name", None) == "input_ids"
            and is_class_of(model, MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES))


def is_semantic_segmenter(model) -> bool:
    """A dense predictor of transformers' semantic-segmentation mapping: its decoder reads every patch at its place
    in the grid, so its patch tokens cannot be dropped."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES

    return is_class_of(model, MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES)


def module_tree(model_or_config):
    """``model_or_config`` if it is a model, else an uninitialised model of that config on the meta device."""
    if isinstance(model_or_config, nn.Module):
        return model_or_config
    from transformers import AutoModel

    with torch.device("meta"):
        return AutoModel.from_config(model_or_config)


def first_conv(module):
    return next((m for m in module.modules() if isinstance(m, nn.Conv2d)), None)


def vision_config(model):
    """The config of the model's image tower: a dual encoder's ``vision_config``, else the model's config."""
    config = getattr(model, "config", None)
    vision_config = getattr(config, "vision_config", None)
    return vision_config if vision_config is not None else config


def _has_stages(config) -> bool:
    return config is not None and getattr(config, "depths", None) is not None


def _has_grid_bound_positions(model) -> bool:
    return any(word in type(m).__name__.lower() for m in model.modules() for word in GRID_BOUND_POSITIONS)


def vit_embeddings(model):
    """The module whose output is prefix tokens + patch tokens with absolute positions, in a ViT-like model
    (see the module docstring), else None."""
    found = [m for m in model.modules()
             if any(getattr(m, name, None) is not None for name in PATCH_EMBEDDING_NAMES)
             and any(getattr(m, name, None) is not None for name in POSITION_EMBEDDING_NAMES)
             and first_conv(m) is not None]  # a Conv2d patch projection: the input is an image, not patches
    if len(found) != 1 or _has_stages(vision_config(model)) or _has_grid_bound_positions(model):
        return None
    return found[0]


def mask_token_embeddings(model):
    """The embeddings module that inserts the model's own mask token where ``bool_masked_pos`` says, else None."""
    for module in model.modules():
        if (hasattr(module, "mask_token") and first_conv(module) is not None
                and "bool_masked_pos" in inspect.signature(module.forward).parameters):
            return module
    return None


def takes_image_grid(model) -> bool:
    """Whether the model reads a ``(batch, channels, height, width)`` image: a Conv2d stem over its channels."""
    channels = getattr(vision_config(model), "num_channels", None) or 3
    return any(isinstance(m, nn.Conv2d) and m.in_channels == channels for m in model.modules())


def patch_size(embeddings) -> tuple:
    """(height, width) in pixels of one patch: the stride of the embeddings' patch projection."""
    stride = first_conv(embeddings).stride
    return tuple(stride) if isinstance(stride, (tuple, list)) else (stride, stride)


def patch_grid(pixel_values, patch) -> tuple:
    return pixel_values.shape[-2] // patch[0], pixel_values.shape[-1] // patch[1]
