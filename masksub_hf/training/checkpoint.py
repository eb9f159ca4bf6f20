"""What MaskSub adds to checkpoints, and reloads that restore every weight (resume, best model)."""

import contextlib
import glob
import json
import logging
import os
import struct

import torch
from transformers import PreTrainedModel

MASKSUB_STATE_NAME = "masksub_state.pt"  # MaskSub-owned parameters (a mask token) in each checkpoint
TRAINER_STATE_NAME = "trainer_state.json"  # Trainer writes it last: a checkpoint is complete once it parses

logger = logging.getLogger("masksub_hf")


def safetensors_is_whole(path):
    """Whether a ``.safetensors`` file holds every byte its header promises (a killed write leaves it short)."""
    try:
        with open(path, "rb") as file:
            (header_size,) = struct.unpack("<Q", file.read(8))
            header = json.loads(file.read(header_size))
    except (OSError, struct.error, ValueError):
        return False
    end = max((entry["data_offsets"][1] for name, entry in header.items() if name != "__metadata__"), default=0)
    return os.path.getsize(path) == 8 + header_size + end


def is_complete_checkpoint(folder):
    """A checkpoint a run can resume from: its trainer state parses and every weights file is whole."""
    try:
        with open(os.path.join(folder, TRAINER_STATE_NAME), encoding="utf-8") as file:
            json.load(file)
    except (OSError, ValueError):
        return False
    return all(safetensors_is_whole(path) for path in glob.glob(os.path.join(folder, "*.safetensors")))


def finished_steps(folder):
    """``(global_step, max_steps)`` when the trainer state in ``folder`` (a checkpoint, or an output folder where
    ``Trainer.save_state`` wrote it) reached its last optimizer step, else None."""
    try:
        with open(os.path.join(folder, TRAINER_STATE_NAME), encoding="utf-8") as file:
            state = json.load(file)
    except (OSError, ValueError):
        return None
    steps = state.get("global_step", 0), state.get("max_steps", 0)
    return steps if steps[1] > 0 and steps[0] >= steps[1] else None


def save_owned(folder, owned):
    os.makedirs(folder, exist_ok=True)
    torch.save([p.detach().cpu() for p in owned], os.path.join(folder, MASKSUB_STATE_NAME))


def load_owned(checkpoint, owned):
    path = os.path.join(checkpoint, MASKSUB_STATE_NAME)
    if owned and os.path.isfile(path):
        with torch.no_grad():
            for parameter, saved in zip(owned, torch.load(path, weights_only=True)):
                parameter.copy_(saved)


def reload_converted_weights(model, checkpoint):
    """Load the checkpoint's weights through ``from_pretrained``, which maps saved key names to the model's.

    transformers 5 saves some models (ViT, ...) under their legacy key names, and ``Trainer`` reloads
    them (resume, best model) with a plain non-strict ``load_state_dict`` of those names: such weights
    silently keep their current values. Loading a copy with ``from_pretrained`` and copying it in
    (strictly) restores every weight exactly. Plain single-file checkpoints of transformers models only.
    """
    if not (os.path.isfile(os.path.join(checkpoint, "model.safetensors")) and isinstance(model, PreTrainedModel)):
        return False
    restored, loading = type(model).from_pretrained(checkpoint, config=model.config, dtype=model.dtype,
                                                    output_loading_info=True)
    unrestored = [*loading["missing_keys"], *loading["mismatched_keys"]]  # from_pretrained would init them
    if unrestored:
        raise RuntimeError(f"{checkpoint} does not hold every weight of {type(model).__name__}: "
                           f"{sorted(map(str, unrestored))[:5]} missing.")
    model.load_state_dict(restored.state_dict(), strict=True)
    return True


@contextlib.contextmanager
def held_key_warnings():
    """Hold back ``Trainer``'s "missing / unexpected keys" warnings of a non-strict reload; yields the held records,
    which the caller emits again if it does not restore every weight itself."""
    trainer_logger = logging.getLogger("transformers.trainer")
    held = []

    def hold(record):
        if record.getMessage().startswith(("There were missing keys", "There were unexpected keys")):
            held.append(record)
            return False
        return True

    trainer_logger.addFilter(hold)
    try:
        yield held
    finally:
        trainer_logger.removeFilter(hold)


def restore_weights(trainer, checkpoint, held_warnings, owned, model=None):
    """Every weight of ``checkpoint`` back in the model, and MaskSub's ``owned`` parameters (a mask token).

    Trainer's key-name warnings of its non-strict reload (``held_warnings``) are emitted only where no strict reload
    follows: sharded (FSDP, DeepSpeed), PEFT-adapter and other reloads stay Trainer's."""
    restored = not (trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled) and reload_converted_weights(
        trainer.accelerator.unwrap_model(model if model is not None else trainer.model), checkpoint)
    if restored:
        logger.info(f"Every weight restored from {checkpoint} (read by key name and loaded strictly; Trainer's "
                    f"own reload {'reported keys under legacy names' if held_warnings else 'agreed'}).")
    else:
        for record in held_warnings:
            logging.getLogger("transformers.trainer").handle(record)
    load_owned(checkpoint, owned)
