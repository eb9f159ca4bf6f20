"""ViT-like masking: drop patch tokens after the position embedding (MAE style).

Prefix tokens (CLS, DeiT's distillation token, DINOv2's and timm's register tokens) are always kept: they
are what the embeddings output beyond the input's patch grid. The sub branch then runs on ``(1 - ratio)``
of the patch tokens, which is why it costs about half a full pass at ratio 0.5. Where the tokens are dropped:

- a transformers model: the output of its ViT-like embeddings module (``structure.vit_embeddings``:
  ViT, DeiT, DINOv2, IJEPA, ViT-MSN, CLIP, MetaCLIP 2, SigLIP, and their dual encoders);
- timm ``VisionTransformer`` (bare or in ``TimmWrapperForImageClassification``): timm's own
  patch-dropout slot (``model.patch_drop``), which sits right after the position embedding; the
  slot's input is used, so a model built with ``patch_drop_rate`` is not dropped twice.

The patch grid is read from each batch's images, so models that interpolate their position embeddings
(DINOv2) train at any image size.
"""

import contextlib

import torch

from .base import Masking, num_masked, uniform_noise
from .hooks import SubBranchHook
from .structure import module_tree, patch_grid, patch_size, vit_embeddings


def _pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def random_keep_indices(batch_size: int, num_patches: int, num_keep: int, generator=None) -> torch.Tensor:
    """``(batch_size, num_keep)`` sorted patch indices, drawn uniformly without replacement per sample."""
    noise = uniform_noise((batch_size, num_patches), generator)
    return noise.argsort(dim=1)[:, :num_keep].sort(dim=1).values


def is_timm_vit(timm_model) -> bool:
    return all(hasattr(timm_model, name) for name in ("patch_drop", "num_prefix_tokens", "patch_embed"))


def num_kept(num_patches: int, ratio: float) -> int:
    """Patches the sub branch keeps: at least one."""
    return num_patches - min(num_masked(num_patches, ratio), num_patches - 1)


class PatchTokenDrop(Masking):
    """Keep a random ``1 - ratio`` of the patch tokens at the model's token-drop point.

    ``patch_size``: (height, width) pixels per patch; ``timm``: drop at timm's ``patch_drop`` slot instead of
    a transformers model's ViT-like embeddings.
    """

    key = "masksub_keep_indices"
    mode = "tokens"

    def __init__(self, patch_size: tuple, ratio: float, timm: bool = False):
        self.ratio = ratio
        self.patch_size = _pair(patch_size)
        self.timm = timm
        self._hook = SubBranchHook(self._drop_tokens, self._drop_point)

    @classmethod
    def from_config(cls, model_or_config, ratio: float) -> "PatchTokenDrop":
        """For a transformers model (or config) with ViT-like embeddings; ``ValueError`` otherwise."""
        model = module_tree(model_or_config)
        embeddings = vit_embeddings(model)
        if embeddings is None:
            raise ValueError(f"{type(model).__name__} has no ViT-like embeddings to drop patch tokens from.")
        return cls(patch_size(embeddings), ratio)

    @classmethod
    def from_timm(cls, timm_model, ratio: float) -> "PatchTokenDrop":
        return cls(timm_model.patch_embed.patch_size, ratio, timm=True)

    def num_patches(self, pixel_values) -> int:
        grid_h, grid_w = patch_grid(pixel_values, self.patch_size)
        if grid_h * grid_w == 0:
            raise ValueError(f"Images of {tuple(pixel_values.shape[-2:])} pixels hold no {tuple(self.patch_size)}-pixel "
                             "patch: feed images of the size the model was built for.")
        return grid_h * grid_w

    def draw(self, batch, generator=None) -> torch.Tensor:
        pixel_values = batch["pixel_values"]
        num_patches = self.num_patches(pixel_values)
        return random_keep_indices(pixel_values.shape[0], num_patches, num_kept(num_patches, self.ratio), generator)

    def _drop_point(self, model):
        """The module whose output (timm: input) loses tokens."""
        point = getattr(model, "timm_model", model).patch_drop if self.timm else vit_embeddings(model)
        if point is None:
            raise ValueError(f"{type(model).__name__} has no ViT-like embeddings to drop patch tokens from.")
        return point

    def _drop_tokens(self, module, args, output, keep_and_patches):
        keep_indices, num_patches = keep_and_patches
        tokens = args[0] if self.timm else output
        prefix = tokens.shape[1] - num_patches  # CLS, distillation and register tokens come first
        if prefix < 0 or keep_indices.shape[1] != num_kept(num_patches, self.ratio):
            raise ValueError(
                f"MaskSub expected {num_patches} patch tokens from {tuple(self.patch_size)}-pixel patches, got "
                f"{tokens.shape[1]} tokens and a mask keeping {keep_indices.shape[1]}; feed the images the mask "
                "was drawn for."
            )
        index = keep_indices.to(tokens.device).unsqueeze(-1).expand(-1, -1, tokens.shape[-1])
        return torch.cat([tokens[:, :prefix], tokens[:, prefix:].gather(1, index)], dim=1)

    @contextlib.contextmanager
    def apply(self, model, inputs, keep_indices: torch.Tensor):
        num_patches = self.num_patches(inputs["pixel_values"])
        with self._hook.active(model, (keep_indices, num_patches)):
            yield inputs

    def install_hooks(self, model):
        self._hook.install(model)

    def remove_hooks(self):
        self._hook.remove()
