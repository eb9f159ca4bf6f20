"""A script's start and finish, the same for each ``run_*.py``, as in transformers' example scripts: parsing (a recipe
file first), the launch check, logging (the set-up's log held until training starts), the seed, user errors as one
line (``script_main``); the model built, the text scripts' trainer; the train / evaluate / model card / push tail
(``train_evaluate_and_publish``)."""

import dataclasses
import functools
import gc
import json
import logging
import os
import sys

import torch
import transformers
from accelerate import PartialState
from transformers import HfArgumentParser, set_seed

from ..pipeline.collators import MaskSubTextCollator
from ..training.arguments import MaskSubTrainingArguments
from ..training.checkpoint import finished_steps
from ..training.trainer import MaskSubTrainer
from .errors import UserInputError, flag_first, model_errors, trainer_errors
from .resume import finish_from_checkpoint, finished_run, last_checkpoint, record_run_settings

logger = logging.getLogger("masksub_hf")


class SetUpLogs:
    """The log records of a script's set-up (its config and model dumps: dozens of lines), held until the set-up
    succeeds: an error in it is then one line, not one line after the dump. ``release`` writes them as they came,
    ``drop`` forgets them."""

    def __init__(self, loggers):
        self.loggers = [(logger, logger.handlers[:]) for logger in loggers if logger.handlers]
        self.records = []
        for logger, _ in self.loggers:
            handler = logging.Handler()
            handler.emit = functools.partial(self._hold, logger)
            logger.handlers = [handler]

    def _hold(self, logger, record):
        self.records.append((logger, record))

    def _restore(self):
        for logger, handlers in self.loggers:
            logger.handlers = handlers

    def release(self):
        self._restore()
        for logger, record in self.records:
            logger.handle(record)
        self.records = []

    def drop(self):
        self._restore()
        self.records = []


_set_up_logs = None  # the running script's held set-up logs (setup_logging holds them, training releases them)


def release_set_up_logs(keep=True):
    global _set_up_logs
    if _set_up_logs is not None:
        _set_up_logs.release() if keep else _set_up_logs.drop()
        _set_up_logs = None


def exits_on_user_error(main):
    """Run a script's ``main``: a ``UserInputError`` ends as one line on stderr and exit status 2, without the set-up's
    held log before it."""

    @functools.wraps(main)
    def run(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserInputError as error:
            release_set_up_logs(keep=False)
            if int(os.environ.get("RANK", "0")) == 0:  # every process of a launch meets it: one says it
                print(f"error: {error}", file=sys.stderr)
            sys.exit(2)
        finally:
            release_set_up_logs()

    return run


class ScriptArgumentParser(HfArgumentParser):
    """``HfArgumentParser`` whose argument errors show a one-line usage, not every flag (a few hundred lines)."""

    def format_usage(self):
        return f"usage: {self.prog} [--flag value ...]  ('{self.prog} --help' lists the flags)\n"


def parse_arguments(dataclass_types, defaults=None, args=None):
    """``HfArgumentParser`` over ``dataclass_types``: the command line, optionally after one ``.yaml``/``.json``
    file (a recipe) whose values the flags that follow it override.

    ``defaults`` overrides dataclass defaults for this script (e.g. ``masksub_ratio=0.15`` for text).
    Invalid values (raised by a dataclass's ``__post_init__``) become a ``UserInputError``.
    """
    parser = ScriptArgumentParser(dataclass_types)
    if defaults:
        parser.set_defaults(**defaults)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.accelerator.is_available():
        # launched as several processes on a machine without GPUs: they can only train together on the CPU (gloo)
        parser.set_defaults(use_cpu=True)
    args = sys.argv[1:] if args is None else list(args)
    if args and args[0].endswith((".yaml", ".yml", ".json")):
        parser.set_defaults(**_read_recipe(recipe_path(args[0]), dataclass_types))
        args = args[1:]
    try:
        return parser.parse_args_into_dataclasses(args=args)
    except ValueError as error:
        message = str(error).splitlines()[0]
        if "use_cpu" in message and not torch.accelerator.is_available():  # bf16 (a GPU recipe's) on a CPU machine
            raise UserInputError("--bf16: this machine has no GPU; add --use_cpu to train on the CPU (bf16 runs there "
                                 "as autocast), or --bf16 false.") from error
        flags = {f.name for cls in dataclass_types for f in dataclasses.fields(cls)}
        raise UserInputError(flag_first(message, flags)) from error


SHIPPED_RECIPES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "recipes", "configs")


def shipped_recipes():
    """The recipe files installed with the package, by name (``deit3_vit_s_400ep.yaml``, ``cpu/deit3_mnist.yaml``)."""
    return sorted(os.path.relpath(os.path.join(folder, name), SHIPPED_RECIPES)
                  for folder, _, names in os.walk(SHIPPED_RECIPES) for name in names if name.endswith(".yaml"))


def recipe_path(name):
    """A recipe file: ``name`` itself when it is a file, else the shipped recipe of that name (a leading
    ``recipes/``, as the recipes' own comments write it, is the shipped folder)."""
    if os.path.isfile(name):
        return name
    shipped = os.path.join(SHIPPED_RECIPES, name.removeprefix("recipes/"))
    if os.path.isfile(shipped):
        return shipped
    raise UserInputError(f"{name}: no such file, nor a shipped recipe ({', '.join(shipped_recipes())}).")


def _read_recipe(path, dataclass_types):
    """The ``{flag: value}`` of a recipe file, every key a flag of this script."""
    import yaml

    with open(path, encoding="utf-8") as file:
        try:
            values = json.load(file) if path.endswith(".json") else yaml.safe_load(file)
        except (ValueError, yaml.YAMLError) as error:
            raise UserInputError(f"{path}: not readable: {' '.join(str(error).split())[:200]}") from error
    values = values or {}
    if not isinstance(values, dict):
        raise UserInputError(f"{path}: expected 'flag: value' lines, got a {type(values).__name__}.")
    known = {f.name for cls in dataclass_types for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UserInputError(f"{path}: not a flag of this script: {', '.join(unknown)}.")
    return values


def start_script(argument_types, defaults=None, args=None):
    """A script's start-up, the same for each: its arguments parsed (``parse_arguments``), the launch checked, logging
    set up (the set-up's log held until training starts) and the seed set. Returns the parsed dataclasses."""
    parsed = parse_arguments(argument_types, defaults, args)
    training_args = next(arguments for arguments in parsed if isinstance(arguments, MaskSubTrainingArguments))
    check_launch(training_args)
    setup_logging(training_args)
    set_seed(training_args.seed)
    # What the imports made (torch, transformers: ~540,000 objects) lives as long as the script: frozen, the full
    # garbage collections Trainer makes (Accelerate's free_memory, at each training run's start and end and around
    # checkpoints) scan only what the script makes after, instead of 0.24 s each.
    gc.collect()
    gc.freeze()
    return parsed


def script_main(argument_types, defaults=None):
    """A script's ``main(args=None)``: the one start-up (``start_script``), the script's body called with the parsed
    dataclasses, its user errors as one line and exit status 2 (``exits_on_user_error``)."""
    def decorate(body):
        @exits_on_user_error
        @functools.wraps(body)
        def main(args=None):
            return body(*start_script(argument_types, defaults, args))

        return main

    return decorate


def check_launch(training_args):
    """Stop with one line when the script was launched as several processes that do not form one group: each would
    train alone on the whole data, all writing into the same ``--output_dir``."""
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if ("WORLD_SIZE" not in os.environ and "MASTER_ADDR" in os.environ
            and os.environ.get("ACCELERATE_USE_CPU", "").lower() == "true"):
        # Accelerate's one-process launcher: it sets a rendezvous address only when --num_processes > 1 was asked
        raise UserInputError(
            "accelerate launch --cpu started one process though several were asked (--num_processes): with --cpu "
            "it always starts one; launch with `accelerate launch --multi_gpu --num_processes N ...`, no --cpu "
            "(the scripts train on the CPU where there is no GPU).")
    if launched > 1 and training_args.world_size != launched:
        raise UserInputError(
            f"launched as {launched} processes, but they do not train as one (each process sees world size "
            f"{training_args.world_size}): on CPU launch with `accelerate launch --multi_gpu --num_processes "
            f"{launched} {os.path.basename(sys.argv[0])} ... --use_cpu` (docs/scripts.md); on GPUs, give each process "
            "a GPU of its own.")


def setup_logging(training_args):
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", datefmt="%m/%d/%Y %H:%M:%S",
                        handlers=[logging.StreamHandler(sys.stdout)])
    if training_args.should_log:  # as transformers' examples: INFO on the main process by default
        transformers.utils.logging.set_verbosity_info()
    level = training_args.get_process_log_level()
    logger.setLevel(level)
    transformers.utils.logging.set_verbosity(level)
    transformers.utils.logging.enable_default_handler()
    transformers.utils.logging.enable_explicit_format()
    global _set_up_logs
    release_set_up_logs()
    _set_up_logs = SetUpLogs([logging.getLogger(), transformers.utils.logging.get_logger()])
    logger.warning(
        f"Process rank: {training_args.process_index}, device: {training_args.device}, "
        f"distributed type: {PartialState().distributed_type.value}, world size: {training_args.world_size}"
    )


def build_model(auto_model_class, model_args, config):
    """The model: ``--model_name_or_path``'s weights, or with ``--config_name`` alone a new model with random weights
    (training from scratch, as transformers' language-modelling examples do)."""
    if model_args.model_name_or_path is None:
        logger.info(f"Training from scratch: a new {config.model_type} model from --config_name {model_args.config_name}.")
        return auto_model_class.from_config(config)
    return auto_model_class.from_pretrained(model_args.model_name_or_path, config=config,
                                            ignore_mismatched_sizes=model_args.ignore_mismatched_sizes,
                                            **model_args.hub_kwargs())


def tokenizer_and_model(auto_model_class, model_args):
    """A language model's tokenizer and model (``LanguageModelArguments``): ``--model_name_or_path``'s, or with
    ``--config_name`` alone a new model; a load error is one line naming its flag."""
    with model_errors():
        config = transformers.AutoConfig.from_pretrained(model_args.config_name or model_args.model_name_or_path,
                                                         **model_args.hub_kwargs())
        tokenizer = transformers.AutoTokenizer.from_pretrained(
            model_args.tokenizer_name or model_args.model_name_or_path or model_args.config_name,
            use_fast=model_args.use_fast_tokenizer, **model_args.hub_kwargs())
        return tokenizer, build_model(auto_model_class, model_args, config)


def train_then_evaluate(trainer, args):
    """The examples' tail: under ``--do_train`` train (metrics, model and state saved), under ``--do_eval`` evaluate."""
    if args.do_train:
        trainer.save_metrics("train", trainer.train().metrics)
        trainer.save_model()
        trainer.save_state()
    if args.do_eval:
        metrics = trainer.evaluate()
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)


def text_trainer(model, training_args, tokenizer, base_collator, train_dataset, eval_dataset, compute_metrics,
                 trainer_class=MaskSubTrainer, **trainer_kwargs):
    """The text scripts' ``MaskSubTrainer`` (or ``trainer_class``): ``base_collator`` wrapped so the text masks are
    drawn in the data pipeline (``[MASK]`` or token drop, as ``--masksub_mode`` says); a set-up error names its
    flag."""
    collator = base_collator
    with trainer_errors():
        if training_args.masksub_ratio > 0 and training_args.masksub_mode in ("auto", "text", "text_drop"):
            collator = MaskSubTextCollator(tokenizer, training_args.masksub_ratio, base_collator=base_collator,
                                           mode=training_args.masksub_mode)
        return trainer_class(model=model, args=training_args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                             compute_metrics=compute_metrics, processing_class=tokenizer, data_collator=collator,
                             **trainer_kwargs)


def card_data(dataset_name, *paths):
    """The model card's data: ``{"dataset": a Hub name}``, or ``{"local_data": folder and file names}`` for a local
    ``--dataset_name`` or, without one, the data files ``paths``, each with its parent folder (the Hub refuses
    local paths in card metadata; the card's text names them). A ``--dataset_name`` is what the scripts load,
    files given beside it are not."""
    if dataset_name is not None and not os.path.exists(dataset_name):
        return {"dataset": dataset_name}
    if dataset_name is not None:
        return {"local_data": [os.path.basename(os.path.normpath(dataset_name))]}
    local = [path for path in paths if path is not None]
    return {"local_data": [local_name(path) for path in local]} if local else {}


def local_name(path):
    """A data folder or file as the card names it: with its parent folder (``beans/train``), never the whole path."""
    path = os.path.abspath(path)
    parent = os.path.basename(os.path.dirname(path))
    return f"{parent}/{os.path.basename(path)}" if parent else os.path.basename(path)


def train_evaluate_and_publish(trainer, training_args, train_dataset, eval_datasets, card_kwargs,
                               extra_eval_metrics=None, arguments=()):
    """The common tail of the scripts: train, save, evaluate, then write the model card or push to the Hub.

    ``arguments``: the script's argument dataclasses (a rerun into the same ``--output_dir`` is checked against them).

    ``eval_datasets`` maps a metric-name suffix (``""``; ``"_mm"`` for MNLI mismatched) to a dataset;
    ``extra_eval_metrics(metrics)`` returns metrics computed from the evaluation's (perplexity) or outside
    ``Trainer.evaluate`` (CLIP retrieval).
    """
    release_set_up_logs()  # the set-up succeeded: its log, then training's as it comes
    if training_args.do_train:
        checkpoint = last_checkpoint(training_args, arguments)
        finished = finished_run(training_args, checkpoint, arguments)
        if finished is not None:
            logger.warning(f"--output_dir {training_args.output_dir} holds this run, finished (step {finished[0]} of "
                           f"{finished[1]}): nothing to do. --overwrite_output_dir trains it again, a new --output_dir "
                           "trains another; without --do_train, --do_eval evaluates it.")
            return
        if checkpoint is None:
            record_run_settings(training_args, arguments)
        elif training_args.resume_from_checkpoint is None:
            logger.warning(f"Checkpoint detected, resuming training from {checkpoint} (same settings; "
                           "--overwrite_output_dir starts over).")
        if checkpoint is not None and finished_steps(checkpoint) is not None:
            finish_from_checkpoint(trainer, checkpoint)
            metrics = {}
        else:
            metrics = trainer.train(resume_from_checkpoint=checkpoint).metrics
        trainer.save_model()
        metrics = {**metrics, "train_samples": len(train_dataset)}
        trainer.log_metrics("train", metrics)
        trainer.save_metrics("train", metrics)
        trainer.save_state()
    if training_args.do_eval:
        combined = {}
        for suffix, dataset in eval_datasets.items():
            metrics = {**trainer.evaluate(eval_dataset=dataset), "eval_samples": len(dataset)}
            combined.update({f"{name}{suffix}": value for name, value in metrics.items()})
        if extra_eval_metrics is not None:
            extra = extra_eval_metrics(combined)
            # One log entry with the evaluation's own metrics: the model card reads the last one holding eval_loss.
            trainer.log({**{name: value for name, value in combined.items() if name.startswith("eval_")}, **extra})
            combined.update(extra)
        trainer.log_metrics("eval", combined)
        trainer.save_metrics("eval", combined)
    if training_args.push_to_hub:
        trainer.push_to_hub(**card_kwargs)
    else:
        trainer.create_model_card(**card_kwargs)
