"""Fine-tune a token classifier (NER, POS) with MaskSub: transformers' ``run_ner.py`` plus ``--masksub_ratio``
(default 0.15; 0 = plain ``Trainer`` baseline).

    python run_ner.py --model_name_or_path bert-base-cased --train_file train.json --validation_file dev.json \\
        --output_dir out --do_train --do_eval
    accelerate launch run_ner.py ...      # same flags, any Accelerate set-up
    masksub-hf token-classification ...      # installed with pip: the same script

Files: json (one object a line) or csv with a column of words (``tokens``, ``--text_column_name``) and one of
tags per word (``ner_tags``, ``--label_column_name``; strings such as ``B-PER`` or class ids). Each word's first
sub-token carries its tag (all of them with ``--label_all_tokens``); the sub branch hides ``ratio`` of the real
tokens (``[MASK]``, or removed for tokenizers without a mask token) and learns the main branch's prediction
at every tagged token (``masksub_hf/objectives/token_classification.py``). Metrics: entity-level precision / recall / F1
and token accuracy (conlleval's chunking, shipped offline).
"""

import ast
import logging
import os
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from datasets import ClassLabel, DatasetDict
from transformers import (
    AutoConfig,
    AutoModelForTokenClassification,
    AutoTokenizer,
    DataCollatorForTokenClassification,
)

from masksub_hf import MaskSubTrainingArguments
from masksub_hf.scripts.arguments import TEXT_DEFAULTS, PredictionFile, SampleLimits, TokenizerArguments
from masksub_hf.scripts.cli import build_model, card_data, script_main, text_trainer, train_evaluate_and_publish
from masksub_hf.scripts.errors import UserInputError, model_errors
from masksub_hf.scripts.loading import check_columns, check_data_files, load_data_files, select_split
from masksub_hf.scripts.metrics import load_metric

logger = logging.getLogger("masksub_hf")
PREFIX_SPACE_MODELS = {"bloom", "gpt2", "roberta", "deberta"}  # BPE tokenizers that need it for split words


@dataclass
class NerDataArguments(SampleLimits, PredictionFile):
    """What to train and evaluate on (the flags of ``run_ner.py`` in transformers)."""

    RESUMABLE: ClassVar[tuple] = ("validation_file",)

    train_file: str | None = field(default=None, metadata={"help": "A json or csv file with the training data."})
    validation_file: str | None = field(default=None,
                                            metadata={"help": "A json or csv file with validation data."})
    text_column_name: str = field(default="tokens", metadata={"help": "The column with each sample's words."})
    label_column_name: str = field(default="ner_tags", metadata={"help": "The column with each word's tag."})
    max_seq_length: int = field(default=128, metadata={"help": "Longer inputs are truncated."})
    pad_to_max_length: bool = field(
        default=False, metadata={"help": "Pad every sample to max_seq_length (False: pad each batch dynamically)."}
    )
    label_all_tokens: bool = field(
        default=False, metadata={"help": "Tag every sub-token of a word (B- becomes I- after the first), not only "
                                         "the first; the others are left out (-100) by default."}
    )
    return_entity_level_metrics: bool = field(
        default=False, metadata={"help": "Report precision / recall / F1 of each entity type, not only overall."}
    )
    overwrite_cache: bool = field(default=False, metadata={"help": "Recompute the tokenized datasets."})

    def __post_init__(self):
        if self.train_file is None:  # as transformers' run_ner.py, the training tags are what the model learns
            raise UserInputError("give --train_file (and --validation_file to evaluate).")
        check_data_files((("--train_file", self.train_file), ("--validation_file", self.validation_file),
                          ("--test_file", self.test_file)))
        if self.max_seq_length <= 0:
            raise UserInputError(f"--max_seq_length must be positive, got {self.max_seq_length}.")


ARGUMENT_TYPES = (TokenizerArguments, NerDataArguments, MaskSubTrainingArguments)


def parse_list_columns(dataset, columns):
    """csv holds each sample's words and tags as text (``['EU', 'rejects']``, as pandas writes lists, or JSON):
    those columns become lists; a value that is not a list is refused naming its column, split and row."""
    def parse(value, flag, column, split, row):
        try:
            parsed = ast.literal_eval(value) if isinstance(value, str) else value
        except (ValueError, SyntaxError):
            parsed = None
        if not isinstance(parsed, (list, tuple)):
            raise UserInputError(f"{flag}: column {column!r} of the {split} data, row {row}: expected a list such as "
                                 f"['EU', 'rejects'], got {str(value)[:60]!r}.")
        return list(parsed)

    for split in dataset:
        for flag, column in columns:
            feature = dataset[split].features.get(column)
            if getattr(feature, "dtype", None) in ("string", "large_string"):
                dataset[split] = dataset[split].map(
                    lambda sample, row, flag=flag, column=column, split=split: {
                        column: parse(sample[column], flag, column, split, row)}, with_indices=True)
    return dataset


def label_list_of(dataset, column):
    """``(tag names, whether the data holds class ids)``: a ``ClassLabel``'s names, else the sorted tags found in
    the training data."""
    inner = getattr(dataset["train"].features[column], "feature", None)
    if isinstance(inner, ClassLabel):
        return inner.names, True
    return sorted({tag for row in dataset["train"][column] for tag in row}, key=str), False


@script_main(ARGUMENT_TYPES, TEXT_DEFAULTS)
def main(model_args, data_args, training_args):
    """The script: ``main(args=None)`` parses ``args`` (default: the command line) into these."""
    files = {split: path for split, path in (("train", data_args.train_file), ("validation", data_args.validation_file))
             if path is not None}
    files.update(data_args.prediction_files(training_args.do_predict))
    dataset = load_data_files(files, model_args.cache_dir)
    columns = [("--text_column_name", data_args.text_column_name), ("--label_column_name", data_args.label_column_name)]
    check_columns(DatasetDict({k: v for k, v in dataset.items() if k != "test"}), columns,
                  "--train_file / --validation_file")  # a prediction file may have the words only
    check_columns(dataset, columns[:1], "--train_file / --validation_file / --test_file")
    dataset = parse_list_columns(dataset, columns)
    test_words = dataset["test"][data_args.text_column_name] if "test" in dataset else None
    label_list, tags_are_ids = label_list_of(dataset, data_args.label_column_name)
    label_to_id = {str(label): i for i, label in enumerate(label_list)}
    tag_id = (lambda tag: tag) if tags_are_ids else (lambda tag: _tag_id(tag, label_to_id))
    # B-X -> I-X for the later sub-tokens of a word under --label_all_tokens (as transformers' run_ner.py).
    b_to_i = [label_to_id.get("I-" + str(label)[2:], i) if str(label).startswith("B-") else i
              for i, label in enumerate(label_list)]

    with model_errors():
        config = AutoConfig.from_pretrained(model_args.config_name or model_args.model_name_or_path,
                                            num_labels=len(label_list), **model_args.hub_kwargs())
        prefix_space = {"add_prefix_space": True} if config.model_type in PREFIX_SPACE_MODELS else {}
        tokenizer = AutoTokenizer.from_pretrained(model_args.tokenizer_name or model_args.model_name_or_path
                                                  or model_args.config_name,
                                                  **prefix_space, **model_args.hub_kwargs())
        model = build_model(AutoModelForTokenClassification, model_args, config)
    if not getattr(tokenizer, "is_fast", False):
        raise UserInputError("--model_name_or_path / --tokenizer_name: run_ner.py needs a fast tokenizer "
                             "(it maps sub-tokens to words).")
    model.config.label2id = label_to_id
    model.config.id2label = dict(enumerate(str(label) for label in label_list))
    padding = "max_length" if data_args.pad_to_max_length else False

    def tokenize_and_align(batch):
        encoded = tokenizer(batch[data_args.text_column_name], padding=padding, truncation=True,
                            max_length=data_args.max_seq_length, is_split_into_words=True)
        if data_args.label_column_name not in batch:  # a prediction file: words only
            return encoded
        labels = []
        for row, tags in enumerate(batch[data_args.label_column_name]):
            ids, previous = [], None
            for word in encoded.word_ids(batch_index=row):
                if word is None:
                    ids.append(-100)
                elif word != previous:
                    ids.append(tag_id(tags[word]))
                else:
                    ids.append(b_to_i[tag_id(tags[word])] if data_args.label_all_tokens else -100)
                previous = word
            labels.append(ids)
        encoded["labels"] = labels
        return encoded

    with training_args.main_process_first(desc="tokenizing"):
        dataset = DatasetDict({name: split.map(tokenize_and_align, batched=True, remove_columns=split.column_names,
                                               load_from_cache_file=not data_args.overwrite_cache)
                               for name, split in dataset.items()})
    train_dataset = select_split(dataset, "train", data_args.max_train_samples, "--do_train") \
        if training_args.do_train else None
    eval_datasets = {"": select_split(dataset, "validation", data_args.max_eval_samples, "--do_eval (--validation_file)")} \
        if training_args.do_eval else {}

    metric = load_metric("seqeval")

    def tag_sequences(predictions, label_ids):
        """Predicted and true tags at the tagged positions (-100 left out), one list per sample."""
        predicted = np.argmax(predictions, axis=2)
        pairs = [[(label_list[p], label_list[t]) for p, t in zip(row_p, row_t) if t != -100]
                 for row_p, row_t in zip(predicted, label_ids)]
        return [[str(p) for p, _ in row] for row in pairs], [[str(t) for _, t in row] for row in pairs]

    def compute_metrics(prediction):
        predictions, references = tag_sequences(prediction.predictions, prediction.label_ids)
        result = metric.compute(predictions=predictions, references=references)
        overall = {name[len("overall_"):]: value for name, value in result.items() if name.startswith("overall_")}
        if data_args.return_entity_level_metrics:
            for entity, scores in result.items():
                if isinstance(scores, dict):
                    overall.update({f"{entity}_{name}": value for name, value in scores.items()})
        return overall

    base_collator = DataCollatorForTokenClassification(tokenizer, pad_to_multiple_of=8 if training_args.fp16 else None)
    trainer = text_trainer(model, training_args, tokenizer, base_collator, train_dataset, eval_datasets.get(""),
                           compute_metrics)

    card = {"finetuned_from": model_args.model_name_or_path, "tasks": "token-classification",
            "tags": ["token-classification"], "config_name": model_args.scratch_config(),
            **card_data(None, data_args.train_file, data_args.validation_file)}
    train_evaluate_and_publish(trainer, training_args, train_dataset, eval_datasets, card,
                               arguments=(model_args, data_args, training_args))

    if training_args.do_predict:
        data = select_split(dataset, "test", data_args.max_predict_samples, "--do_predict")
        output = trainer.predict(data, metric_key_prefix="predict")
        if output.label_ids is not None:  # gold tags: their metrics too
            predictions, _ = tag_sequences(output.predictions, output.label_ids)
            trainer.log_metrics("predict", output.metrics)
            trainer.save_metrics("predict", output.metrics)
        else:  # a prediction file: the tag of each word's first sub-token
            predicted = np.argmax(output.predictions, axis=2)
            predictions = []
            for row, words in enumerate(test_words[:len(data)]):
                word_ids = tokenizer(words, truncation=True, max_length=data_args.max_seq_length,
                                     is_split_into_words=True).word_ids()
                starts = [j for j, word in enumerate(word_ids) if word is not None and word != (word_ids[j - 1] if j else None)]
                predictions.append([str(label_list[predicted[row, j]]) for j in starts])
        if trainer.is_world_process_zero():
            path = os.path.join(training_args.output_dir, "predictions.txt")
            with open(path, "w") as writer:
                writer.writelines(" ".join(row) + "\n" for row in predictions)
            logger.info(f"Predictions written to {path}")


def _tag_id(tag, label_to_id):
    if str(tag) not in label_to_id:
        raise UserInputError(f"--validation_file / --test_file: tag {tag!r} is not among the training tags "
                             f"{sorted(label_to_id)}.")
    return label_to_id[str(tag)]


if __name__ == "__main__":
    main()
