"""The zoo under ``masksub_mode='auto'``: every model type of the installed transformers' image-, sequence-,
token-classification, multiple-choice, question-answering and seq2seq-LM mappings, so a new release's families
show up here by name.

For each type, a tiny model (``zoo.py``): plain ``Trainer`` trains it two steps (the reference; a type it
cannot train tiny is skipped, saying why); ``MaskSubTrainer`` at ratio 0 ends on exactly the reference's
weights; at ratio > 0 it trains two steps with finite weights, and hooks independent of MaskSub's see what
the sub branch got: fewer rows through the linear layers (token drop), zero-filled blocks in the image
(pixels), ``bool_masked_pos`` reaching the model's own masked-image path (mask token), ``[MASK]`` in the
input ids (text) or fewer real tokens (text token drop). A type ``auto`` refuses must say why in one line.
The tables are printed at the end of the run (``conftest.py``; written to ``$MASKSUB_ZOO_TABLE`` when set)
and are the ones in ``docs/compatibility.md`` (checked there when the installed transformers is the one it
names).
"""

import inspect
import re
from pathlib import Path

import pytest
import torch
import transformers
from helpers import ListDataset, bpe_tokenizer, training_args, word_tokenizer
from transformers import default_data_collator
from zoo import (
    IMAGE_CONFIGS,
    SEGMENTATION_CONFIGS,
    TEXT_CONFIGS,
    WORDS,
    image_batch,
    image_processor_reading_ids,
    mapping,
    model_class,
    text_batch,
    tiny_config,
    tiny_text_config,
)

from masksub_hf import MaskSubTrainer
from masksub_hf.masking import PatchHiding
from masksub_hf.masking.structure import is_seq2seq_lm

STEPS, BATCH = 2, 4
RATIOS = {"IMAGE_CLASSIFICATION": 0.5, "SEQUENCE_CLASSIFICATION": 0.3, "TOKEN_CLASSIFICATION": 0.3,
          "MULTIPLE_CHOICE": 0.3, "QUESTION_ANSWERING": 0.3, "SEQ_TO_SEQ_CAUSAL_LM": 0.3,
          "SEMANTIC_SEGMENTATION": 0.5, "CAUSAL_LM": 0.3}
CHOICES = 3
# Ratio 0 is Trainer.training_step whatever the model: checked on every type of the other mappings, left out for the
# 200 causal-LM types (the suite's time).
RATIO_ZERO_SAMPLED = ("CAUSAL_LM",)
MAX_PARAMETERS = 120_000_000  # more: a family the shrink misses (BLT: 4.6 billion), skipped before it is built
# types plain Trainer cannot train from a tiny config and a classifier's batch
NOT_TRAINABLE_TINY = {
    "shieldgemma2": "a Gemma 3 vision-language model scoring a policy prompt's yes/no tokens: it needs its "
                    "processor's prompt, not an image classifier's batch",
}
# types auto refuses on purpose, saying why (the reason is in the table); a type refused that is neither here nor
# in the documented table (a newer transformers' family) is shown, not failed
REFUSED = {
    "IMAGE_CLASSIFICATION": set(),
    "SEQUENCE_CLASSIFICATION": {"perceiver"},  # reads `inputs`
    # no position_ids, and hiding tokens from attention is no drop for them: Bloom numbers tokens by the mask's
    # running sum, Funnel pools neighbouring tokens outside attention
    "TOKEN_CLASSIFICATION": {"bloom", "funnel"},
    "MULTIPLE_CHOICE": set(),
    "QUESTION_ANSWERING": set(),
    "SEQ_TO_SEQ_CAUSAL_LM": set(),
    "SEMANTIC_SEGMENTATION": set(),
    # under token drop (a tokenizer without a mask token): Bloom as above; CPM-Ant, RWKV and xLSTM pass tokens on
    # outside attention (recurrence), so hidden tokens still reach the kept ones; image- and audio-text models
    # (*ForConditionalGeneration) have no objective
    # Reformer trains on rows of the one length its axial positions fix, which token drop shortens
    "CAUSAL_LM": {"bloom", "cpmant", "rwkv", "xlstm", "reformer", "gemma3", "gemma4_unified", "got_ocr2",
                  "moss_transcribe_diarize"},
}
DOC = Path(__file__).resolve().parents[1] / "docs" / "compatibility.md"
TABLE_HEADER = ["| model type | class | `auto` | what the sub branch got |", "|---|---|---|---|"]
ROWS = {name: {} for name in RATIOS}  # mapping -> model type -> table row
CASES = [(name, model_type, names) for name in RATIOS for model_type, names in sorted(mapping(name).items())]


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    """Sequence classifiers, multiple-choice and question-answering heads get a tokenizer with ``[MASK]``
    (``auto``: text), token classifiers and seq2seq LMs one without (``auto``: token drop; a seq2seq LM's source
    tokens hidden from attention), so each text family that has both heads is seen with both maskings."""
    with_mask = word_tokenizer(tmp_path_factory.mktemp("zoo_tokenizer"), [" ".join(WORDS)])
    without = bpe_tokenizer([" ".join(WORDS)] * 4, vocab_size=300)
    return {"SEQUENCE_CLASSIFICATION": with_mask, "MULTIPLE_CHOICE": with_mask, "QUESTION_ANSWERING": with_mask,
            "TOKEN_CLASSIFICATION": without, "SEQ_TO_SEQ_CAUSAL_LM": without, "IMAGE_CLASSIFICATION": None,
            "SEMANTIC_SEGMENTATION": None, "CAUSAL_LM": without}


def plain_args(output_dir):
    return transformers.TrainingArguments(output_dir=str(output_dir), use_cpu=True, report_to="none",
                                          save_strategy="no", learning_rate=0.1, lr_scheduler_type="constant",
                                          weight_decay=0.0, max_grad_norm=0.0, seed=0, disable_tqdm=True,
                                          optim="sgd", max_steps=STEPS, per_device_train_batch_size=BATCH)


def masksub_args(output_dir, ratio):
    return training_args(output_dir, learning_rate=0.1, optim="sgd", max_steps=STEPS,
                         per_device_train_batch_size=BATCH, masksub_ratio=ratio, masksub_sample_seeds=False)


def build(kind, model_type, names):
    config = tiny_model_config(kind, model_type)
    try:  # its size first, without memory: a family the shrink misses is skipped, not built
        with torch.device("meta"):
            parameters = sum(p.numel() for p in model_class(names)(config).parameters())
    except Exception:  # noqa: BLE001  (a model that cannot be built on the meta device is built for real below)
        parameters = 0
    if parameters > MAX_PARAMETERS:
        raise TooLarge(f"no tiny config in tests/zoo.py: the generic shrink leaves {parameters / 1e6:.0f}M parameters")
    torch.manual_seed(0)
    return model_class(names)(config)


class TooLarge(Exception):
    pass


def tiny_model_config(kind, model_type):
    if kind == "IMAGE_CLASSIFICATION":
        config = tiny_config(model_type, IMAGE_CONFIGS)
    elif kind == "SEMANTIC_SEGMENTATION":
        config = tiny_config(model_type, SEGMENTATION_CONFIGS)
    else:  # an answer head's two outputs (start, end) are its config's labels
        config = tiny_text_config(model_type, num_labels=2 if kind == "QUESTION_ANSWERING" else 3)
        if kind == "CAUSAL_LM" and hasattr(config, "is_decoder"):  # encoders as causal LMs (RoBERTa, Reformer)
            config.is_decoder = True
    return config


def dataset(kind, model, tokenizer):
    generator = torch.Generator().manual_seed(0)
    if kind in ("IMAGE_CLASSIFICATION", "SEMANTIC_SEGMENTATION"):
        batch = image_batch(model, STEPS * BATCH, generator)
        if kind == "SEMANTIC_SEGMENTATION":  # a class per pixel, at the image's size
            batch["labels"] = torch.randint(0, model.config.num_labels, (STEPS * BATCH, *batch["pixel_values"].shape[-2:]),
                                            generator=generator)
    else:
        batch = text_batch(tokenizer, model.config.num_labels, kind == "TOKEN_CLASSIFICATION", STEPS * BATCH, generator,
                           next_tokens=kind == "CAUSAL_LM",
                           choices=CHOICES if kind == "MULTIPLE_CHOICE" else None,
                           answers=kind == "QUESTION_ANSWERING", targets=kind == "SEQ_TO_SEQ_CAUSAL_LM")
    return ListDataset([{key: value[i] for key, value in batch.items()} for i in range(STEPS * BATCH)])


def weights(model):
    return {name: p.detach().clone() for name, p in model.named_parameters()}


class ForwardRecorder:
    """Per call of the model: rows through its linear layers, exactly-zero image values, ``bool_masked_pos``
    given to any module, ``[MASK]`` ids and real tokens in the input."""

    def __init__(self, model, mask_token_id):
        self.calls = []
        self.mask_token_id = mask_token_id
        self.main_input = model.main_input_name
        self.handles = [model.register_forward_pre_hook(self._new_call, with_kwargs=True)]
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                self.handles.append(module.register_forward_pre_hook(self._rows))
            if "bool_masked_pos" in inspect.signature(module.forward).parameters:
                # after the forward: it sees the arguments as any pre-hook (MaskSub's) left them
                self.handles.append(module.register_forward_hook(self._masked_positions, with_kwargs=True))

    def _new_call(self, module, args, kwargs):
        values = kwargs.get(self.main_input, args[0] if args else None)
        call = {"rows": 0, "zeros": 0.0, "masked_positions": None, "mask_tokens": 0, "real_tokens": 0,
                "real_patches": int(kwargs["pixel_attention_mask"].sum()) if "pixel_attention_mask" in kwargs else 0}
        if values is not None and values.is_floating_point():
            call["zeros"] = (values == 0).float().mean().item()
        elif values is not None:
            attention_mask = kwargs.get("attention_mask")
            call["mask_tokens"] = int((values == self.mask_token_id).sum()) if self.mask_token_id is not None else 0
            call["real_tokens"] = int(attention_mask.sum()) if attention_mask is not None else values.numel()
        self.calls.append(call)

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


def sub_branch_evidence(mode, calls, how=""):
    """What the sub forwards got that the main forwards did not, checked per step (main, then sub)."""
    assert len(calls) == 2 * STEPS, f"{len(calls)} forwards in {STEPS} steps"
    mains, subs = calls[0::2], calls[1::2]
    if mode == "tokens":
        assert all(sub["rows"] < main["rows"] for main, sub in zip(mains, subs))
        return f"token drop: {subs[0]['rows']} of {mains[0]['rows']} rows through the linear layers"
    if mode == "hidden_patches":
        assert all(sub["real_patches"] < main["real_patches"] for main, sub in zip(mains, subs))
        return (f"token drop: {subs[0]['real_patches']} of {mains[0]['real_patches']} patches left in "
                "pixel_attention_mask (the others hidden from attention)")
    if mode == "pixels":
        assert all(main["zeros"] == 0 for main in mains) and all(sub["zeros"] >= 0.3 for sub in subs)
        return f"pixels: {subs[0]['zeros']:.0%} of the image zero-filled"
    if mode == "mask_token":
        assert all(main["masked_positions"] is None for main in mains)
        assert all(sub["masked_positions"] is not None and sub["masked_positions"] >= 0.3 for sub in subs)
        return f"mask token: bool_masked_pos on {subs[0]['masked_positions']:.0%} of the patches"
    if mode == "text":
        assert all(main["mask_tokens"] == 0 for main in mains) and all(sub["mask_tokens"] > 0 for sub in subs)
        return f"[MASK]: {subs[0]['mask_tokens']} of {mains[0]['real_tokens']} real tokens"
    if mode == "text_drop":
        assert all(sub["real_tokens"] < main["real_tokens"] for main, sub in zip(mains, subs))
        return f"token drop: {subs[0]['real_tokens']} of {mains[0]['real_tokens']} real tokens kept{how}"
    raise AssertionError(f"no check for mode {mode!r}")


def table_title(kind):
    return (f"The {kind.lower().replace('_', '-')} zoo under masksub_mode='auto' (transformers "
            f"{transformers.__version__}):")


def zoo_table(kind):
    return TABLE_HEADER + [ROWS[kind][model_type] for model_type in sorted(ROWS[kind])]


def record(kind, model_type, names, auto, what):
    name = names[0] if isinstance(names, (tuple, list)) else names
    ROWS[kind][model_type] = f"| `{model_type}` | `{name}` | {auto} | {what} |"


def skip(kind, model_type, names, why):
    record(kind, model_type, names, "skipped", why)
    pytest.skip(why)


@pytest.mark.parametrize("kind, model_type, names", CASES, ids=[f"{kind.split('_')[0].lower()}-{model_type}"
                                                               for kind, model_type, _ in CASES])
def test_classifier_under_auto(tmp_path, tokenizers, kind, model_type, names):
    tokenizer = tokenizers[kind]
    if model_type in NOT_TRAINABLE_TINY:
        skip(kind, model_type, names, NOT_TRAINABLE_TINY[model_type])
    known = {"IMAGE_CLASSIFICATION": IMAGE_CONFIGS, "SEMANTIC_SEGMENTATION": SEGMENTATION_CONFIGS}.get(kind, TEXT_CONFIGS)
    try:
        model = build(kind, model_type, names)
    except ImportError as error:  # an optional library its modelling code needs
        library = re.search(r"requires the (\S+) library", str(error))
        skip(kind, model_type, names, f"needs {library.group(1) if library else 'a library'}, not installed here")
    except TooLarge as error:
        skip(kind, model_type, names, str(error))
    except Exception as error:  # a family the generic shrink does not fit: it needs a line in zoo.py
        if model_type in known:
            raise
        skip(kind, model_type, names, f"no tiny config in tests/zoo.py: {type(error).__name__}: "
                                      f"{str(error).splitlines()[0][:100]}")
    data = dataset(kind, model, tokenizer)
    # what a user passes for choices (Trainer's default pads a tokenizer's rows, not (choices, length) inputs)
    collator = transformers.DataCollatorForMultipleChoice(tokenizer) if kind == "MULTIPLE_CHOICE" else None
    try:
        transformers.Trainer(model=model, args=plain_args(tmp_path / "plain"), train_dataset=data,
                             data_collator=collator).train()
    except Exception as error:  # noqa: BLE001  (whatever stops plain Trainer is the row's reason)
        skip(kind, model_type, names,
             f"plain Trainer cannot train it tiny: {type(error).__name__}: {str(error).splitlines()[0].split('. ')[0][:100]}")
    if kind not in RATIO_ZERO_SAMPLED:
        assert_ratio_zero_is_trainer(kind, model_type, names, tmp_path, data, collator, weights(model))

    model = build(kind, model_type, names)
    try:
        trainer = MaskSubTrainer(model=model, args=masksub_args(tmp_path / "on", RATIOS[kind]), train_dataset=data,
                                 data_collator=collator, processing_class=tokenizer or image_processor_reading_ids(model))
    except ValueError as error:
        message = str(error)
        assert "\n" not in message and type(model).__name__ in message
        assert model_type in REFUSED[kind] or f"| `{model_type}` |" not in documented_section(kind), \
            f"auto refused {model_type}: {message}"
        record(kind, model_type, names, "refused", re.sub(r"^.*?\): ", "", message).split(". 'dropout'")[0])
        return
    recorder = ForwardRecorder(model, getattr(tokenizer, "mask_token_id", None))
    trainer.train()
    recorder.remove()
    assert all(torch.isfinite(p).all() for p in model.parameters())
    mode = trainer.masking.mode
    hides_patches = isinstance(trainer.masking, PatchHiding)
    what = sub_branch_evidence("hidden_patches" if hides_patches else mode, recorder.calls,
                               " (the others hidden from attention)" if getattr(trainer.masking, "hides", False) else "")
    if mode == "text_drop":
        assert_dropping_nothing_is_the_main_forward(model, trainer.masking, data)
        what += "; dropping none gives the main forward"
    if hides_patches:
        assert_hidden_patches_do_not_reach_the_output(model, trainer.masking, data)
        what += "; what the hidden patches hold does not reach the logits"
    record(kind, model_type, names, f"`{mode}`", what)


def assert_ratio_zero_is_trainer(kind, model_type, names, tmp_path, data, collator, reference):
    """``MaskSubTrainer`` at ratio 0 ends on exactly plain ``Trainer``'s weights (``reference``)."""
    model = build(kind, model_type, names)
    MaskSubTrainer(model=model, args=masksub_args(tmp_path / "off", 0.0), train_dataset=data,
                   data_collator=collator).train()
    differs = [name for name, value in weights(model).items() if not torch.equal(value, reference[name])]
    if differs:
        model = build(kind, model_type, names)
        transformers.Trainer(model=model, args=plain_args(tmp_path / "plain_again"), train_dataset=data,
                             data_collator=collator).train()
        if any(not torch.equal(value, reference[name]) for name, value in weights(model).items()):
            skip(kind, model_type, names, "plain Trainer does not repeat itself: two runs with the same seed differ")
    assert not differs, f"ratio 0 differs from Trainer at {differs[0]}"


def assert_dropping_nothing_is_the_main_forward(model, masking, data):
    """Token drop keeps each token's position: with nothing dropped, the repacked input is the same input to the
    model (every real token at the position the model gives it by itself), so the logits are the main ones."""
    batch = default_data_collator(list(data))
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    # a seq2seq LM's decoder reads its inputs from the labels, beside what the masking changes
    decoder = {"labels": batch["labels"]} if is_seq2seq_lm(model) else {}
    nothing = torch.zeros_like(inputs["input_ids"], dtype=torch.bool)
    model.eval()
    with torch.no_grad():
        main = model(**inputs, **decoder).logits
        with masking.apply(model, inputs, nothing) as sub_inputs:
            sub = model(**sub_inputs, **decoder).logits
    if main.dim() == 3 and not decoder:  # per token: the real tokens come first in each row, in both
        real = inputs["attention_mask"].bool()
        main, sub = main[real], sub[real[:, :sub.shape[1]]]
    torch.testing.assert_close(sub, main, rtol=1e-4, atol=1e-5)


def assert_hidden_patches_do_not_reach_the_output(model, masking, data):
    """Patches hidden through ``pixel_attention_mask`` are out of the sub branch's view: other values in them give
    the same logits."""
    inputs = default_data_collator([{k: v for k, v in item.items() if k != "labels"} for item in data])
    hidden = masking.draw(inputs, torch.Generator().manual_seed(0))
    changed = dict(inputs, pixel_values=inputs["pixel_values"].masked_fill(hidden.unsqueeze(-1), 7.0))
    model.eval()
    with torch.no_grad():
        with masking.apply(model, inputs, hidden) as sub_inputs:
            sub = model(**sub_inputs).logits
        with masking.apply(model, changed, hidden) as sub_inputs:
            torch.testing.assert_close(model(**sub_inputs).logits, sub, rtol=0, atol=0)
        assert not torch.allclose(model(**inputs).logits, sub)


def documented_section(kind):
    text = DOC.read_text()
    heading = f"### {kind.lower().replace('_', '-')}"
    return text.split(heading, 1)[1].split("\n#", 1)[0] if heading in text else ""


def test_the_documented_tables_are_this_run_s():
    """docs/compatibility.md holds the tables for the transformers it names; rerun the zoo to regenerate them."""
    text = DOC.read_text()
    version = re.search(r"transformers ([0-9.]+), by `tests/test_zoo.py`", text)
    if sum(map(len, ROWS.values())) < len(CASES) or version is None or version.group(1) != transformers.__version__:
        pytest.skip("the zoo did not run whole here, or on another transformers than the documented one")
    for kind, rows in ROWS.items():
        documented = [line for line in documented_section(kind).splitlines() if line.startswith("| `")]
        assert documented == [rows[model_type] for model_type in sorted(rows)], kind
