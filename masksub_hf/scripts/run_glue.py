"""Fine-tune a text classifier (GLUE or your csv/json) with MaskSub: transformers' ``run_glue.py``
plus ``--masksub_ratio`` (default 0.15, the paper's BERT setting; 0 = plain ``Trainer`` baseline).

    python run_glue.py --model_name_or_path bert-base-cased --task_name mrpc --output_dir out \\
        --do_train --do_eval
    python run_glue.py --model_name_or_path ./my-bert --train_file train.csv --validation_file dev.csv \\
        --output_dir out --do_train --do_eval
    accelerate launch run_glue.py ...      # same flags, any Accelerate set-up
    masksub-hf text-classification ...      # installed with pip: the same script

Files: csv or json with a ``label`` column (int or string classes, float for regression, a list of
labels for multi-label) and ``sentence1``/``sentence2`` or ``sentence`` columns (else the first one or
two other columns). The sub branch sees ``[MASK]`` in place of ``ratio`` of the real tokens (``--masksub_mode
text_drop``, or a tokenizer without a mask token: those tokens removed, positions kept).
"""

import logging
import os
from dataclasses import dataclass, field

import numpy as np
from datasets import ClassLabel, DatasetDict
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    default_data_collator,
)

from masksub_hf import MaskSubTrainingArguments
from masksub_hf.scripts.arguments import TEXT_DEFAULTS, TokenizerArguments
from masksub_hf.scripts.cli import build_model, card_data, script_main, text_trainer, train_evaluate_and_publish
from masksub_hf.scripts.errors import UserInputError, model_errors
from masksub_hf.scripts.loading import TextDataArguments, label_kind, load_text_dataset, select_split, sentence_keys
from masksub_hf.scripts.metrics import load_metric

logger = logging.getLogger("masksub_hf")


@dataclass
class TextModelArguments(TokenizerArguments):
    use_fast_tokenizer: bool = field(default=True, metadata={"help": "Use a fast (tokenizers-backed) tokenizer."})


def label_setup(dataset, task_name):
    """(kind, label list or None): classes sorted as the HF example does, names for GLUE tasks."""
    kind = "regression" if task_name == "stsb" else label_kind(dataset)
    if kind == "regression":
        return kind, None
    feature = dataset["train"].features["label"]
    if task_name is not None:
        return kind, feature.names
    if kind == "multi_label":
        return kind, sorted({label for row in dataset["train"]["label"] for label in row})
    return kind, sorted(dataset["train"].unique("label"))


def metric_for(task_name, kind):
    """The official GLUE metric for a task; for files: accuracy, Pearson/Spearman (regression), or
    subset accuracy + micro F1 (multi-label)."""
    if task_name is not None:
        return load_metric("glue", task_name)
    if kind == "regression":
        return load_metric("glue", "stsb")
    return load_metric("accuracy", "multilabel" if kind == "multi_label" else None)


ARGUMENT_TYPES = (TextModelArguments, TextDataArguments, MaskSubTrainingArguments)  # what the command line and recipe files set


@script_main(ARGUMENT_TYPES, TEXT_DEFAULTS)
def main(model_args, data_args, training_args):
    """The script: ``main(args=None)`` parses ``args`` (default: the command line) into these."""
    dataset = load_text_dataset(data_args, training_args.do_predict, model_args.cache_dir, model_args.token)
    kind, label_list = label_setup(dataset, data_args.task_name)
    num_labels = 1 if kind == "regression" else len(label_list)
    problem_type = {"regression": "regression", "multi_label": "multi_label_classification"}.get(
        kind, "single_label_classification")

    with model_errors():
        config = AutoConfig.from_pretrained(model_args.config_name or model_args.model_name_or_path,
                                            num_labels=num_labels, finetuning_task=data_args.task_name,
                                            problem_type=problem_type, **model_args.hub_kwargs())
        tokenizer = AutoTokenizer.from_pretrained(model_args.tokenizer_name or model_args.model_name_or_path
                                                  or model_args.config_name,
                                                  use_fast=model_args.use_fast_tokenizer, **model_args.hub_kwargs())
        model = build_model(AutoModelForSequenceClassification, model_args, config)

    # Labels read as strings or numbers map to ids; a ClassLabel column (GLUE from the Hub) already holds ids.
    label_to_id = None
    if label_list is not None:
        model.config.label2id = {str(label): i for i, label in enumerate(label_list)}
        model.config.id2label = {i: str(label) for i, label in enumerate(label_list)}
        if not isinstance(dataset["train"].features["label"], ClassLabel):
            label_to_id = {label: i for i, label in enumerate(label_list)}

    if data_args.max_seq_length > tokenizer.model_max_length:
        logger.warning(f"--max_seq_length {data_args.max_seq_length} exceeds the model's {tokenizer.model_max_length}.")
    max_seq_length = min(data_args.max_seq_length, tokenizer.model_max_length)
    first_key, second_key = sentence_keys(dataset, data_args.task_name)
    padding = "max_length" if data_args.pad_to_max_length else False

    def preprocess(batch):
        texts = (batch[first_key],) if second_key is None else (batch[first_key], batch[second_key])
        encoded = tokenizer(*texts, padding=padding, max_length=max_seq_length, truncation=True)
        if "label" in batch and kind == "multi_label":
            encoded["labels"] = [[float(label in row) for label in label_list] for row in batch["label"]]
        elif "label" in batch and label_to_id is not None:
            unknown = sorted({str(label) for label in batch["label"]} - {str(label) for label in label_to_id})
            if unknown:
                raise UserInputError(f"--validation_file / --test_file: labels {unknown} are not among the "
                                     f"training labels {label_list}.")
            encoded["labels"] = [label_to_id[label] for label in batch["label"]]
        elif "label" in batch:
            encoded["labels"] = batch["label"]
        return encoded

    # Every raw column is replaced; labels go to a new "labels" column with its own type (ids, floats,
    # multi-hot), since datasets keeps a re-created "label" column's old type.
    with training_args.main_process_first(desc="tokenizing"):
        dataset = DatasetDict({name: split.map(preprocess, batched=True, remove_columns=split.column_names,
                                               load_from_cache_file=not data_args.overwrite_cache)
                               for name, split in dataset.items()})

    train_dataset = None
    if training_args.do_train:
        train_dataset = select_split(dataset, "train", data_args.max_train_samples, "--do_train")
    validation_name = "validation_matched" if data_args.task_name == "mnli" else "validation"
    eval_datasets = {}
    if training_args.do_eval:
        eval_datasets[""] = select_split(dataset, validation_name, data_args.max_eval_samples, "--do_eval")
        if data_args.task_name == "mnli":
            eval_datasets["_mm"] = select_split(dataset, "validation_mismatched", data_args.max_eval_samples,
                                                "--do_eval")

    metric = metric_for(data_args.task_name, kind)

    def compute_metrics(prediction):
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        if kind == "regression":
            predictions = np.squeeze(logits)
        elif kind == "multi_label":
            predictions = (logits > 0).astype(int)
        else:
            predictions = logits if data_args.task_name is None else np.argmax(logits, axis=1)
        result = metric.compute(predictions=predictions, references=prediction.label_ids)
        if len(result) > 1:
            result["combined_score"] = float(np.mean(list(result.values())))
        return result

    base_collator = default_data_collator if data_args.pad_to_max_length else DataCollatorWithPadding(
        tokenizer, pad_to_multiple_of=8 if training_args.fp16 else None)
    trainer = text_trainer(model, training_args, tokenizer, base_collator, train_dataset, eval_datasets.get(""),
                           compute_metrics)

    card = {"finetuned_from": model_args.model_name_or_path, "tasks": "text-classification",
            "tags": ["text-classification"], "config_name": model_args.scratch_config()}
    if data_args.task_name is not None:
        card.update(language="en", dataset_tags="glue", dataset_args=data_args.task_name,
                    dataset=f"GLUE {data_args.task_name.upper()}")
    else:
        card.update(card_data(data_args.dataset_name, data_args.train_file, data_args.validation_file))
    train_evaluate_and_publish(trainer, training_args, train_dataset, eval_datasets, card,
                               arguments=(model_args, data_args, training_args))

    if training_args.do_predict:
        predict(trainer, dataset, data_args, kind, label_list, training_args.output_dir)


def predict(trainer, dataset, data_args, kind, label_list, output_dir):
    """Write ``predict_results_<task>.txt`` (index, prediction) as transformers' run_glue.py does; where the test
    data has labels, also its metrics (``predict_results.json``)."""
    names = ["test"] if "test" in dataset else []
    if data_args.task_name == "mnli":
        names = ["test_matched", "test_mismatched"]
    if not names:
        raise UserInputError("--do_predict needs --test_file (or a task with a test split).")
    for name in names:
        data = select_split(dataset, name, data_args.max_predict_samples, "--do_predict")
        output = trainer.predict(data, metric_key_prefix="predict")  # without gold labels: predictions only
        logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
        if "labels" in data.column_names:
            trainer.log_metrics("predict", output.metrics)
            trainer.save_metrics("predict", output.metrics)
        if kind == "regression":
            predictions = [f"{value:3.3f}" for value in np.squeeze(logits, axis=-1)]
        elif kind == "multi_label":
            predictions = [",".join(str(label_list[i]) for i in np.flatnonzero(row > 0)) for row in logits]
        else:
            predictions = [str(label_list[i]) for i in np.argmax(logits, axis=1)]
        suffix = data_args.task_name or "file"
        suffix += "-mm" if name == "test_mismatched" else ""
        path = os.path.join(output_dir, f"predict_results_{suffix}.txt")
        if trainer.is_world_process_zero():
            with open(path, "w") as writer:
                writer.write("index\tprediction\n")
                writer.writelines(f"{i}\t{p}\n" for i, p in enumerate(predictions))
            logger.info(f"Predictions written to {path}")


if __name__ == "__main__":
    main()
