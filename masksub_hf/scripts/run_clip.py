"""Train or fine-tune a CLIP-style dual encoder with MaskSub: transformers' ``run_clip.py`` plus
``--masksub_ratio`` (default 0.5; 0 = plain ``Trainer`` baseline), zero-shot classification and
retrieval recall@1/5 on the validation pairs.

    python run_clip.py --model_name_or_path openai/clip-vit-base-patch32 --train_file train.csv \\
        --validation_file val.csv --image_column image_path --caption_column caption --output_dir out \\
        --do_train --do_eval --zero_shot_classes "cat,dog" --zero_shot_templates "a photo of a {}." \\
        --zero_shot_label_column label
    python run_clip.py --vision_model_name_or_path google/vit-base-patch16-224 \\
        --text_model_name_or_path bert-base-uncased ...          # builds a VisionTextDualEncoderModel
    accelerate launch run_clip.py ...      # same flags, any Accelerate set-up
    masksub-hf clip ...      # installed with pip: the same script

Images are masked in the sub branch (patch-token drop; SigLIP 2: patches hidden in their attention mask); texts
are not (see ``masksub_hf.objectives.clip``).
"""

import logging
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from PIL import Image
from torchvision.transforms import CenterCrop, Compose, Normalize, Resize, ToTensor
from transformers import AutoImageProcessor, AutoModel, AutoTokenizer, VisionTextDualEncoderModel

from masksub_hf import MaskSubImageCollator, MaskSubTrainer, MaskSubTrainingArguments
from masksub_hf.batch import image_inputs, patch_rows, stack_image_inputs
from masksub_hf.masking.patch_hiding import reads_patch_rows
from masksub_hf.masking.structure import is_dual_encoder
from masksub_hf.objectives.clip import retrieval_recalls, zero_shot_accuracy
from masksub_hf.scripts.arguments import SampleLimits, TokenizerArguments
from masksub_hf.scripts.cli import card_data, script_main, train_evaluate_and_publish
from masksub_hf.scripts.errors import UserInputError, model_errors, trainer_errors
from masksub_hf.scripts.loading import check_columns, load_data_files, select_image_split

logger = logging.getLogger("masksub_hf")


@dataclass
class ClipModelArguments(TokenizerArguments):
    model_name_or_path: str | None = field(default=None, metadata={"help": "A CLIP or dual-encoder model."})
    vision_model_name_or_path: str | None = field(
        default=None, metadata={"help": "With --text_model_name_or_path: build a VisionTextDualEncoderModel."}
    )
    text_model_name_or_path: str | None = field(default=None, metadata={"help": "The text tower of a new dual encoder."})
    image_processor_name: str | None = field(default=None, metadata={"help": "Image processor name or path."})
    freeze_vision_model: bool = field(default=False, metadata={"help": "Do not train the vision tower."})
    freeze_text_model: bool = field(default=False, metadata={"help": "Do not train the text tower."})

    def __post_init__(self):
        towers = (self.vision_model_name_or_path, self.text_model_name_or_path)
        if self.model_name_or_path is None and None in towers:
            raise UserInputError("give --model_name_or_path, or --vision_model_name_or_path and "
                                 "--text_model_name_or_path.")


@dataclass
class ClipDataArguments(SampleLimits):
    RESUMABLE: ClassVar[tuple] = ("validation_file", "check_images", "preprocessing_num_workers")

    train_file: str | None = field(default=None, metadata={"help": "csv or json: an image path and a caption per row."})
    validation_file: str | None = field(default=None, metadata={"help": "csv or json with validation pairs."})
    image_column: str = field(default="image_path", metadata={"help": "Column with image file paths."})
    caption_column: str = field(default="caption", metadata={"help": "Column with the captions."})
    max_seq_length: int = field(default=128, metadata={"help": "Longer captions are truncated."})
    zero_shot_classes: str | None = field(
        default=None, metadata={"help": "Comma-separated class names for zero-shot evaluation, or a file, one per line."}
    )
    zero_shot_templates: str = field(
        default="a photo of a {}.", metadata={"help": "'|'-separated prompt templates with {} for the class, or a file."}
    )
    zero_shot_label_column: str | None = field(
        default=None, metadata={"help": "Validation column with each image's class (a name or an index)."}
    )
    check_images: bool = field(
        default=True,
        metadata={"help": "Open every image once before training and skip unreadable (corrupt, truncated, missing) "
                  "ones with a warning and a count; the result is cached with the dataset. False: no check."},
    )
    preprocessing_num_workers: int | None = field(
        default=None, metadata={"help": "Processes for the image check (default: one)."}
    )

    def __post_init__(self):
        if self.train_file is None and self.validation_file is None:
            raise UserInputError("give --train_file and/or --validation_file (csv or json).")
        if self.zero_shot_classes is not None and self.zero_shot_label_column is None:
            raise UserInputError("--zero_shot_classes needs --zero_shot_label_column.")


def class_indices(labels, classes):
    """Each label's index in ``classes``: a label is a class name or an index; anything else is an error."""
    names = [str(label) for label in labels]
    unknown = sorted({name for name in names if name not in classes
                      and not (name.isdigit() and int(name) < len(classes))})
    if unknown:
        raise UserInputError(f"--zero_shot_label_column: labels {unknown[:5]} are neither in --zero_shot_classes "
                             f"({len(classes)} classes) nor class indices.")
    return [classes.index(name) if name in classes else int(name) for name in names]


def _list_argument(value, separator):
    """A list from the command line, or from a file with one item per line."""
    try:
        with open(value) as f:
            return [line.strip() for line in f if line.strip()]
    except OSError:
        return [item.strip() for item in value.split(separator) if item.strip()]


def load_model(model_args):
    if model_args.model_name_or_path is not None:
        model = AutoModel.from_pretrained(model_args.model_name_or_path, **model_args.hub_kwargs())
        source = model_args.model_name_or_path
        vision_source = text_source = source
    else:
        model = VisionTextDualEncoderModel.from_vision_text_pretrained(
            model_args.vision_model_name_or_path, model_args.text_model_name_or_path)
        vision_source, text_source = model_args.vision_model_name_or_path, model_args.text_model_name_or_path
    if not is_dual_encoder(model):
        raise UserInputError(f"--model_name_or_path: {type(model).__name__} is not a CLIP-style dual encoder.")
    tokenizer = AutoTokenizer.from_pretrained(model_args.tokenizer_name or text_source, **model_args.hub_kwargs())
    processor = AutoImageProcessor.from_pretrained(model_args.image_processor_name or vision_source,
                                                   **model_args.hub_kwargs())
    return model, tokenizer, processor


def image_transform(processor):
    size = processor.size.get("shortest_edge") or processor.size["height"]
    return Compose([Resize(size), CenterCrop(size), ToTensor(), Normalize(processor.image_mean, processor.image_std)])


def image_preprocessor(model, processor):
    """Images -> the image tower's inputs, one row per image: resized, cropped and normalised pixel values for a
    fixed-size tower; for one that reads patches already cut (SigLIP 2's NaFlex) the processor's patch rows,
    their attention mask and grid (each image keeps its aspect ratio)."""
    if reads_patch_rows(model):
        return lambda images: patch_rows(processor, images)
    transform = image_transform(processor)
    return lambda images: {"pixel_values": [transform(image) for image in images]}


def caption_length(requested, tokenizer, model):
    """``--max_seq_length`` capped at what the text tower takes, its tokenizer's limit and its position table
    (openai CLIP 77, SigLIP 64; the default 128 would overrun them), as run_glue.py caps it."""
    text_config = getattr(model.config, "text_config", None)
    limit = min(limit for limit in (tokenizer.model_max_length, getattr(text_config, "max_position_embeddings", None))
                if limit)
    if requested > limit:
        logger.warning(f"--max_seq_length {requested} exceeds what the text tower takes: captions are padded and "
                       f"truncated to {limit} tokens.")
    return min(requested, limit)


@torch.no_grad()
def embed(model, dataset, collate_fn, batch_size, device):
    """Normalised image and caption embeddings of a dataset, in order."""
    images, texts = [], []
    for start in range(0, len(dataset), batch_size):
        batch = collate_fn([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
        images.append(model.get_image_features(**{k: v.to(device) for k, v in image_inputs(batch).items()}).pooler_output)
        texts.append(model.get_text_features(input_ids=batch["input_ids"].to(device),
                                             attention_mask=batch["attention_mask"].to(device)).pooler_output)
    return torch.cat(images), torch.cat(texts)


@torch.no_grad()
def class_embeddings(model, tokenizer, classes, templates, device):
    """One embedding per class: the mean of its normalised prompt embeddings (CLIP's prompt ensembling)."""
    rows = []
    for name in classes:
        prompts = tokenizer([template.format(name) for template in templates], padding=True, return_tensors="pt")
        embeds = model.get_text_features(**{k: v.to(device) for k, v in prompts.items()}).pooler_output
        rows.append((embeds / embeds.norm(dim=-1, keepdim=True)).mean(dim=0))
    return torch.stack(rows)


ARGUMENT_TYPES = (ClipModelArguments, ClipDataArguments, MaskSubTrainingArguments)  # what the command line and recipe files set


@script_main(ARGUMENT_TYPES)
def main(model_args, data_args, training_args):
    """The script: ``main(args=None)`` parses ``args`` (default: the command line) into these."""
    training_args.remove_unused_columns = False  # the transform needs the image and caption columns

    files = {split: path for split, path in (("train", data_args.train_file), ("validation", data_args.validation_file))
             if path is not None}
    dataset = load_data_files(files, model_args.cache_dir)
    check_columns(dataset, [("--image_column", data_args.image_column), ("--caption_column", data_args.caption_column)],
                  "--train_file / --validation_file")

    with model_errors():
        model, tokenizer, processor = load_model(model_args)
    for flag, tower in (("freeze_vision_model", model.vision_model), ("freeze_text_model", model.text_model)):
        if getattr(model_args, flag):
            tower.requires_grad_(False)

    images_to_inputs = image_preprocessor(model, processor)
    max_seq_length = caption_length(data_args.max_seq_length, tokenizer, model)

    def preprocess(batch):
        encoded = tokenizer(batch[data_args.caption_column], max_length=max_seq_length,
                            padding="max_length", truncation=True)
        encoded.update(images_to_inputs([Image.open(path).convert("RGB") for path in batch[data_args.image_column]]))
        return encoded

    def collate(examples):
        batch = stack_image_inputs(examples)
        batch.update({name: torch.tensor([example[name] for example in examples])
                      for name in ("input_ids", "attention_mask")})
        return {**batch, "return_loss": True}

    def prepare(split, max_samples, needed_for):
        return select_image_split(dataset, split, max_samples, needed_for, data_args.image_column,
                                  data_args.check_images, image_flag="--image_column",
                                  num_proc=data_args.preprocessing_num_workers,
                                  main_process_first=training_args.main_process_first)

    train_dataset = eval_dataset = None
    if training_args.do_train:
        train_dataset = prepare("train", data_args.max_train_samples, "--do_train (--train_file)")
        train_dataset.set_transform(preprocess)
    zero_shot_labels = None
    if training_args.do_eval:
        eval_dataset = prepare("validation", data_args.max_eval_samples, "--do_eval (--validation_file)")
        if data_args.zero_shot_classes is not None:
            if data_args.zero_shot_label_column not in eval_dataset.column_names:
                raise UserInputError(f"--zero_shot_label_column: no column {data_args.zero_shot_label_column!r}.")
            classes = _list_argument(data_args.zero_shot_classes, ",")
            templates = _list_argument(data_args.zero_shot_templates, "|")
            zero_shot_labels = torch.tensor(class_indices(eval_dataset[data_args.zero_shot_label_column], classes))
        eval_dataset.set_transform(preprocess)

    collator = collate
    with trainer_errors():
        if training_args.masksub_ratio > 0:
            collator = MaskSubImageCollator(model, training_args.masksub_ratio, training_args.masksub_mode,
                                            base_collator=collate)
        trainer = MaskSubTrainer(model=model, args=training_args, train_dataset=train_dataset,
                                 eval_dataset=eval_dataset, processing_class=tokenizer, data_collator=collator)

    def retrieval_and_zero_shot(_metrics):
        """Recall@1/5 both ways on the validation pairs, and zero-shot accuracy when classes are given."""
        model.eval()
        image_embeds, text_embeds = embed(model, eval_dataset, collate, training_args.per_device_eval_batch_size,
                                          training_args.device)
        metrics = {f"eval_{name}": value for name, value in retrieval_recalls(image_embeds, text_embeds).items()}
        if zero_shot_labels is not None:
            class_embeds = class_embeddings(model, tokenizer, classes, templates, training_args.device)
            metrics["eval_zero_shot_accuracy"] = zero_shot_accuracy(image_embeds, class_embeds, zero_shot_labels)
        return metrics

    card = {"finetuned_from": model_args.model_name_or_path or {"vision tower": model_args.vision_model_name_or_path,
                                                                 "text tower": model_args.text_model_name_or_path},
            "tasks": "contrastive-image-text-modeling", "tags": ["clip", "contrastive-image-text"],
            **card_data(None, data_args.train_file, data_args.validation_file)}
    train_evaluate_and_publish(trainer, training_args, train_dataset, {"": eval_dataset} if eval_dataset else {},
                               card, extra_eval_metrics=retrieval_and_zero_shot,
                               arguments=(model_args, data_args, training_args))
    if training_args.do_train and trainer.is_world_process_zero():
        processor.save_pretrained(training_args.output_dir)  # the tokenizer is saved by the Trainer


if __name__ == "__main__":
    main()
