"""What the ``run_*.py`` scripts share: argument dataclasses, parsing, one-line user errors and the
train / evaluate / model card / push tail, as in transformers' example scripts."""

import dataclasses
import functools
import json
import logging
import os
import re
import shutil
import sys
from dataclasses import dataclass, field

import torch
import transformers
from accelerate import PartialState
from transformers import HfArgumentParser, TrainerState
from transformers.trainer_utils import sort_checkpoints

from ..objectives import UnsupportedHead
from ..pipeline.collators import MaskSubTextCollator
from ..training.arguments import MaskSubTrainingArguments
from ..training.checkpoint import TRAINER_STATE_NAME, finished_steps, is_complete_checkpoint
from ..training.trainer import MaskSubTrainer

logger = logging.getLogger("masksub_hf")


class UserInputError(ValueError):
    """A mistake in the command line or the data; the scripts report it as one line naming the flag."""


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


def flag_first(message, flags, otherwise=None):
    """``message`` as a script's error: starting with the flag it is about. The library's errors name a setting
    by its field (``masksub_ratio must be ...``): that becomes ``--masksub_ratio must be ...``; a message naming
    no setting first is put after ``otherwise`` (when given)."""
    first = re.split(r"[ =:,]", message, maxsplit=1)[0]
    if first.startswith("--"):
        return message
    if first in flags:
        return "--" + message
    return f"{otherwise}: {message}" if otherwise else message


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


@dataclass
class ModelArguments:
    """Which model to fine-tune (the flags of transformers' example scripts)."""

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Path to a local model or a model id on huggingface.co/models."}
    )
    config_name: str | None = field(
        default=None, metadata={"help": "Config name or path, if not the model's; alone (no --model_name_or_path) "
                                        "the model is built from it with random weights: training from scratch."})
    cache_dir: str | None = field(default=None, metadata={"help": "Where downloaded models and data are stored."})
    model_revision: str = field(default="main", metadata={"help": "Model version: branch, tag or commit id."})
    token: str | None = field(default=None, metadata={"help": "Hub token (default: the one of `hf auth login`)."})
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Allow models and datasets with custom code from the Hub (off by default)."}
    )
    ignore_mismatched_sizes: bool = field(
        default=False, metadata={"help": "Load a checkpoint whose head has a different number of labels."}
    )

    def __post_init__(self):
        if self.model_name_or_path is None and self.config_name is None:
            raise UserInputError("give --model_name_or_path (a model to fine-tune), or --config_name alone to train "
                                 "from scratch.")

    def scratch_config(self):
        """The config a model trained from scratch is built from (``--config_name`` alone), else None."""
        return self.config_name if self.model_name_or_path is None else None

    def hub_kwargs(self):
        return {"cache_dir": self.cache_dir, "revision": self.model_revision, "token": self.token,
                "trust_remote_code": self.trust_remote_code}


def build_model(auto_model_class, model_args, config):
    """The model: ``--model_name_or_path``'s weights, or with ``--config_name`` alone a new model with random weights
    (training from scratch, as transformers' language-modelling examples do)."""
    if model_args.model_name_or_path is None:
        logger.info(f"Training from scratch: a new {config.model_type} model from --config_name {model_args.config_name}.")
        return auto_model_class.from_config(config)
    return auto_model_class.from_pretrained(model_args.model_name_or_path, config=config,
                                            ignore_mismatched_sizes=model_args.ignore_mismatched_sizes,
                                            **model_args.hub_kwargs())


def trainer_error(error: Exception) -> Exception:
    """A ``MaskSubTrainer`` set-up error as a user error naming its flag: ``--push_to_hub`` when the Hub cannot be
    reached (Trainer creates the repository first), else ``--masksub_mode`` unless the message names a flag."""
    if isinstance(error, ConnectionError) or type(error).__module__.startswith(("huggingface_hub", "requests")):
        return UserInputError(f"--push_to_hub: cannot reach the Hub ({str(error).splitlines()[0][:200]}); train "
                              "without it and upload the --output_dir later (`hf upload`).")
    if not isinstance(error, ValueError):
        return error
    # A head MaskSub has no objective for is the model's matter; any other set-up error is the masking's.
    otherwise = "--model_name_or_path" if isinstance(error, UnsupportedHead) else "--masksub_mode"
    flags = {f.name for f in dataclasses.fields(MaskSubTrainingArguments)}
    return UserInputError(flag_first(str(error), flags, otherwise))


def text_trainer(model, training_args, tokenizer, base_collator, train_dataset, eval_dataset, compute_metrics):
    """The text scripts' ``MaskSubTrainer``: ``base_collator`` wrapped so the text masks are drawn in the data
    pipeline (``[MASK]`` or token drop, as ``--masksub_mode`` says); a set-up error names its flag."""
    collator = base_collator
    try:
        if training_args.masksub_ratio > 0 and training_args.masksub_mode in ("auto", "text", "text_drop"):
            collator = MaskSubTextCollator(tokenizer, training_args.masksub_ratio, base_collator=base_collator,
                                           mode=training_args.masksub_mode)
        return MaskSubTrainer(model=model, args=training_args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                              compute_metrics=compute_metrics, processing_class=tokenizer, data_collator=collator)
    except (ValueError, OSError) as error:
        raise trainer_error(error) from error


def model_error(error: Exception) -> UserInputError:
    """A model or processor that cannot be loaded, reported against the flag that named it."""
    if "ignore_mismatched_sizes" in str(error):
        return UserInputError("--model_name_or_path: the checkpoint's head has another number of labels than the "
                              "data; pass --ignore_mismatched_sizes to train a new head.")
    return UserInputError(f"--model_name_or_path / --config_name: cannot load: {str(error).splitlines()[0]}")


RUN_ARGUMENTS = "run_arguments.json"  # in --output_dir: the settings of the run its checkpoints belong to
# Flags that do not change what a run trains: a rerun may change them and still resume.
NOT_TRAINING = {
    "output_dir", "overwrite_output_dir", "resume_from_checkpoint", "do_train", "do_eval", "do_predict", "run_name",
    "logging_dir", "logging_strategy", "logging_steps", "logging_first_step", "logging_nan_inf_filter",
    "report_to", "disable_tqdm", "log_level", "log_level_replica", "save_strategy", "save_steps",
    "save_total_limit", "save_only_model", "eval_strategy", "eval_steps", "eval_delay", "eval_on_start",
    "per_device_eval_batch_size", "eval_accumulation_steps", "load_best_model_at_end", "metric_for_best_model",
    "greater_is_better", "push_to_hub", "hub_model_id", "hub_strategy", "hub_token", "hub_private_repo",
    "hub_always_push", "hub_revision", "token", "cache_dir", "dataloader_num_workers", "dataloader_prefetch_factor",
    "dataloader_persistent_workers", "max_eval_samples", "max_predict_samples", "validation_file", "validation_dir",
    "test_file", "check_images", "preprocessing_num_workers",
}


def run_settings(arguments):
    """``{flag: value}`` of every argument dataclass, as JSON would hold them."""
    settings = {}
    for parsed in arguments:
        values = parsed.to_dict() if hasattr(parsed, "to_dict") else dataclasses.asdict(parsed)
        settings.update(values)
    return json.loads(json.dumps(settings, default=str))


def _recorded_settings(output_dir, checkpoint):
    """The settings the run in ``output_dir`` was started with, or None if they cannot be read."""
    recorded = os.path.join(output_dir, RUN_ARGUMENTS)
    if os.path.isfile(recorded):
        with open(recorded, encoding="utf-8") as file:
            return json.load(file)
    try:  # a run started before run_arguments.json existed: its checkpoint's training arguments
        return run_settings([torch.load(os.path.join(checkpoint, "training_args.bin"), weights_only=False)])
    except Exception:  # noqa: BLE001 (a file written by another version, or none)
        return None


def last_checkpoint(training_args, arguments=()):
    """The checkpoint to resume from: ``--resume_from_checkpoint``, else the newest complete one in ``--output_dir``
    if that run's settings are this one's (``arguments``: the script's argument dataclasses, training's included).

    A job killed while saving leaves a checkpoint without a whole ``trainer_state.json`` (Trainer writes it last)
    or with a cut weights file; that one is skipped with a warning, and training resumes from the one before.
    A rerun with other settings stops with one line; ``--overwrite_output_dir`` starts over (the checkpoints go).
    """
    if training_args.resume_from_checkpoint is not None or not training_args.do_train:
        return training_args.resume_from_checkpoint
    if not os.path.isdir(training_args.output_dir):
        return None
    checkpoints = sort_checkpoints(training_args.output_dir)
    if training_args.overwrite_output_dir:
        if training_args.should_save:
            for checkpoint in checkpoints:
                shutil.rmtree(checkpoint, ignore_errors=True)
        return None
    for checkpoint in reversed(checkpoints):  # newest first
        if is_complete_checkpoint(checkpoint):
            check_same_run(training_args.output_dir, checkpoint, arguments)
            return checkpoint
        logger.warning(f"Skipping the incomplete checkpoint {checkpoint} (its {TRAINER_STATE_NAME} does not parse "
                       "or a weights file is cut: the job was stopped while saving it).")
    return None


def settings_changed(output_dir, checkpoint, arguments):
    """What differs between the run in ``output_dir`` and this one (``--flag old -> new, ...``), None if nothing."""
    if not arguments:
        return None
    recorded, current = _recorded_settings(output_dir, checkpoint), run_settings(arguments)
    if recorded is None:
        return "its settings cannot be read"
    changed = sorted(flag for flag in current.keys() & recorded.keys()
                     if flag not in NOT_TRAINING and current[flag] != recorded[flag])
    if not changed:
        return None
    differences = ", ".join(f"--{flag} {recorded[flag]} -> {current[flag]}" for flag in changed[:6])
    return differences + (f" and {len(changed) - 6} more" if len(changed) > 6 else "")


def check_same_run(output_dir, checkpoint, arguments):
    """Stop with one line when the run in ``output_dir`` had other settings than this one."""
    differences = settings_changed(output_dir, checkpoint, arguments)
    if differences is None:
        return
    raise UserInputError(
        f"--output_dir {output_dir} holds a run with other settings ({os.path.basename(checkpoint)}: {differences}): "
        f"give a new --output_dir, --overwrite_output_dir to start over there, or --resume_from_checkpoint "
        f"{checkpoint} to resume it anyway.")


def finished_run(training_args, checkpoint, arguments):
    """``(global_step, max_steps)`` when ``--output_dir`` holds this very run, finished: the state the script saves
    after training says so (with the same settings), else None. Trainer would take one more step from it. An explicit
    ``--resume_from_checkpoint`` is the user's to decide."""
    if (training_args.overwrite_output_dir or training_args.resume_from_checkpoint is not None
            or not os.path.isdir(training_args.output_dir)):
        return None
    steps = finished_steps(training_args.output_dir)
    if steps is None or (checkpoint is None and settings_changed(training_args.output_dir, None, arguments)):
        return None
    return steps


def finish_from_checkpoint(trainer, checkpoint):
    """The run ended training in ``checkpoint`` but stopped before saving its final model: that checkpoint's weights
    and state become the run's, without a step (``Trainer.train`` would take one more)."""
    logger.warning(f"{checkpoint} ends the training (step {finished_steps(checkpoint)[0]}): the run stopped before "
                   "saving its final model; saving it now, without another step.")
    trainer._load_from_checkpoint(checkpoint)
    trainer.state = TrainerState.load_from_json(os.path.join(checkpoint, TRAINER_STATE_NAME))


def record_run_settings(training_args, arguments):
    """Write this run's settings into ``--output_dir``, where a rerun compares its own with them."""
    if arguments and training_args.do_train and training_args.should_save:
        os.makedirs(training_args.output_dir, exist_ok=True)
        with open(os.path.join(training_args.output_dir, RUN_ARGUMENTS), "w", encoding="utf-8") as file:
            json.dump(run_settings(arguments), file, indent=1, sort_keys=True)


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
    ``extra_eval_metrics()`` returns metrics computed outside ``Trainer.evaluate`` (CLIP retrieval).
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
            extra = extra_eval_metrics()
            # One log entry with the evaluation's own metrics: the model card reads the last one holding eval_loss.
            trainer.log({**{name: value for name, value in combined.items() if name.startswith("eval_")}, **extra})
            combined.update(extra)
        trainer.log_metrics("eval", combined)
        trainer.save_metrics("eval", combined)
    if training_args.push_to_hub:
        trainer.push_to_hub(**card_kwargs)
    else:
        trainer.create_model_card(**card_kwargs)
