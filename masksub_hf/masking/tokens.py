"""ViT-family masking: drop patch tokens after the position embedding (MAE style).

Prefix tokens (CLS, DeiT's distillation token, timm's register tokens) are always kept. The sub
branch then runs on ``(1 - ratio)`` of the patch tokens, which is why it costs about half a full pass
at ratio 0.5. Where the tokens are dropped:

- transformers ViT / DeiT / CLIP vision: the output of the embeddings module;
- timm ``VisionTransformer`` (bare or in ``TimmWrapperForImageClassification``): timm's own
  patch-dropout slot (``model.patch_drop``), which sits right after the position embedding; the
  slot's input is used, so a model built with ``patch_drop_rate`` is not dropped twice.
"""

import contextlib

import torch

from .base import Masking, num_masked, uniform_noise
from .hooks import SubBranchHook

# config.model_type -> (embeddings module class, number of prefix tokens, sub-config holding the grid)
TOKEN_DROP_FAMILIES = {
    "vit": ("ViTEmbeddings", 1, None),
    "deit": ("DeiTEmbeddings", 2, None),
    "clip": ("CLIPVisionEmbeddings", 1, "vision_config"),
    "clip_vision_model": ("CLIPVisionEmbeddings", 1, None),
}


DUAL_ENCODER_TYPE = "vision-text-dual-encoder"  # masked through its vision tower's family


def token_drop_config(config):
    """The config whose family decides token drop: a dual encoder's vision tower, else the config itself."""
    return config.vision_config if getattr(config, "model_type", None) == DUAL_ENCODER_TYPE else config


def _pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def random_keep_indices(batch_size: int, num_patches: int, num_keep: int, generator=None) -> torch.Tensor:
    """``(batch_size, num_keep)`` sorted patch indices, drawn uniformly without replacement per sample."""
    noise = uniform_noise((batch_size, num_patches), generator)
    return noise.argsort(dim=1)[:, :num_keep].sort(dim=1).values


def is_timm_vit(timm_model) -> bool:
    return all(hasattr(timm_model, name) for name in ("patch_drop", "num_prefix_tokens", "patch_embed"))


class PatchTokenDrop(Masking):
    """Keep a random ``1 - ratio`` of the patch tokens at the model's token-drop point."""

    key = "masksub_keep_indices"
    mode = "tokens"

    def __init__(self, num_patches: int, num_prefix_tokens: int, ratio: float, embeddings_class: str | None = None):
        self.ratio = ratio
        self.num_patches = num_patches
        self.num_prefix_tokens = num_prefix_tokens
        self.embeddings_class = embeddings_class  # None: timm's patch_drop slot
        self.num_keep = num_patches - min(num_masked(num_patches, ratio), num_patches - 1)
        self._hook = SubBranchHook(self._drop_tokens)

    @classmethod
    def from_config(cls, config, ratio: float) -> "PatchTokenDrop":
        config = token_drop_config(config)
        embeddings_class, num_prefix_tokens, sub_config = TOKEN_DROP_FAMILIES[config.model_type]
        vision_config = getattr(config, sub_config) if sub_config else config
        height, width = _pair(vision_config.image_size)
        patch_height, patch_width = _pair(vision_config.patch_size)
        num_patches = (height // patch_height) * (width // patch_width)
        return cls(num_patches, num_prefix_tokens, ratio, embeddings_class)

    @classmethod
    def from_timm(cls, timm_model, ratio: float) -> "PatchTokenDrop":
        grid_h, grid_w = timm_model.patch_embed.grid_size
        return cls(grid_h * grid_w, timm_model.num_prefix_tokens, ratio)

    def draw(self, batch, generator=None) -> torch.Tensor:
        batch_size = batch["pixel_values"].shape[0]
        return random_keep_indices(batch_size, self.num_patches, self.num_keep, generator)

    def _drop_point(self, model):
        if self.embeddings_class is None:
            return getattr(model, "timm_model", model).patch_drop
        for module in model.modules():
            if type(module).__name__ == self.embeddings_class:
                return module
        raise ValueError(f"{type(model).__name__} has no {self.embeddings_class} module to drop patch tokens from.")

    def _drop_tokens(self, module, args, output, keep_indices):
        tokens = args[0] if self.embeddings_class is None else output
        prefix = self.num_prefix_tokens
        if tokens.shape[1] != prefix + self.num_patches:
            raise ValueError(
                f"MaskSub expected {prefix}+{self.num_patches} tokens from the model's image and patch "
                f"size, got {tokens.shape[1]}; feed images of the size the model was built for."
            )
        index = keep_indices.to(tokens.device).unsqueeze(-1).expand(-1, -1, tokens.shape[-1])
        return torch.cat([tokens[:, :prefix], tokens[:, prefix:].gather(1, index)], dim=1)

    @contextlib.contextmanager
    def apply(self, model, inputs, keep_indices: torch.Tensor):
        with self._hook.active(self._drop_point(model), keep_indices):
            yield inputs

    def install_hooks(self, model):
        self._hook.install(self._drop_point(model))

    def remove_hooks(self):
        self._hook.remove()
