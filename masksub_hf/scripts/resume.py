"""The resume guard: a rerun into an ``--output_dir`` that holds a run resumes it when its settings are the run's
(every flag but those its argument dataclasses name in ``RESUMABLE``: where it logs, saves, evaluates), stops with one line when they are not,
and changes nothing when that run finished. A job killed while saving resumes from the checkpoint before."""

import dataclasses
import json
import logging
import os
import shutil

import torch
from transformers import TrainerState
from transformers.trainer_utils import sort_checkpoints

from ..training.checkpoint import TRAINER_STATE_NAME, finished_steps, is_complete_checkpoint
from .errors import UserInputError

logger = logging.getLogger("masksub_hf")

RUN_ARGUMENTS = "run_arguments.json"  # in --output_dir: the settings of the run its checkpoints belong to
def resumable_flags(arguments):
    """The flags a rerun may change and still resume: what each argument dataclass (and its bases) names in
    ``RESUMABLE``, beside its fields."""
    return {name for parsed in arguments for cls in type(parsed).__mro__ for name in vars(cls).get("RESUMABLE", ())}


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
    resumes = resumable_flags(arguments)
    changed = sorted(flag for flag in current.keys() & recorded.keys()
                     if flag not in resumes and current[flag] != recorded[flag])
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
