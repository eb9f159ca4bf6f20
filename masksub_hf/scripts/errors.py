"""The scripts' user errors: one line on stderr naming the flag it is about, exit status 2."""

import contextlib
import dataclasses
import re

from ..objectives import UnsupportedHead
from ..training.arguments import MaskSubTrainingArguments


class UserInputError(ValueError):
    """A mistake in the command line or the data; the scripts report it as one line naming the flag."""


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


def model_error(error: Exception) -> UserInputError:
    """A model or processor that cannot be loaded, reported against the flag that named it."""
    if "ignore_mismatched_sizes" in str(error):
        return UserInputError("--model_name_or_path: the checkpoint's head has another number of labels than the "
                              "data; pass --ignore_mismatched_sizes to train a new head.")
    return UserInputError(f"--model_name_or_path / --config_name: cannot load: {str(error).splitlines()[0]}")


@contextlib.contextmanager
def model_errors():
    """A model, config or processor that cannot be loaded inside the block is a user error naming its flag."""
    try:
        yield
    except UserInputError:
        raise
    except (OSError, ValueError, RuntimeError) as error:
        raise model_error(error) from error


@contextlib.contextmanager
def trainer_errors():
    """A ``MaskSubTrainer`` that cannot be set up inside the block is a user error naming its flag."""
    try:
        yield
    except UserInputError:
        raise
    except (ValueError, OSError) as error:
        raise trainer_error(error) from error
