#!/usr/bin/env python
"""Fine-tune or train an image classifier with MaskSub: transformers' ``run_image_classification.py``
plus ``--masksub_ratio`` (default 0.5; 0 = plain ``Trainer`` baseline).

    python run_image_classification.py --model_name_or_path google/vit-base-patch16-224-in21k \\
        --dataset_name beans --output_dir out --do_train --do_eval --masksub_ratio 0.5
    python run_image_classification.py --model_name_or_path ./my-vit --train_dir data/train \\
        --validation_dir data/val --output_dir out --do_train --do_eval
    accelerate launch run_image_classification.py ...      # same flags, any Accelerate set-up

Works with every family masksub-hf supports (ViT, DeiT, ResNet, ConvNeXt, Swin, BEiT, timm via
``TimmWrapperForImageClassification``); ``--masksub_mode`` picks another masking or DropSub/PathSub.
"""

import logging
from dataclasses import dataclass, field

import torch
from torchvision.transforms import (CenterCrop, Compose, Lambda, Normalize, RandomCrop, RandomHorizontalFlip,
                                    RandomResizedCrop, Resize, ToTensor)
from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification, set_seed

from masksub_hf import MaskSubImageCollator, MaskSubTrainer, MaskSubTrainingArguments
from masksub_hf.cli import (ModelArguments, exits_on_user_error, model_error, parse_arguments,
                            setup_logging, train_evaluate_and_publish, trainer_error)
from masksub_hf.data import ImageDataArguments, load_image_dataset, select_image_split
from masksub_hf.metrics import load_metric

logger = logging.getLogger("masksub_hf")
TOP_K = 5


@dataclass
class ImageModelArguments(ModelArguments):
    model_name_or_path: str | None = field(
        default="google/vit-base-patch16-224-in21k",
        metadata={"help": "Path to a local model or a model id on huggingface.co/models."},
    )
    image_processor_name: str | None = field(default=None, metadata={"help": "Image processor name or path."})


def image_geometry(processor):
    """(size, mean, std) for the transforms, from a transformers or timm-wrapper image processor."""
    data_config = getattr(processor, "data_config", None)
    if data_config is not None:  # TimmWrapperImageProcessor
        return tuple(data_config["input_size"][1:]), data_config.get("mean"), data_config.get("std")
    size = processor.size
    size = size["shortest_edge"] if "shortest_edge" in size else (size["height"], size["width"])
    return size, getattr(processor, "image_mean", None), getattr(processor, "image_std", None)


def make_transforms(processor, image_column, color_mode, augmentation="random_resized_crop"):
    """The HF example's transforms (or milder ``augmentation``); every image is first converted to the
    model's colour mode."""
    size, mean, std = image_geometry(processor)
    normalize = Normalize(mean=mean, std=std) if mean is not None and std is not None else Lambda(lambda x: x)
    resize = [Resize(size), CenterCrop(size)]
    shift = max(1, min((size,) if isinstance(size, int) else size) // 16)  # 2 px at 32 px
    augment = {"random_resized_crop": [RandomResizedCrop(size), RandomHorizontalFlip()],
               "shift": [*resize, RandomCrop(size, padding=shift)],
               "none": resize}[augmentation]
    train = Compose([*augment, ToTensor(), normalize])
    evaluation = Compose([*resize, ToTensor(), normalize])

    def apply(transform):
        def transform_batch(batch):
            batch["pixel_values"] = [transform(image.convert(color_mode)) for image in batch[image_column]]
            return batch

        return transform_batch

    return apply(train), apply(evaluation)


def collate(label_column):
    def collate_fn(examples):
        return {"pixel_values": torch.stack([example["pixel_values"] for example in examples]),
                "labels": torch.tensor([example[label_column] for example in examples])}

    return collate_fn


@exits_on_user_error
def main(args=None):
    model_args, data_args, training_args = parse_arguments(
        (ImageModelArguments, ImageDataArguments, MaskSubTrainingArguments), args=args
    )
    training_args.remove_unused_columns = False  # the transforms need the image column
    setup_logging(training_args)
    set_seed(training_args.seed)

    dataset = load_image_dataset(data_args, model_args.cache_dir, model_args.token, training_args.seed)
    labels = next(iter(dataset.values())).features[data_args.label_column_name].names
    label2id, id2label = {label: i for i, label in enumerate(labels)}, dict(enumerate(labels))

    try:
        config = AutoConfig.from_pretrained(model_args.config_name or model_args.model_name_or_path,
                                            num_labels=len(labels), label2id=label2id, id2label=id2label,
                                            finetuning_task="image-classification", **model_args.hub_kwargs())
        model = AutoModelForImageClassification.from_pretrained(
            model_args.model_name_or_path, config=config, ignore_mismatched_sizes=model_args.ignore_mismatched_sizes,
            **model_args.hub_kwargs())
        processor = AutoImageProcessor.from_pretrained(
            model_args.image_processor_name or model_args.model_name_or_path, **model_args.hub_kwargs())
    except (OSError, ValueError, RuntimeError) as error:
        raise model_error(error) from error

    color_mode = "L" if getattr(model.config, "num_channels", 3) == 1 else "RGB"
    train_transform, eval_transform = make_transforms(processor, data_args.image_column_name, color_mode,
                                                       data_args.augmentation)

    def prepare(split, max_samples, needed_for, transform):
        data = select_image_split(dataset, split, max_samples, needed_for, data_args.image_column_name,
                                  data_args.check_images, training_args.seed)
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
    try:
        if training_args.masksub_ratio > 0:
            collator = MaskSubImageCollator(model, training_args.masksub_ratio, training_args.masksub_mode,
                                            base_collator=collator, block_size=training_args.masksub_block_size)
        trainer = MaskSubTrainer(model=model, args=training_args, train_dataset=train_dataset,
                                 eval_dataset=eval_dataset, compute_metrics=compute_metrics,
                                 processing_class=processor, data_collator=collator)
    except ValueError as error:
        raise trainer_error(error) from error

    card = {"finetuned_from": model_args.model_name_or_path, "tasks": "image-classification",
            "dataset": data_args.dataset_name, "tags": ["image-classification", "vision"]}
    train_evaluate_and_publish(trainer, training_args, train_dataset, {"": eval_dataset}, card)


if __name__ == "__main__":
    main()
