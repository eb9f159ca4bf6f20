"""Training and evaluation transforms for ``run_image_classification.py``: the HF example's by default,
the paper's recipes (DeiT-III, MAE/BEiT fine-tuning, ResNet strikes back) through timm's stages.

A training transform has timm's three stages: a crop (``crop``: the HF example's random-resized crop, a
shift for small images, DeiT-III's simple random crop, or none) with horizontal flips, then timm's
colour stage (RandAugment / AutoAugment / 3-Augment, colour jitter), then tensor, normalisation and
random erasing. With no recipe flag it is exactly the HF example's transform.
"""

from PIL import Image, ImageOps
from timm.data.transforms_factory import transforms_imagenet_train
from torchvision.transforms import (
    CenterCrop,
    Compose,
    InterpolationMode,
    Lambda,
    Normalize,
    RandomCrop,
    RandomHorizontalFlip,
    RandomResizedCrop,
    Resize,
    ToTensor,
)

CROPS = ("random_resized_crop", "shift", "simple_random_crop", "none")
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


def _min_side(size):
    return size if isinstance(size, int) else min(size)


def crop_stage(size, crop, hflip=0.5, interpolation="bilinear"):
    """The geometric stage: ``crop`` to ``size``, then horizontal flips with probability ``hflip`` (not for
    ``shift``/``none``, whose images, e.g. digits, flips would change)."""
    mode = InterpolationMode(interpolation)
    resize = [Resize(size, interpolation=mode), CenterCrop(size)]
    if crop == "random_resized_crop":  # the HF example's
        stage = [RandomResizedCrop(size, interpolation=mode)]
    elif crop == "simple_random_crop":  # DeiT-III's 3-Augment crop ("simple random crop", 4 px reflected)
        stage = [Resize(size, interpolation=mode), RandomCrop(size, padding=4, padding_mode="reflect")]
    elif crop == "shift":  # random shifts by up to 1/16 of the size (2 px at 32 px)
        return [*resize, RandomCrop(size, padding=max(1, _min_side(size) // 16))]
    elif crop == "none":
        return resize
    else:
        raise ValueError(f"crop must be one of {CROPS}, got {crop!r}.")
    return stage + ([RandomHorizontalFlip(p=hflip)] if hflip > 0 else [])


def train_transform(size, mean, std, crop="random_resized_crop", hflip=0.5, auto_augment=None, color_jitter=None,
                    reprob=0.0, interpolation="bilinear"):
    """The training transform (PIL image in, tensor out).

    Args:
        size: output size (int or (height, width)); mean / std: normalisation (None: none).
        crop: one of ``CROPS``; hflip: flip probability after the crop.
        auto_augment: timm's policy string, e.g. ``rand-m9-mstd0.5-inc1`` (RandAugment), ``3a`` (DeiT-III's
            3-Augment: one of solarize / grayscale / blur per image).
        color_jitter: brightness = contrast = saturation jitter (timm turns it off under RandAugment).
        reprob: random-erasing probability (per-pixel normal noise, timm's ``pixel`` mode).
        interpolation: resize interpolation.
    """
    if mean is None or std is None:  # no normalisation: an identity one keeps ToTensor's float output
        mean, std = (0.0,), (1.0,)
    colour, final = _timm_stages(size, auto_augment, color_jitter, interpolation, mean, std, reprob)
    return Compose([*crop_stage(size, crop, hflip, interpolation), *colour, *final])


def train_image_stages(size, crop="random_resized_crop", hflip=0.5, auto_augment=None, color_jitter=None,
                       interpolation="bilinear"):
    """The training transform's image stages (PIL image in, PIL image out: crop, flips, colour), for a processor
    that makes the tensors itself (one that cuts images into patch rows)."""
    colour, _ = _timm_stages(size, auto_augment, color_jitter, interpolation)
    return Compose([*crop_stage(size, crop, hflip, interpolation), *colour])


def _timm_stages(size, auto_augment, color_jitter, interpolation, mean=(0.0,), std=(1.0,), reprob=0.0):
    """timm's colour stage and its final one (tensor, normalisation, random erasing), as lists of transforms."""
    _, colour, final = transforms_imagenet_train(
        size, hflip=0.0, color_jitter=color_jitter, auto_augment=auto_augment, interpolation=interpolation,
        mean=tuple(mean), std=tuple(std), re_prob=reprob, re_mode="pixel", separate=True)
    for policy in colour.transforms:
        _allow_posterize_to_zero_bits(policy)
    return colour.transforms, final.transforms


def _posterize(image, bits_to_keep, **_):
    """timm's posterize, keeping 0 bits as older Pillow did (a black image). RandAugment with magnitude noise
    ('mstd', 'inc1': the MAE / BEiT recipes) draws 0 bits now and then, which Pillow >= 10 refuses."""
    if bits_to_keep >= 8:
        return image
    if bits_to_keep <= 0:
        return Image.new(image.mode, image.size)
    return ImageOps.posterize(image, bits_to_keep)


def _allow_posterize_to_zero_bits(policy):
    ops = getattr(policy, "ops", None) or [op for sub_policy in getattr(policy, "policy", []) for op in sub_policy]
    for op in ops:
        if getattr(op, "name", "").startswith("Posterize"):
            op.aug_fn = _posterize


class FloorCenterCrop:
    """transformers' center crop of a PIL image: offsets ``(side - crop) // 2``, where torchvision's ``CenterCrop``
    rounds half a pixel up (one pixel apart on an odd margin). Smaller images go to torchvision's, which pads."""

    def __init__(self, size):
        self.size = (size, size) if isinstance(size, int) else tuple(size)

    def __call__(self, image):
        (height, width), (width_in, height_in) = self.size, image.size
        if height_in < height or width_in < width:
            return CenterCrop(self.size)(image)
        top, left = (height_in - height) // 2, (width_in - width) // 2
        return image.crop((left, top, left + width, top + height))

    def __repr__(self):
        return f"FloorCenterCrop(size={self.size})"


def eval_transform(size, resize, mean, std, interpolation="bilinear", floor_crop=False):
    """Resize (``resize``: the shorter edge when an int, both sides when a pair) and center-crop ``size``; the HF
    example's is ``resize == size``, DeiT's crop ratio r ``resize = int(size / r)``. ``floor_crop``: transformers'
    crop offsets (a transformers image processor's), else torchvision's (timm's)."""
    normalize = Normalize(mean=mean, std=std) if mean is not None and std is not None else Lambda(lambda x: x)
    crop = FloorCenterCrop(size) if floor_crop else CenterCrop(size)
    return Compose([Resize(resize, interpolation=InterpolationMode(interpolation)), crop, ToTensor(), normalize])
