"""Fine-tune or train a seq2seq language model (BART, T5, mBART, Marian, Pegasus, ...) with MaskSub: transformers'
``run_summarization.py`` plus ``--masksub_ratio`` (default 0.15, as for text; 0 = plain ``Seq2SeqTrainer``).

    python run_seq2seq.py --model_name_or_path ./my-t5 --train_file train.csv --validation_file val.csv \\
        --text_column document --summary_column summary --source_prefix "summarize: " \\
        --output_dir out --do_train --do_eval --predict_with_generate
    python run_seq2seq.py --config_name ./t5-config --tokenizer_name ./tokenizer ...   # from scratch
    accelerate launch run_seq2seq.py ...    # same flags, any Accelerate set-up
    masksub-hf seq2seq ...                  # installed with pip: the same script

Files: csv or json(l) with a source and a target column (``--text_column`` / ``--summary_column``; default: the
first two columns). The trainer is ``MaskSubSeq2SeqTrainer``: the sub branch sees each source with ``ratio`` of
its tokens masked (``[MASK]`` where the tokenizer has a mask token; else hidden from attention, positions kept)
and the decoder teacher-forced on the same target, and learns the main branch's distribution at every target
token. Evaluation reports the loss, the teacher-forced token accuracy and, with ``--predict_with_generate``,
ROUGE-1/2/L (F1 over lower-cased words, computed here: no download) and the generated length.
"""

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from datasets import load_dataset
from transformers import AutoModelForSeq2SeqLM, DataCollatorForSeq2Seq

from masksub_hf import MaskSubSeq2SeqTrainer, MaskSubSeq2SeqTrainingArguments
from masksub_hf.scripts.arguments import TEXT_DEFAULTS, LanguageModelArguments, SampleLimits
from masksub_hf.scripts.cli import card_data, script_main, text_trainer, tokenizer_and_model, train_evaluate_and_publish
from masksub_hf.scripts.errors import UserInputError
from masksub_hf.scripts.loading import check_data_files, select_split

logger = logging.getLogger("masksub_hf")


@dataclass
class Seq2SeqDataArguments(SampleLimits):
    """What to train and evaluate on (the flags of ``run_summarization.py`` in transformers)."""

    RESUMABLE: ClassVar[tuple] = ("validation_file", "preprocessing_num_workers", "val_max_target_length",
                                  "num_beams")

    dataset_name: str | None = field(default=None, metadata={"help": "A dataset on the Hub (or a local folder)."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "The Hub dataset's configuration."})
    text_column: str | None = field(default=None, metadata={"help": "The source column (default: the first)."})
    summary_column: str | None = field(default=None, metadata={"help": "The target column (default: the second)."})
    train_file: str | None = field(default=None, metadata={"help": "A csv or json file to train on."})
    validation_file: str | None = field(default=None, metadata={"help": "A csv or json file to evaluate on."})
    max_source_length: int = field(default=1024, metadata={"help": "Source tokens kept (longer ones truncated)."})
    max_target_length: int = field(default=128, metadata={"help": "Target tokens kept in training."})
    val_max_target_length: int | None = field(
        default=None, metadata={"help": "Target tokens kept in evaluation, and the generated length "
                                        "(default: --max_target_length)."})
    pad_to_max_length: bool = field(default=False, metadata={"help": "Pad every row to the maximum lengths."})
    ignore_pad_token_for_loss: bool = field(
        default=True, metadata={"help": "Leave the target's padding out of the loss (label -100)."})
    source_prefix: str = field(default="", metadata={"help": "Put before every source (T5: 'summarize: ')."})
    num_beams: int | None = field(default=None, metadata={"help": "Beams for evaluation's generate."})
    overwrite_cache: bool = field(default=False, metadata={"help": "Recompute the tokenized datasets."})
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for preprocessing."})

    def __post_init__(self):
        if self.dataset_name is None and self.train_file is None and self.validation_file is None:
            raise UserInputError("give --dataset_name, --train_file or --validation_file.")
        check_data_files((("--train_file", self.train_file), ("--validation_file", self.validation_file)),
                         extensions=("csv", "json", "jsonl"))
        for flag in ("max_source_length", "max_target_length", "val_max_target_length"):
            value = getattr(self, flag)
            if value is not None and value <= 0:
                raise UserInputError(f"--{flag} must be positive, got {value}.")
        if self.val_max_target_length is None:
            self.val_max_target_length = self.max_target_length


def load_pairs(data_args, cache_dir=None, token=None):
    if data_args.dataset_name is not None:
        return load_dataset(data_args.dataset_name, data_args.dataset_config_name, cache_dir=cache_dir, token=token)
    files = {name: path for name, path in (("train", data_args.train_file), ("validation", data_args.validation_file))
             if path is not None}
    builder = "csv" if next(iter(files.values())).endswith(".csv") else "json"
    return load_dataset(builder, data_files=files, cache_dir=cache_dir)


def columns(dataset, data_args):
    """``(source, target)``: the columns named by the flags, else the first two."""
    names = next(iter(dataset.values())).column_names
    chosen = (data_args.text_column or names[0], data_args.summary_column or (names[1] if len(names) > 1 else None))
    for flag, name in zip(("--text_column", "--summary_column"), chosen):
        if name not in names:
            raise UserInputError(f"{flag} {name!r} is not a column of the data ({', '.join(names)}).")
    return chosen


def tokenized(dataset, tokenizer, data_args, training_args):
    """Sources (with ``--source_prefix``) and targets tokenized; the targets' ids are the labels (padding -100)."""
    source, target = columns(dataset, data_args)
    padding = "max_length" if data_args.pad_to_max_length else False

    def encode(batch, max_target_length):
        inputs = tokenizer([data_args.source_prefix + (text or "") for text in batch[source]],
                           max_length=data_args.max_source_length, padding=padding, truncation=True)
        labels = tokenizer(text_target=[text or "" for text in batch[target]], max_length=max_target_length,
                           padding=padding, truncation=True)["input_ids"]
        if padding and data_args.ignore_pad_token_for_loss:
            labels = [[(t if t != tokenizer.pad_token_id else -100) for t in row] for row in labels]
        return {**inputs, "labels": labels}

    options = dict(batched=True, num_proc=data_args.preprocessing_num_workers,
                   load_from_cache_file=not data_args.overwrite_cache)
    with training_args.main_process_first(desc="tokenizing"):
        return {name: split.map(encode, remove_columns=split.column_names,
                                fn_kwargs={"max_target_length": data_args.max_target_length if name == "train"
                                           else data_args.val_max_target_length}, **options)
                for name, split in dataset.items()}


ARGUMENT_TYPES = (LanguageModelArguments, Seq2SeqDataArguments, MaskSubSeq2SeqTrainingArguments)


@script_main(ARGUMENT_TYPES, TEXT_DEFAULTS)
def main(model_args, data_args, training_args):
    """The script: ``main(args=None)`` parses ``args`` (default: the command line) into these."""
    dataset = load_pairs(data_args, model_args.cache_dir, model_args.token)
    tokenizer, model = tokenizer_and_model(AutoModelForSeq2SeqLM, model_args)
    if model.config.decoder_start_token_id is None:
        raise UserInputError("--model_name_or_path / --config_name: the config has no decoder_start_token_id: the "
                             "decoder cannot be teacher-forced.")
    # evaluation generates as run_summarization.py does: up to --val_max_target_length tokens, --num_beams beams
    training_args.generation_max_length = training_args.generation_max_length or data_args.val_max_target_length
    training_args.generation_num_beams = data_args.num_beams or training_args.generation_num_beams
    dataset = tokenized(dataset, tokenizer, data_args, training_args)

    train_dataset = select_split(dataset, "train", data_args.max_train_samples, "--do_train") \
        if training_args.do_train else None
    eval_datasets = {}
    if training_args.do_eval:
        eval_datasets[""] = select_split(dataset, "validation", data_args.max_eval_samples, "--do_eval")
    collator = DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100
                                      if data_args.ignore_pad_token_for_loss else tokenizer.pad_token_id)
    if training_args.predict_with_generate:
        metrics = {"compute_metrics": GeneratedText(tokenizer)}
    else:
        metrics = {"compute_metrics": target_token_accuracy, "preprocess_logits_for_metrics": predicted_tokens}
    trainer = text_trainer(model, training_args, tokenizer, collator, train_dataset, eval_datasets.get(""),
                           trainer_class=MaskSubSeq2SeqTrainer, **metrics)
    card = {"finetuned_from": model_args.model_name_or_path, "tasks": "text2text-generation",
            "tags": ["text2text-generation"], "config_name": model_args.scratch_config(),
            **card_data(data_args.dataset_name, data_args.train_file, data_args.validation_file)}
    train_evaluate_and_publish(trainer, training_args, train_dataset, eval_datasets, card,
                               arguments=(model_args, data_args, training_args))


def predicted_tokens(logits, labels):
    """Each target position's most likely token (kept instead of the vocabulary-sized logits)."""
    return (logits[0] if isinstance(logits, tuple) else logits).argmax(dim=-1)


def target_token_accuracy(prediction):
    """The share of labelled target tokens the teacher-forced decoder predicts right."""
    supervised = prediction.label_ids != -100
    return {"accuracy": float((prediction.predictions == prediction.label_ids)[supervised].mean())}


def ngrams(words, n):
    return Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))


def f1(overlap, predicted, reference):
    return 0.0 if overlap == 0 else 2 * overlap / (predicted + reference)


def longest_common_subsequence(a, b):
    row = [0] * (len(b) + 1)
    for x in a:
        diagonal, row[0] = 0, 0
        for j, y in enumerate(b, 1):
            diagonal, row[j] = row[j], diagonal + 1 if x == y else max(row[j], row[j - 1])
    return row[-1]


def rouge(predicted, reference):
    """ROUGE-1, ROUGE-2 and ROUGE-L F1 of one text against one reference, over lower-cased words."""
    p, r = predicted.lower().split(), reference.lower().split()
    scores = {}
    for n in (1, 2):
        overlap = sum((ngrams(p, n) & ngrams(r, n)).values())
        scores[f"rouge{n}"] = f1(overlap, max(len(p) - n + 1, 0), max(len(r) - n + 1, 0))
    scores["rougeL"] = f1(longest_common_subsequence(p, r), len(p), len(r))
    return scores


class GeneratedText:
    """``--predict_with_generate``'s metrics: mean ROUGE (x 100) of the generated texts, and their token length."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def __call__(self, prediction):
        pad = self.tokenizer.pad_token_id
        generated = np.where(prediction.predictions != -100, prediction.predictions, pad)
        labels = np.where(prediction.label_ids != -100, prediction.label_ids, pad)
        texts = self.tokenizer.batch_decode(generated, skip_special_tokens=True)
        references = self.tokenizer.batch_decode(labels, skip_special_tokens=True)
        scores = [rouge(text, reference) for text, reference in zip(texts, references)]
        metrics = {name: 100 * float(np.mean([score[name] for score in scores])) for name in scores[0]}
        metrics["gen_len"] = float(np.mean((generated != pad).sum(axis=1)))
        return metrics
