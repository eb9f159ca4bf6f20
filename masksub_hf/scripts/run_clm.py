"""Train or fine-tune a causal language model with MaskSub: transformers' ``run_clm.py`` plus ``--masksub_ratio``
(default 0.15, as for text; 0 = plain ``Trainer`` baseline).

    python run_clm.py --model_name_or_path ./my-llama --train_file train.txt --validation_file val.txt \\
        --block_size 512 --output_dir out --do_train --do_eval
    python run_clm.py --config_name ./llama-config --tokenizer_name ./tokenizer --train_file train.txt ...  # scratch
    accelerate launch run_clm.py ...      # same flags, any Accelerate set-up
    masksub-hf causal-lm ...              # installed with pip: the same script

Files: text (one document a line), csv or json with a ``text`` column (else the first column). As transformers'
script does, the texts are tokenized, concatenated and cut into blocks of ``--block_size`` tokens, each token
supervised; without ``--validation_file``, ``--validation_split_percentage`` of the training data is held out.
The sub branch sees each block with ``ratio`` of its tokens removed, positions kept (token drop: decoders'
tokenizers have no mask token; with one, ``[MASK]``), and learns the main branch's next-token distribution at
every position. Evaluation reports the loss, the perplexity and the next-token accuracy.
"""

import logging
import math
from dataclasses import dataclass, field
from itertools import chain
from typing import ClassVar

from datasets import DatasetDict, load_dataset
from transformers import AutoModelForCausalLM, default_data_collator

from masksub_hf import MaskSubTrainingArguments
from masksub_hf.scripts.arguments import TEXT_DEFAULTS, LanguageModelArguments, SampleLimits
from masksub_hf.scripts.cli import card_data, script_main, text_trainer, tokenizer_and_model, train_evaluate_and_publish
from masksub_hf.scripts.errors import UserInputError
from masksub_hf.scripts.loading import check_data_files, select_split

logger = logging.getLogger("masksub_hf")


@dataclass
class LanguageModelingDataArguments(SampleLimits):
    """What to train and evaluate on (the flags of ``run_clm.py`` in transformers)."""

    RESUMABLE: ClassVar[tuple] = ("validation_file", "preprocessing_num_workers")

    dataset_name: str | None = field(default=None, metadata={"help": "A dataset on the Hub (or a local folder)."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "The Hub dataset's configuration."})
    train_file: str | None = field(default=None, metadata={"help": "A text, csv or json file to train on."})
    validation_file: str | None = field(default=None, metadata={"help": "A text, csv or json file to evaluate on."})
    validation_split_percentage: int = field(
        default=5, metadata={"help": "Without a validation split: the percentage of the training data held out."})
    block_size: int | None = field(
        default=None, metadata={"help": "Tokens per training block (default: the tokenizer's maximum, at most 1024)."})
    keep_linebreaks: bool = field(default=True, metadata={"help": "Keep line breaks in text files."})
    overwrite_cache: bool = field(default=False, metadata={"help": "Recompute the tokenized datasets."})
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for preprocessing."})

    def __post_init__(self):
        if self.dataset_name is None and self.train_file is None:
            raise UserInputError("give --dataset_name or --train_file.")
        check_data_files((("--train_file", self.train_file), ("--validation_file", self.validation_file)),
                         extensions=("txt", "csv", "json", "jsonl"))
        if self.block_size is not None and self.block_size <= 0:
            raise UserInputError(f"--block_size must be positive, got {self.block_size}.")
        if not 0 < self.validation_split_percentage < 100:
            raise UserInputError(f"--validation_split_percentage must be in (0, 100), got "
                                 f"{self.validation_split_percentage}.")


def load_texts(data_args, cache_dir=None, token=None):
    """The raw texts: ``train`` and ``validation`` splits (held out from train when there is none)."""
    if data_args.dataset_name is not None:
        dataset = load_dataset(data_args.dataset_name, data_args.dataset_config_name, cache_dir=cache_dir, token=token)
    else:
        files = {"train": data_args.train_file}
        if data_args.validation_file is not None:
            files["validation"] = data_args.validation_file
        extension = data_args.train_file.rsplit(".", 1)[-1]
        builder = {"txt": "text", "csv": "csv"}.get(extension, "json")
        options = {"keep_linebreaks": data_args.keep_linebreaks} if builder == "text" else {}
        dataset = load_dataset(builder, data_files=files, cache_dir=cache_dir, **options)
    if "validation" not in dataset:
        held_out = dataset["train"].train_test_split(test_size=data_args.validation_split_percentage / 100, seed=0)
        dataset = DatasetDict(train=held_out["train"], validation=held_out["test"])
    return dataset


def lm_blocks(dataset, tokenizer, block_size, data_args, training_args):
    """Tokenized, concatenated and cut into ``block_size`` tokens (the remainder dropped), labels = input ids."""
    column = "text" if "text" in dataset["train"].column_names else dataset["train"].column_names[0]

    def tokenize(batch):
        return tokenizer(batch[column])

    def group(batch):
        joined = {key: list(chain(*batch[key])) for key in batch}
        length = len(joined["input_ids"]) // block_size * block_size
        blocks = {key: [values[i:i + block_size] for i in range(0, length, block_size)]
                  for key, values in joined.items()}
        blocks["labels"] = [list(block) for block in blocks["input_ids"]]
        return blocks

    options = dict(batched=True, num_proc=data_args.preprocessing_num_workers,
                   load_from_cache_file=not data_args.overwrite_cache)
    with training_args.main_process_first(desc="tokenizing and grouping"):
        dataset = dataset.map(tokenize, remove_columns=dataset["train"].column_names, **options)
        return dataset.map(group, **options)


ARGUMENT_TYPES = (LanguageModelArguments, LanguageModelingDataArguments, MaskSubTrainingArguments)


@script_main(ARGUMENT_TYPES, TEXT_DEFAULTS)
def main(model_args, data_args, training_args):
    """The script: ``main(args=None)`` parses ``args`` (default: the command line) into these."""
    dataset = load_texts(data_args, model_args.cache_dir, model_args.token)
    tokenizer, model = tokenizer_and_model(AutoModelForCausalLM, model_args)
    block_size = data_args.block_size or min(tokenizer.model_max_length, 1024)
    if block_size > tokenizer.model_max_length:
        logger.warning(f"--block_size {block_size} exceeds the model's {tokenizer.model_max_length}.")
    dataset = lm_blocks(dataset, tokenizer, block_size, data_args, training_args)

    train_dataset = select_split(dataset, "train", data_args.max_train_samples, "--do_train") \
        if training_args.do_train else None
    eval_datasets = {}
    if training_args.do_eval:
        eval_datasets[""] = select_split(dataset, "validation", data_args.max_eval_samples, "--do_eval")
    for name, split in [("train", train_dataset), *(("validation", d) for d in eval_datasets.values())]:
        if split is not None and len(split) == 0:
            raise UserInputError(f"the {name} texts hold fewer than --block_size {block_size} tokens: no block.")

    trainer = text_trainer(model, training_args, tokenizer, default_data_collator, train_dataset,
                           eval_datasets.get(""), compute_metrics=next_token_accuracy,
                           preprocess_logits_for_metrics=predicted_tokens)
    card = {"finetuned_from": model_args.model_name_or_path, "tasks": "text-generation", "tags": ["text-generation"],
            "config_name": model_args.scratch_config(),
            **card_data(data_args.dataset_name, data_args.train_file, data_args.validation_file)}
    train_evaluate_and_publish(trainer, training_args, train_dataset, eval_datasets, card,
                               extra_eval_metrics=perplexity, arguments=(model_args, data_args, training_args))


def predicted_tokens(logits, labels):
    """Each position's most likely next token (kept instead of the vocabulary-sized logits)."""
    return (logits[0] if isinstance(logits, tuple) else logits).argmax(dim=-1)


def next_token_accuracy(prediction):
    """The share of supervised next tokens predicted right (position p predicts the label at p + 1)."""
    predicted, labels = prediction.predictions[:, :-1], prediction.label_ids[:, 1:]
    supervised = labels != -100
    return {"accuracy": float((predicted == labels)[supervised].mean())}


def perplexity(metrics):
    """``perplexity = exp(eval_loss)``, as transformers' script reports it."""
    try:
        return {"perplexity": math.exp(metrics["eval_loss"])}
    except OverflowError:
        return {"perplexity": float("inf")}
