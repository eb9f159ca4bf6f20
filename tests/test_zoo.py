"""The classification zoo under ``masksub_mode='auto'``: every model type of the installed transformers'
image-classification mapping, so a new release's families show up here by name.

For each type, a tiny model (``zoo.py``): plain ``Trainer`` trains it two steps (the reference; a type it
cannot train tiny is skipped, saying why); ``MaskSubTrainer`` at ratio 0 ends on exactly the reference's
weights; at ratio 0.5 it trains two steps with finite weights, and hooks independent of MaskSub's see what
the sub branch got: fewer rows through the linear layers (token drop), zero-filled blocks in the image
(pixels), or ``bool_masked_pos`` reaching the model's own masked-image path (mask token). A type ``auto``
refuses must say why in one line. The table is printed at the end of the run (``conftest.py``; written to
``$MASKSUB_ZOO_TABLE`` when set) and is the one in ``docs/compatibility.md`` (checked there when the installed
transformers is the one it names).
"""

import inspect
import re
from pathlib import Path

import pytest
import torch
import transformers
from helpers import ListDataset, training_args
from zoo import IMAGE_CONFIGS, image_batch, mapping, model_class, tiny_config

from masksub_hf import MaskSubTrainer

STEPS, BATCH, RATIO = 2, 4, 0.5
# types plain Trainer cannot train from a tiny config and an image batch
NOT_TRAINABLE_TINY = {
    "shieldgemma2": "a Gemma 3 vision-language model scoring a policy prompt's yes/no tokens: it needs its "
                    "processor's prompt, not an image classifier's batch",
}
# types auto refuses on purpose (the reason is in the refusal, and in the table)
REFUSED = {"siglip2", "imagegpt"}
DOC = Path(__file__).resolve().parents[1] / "docs" / "compatibility.md"
TABLE_HEADER = ["| model type | class | `auto` | what the sub branch got |", "|---|---|---|---|"]
ROWS = {}


def plain_args(output_dir):
    return transformers.TrainingArguments(output_dir=str(output_dir), use_cpu=True, report_to="none",
                                          save_strategy="no", learning_rate=0.1, lr_scheduler_type="constant",
                                          weight_decay=0.0, max_grad_norm=0.0, seed=0, disable_tqdm=True,
                                          optim="sgd", max_steps=STEPS, per_device_train_batch_size=BATCH)


def masksub_args(output_dir, ratio):
    return training_args(output_dir, learning_rate=0.1, optim="sgd", max_steps=STEPS,
                         per_device_train_batch_size=BATCH, masksub_ratio=ratio, masksub_sample_seeds=False)


def build(model_type, names):
    torch.manual_seed(0)
    return model_class(names)(tiny_config(model_type, IMAGE_CONFIGS))


def dataset(model):
    batch = image_batch(model, STEPS * BATCH, torch.Generator().manual_seed(0))
    return ListDataset([{key: value[i] for key, value in batch.items()} for i in range(STEPS * BATCH)])


def weights(model):
    return {name: p.detach().clone() for name, p in model.named_parameters()}


class ForwardRecorder:
    """Per call of the model: rows through its linear layers, exactly-zero inputs, ``bool_masked_pos`` given."""

    def __init__(self, model):
        self.calls = []
        self.handles = [model.register_forward_pre_hook(self._new_call, with_kwargs=True)]
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                self.handles.append(module.register_forward_pre_hook(self._rows))
            if "bool_masked_pos" in inspect.signature(module.forward).parameters:
                # after the forward: it sees the arguments as any pre-hook (MaskSub's) left them
                self.handles.append(module.register_forward_hook(self._masked_positions, with_kwargs=True))
        self.main_input = model.main_input_name

    def _new_call(self, module, args, kwargs):
        image = kwargs.get(self.main_input, args[0] if args else None)
        zeros = (image == 0).float().mean().item() if image is not None and image.is_floating_point() else 0.0
        self.calls.append({"rows": 0, "zeros": zeros, "masked_positions": None,
                           "length": image.shape[1] if image is not None and image.dim() == 2 else None})

    def _rows(self, module, args):
        if self.calls:
            self.calls[-1]["rows"] += args[0].numel() // args[0].shape[-1]

    def _masked_positions(self, module, args, kwargs, output):
        masked = inspect.signature(module.forward).bind(*args, **kwargs).arguments.get("bool_masked_pos")
        if self.calls and masked is not None:
            self.calls[-1]["masked_positions"] = masked.float().mean().item()

    def remove(self):
        for handle in self.handles:
            handle.remove()


def sub_branch_evidence(mode, calls):
    """What the sub forwards got that the main forwards did not, checked per step (main, then sub)."""
    assert len(calls) == 2 * STEPS, f"{len(calls)} forwards in {STEPS} steps"
    mains, subs = calls[0::2], calls[1::2]
    if mode == "tokens":
        assert all(sub["rows"] < main["rows"] for main, sub in zip(mains, subs))
        return f"token drop: {subs[0]['rows']} of {mains[0]['rows']} rows through the linear layers"
    if mode == "pixels":
        assert all(main["zeros"] == 0 for main in mains) and all(sub["zeros"] >= 0.3 for sub in subs)
        return f"pixels: {subs[0]['zeros']:.0%} of the image zero-filled"
    if mode == "mask_token":
        assert all(main["masked_positions"] is None for main in mains)
        assert all(sub["masked_positions"] is not None and sub["masked_positions"] >= 0.3 for sub in subs)
        return f"mask token: bool_masked_pos on {subs[0]['masked_positions']:.0%} of the patches"
    raise AssertionError(f"no check for mode {mode!r}")


def table_title():
    return f"The image-classification zoo under masksub_mode='auto' (transformers {transformers.__version__}):"


def zoo_table():
    return TABLE_HEADER + [ROWS[model_type] for model_type in sorted(ROWS)]


def record(model_type, names, auto, what):
    name = names[0] if isinstance(names, (tuple, list)) else names
    ROWS[model_type] = f"| `{model_type}` | `{name}` | {auto} | {what} |"


IMAGE_TYPES = sorted(mapping("IMAGE_CLASSIFICATION").items())


@pytest.mark.parametrize("model_type, names", IMAGE_TYPES, ids=[model_type for model_type, _ in IMAGE_TYPES])
def test_image_classifier_under_auto(tmp_path, model_type, names):
    if model_type in NOT_TRAINABLE_TINY:
        record(model_type, names, "skipped", NOT_TRAINABLE_TINY[model_type])
        pytest.skip(NOT_TRAINABLE_TINY[model_type])
    try:
        model = build(model_type, names)
    except ImportError as error:  # an optional library its modelling code needs
        library = re.search(r"requires the (\S+) library", str(error))
        why = f"needs {library.group(1) if library else 'a library'}, not installed here"
        record(model_type, names, "skipped", why)
        pytest.skip(why)
    except Exception as error:  # a newer family the generic shrink does not fit: it needs a line in zoo.py
        if model_type in IMAGE_CONFIGS:
            raise
        why = f"no tiny config in tests/zoo.py yet: {type(error).__name__}: {str(error).splitlines()[0][:100]}"
        record(model_type, names, "skipped", why)
        pytest.skip(why)
    data = dataset(model)
    try:
        transformers.Trainer(model=model, args=plain_args(tmp_path / "plain"), train_dataset=data).train()
    except (TypeError, ValueError, AttributeError, RuntimeError) as error:
        why = f"plain Trainer cannot train it: {str(error).splitlines()[0].split('. ')[0]}"
        record(model_type, names, "skipped", why)
        pytest.skip(why)
    reference = weights(model)

    model = build(model_type, names)
    MaskSubTrainer(model=model, args=masksub_args(tmp_path / "off", 0.0), train_dataset=data).train()
    for name, value in weights(model).items():
        assert torch.equal(value, reference[name]), f"ratio 0 differs from Trainer at {name}"

    model = build(model_type, names)
    try:
        trainer = MaskSubTrainer(model=model, args=masksub_args(tmp_path / "on", RATIO), train_dataset=data)
    except ValueError as error:
        message = str(error)
        assert "\n" not in message and type(model).__name__ in message
        assert model_type in REFUSED or model_type not in IMAGE_CONFIGS, f"auto refused {model_type}: {message}"
        record(model_type, names, "refused", re.sub(r"^.*?\): ", "", message).split(". 'dropout'")[0])
        return
    recorder = ForwardRecorder(model)
    trainer.train()
    recorder.remove()
    assert all(torch.isfinite(p).all() for p in model.parameters())
    mode = trainer.masking.mode
    record(model_type, names, f"`{mode}`", sub_branch_evidence(mode, recorder.calls))


def test_the_documented_table_is_this_run_s():
    """docs/compatibility.md holds the table for the transformers it names; rerun the zoo to regenerate it."""
    text = DOC.read_text()
    version = re.search(r"transformers ([0-9.]+), by `tests/test_zoo.py`", text)
    if len(ROWS) < len(IMAGE_TYPES) or version is None or version.group(1) != transformers.__version__:
        pytest.skip("the zoo did not run whole here, or on another transformers than the documented one")
    documented = [line for line in text.splitlines() if line.startswith("| `")]
    assert [ROWS[model_type] for model_type in sorted(ROWS)] == [
        line for line in documented if any(line.startswith(f"| `{t}` |") for t in ROWS)]
