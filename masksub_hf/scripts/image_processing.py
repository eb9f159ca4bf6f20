"""The image processor a run saves and the evaluation geometry the script reads from it, kept one: reloaded with
``AutoImageProcessor``, the saved processor resizes and crops an image as evaluation did.

A geometry is what evaluation does before the tensor: resize (the shorter edge to an int, or both sides to a
pair), then center-crop ``size``. It is read from a transformers processor (``size``, ``crop_size`` with
``do_center_crop``, ``crop_pct``) or a timm one (``input_size``, ``crop_pct``, as timm's evaluation transform), and
written back into the processor where the script chooses it: a model built from a config alone (its family's
processor, else at 224 px), or ``--eval_crop_ratio``.
"""

import math
from dataclasses import dataclass

import timm
from transformers import TimmWrapperImageProcessor
from transformers.models.auto import image_processing_auto

# PIL's resampling filters (transformers processors' ``resample``) by torchvision's names
PIL_FILTER_NAMES = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
PIL_FILTERS = {name: number for number, name in PIL_FILTER_NAMES.items()}
# ConvNeXt's processors warp to the square at and above this shorter edge instead of resizing and cropping.
CONVNEXT_WARP_FROM = 384


@dataclass(frozen=True)
class Geometry:
    size: tuple  # (height, width) the model sees
    resize: object  # evaluation's first step: an int (the shorter edge) or (height, width)
    mean: tuple | None = None
    std: tuple | None = None
    interpolation: str = "bilinear"  # the resize's, as torchvision names it
    floor_crop: bool = True  # the crop's offsets: transformers' (floor), else torchvision's (timm's)

    @classmethod
    def square(cls, side, crop_ratio=None, mean=None, std=None, interpolation="bilinear"):
        """``side`` x ``side``, evaluation resizing the shorter edge to ``side / crop_ratio`` (DeiT's crop) first."""
        return cls((side, side), side if crop_ratio is None else int(side / crop_ratio), mean, std, interpolation)


def _field(size, name):
    return size.get(name) if isinstance(size, dict) else getattr(size, name, None)


def processor_geometry(processor) -> Geometry:
    """What ``processor`` does to an image before its tensor, as a ``Geometry``."""
    data_config = getattr(processor, "data_config", None)
    if data_config is not None:  # timm: its evaluation transform (center mode)
        height, width = data_config["input_size"][1:]
        crop_pct = data_config.get("crop_pct") or 1.0
        resize = math.floor(height / crop_pct) if height == width else \
            (math.floor(height / crop_pct), math.floor(width / crop_pct))
        return Geometry((height, width), resize, data_config.get("mean"), data_config.get("std"),
                        data_config.get("interpolation") or "bilinear", floor_crop=False)
    mean, std = getattr(processor, "image_mean", None), getattr(processor, "image_std", None)
    interpolation = PIL_FILTER_NAMES.get(int(getattr(processor, "resample", None) or 2), "bilinear")
    size, crop_size = processor.size, getattr(processor, "crop_size", None)
    shortest = _field(size, "shortest_edge")
    resize = shortest if shortest else (_field(size, "height"), _field(size, "width"))
    crop_pct = getattr(processor, "crop_pct", None)
    if shortest and crop_pct:  # ConvNeXt, PoolFormer: the shorter edge to shortest / crop_pct, then the crop
        crop = (_field(crop_size, "height"), _field(crop_size, "width")) if crop_size else (shortest, shortest)
        if not crop_size and shortest >= CONVNEXT_WARP_FROM:
            return Geometry(crop, crop, mean, std, interpolation)
        return Geometry(crop, int(shortest / crop_pct), mean, std, interpolation)
    if crop_size and getattr(processor, "do_center_crop", False):
        return Geometry((_field(crop_size, "height"), _field(crop_size, "width")), resize, mean, std, interpolation)
    return Geometry(resize if isinstance(resize, tuple) else (resize, resize), resize, mean, std, interpolation)


def set_processor_geometry(processor, geometry):
    """Make a transformers ``processor`` resize and crop as ``geometry`` (square), keeping the form of its own size
    (the shorter edge, or both sides). A geometry that crops (``resize`` > the side) needs a processor that resizes
    the shorter edge and crops after it. Returns the processor."""
    side, resize = geometry.size[0], geometry.resize
    crops = resize != side
    two_sided = _field(processor.size, "shortest_edge") is None
    has_crop_pct = getattr(processor, "crop_pct", None) is not None  # ConvNeXt, PoolFormer: resize shortest / crop_pct
    has_crop_size = getattr(processor, "crop_size", None) is not None
    if crops and (two_sided or not (has_crop_pct or has_crop_size)):
        raise ValueError(f"{type(processor).__name__} resizes to its size without a center crop.")
    processor.size = {"height": side, "width": side} if two_sided else \
        {"shortest_edge": side if crops and has_crop_pct else resize}
    if has_crop_pct:
        processor.crop_pct = side / resize if crops else 1.0
    if has_crop_size:
        processor.crop_size = {"height": side, "width": side}
        processor.do_center_crop = crops or not two_sided  # a shorter-edge resize is square only once cropped
    processor.resample = PIL_FILTERS[geometry.interpolation]
    if processor_geometry(processor).resize not in (resize, (side, side)):  # e.g. the rounding of side / crop_pct
        raise ValueError(f"{type(processor).__name__} cannot resize to {resize} before a {side}-px crop.")
    return processor


def timm_pretrained_cfg(architecture):
    """timm's preprocessing for ``architecture`` (a timm model's ``config.pretrained_cfg``)."""
    cfg = timm.models.get_pretrained_cfg(architecture)
    return cfg.to_dict() if cfg is not None else {}


def family_processor(config, image_size, interpolation="bilinear"):
    """The image processor of ``config``'s family at ``image_size`` (square), cropping nothing, resizing with
    ``interpolation``: what a model built from a config alone is saved with. timm: the architecture's preprocessing
    from ``config.pretrained_cfg``."""
    if config.model_type == "timm_wrapper":
        return TimmWrapperImageProcessor(pretrained_cfg=config.pretrained_cfg)
    names = image_processing_auto.IMAGE_PROCESSOR_MAPPING_NAMES[config.model_type]
    names = [name for name in (names.values() if isinstance(names, dict) else names) if name]
    class_from_name = getattr(image_processing_auto, "get_image_processor_class_from_name", None) or \
        image_processing_auto.image_processor_class_from_name  # its name before transformers 5.2x
    return set_processor_geometry(class_from_name(names[0])(), Geometry.square(image_size, interpolation=interpolation))
