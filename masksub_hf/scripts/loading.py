"""Data loading for the scripts, in the conventions of transformers' examples: Hub datasets, image
folders, csv/json files. Every problem a user can cause is a ``UserInputError`` naming the flag."""

import contextlib
import glob
import io
import logging
import os
from dataclasses import dataclass, field
from typing import ClassVar

import PIL.Image
from datasets import ClassLabel, DatasetDict, Image, Sequence, load_dataset
from datasets.exceptions import DatasetGenerationError

from ..recipes.image_transforms import CROPS
from .arguments import PredictionFile, SampleLimits
from .errors import UserInputError

logger = logging.getLogger("masksub_hf")

GLUE_TASK_KEYS = {
    "cola": ("sentence", None),
    "mnli": ("premise", "hypothesis"),
    "mrpc": ("sentence1", "sentence2"),
    "qnli": ("question", "sentence"),
    "qqp": ("question1", "question2"),
    "rte": ("sentence1", "sentence2"),
    "sst2": ("sentence", None),
    "stsb": ("sentence1", "sentence2"),
    "wnli": ("sentence1", "sentence2"),
}


def select_split(dataset, name, max_samples=None, needed_for="", shuffle_seed=None):
    """``dataset[name]``, cut to ``max_samples`` (shuffled first when ``shuffle_seed`` is given)."""
    if name not in dataset:
        raise UserInputError(f"{needed_for}: the data has no {name!r} split (splits: {', '.join(dataset)}).")
    data = dataset[name]
    if max_samples is None:
        return data
    if shuffle_seed is not None:
        data = data.shuffle(seed=shuffle_seed)
    return data.select(range(min(max_samples, len(data))))


def check_path(flag, path, directory=False):
    if path is not None and not (os.path.isdir(path) if directory else os.path.isfile(path)):
        raise UserInputError(f"{flag}: no such {'directory' if directory else 'file'}: {path}")


def check_data_files(flags_and_paths, extensions=("csv", "json", "jsonl")):
    """Each given ``(flag, path)`` is an existing file of one of ``extensions`` (``None``: not given)."""
    for flag, path in flags_and_paths:
        check_path(flag, path)
        if path is not None and path.rsplit(".", 1)[-1] not in extensions:
            kinds = " or ".join(dict.fromkeys(extension.replace("jsonl", "json") for extension in extensions))
            raise UserInputError(f"{flag} must be a {kinds} file, got {path}.")


def check_columns(dataset, flags_and_columns, data_flag):
    """Every split has every ``(flag, column)``'s column and at least one row (else an error naming ``data_flag``)."""
    for split, data in dataset.items():
        for flag, column in flags_and_columns:
            if column not in data.column_names:
                raise UserInputError(
                    f"{flag}: column {column!r} not in the {split} data (columns: {', '.join(data.column_names)})."
                )
        if len(data) == 0:
            raise UserInputError(f"{data_flag}: the {split} data has no rows.")


def load_data_files(data_files, cache_dir=None):
    """``{split: csv or json file}`` (``--{split}_file``) as a ``DatasetDict``; unreadable files are user errors.

    The labelled splits are read together (the same columns); a ``test`` file on its own, since prediction
    files may have no label column."""
    for split, path in data_files.items():
        if os.path.getsize(path) == 0 or (path.endswith(".csv") and _count_lines(path, stop_at=2) < 2):
            raise UserInputError(f"--{split}_file: {path} has no rows.")
    labelled = {split: path for split, path in data_files.items() if split != "test"}
    dataset = _read_files(labelled, cache_dir)
    if "test" in data_files:
        dataset["test"] = _read_files({"test": data_files["test"]}, cache_dir)["test"]
    return dataset


def _read_files(data_files, cache_dir):
    extension = next(iter(data_files.values())).rsplit(".", 1)[-1]
    try:
        return load_dataset("csv" if extension == "csv" else "json", data_files=data_files, cache_dir=cache_dir)
    except (DatasetGenerationError, FileNotFoundError, ValueError) as error:
        reason = error.__cause__ if isinstance(error.__cause__, Exception) else error
        flags = " / ".join(f"--{split}_file" for split in data_files)
        raise UserInputError(f"{flags}: cannot read the files: {' '.join(str(reason).split())[:300]}") from error


def _count_lines(path, stop_at):
    """Non-blank lines of a text file, counting no further than ``stop_at``."""
    count = 0
    with open(path, encoding="utf-8", errors="replace") as lines:
        for line in lines:
            count += bool(line.strip())
            if count >= stop_at:
                break
    return count


def _is_readable(image) -> bool:
    """Whether PIL decodes the whole image: an undecoded ``datasets.Image`` value or a file path."""
    if isinstance(image, dict):
        image = io.BytesIO(image["bytes"]) if image.get("bytes") else image["path"]
    try:
        with PIL.Image.open(image) as opened:
            opened.load()
        return True
    except (OSError, SyntaxError, ValueError):  # unidentified, truncated, broken chunks, missing files
        return False


def _readable_column(batch, image_column):
    return {"readable": [_is_readable(image) for image in batch[image_column]]}


def drop_unreadable_images(data, image_column, split, flag="--image_column_name", num_proc=None):
    """``data`` without its unreadable images (corrupt, truncated, missing files); a warning counts them and
    names a few. A split with no readable image is an error.

    Each image is decoded once, in ``num_proc`` processes, behind a progress bar. The result is a ``datasets``
    map, cached by the data's fingerprint: a restart, or a process that runs after the main one
    (``select_image_split`` checks under ``main_process_first``), reads the cache instead of decoding again."""
    feature = data.features[image_column]
    if isinstance(feature, Image):
        undecoded = data.cast_column(image_column, Image(decode=False))
    elif getattr(feature, "dtype", None) in ("string", "large_string"):  # file paths (csv/json)
        undecoded = data
    else:
        raise UserInputError(f"{flag}: column {image_column!r} holds {feature}, not images or image paths.")
    # In batches of 64: a whole column at once would hold every image's bytes in memory.
    readable = undecoded.select_columns([image_column]).map(
        _readable_column, fn_kwargs={"image_column": image_column}, batched=True, batch_size=64,
        remove_columns=[image_column], num_proc=num_proc if num_proc and num_proc > 1 else None,
        desc=f"Checking the {split} images")["readable"]
    bad = [i for i, ok in enumerate(readable) if not ok]
    if not bad:
        return data
    if len(bad) == len(data):
        first = undecoded[0][image_column]
        where = (f" (paths are read as written: {first!r} from the current folder, {os.getcwd()})"
                 if isinstance(first, str) and not os.path.isabs(first) else "")
        raise UserInputError(f"{flag}: none of the {len(data)} images of the {split} data can be read{where}.")
    images = [undecoded[i][image_column] for i in bad[:3]]
    names = [str(image["path"] if isinstance(image, dict) else image) for image in images]
    logger.warning(f"Skipping {len(bad)} unreadable image(s) of {len(data)} in the {split} data "
                   f"(corrupt or truncated), e.g. {', '.join(names)}.")
    return data.select([i for i, ok in enumerate(readable) if ok])


def select_image_split(dataset, split, max_samples, needed_for, image_column, check_images, shuffle_seed=None,
                       image_flag="--image_column_name", num_proc=None, main_process_first=None):
    """``select_split``, then (``check_images``) without the split's unreadable images.

    ``main_process_first``: ``TrainingArguments.main_process_first``; the main process checks, the others then
    read the check's cache."""
    data = select_split(dataset, split, max_samples, needed_for, shuffle_seed)
    if not check_images:
        return data
    with main_process_first(desc="checking images") if main_process_first else contextlib.nullcontext():
        return drop_unreadable_images(data, image_column, split, image_flag, num_proc)


def _has_files(directory):
    return any(os.path.isfile(path) for path in glob.iglob(os.path.join(directory, "**", "*"), recursive=True))


def _check_class_folders(train_dir, validation_dir):
    """The validation folder's classes (sub-folders) must be among the training folder's."""
    def classes(directory):
        return {entry.name for entry in os.scandir(directory) if entry.is_dir()}

    unknown = sorted(classes(validation_dir) - classes(train_dir))
    if unknown:
        raise UserInputError(f"--validation_dir: classes {unknown} have no training sub-folder in --train_dir "
                             f"(training classes: {sorted(classes(train_dir))}).")


@dataclass
class ImageDataArguments(SampleLimits):
    """What to train and evaluate on (the flags of ``run_image_classification.py`` in transformers)."""

    RESUMABLE: ClassVar[tuple] = ("validation_dir", "check_images", "preprocessing_num_workers")

    dataset_name: str | None = field(default=None, metadata={"help": "A dataset on the Hub."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "The Hub dataset's configuration."})
    train_dir: str | None = field(default=None, metadata={"help": "An image folder: one sub-folder per class."})
    validation_dir: str | None = field(default=None, metadata={"help": "An image folder for validation."})
    train_val_split: float = field(
        default=0.15, metadata={"help": "Fraction of train held out for validation when there is no validation split."}
    )
    image_column_name: str = field(default="image", metadata={"help": "Column holding the images."})
    label_column_name: str = field(default="label", metadata={"help": "Column holding the labels."})
    augmentation: str = field(
        default="random_resized_crop",
        metadata={"help": "Training augmentation: 'random_resized_crop' (the HF example's: RandomResizedCrop and "
                  "horizontal flips), 'simple_random_crop' (DeiT-III's: resize, random crop with 4 px reflected, "
                  "flips), 'shift' (random shifts by up to 1/16 of the size: digits, small images) or 'none'.",
                  "choices": list(CROPS)},
    )
    check_images: bool = field(
        default=True,
        metadata={"help": "Decode every image once before training and skip unreadable (corrupt, truncated) ones "
                  "with a warning and a count; the result is cached with the dataset. False: no check; an "
                  "unreadable image then stops training."},
    )
    preprocessing_num_workers: int | None = field(
        default=None, metadata={"help": "Processes for the image check (default: one)."}
    )

    def __post_init__(self):
        if self.dataset_name is None and self.train_dir is None and self.validation_dir is None:
            raise UserInputError("give --dataset_name (Hub) or --train_dir / --validation_dir (image folders).")
        check_path("--train_dir", self.train_dir, directory=True)
        check_path("--validation_dir", self.validation_dir, directory=True)
        for flag, directory in (("--train_dir", self.train_dir), ("--validation_dir", self.validation_dir)):
            if directory is not None and not _has_files(directory):
                raise UserInputError(f"{flag}: no files in {directory}.")
        if self.train_dir is not None and self.validation_dir is not None:
            _check_class_folders(self.train_dir, self.validation_dir)
        if not 0 <= self.train_val_split < 1:
            raise UserInputError(f"--train_val_split must be in [0, 1), got {self.train_val_split}.")


def load_image_dataset(data_args, cache_dir=None, token=None, seed=42) -> DatasetDict:
    """``train`` and ``validation`` splits with a ``ClassLabel`` label column."""
    if data_args.dataset_name is not None:
        dataset = load_dataset(data_args.dataset_name, data_args.dataset_config_name, cache_dir=cache_dir, token=token)
    else:
        data_files = {}
        if data_args.train_dir is not None:
            data_files["train"] = os.path.join(data_args.train_dir, "**")
        if data_args.validation_dir is not None:
            data_files["validation"] = os.path.join(data_args.validation_dir, "**")
        # Labels from the class sub-folders always: datasets drops them when the two folders sit at different depths.
        dataset = load_dataset("imagefolder", data_files=data_files, drop_labels=False, cache_dir=cache_dir)
    data_flag = "--dataset_name" if data_args.dataset_name is not None else "--train_dir / --validation_dir"
    check_columns(dataset, [("--image_column_name", data_args.image_column_name),
                            ("--label_column_name", data_args.label_column_name)], data_flag)
    if "validation" not in dataset and "train" in dataset and data_args.train_val_split > 0:
        split = dataset["train"].train_test_split(data_args.train_val_split, seed=seed)
        dataset["train"], dataset["validation"] = split["train"], split["test"]
    if not isinstance(next(iter(dataset.values())).features[data_args.label_column_name], ClassLabel):
        dataset = dataset.class_encode_column(data_args.label_column_name)
    classes = next(iter(dataset.values())).features[data_args.label_column_name].names
    if len(classes) < 2:
        raise UserInputError(f"{data_flag}: one class only ({classes}); a classifier needs two or more "
                             "(in a folder: one sub-folder per class).")
    return dataset


@dataclass
class TextDataArguments(SampleLimits, PredictionFile):
    """What to train and evaluate on (the flags of ``run_glue.py`` in transformers)."""

    RESUMABLE: ClassVar[tuple] = ("validation_file",)

    task_name: str | None = field(
        default=None, metadata={"help": "A GLUE task: " + ", ".join(GLUE_TASK_KEYS) + " (data from the Hub)."}
    )
    dataset_name: str | None = field(default=None, metadata={"help": "A dataset on the Hub."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "The Hub dataset's configuration."})
    max_seq_length: int = field(default=128, metadata={"help": "Longer inputs are truncated, shorter padded."})
    overwrite_cache: bool = field(default=False, metadata={"help": "Recompute the tokenized datasets."})
    pad_to_max_length: bool = field(
        default=True, metadata={"help": "Pad every sample to max_seq_length (False: pad each batch dynamically)."}
    )
    train_file: str | None = field(default=None, metadata={"help": "A csv or json file with the training data."})
    validation_file: str | None = field(default=None,
                                            metadata={"help": "A csv or json file with validation data."})

    def __post_init__(self):
        if self.task_name is not None:
            self.task_name = self.task_name.lower()
            if self.task_name not in GLUE_TASK_KEYS:
                raise UserInputError(f"--task_name: unknown task {self.task_name!r}; pick one of {list(GLUE_TASK_KEYS)}.")
        elif self.dataset_name is None:
            if self.train_file is None or self.validation_file is None:
                raise UserInputError("give --task_name, --dataset_name, or --train_file and --validation_file.")
            check_data_files((("--train_file", self.train_file), ("--validation_file", self.validation_file),
                              ("--test_file", self.test_file)))
        if self.max_seq_length <= 0:
            raise UserInputError(f"--max_seq_length must be positive, got {self.max_seq_length}.")


def load_text_dataset(data_args, do_predict=False, cache_dir=None, token=None) -> DatasetDict:
    if data_args.task_name is not None:
        return load_dataset("nyu-mll/glue", data_args.task_name, cache_dir=cache_dir, token=token)
    if data_args.dataset_name is not None:
        return load_dataset(data_args.dataset_name, data_args.dataset_config_name, cache_dir=cache_dir, token=token)
    data_files = {"train": data_args.train_file, "validation": data_args.validation_file,
                  **data_args.prediction_files(do_predict)}
    dataset = load_data_files(data_files, cache_dir)
    check_columns(DatasetDict({k: v for k, v in dataset.items() if k != "test"}), [("the label column", "label")],
                  "--train_file / --validation_file")
    return dataset


def sentence_keys(dataset, task_name=None):
    """The text columns, inferred as transformers' ``run_glue.py`` does."""
    if task_name is not None:
        return GLUE_TASK_KEYS[task_name]
    columns = [name for name in dataset["train"].column_names if name != "label"]
    if "sentence1" in columns and "sentence2" in columns:
        return "sentence1", "sentence2"
    if "sentence" in columns:
        return "sentence", None
    if not columns:
        raise UserInputError("--train_file: no text column besides 'label'.")
    return columns[0], (columns[1] if len(columns) > 1 else None)


def label_kind(dataset):
    """``"regression"`` (float labels), ``"multi_label"`` (a list of labels per row) or ``"single_label"``."""
    feature = dataset["train"].features["label"]
    if isinstance(feature, Sequence) or isinstance(feature, list):
        return "multi_label"
    if getattr(feature, "dtype", None) in ("float32", "float64"):
        return "regression"
    return "single_label"
