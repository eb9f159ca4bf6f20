"""Fine-tune or train an image classifier with MaskSub: transformers' ``run_image_classification.py``
plus ``--masksub_ratio`` (default 0.5; 0 = plain ``Trainer`` baseline).

    python run_image_classification.py --model_name_or_path google/vit-base-patch16-224-in21k \\
        --dataset_name beans --output_dir out --do_train --do_eval --masksub_ratio 0.5
    python run_image_classification.py --model_name_or_path ./my-vit --train_dir data/train \\
        --validation_dir data/val --output_dir out --do_train --do_eval
    accelerate launch run_image_classification.py ...      # same flags, any Accelerate set-up
    masksub-hf image-classification ...      # installed with pip: the same script

Works with every family masksub-hf supports (ViT, DeiT, ResNet, ConvNeXt, Swin, BEiT, timm via
``TimmWrapperForImageClassification``); ``--masksub_mode`` picks another masking or DropSub/PathSub.
"""

import logging
import math
import os
from dataclasses import dataclass, field

import timm
import torch
from timm.data import Mixup
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModelForImageClassification,
    TimmWrapperConfig,
    TimmWrapperImageProcessor,
)

from masksub_hf import MaskSubImageCollator, MaskSubTrainer, MaskSubTrainingArguments
from masksub_hf.batch import patch_rows, stack_image_inputs
from masksub_hf.masking.patch_hiding import reads_patch_rows
from masksub_hf.recipes.image_transforms import INTERPOLATIONS, eval_transform, train_image_stages, train_transform
from masksub_hf.recipes.mixing import MixupCollator
from masksub_hf.recipes.target_losses import TargetLoss
from masksub_hf.scripts.arguments import ModelArguments
from masksub_hf.scripts.cli import build_model, card_data, script_main, train_evaluate_and_publish
from masksub_hf.scripts.errors import UserInputError, model_errors, trainer_errors
from masksub_hf.scripts.image_processing import (
    Geometry,
    family_processor,
    processor_geometry,
    set_processor_geometry,
    timm_pretrained_cfg,
)
from masksub_hf.scripts.loading import ImageDataArguments, load_image_dataset, select_image_split
from masksub_hf.scripts.metrics import load_metric

logger = logging.getLogger("masksub_hf")
TOP_K = 5


@dataclass
class ImageModelArguments(ModelArguments):
    config_name: str | None = field(
        default=None, metadata={"help": "Config name or path, if not the model's, or a timm architecture "
                                        "(vit_small_patch16_224); alone (no --model_name_or_path) the model is built "
                                        "from it with random weights: training from scratch."})
    image_processor_name: str | None = field(default=None, metadata={"help": "Image processor name or path."})
    image_size: int | None = field(
        default=None, metadata={"help": "Input size (px, square) of a model built from --config_name alone: the "
                                "config's image_size (timm: img_size, for architectures built for one size), its "
                                "processor's size and the transforms' (28 for MNIST digits). Default: the config's."})
    drop_path_rate: float | None = field(
        default=None,
        metadata={"help": "Stochastic depth (drop-path) rate, for models that have it: BEiT, Swin, ConvNeXt and "
                  "other HF models with config.drop_path_rate, timm models (paper: 0.1-0.2 fine-tuning, up to "
                  "0.6 DeiT-III from scratch). Default: the model's own."},
    )

    def __post_init__(self):
        super().__post_init__()
        if self.image_size is not None and self.image_size <= 0:
            raise UserInputError(f"--image_size must be positive, got {self.image_size}.")
        if self.image_size is not None and self.model_name_or_path is not None:
            raise UserInputError("--image_size sets the input size of a model built from --config_name alone; a "
                                 "pretrained model keeps its own (another processor: --image_processor_name).")


@dataclass
class RecipeArguments:
    """The paper's training recipes (DeiT-III, MAE / BEiT fine-tuning, ResNet strikes back), in timm's terms.

    Label smoothing is ``--label_smoothing_factor`` (TrainingArguments); under Mixup/CutMix it smooths the
    mixed targets (DeiT's ``--smoothing``)."""

    mixup: float = field(default=0.0, metadata={"help": "Mixup alpha; > 0 turns it on (DeiT / MAE fine-tuning: 0.8)."})
    cutmix: float = field(default=0.0, metadata={"help": "CutMix alpha; > 0 turns it on (DeiT / MAE fine-tuning: 1.0)."})
    cutmix_minmax: list[float] | None = field(
        default=None, metadata={"help": "CutMix box size range as fractions of the image (min max); overrides --cutmix."})
    mixup_prob: float = field(default=1.0, metadata={"help": "Probability of mixing a batch (or element)."})
    mixup_switch_prob: float = field(
        default=0.5, metadata={"help": "With both on, probability of CutMix instead of Mixup."})
    mixup_mode: str = field(
        default="batch", metadata={"help": "One draw per 'batch', 'pair' or 'elem' (element).",
                                   "choices": ["batch", "pair", "elem"]})
    bce_loss: bool = field(
        default=False,
        metadata={"help": "Binary cross-entropy main loss (DeiT-III: mixed targets binarised, > 0 -> 1; the sub "
                  "branch then learns sigmoid(main))."})
    bce_target_thresh: float | None = field(
        default=None, metadata={"help": "With --bce_loss, binarise targets at this threshold instead (ResNet strikes "
                                "back: 0.2)."})
    auto_augment: str | None = field(
        default=None, metadata={"help": "timm's policy, e.g. 'rand-m9-mstd0.5-inc1' (RandAugment, MAE / BEiT "
                                "fine-tuning), 'rand-m7-mstd0.5-inc1' (ResNet strikes back A2)."})
    three_augment: bool = field(
        default=False, metadata={"help": "DeiT-III's 3-Augment: one of grayscale, solarize, Gaussian blur per image "
                                 "(timm's '3a'); pair with --augmentation simple_random_crop and --color_jitter 0.3."})
    color_jitter: float | None = field(
        default=None, metadata={"help": "Brightness / contrast / saturation jitter (DeiT-III: 0.3); timm turns it off "
                                "under RandAugment."})
    reprob: float = field(default=0.0, metadata={"help": "Random-erasing probability (MAE / BEiT fine-tuning: 0.25)."})
    hflip: float = field(default=0.5, metadata={"help": "Horizontal-flip probability after a random crop."})
    train_interpolation: str = field(
        default="bilinear", metadata={"help": "Training's resize interpolation (DeiT: bicubic), and evaluation's for a "
                                      "model built from a config alone; else evaluation resizes as the model's "
                                      "processor does.", "choices": list(INTERPOLATIONS)})
    eval_crop_ratio: float | None = field(
        default=None, metadata={"help": "Evaluation: resize to size / ratio, center-crop size (DeiT: 0.875; "
                                "DeiT-III: 1.0). Default: the HF example's resize to size."})

    def mixing(self):
        return self.mixup > 0 or self.cutmix > 0 or self.cutmix_minmax is not None

    def auto_augment_policy(self):
        """timm's policy string: 3-Augment is its '3a'."""
        return "3a" if self.three_augment else self.auto_augment

    def __post_init__(self):
        for name in ("mixup", "cutmix", "color_jitter"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise UserInputError(f"--{name} must be >= 0, got {value}.")
        for name in ("mixup_prob", "mixup_switch_prob", "reprob", "hflip"):
            if not 0 <= getattr(self, name) <= 1:
                raise UserInputError(f"--{name} must be in [0, 1], got {getattr(self, name)}.")
        if self.cutmix_minmax is not None and not (len(self.cutmix_minmax) == 2
                                                    and 0 < self.cutmix_minmax[0] < self.cutmix_minmax[1] <= 1):
            raise UserInputError(f"--cutmix_minmax needs two fractions 0 < min < max <= 1, got {self.cutmix_minmax}.")
        if self.bce_target_thresh is not None and not self.bce_loss:
            raise UserInputError("--bce_target_thresh needs --bce_loss.")
        if self.bce_target_thresh is not None and not 0 <= self.bce_target_thresh < 1:
            raise UserInputError(f"--bce_target_thresh must be in [0, 1), got {self.bce_target_thresh}.")
        if self.three_augment and self.auto_augment:
            raise UserInputError("--three_augment is an auto-augment policy itself (timm's '3a'): drop --auto_augment.")
        if self.eval_crop_ratio is not None and not 0 < self.eval_crop_ratio <= 1:
            raise UserInputError(f"--eval_crop_ratio must be in (0, 1], got {self.eval_crop_ratio}.")


def check_recipe(recipe, training_args):
    """What needs the training arguments too."""
    if recipe.bce_loss and recipe.bce_target_thresh is None and training_args.label_smoothing_factor > 0:
        raise UserInputError("--bce_loss binarises every target above 0 (DeiT-III), so label smoothing would make them "
                             "all 1: drop --label_smoothing_factor or give --bce_target_thresh (e.g. 0.2).")
    if recipe.mixing() and training_args.per_device_train_batch_size % 2:
        raise UserInputError(f"Mixup/CutMix pair the samples of a batch: --per_device_train_batch_size must be even, "
                             f"got {training_args.per_device_train_batch_size}.")


def set_drop_path_rate(config, rate):
    """Set the drop-path rate where the model has one (HF ``config.drop_path_rate``, timm ``model_args``)."""
    if config.model_type == "timm_wrapper":
        config.model_args = {**(config.model_args or {}), "drop_path_rate": rate}
    elif hasattr(config, "drop_path_rate"):
        config.drop_path_rate = rate
    elif rate > 0:  # 0 asks for no drop-path: what a model without it already does
        raise UserInputError(f"--drop_path_rate: {config.model_type} models have no drop-path (BEiT, Swin, ConvNeXt, "
                             "timm models have); drop the flag.")


def takes_image_size(architecture):
    """Whether timm's ``architecture`` is built for one input size (``img_size``: ViTs, Swin), as opposed to any
    (CNNs); built on the meta device, which allocates nothing."""
    try:
        with torch.device("meta"):
            timm.create_model(architecture, img_size=224)
        return True
    except TypeError:
        return False


def image_config(model_args, **settings):
    """The config: ``--config_name`` or the model's; a timm architecture name (``resnet50``) becomes a timm wrapper
    carrying timm's preprocessing for it (``pretrained_cfg``). ``--image_size`` sets a new model's input size."""
    name = model_args.config_name or model_args.model_name_or_path
    size = model_args.image_size
    if model_args.model_name_or_path is None and not os.path.exists(name) and timm.is_model(name):
        config = TimmWrapperConfig(architecture=name, **settings)
    else:
        config = AutoConfig.from_pretrained(name, **settings, **model_args.hub_kwargs())
    if config.model_type == "timm_wrapper" and model_args.model_name_or_path is None \
            and not getattr(config, "pretrained_cfg", None):
        config.pretrained_cfg = timm_pretrained_cfg(config.architecture)  # where a timm model keeps its processor
    if size is not None:
        if config.model_type == "timm_wrapper":
            if takes_image_size(config.architecture):
                config.model_args = {**(config.model_args or {}), "img_size": size}
            config.pretrained_cfg = {**(config.pretrained_cfg or {}), "input_size": [3, size, size]}
        elif hasattr(config, "image_size"):
            config.image_size = size
    return config


def image_processor(model_args, config, interpolation="bilinear"):
    """``--image_processor_name``, else the model's (or the config folder's); a model built from a config alone
    without one gets its family's processor at its input size, resizing with ``interpolation``
    (``image_processing.family_processor``)."""
    name = model_args.image_processor_name or model_args.model_name_or_path or model_args.config_name
    # a timm architecture name is no folder or Hub repository to look a processor up in (without the offline
    # variables the lookup retries the network for minutes)
    timm_name = config.model_type == "timm_wrapper" and not os.path.exists(name) and timm.is_model(name)
    if (model_args.image_size is None or model_args.image_processor_name is not None) and not timm_name:
        try:
            return AutoImageProcessor.from_pretrained(name, **model_args.hub_kwargs())
        except OSError:
            if model_args.model_name_or_path is not None or model_args.image_processor_name is not None:
                raise
    size = model_args.image_size or getattr(config, "image_size", None)
    return family_processor(config, size if isinstance(size, int) else 224, interpolation)


def evaluation_geometry(processor, config, crop_ratio):
    """The geometry evaluation uses, read from the processor that is saved with the model: with ``--eval_crop_ratio``
    first written into it (timm: into ``config.pretrained_cfg``, where a timm model keeps its preprocessing), so that
    the reloaded processor crops as evaluation did. Returns ``(geometry, processor)``."""
    if crop_ratio is None:
        return processor_geometry(processor), processor
    geometry = processor_geometry(processor)
    if config.model_type == "timm_wrapper":
        config.pretrained_cfg = {**config.pretrained_cfg, "crop_pct": crop_ratio, "crop_mode": "center"}
        processor = TimmWrapperImageProcessor(pretrained_cfg=config.pretrained_cfg)
    else:
        try:
            set_processor_geometry(processor, Geometry.square(geometry.size[0], crop_ratio, geometry.mean, geometry.std,
                                                              geometry.interpolation))
        except ValueError as error:
            raise UserInputError(f"--eval_crop_ratio: {error} Drop the flag, or give an --image_processor_name "
                                 "that crops (e.g. DeiT's).") from error
    return processor_geometry(processor), processor


def make_transforms(processor, image_column, color_mode, augmentation="random_resized_crop", recipe=None,
                    cuts_patch_rows=False, geometry=None):
    """Training and evaluation transforms (``masksub_hf.recipes.image_transforms``; without recipe flags, the HF
    example's) at the processor's geometry (``geometry``: read from ``processor`` when not given); every image is
    first converted to the model's colour mode. ``cuts_patch_rows``: the model reads images cut into patch rows by
    its processor (``patch_row_transforms``)."""
    recipe = recipe or RecipeArguments()
    if cuts_patch_rows:
        return patch_row_transforms(processor, image_column, color_mode, augmentation, recipe)
    geometry = geometry or processor_geometry(processor)
    # a square model input after a shorter-edge resize crops the image (an int size); after a two-sided one, warps it
    square = geometry.size[0] == geometry.size[1] and isinstance(geometry.resize, int)
    train = train_transform(geometry.size[0] if square else geometry.size, geometry.mean, geometry.std, augmentation, recipe.hflip,
                            recipe.auto_augment_policy(), recipe.color_jitter,
                            recipe.reprob, recipe.train_interpolation)
    evaluation = eval_transform(geometry.size, geometry.resize, geometry.mean, geometry.std, geometry.interpolation,
                                geometry.floor_crop)

    def apply(transform):
        def transform_batch(batch):
            batch["pixel_values"] = [transform(image.convert(color_mode)) for image in batch[image_column]]
            return batch

        return transform_batch

    return apply(train), apply(evaluation)


# what a model reading patch rows cannot take: mixing and erasing act on fixed-size image tensors, and its
# evaluation images keep their aspect ratio (no crop)
PATCH_ROW_REFUSED = {"--mixup / --cutmix": lambda recipe: recipe.mixing(), "--reprob": lambda recipe: recipe.reprob > 0,
                     "--eval_crop_ratio": lambda recipe: recipe.eval_crop_ratio is not None}


def check_patch_row_recipe(recipe, model):
    for flag, given in PATCH_ROW_REFUSED.items():
        if given(recipe):
            raise UserInputError(f"{flag}: {type(model).__name__} reads images cut into patch rows of different grids "
                                 "(NaFlex), which this recipe step, made for fixed-size image tensors, cannot take.")


def patch_row_transforms(processor, image_column, color_mode, augmentation, recipe):
    """For a model that reads images cut into patch rows (NaFlex: SigLIP 2): training crops, flips and colours each
    image at the processor's largest square (patch size x the square root of its patch budget), then the processor
    cuts it into patch rows with their mask and grid; evaluation gives the processor the image as it is (its
    aspect ratio kept, as the processor is meant to be used)."""
    side = processor.patch_size * math.isqrt(processor.max_num_patches)
    image_stages = train_image_stages(side, augmentation, recipe.hflip,
                                      recipe.auto_augment_policy(), recipe.color_jitter,
                                      recipe.train_interpolation)

    def apply(stages):
        def transform_batch(batch):
            batch.update(patch_rows(processor, [stages(image.convert(color_mode)) for image in batch[image_column]]))
            return batch

        return transform_batch

    return apply(image_stages), apply(lambda image: image)


def collate(label_column):
    def collate_fn(examples):
        return {**stack_image_inputs(examples), "labels": torch.tensor([example[label_column] for example in examples])}

    return collate_fn


ARGUMENT_TYPES = (ImageModelArguments, ImageDataArguments, RecipeArguments, MaskSubTrainingArguments)  # what the command line and recipe files set


@script_main(ARGUMENT_TYPES)
def main(model_args, data_args, recipe, training_args):
    """The script: ``main(args=None)`` parses ``args`` (default: the command line) into these."""
    check_recipe(recipe, training_args)
    training_args.remove_unused_columns = False  # the transforms need the image column

    dataset = load_image_dataset(data_args, model_args.cache_dir, model_args.token, training_args.seed)
    labels = next(iter(dataset.values())).features[data_args.label_column_name].names
    label2id, id2label = {label: i for i, label in enumerate(labels)}, dict(enumerate(labels))

    with model_errors():
        config = image_config(model_args, num_labels=len(labels), label2id=label2id, id2label=id2label,
                              finetuning_task="image-classification")
        if model_args.drop_path_rate is not None:
            set_drop_path_rate(config, model_args.drop_path_rate)
        model = build_model(AutoModelForImageClassification, model_args, config)
        processor = image_processor(model_args, config, recipe.train_interpolation)
    cuts_patch_rows = reads_patch_rows(model)
    geometry = None
    if cuts_patch_rows:
        check_patch_row_recipe(recipe, model)
    else:
        geometry, processor = evaluation_geometry(processor, model.config, recipe.eval_crop_ratio)

    color_mode = "L" if getattr(model.config, "num_channels", 3) == 1 else "RGB"
    train_transform, eval_transform = make_transforms(processor, data_args.image_column_name, color_mode,
                                                       data_args.augmentation, recipe, cuts_patch_rows, geometry)

    def prepare(split, max_samples, needed_for, transform):
        data = select_image_split(dataset, split, max_samples, needed_for, data_args.image_column_name,
                                  data_args.check_images, training_args.seed,
                                  num_proc=data_args.preprocessing_num_workers,
                                  main_process_first=training_args.main_process_first)
        data.set_transform(transform)
        return data

    train_dataset = eval_dataset = None
    if training_args.do_train:
        train_dataset = prepare("train", data_args.max_train_samples, "--do_train (give --train_dir)", train_transform)
    if training_args.do_eval:
        eval_dataset = prepare("validation", data_args.max_eval_samples,
                               "--do_eval (give --validation_dir or --train_val_split > 0)", eval_transform)

    metric = load_metric("accuracy")

    def compute_metrics(prediction):
        return metric.compute(predictions=prediction.predictions, references=prediction.label_ids, top_k=TOP_K)

    collator = collate(data_args.label_column_name)
    with trainer_errors():
        if training_args.masksub_ratio > 0:
            collator = MaskSubImageCollator(model, training_args.masksub_ratio, training_args.masksub_mode,
                                            base_collator=collator, block_size=training_args.masksub_block_size)
        train_collator, loss_func = collator, None
        if recipe.mixing():  # mixed on the collated batch; the sub branch masks the mixed pixels
            train_collator = MixupCollator(collator, Mixup(
                mixup_alpha=recipe.mixup, cutmix_alpha=recipe.cutmix, cutmix_minmax=recipe.cutmix_minmax,
                prob=recipe.mixup_prob, switch_prob=recipe.mixup_switch_prob, mode=recipe.mixup_mode,
                label_smoothing=training_args.label_smoothing_factor, num_classes=len(labels)))
        if recipe.mixing() or recipe.bce_loss:
            loss_func = TargetLoss(recipe.bce_loss, recipe.bce_target_thresh, training_args.label_smoothing_factor)
        trainer = MaskSubTrainer(model=model, args=training_args, train_dataset=train_dataset,
                                 eval_dataset=eval_dataset, compute_metrics=compute_metrics,
                                 processing_class=processor, data_collator=train_collator,
                                 compute_loss_func=loss_func)

    card = {"finetuned_from": model_args.model_name_or_path, "tasks": "image-classification",
            "tags": ["image-classification", "vision"],
            "config_name": model_args.scratch_config(),
            **card_data(data_args.dataset_name, data_args.train_dir, data_args.validation_dir)}
    train_evaluate_and_publish(trainer, training_args, train_dataset, {"": eval_dataset}, card,
                               arguments=(model_args, data_args, recipe, training_args))


if __name__ == "__main__":
    main()
