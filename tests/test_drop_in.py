"""Conformance: each ``Trainer`` behaviour run with ``Trainer`` and with ``MaskSubTrainer``, results compared.

Three arms: ``trainer`` (``transformers.Trainer``, ``TrainingArguments``), ``off`` (``MaskSubTrainer`` at
``masksub_ratio=0, masksub_sample_seeds=False``: must be indistinguishable from ``Trainer``) and ``on``
(``MaskSubTrainer`` with a sub branch, where the behaviour applies). The behaviours are those transformers'
own ``tests/trainer`` files check at ``Trainer``'s level: files saved with each kind of processing class or
a tokenizer in the collator, callbacks, checkpoint rotation, resume, ``model_init``, hyperparameter search,
early stopping, ``train()`` twice, ``predict``.
"""

import json
import os
import pickle
import sys

import pytest
import torch
from helpers import ListDataset, image_items, review_items, tiny_bert, tiny_vit
from transformers import (
    AutoTokenizer,
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    ViltImageProcessor,
    ViltProcessor,
    ViTImageProcessor,
    Wav2Vec2FeatureExtractor,
    default_data_collator,
)

from masksub_hf import MaskSubImageCollator, MaskSubTextCollator, MaskSubTrainer, MaskSubTrainingArguments
from masksub_hf.pipeline.seeding import SampleSeedEpochCallback

COMMON = dict(use_cpu=True, report_to="none", save_strategy="no", learning_rate=1e-2, lr_scheduler_type="constant",
              weight_decay=0.0, seed=0, disable_tqdm=True, per_device_train_batch_size=4,
              per_device_eval_batch_size=4)
ARMS = {"trainer": {}, "off": dict(masksub_ratio=0.0, masksub_sample_seeds=False), "on": dict(masksub_ratio=0.5)}


def make_trainer(arm, output_dir, model=None, text=False, trainer_kwargs=None, **overrides):
    """``Trainer`` or ``MaskSubTrainer`` with the same arguments; ``text``: the sub branch masks 15% of tokens."""
    settings = {**COMMON, "output_dir": str(output_dir), **overrides}
    if arm == "trainer":
        return Trainer(model=model, args=TrainingArguments(**settings), **(trainer_kwargs or {}))
    masksub = dict(ARMS[arm])
    if text and arm == "on":
        masksub["masksub_ratio"] = 0.15
    return MaskSubTrainer(model=model, args=MaskSubTrainingArguments(**settings, **masksub), **(trainer_kwargs or {}))


def images(n=16, seed=0):
    items = image_items(n, torch.arange(n) % 3, num_keep=8, seed=seed)
    return ListDataset([{k: v for k, v in item.items() if not k.startswith("masksub_")} for item in items])


def parameters(model):
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def assert_same_parameters(a, b, equal=True):
    same = all(torch.equal(a[name], b[name]) for name in a)
    assert same == equal


def tokens_per_forward(model):
    """The token count entering the first ViT block on each training forward (17 = CLS + 16 patches)."""
    lengths = []
    model.vit.layers[0].register_forward_pre_hook(
        lambda module, args: lengths.append(args[0].shape[1]) if module.training else None)
    return lengths


def saved_files(folder):
    return sorted(os.path.relpath(os.path.join(root, name), folder)
                  for root, _, names in os.walk(folder) for name in names)


def text_setup(folder):
    tokenizer, items = review_items(folder / "vocab")
    return tokenizer, ListDataset(items)


PROCESSING = ["tokenizer", "tokenizer_in_collator", "image_processor", "feature_extractor", "processor"]


@pytest.mark.parametrize("processing", PROCESSING)
def test_saved_files_are_trainers(tmp_path, processing):
    """Checkpoints and save_model() hold the files Trainer writes, the tokenizer found where Trainer finds it."""
    results = {}
    for arm in ARMS:
        if processing.startswith("tokenizer"):
            tokenizer, data = text_setup(tmp_path / arm)
            model = tiny_bert(vocab_size=tokenizer.vocab_size)
            collator = DataCollatorWithPadding(tokenizer)
            kwargs = dict(data_collator=collator, **({"processing_class": tokenizer} if processing == "tokenizer" else {}))
        else:
            model, data, tokenizer = tiny_vit(), images(), None
            processor = {"image_processor": ViTImageProcessor(size={"height": 32, "width": 32}),
                         "feature_extractor": Wav2Vec2FeatureExtractor(),
                         "processor": ViltProcessor(ViltImageProcessor(), text_setup(tmp_path / arm)[0])}[processing]
            collator = default_data_collator
            kwargs = dict(data_collator=collator, processing_class=processor)
        trainer = make_trainer(arm, tmp_path / arm / "out", model, text=tokenizer is not None, max_steps=4,
                               save_strategy="steps", save_steps=2, trainer_kwargs=dict(train_dataset=data, **kwargs))
        trainer.train()
        trainer.save_model()
        assert trainer.data_collator is collator  # the user's object, never replaced by a wrapper
        results[arm] = saved_files(tmp_path / arm / "out")
        if tokenizer is not None:
            for folder in ("checkpoint-4", "."):
                reloaded = AutoTokenizer.from_pretrained(tmp_path / arm / "out" / folder)
                assert reloaded("a fine film")["input_ids"] == tokenizer("a fine film")["input_ids"]
    assert any(name.startswith("checkpoint-2/") for name in results["trainer"])
    assert results["off"] == results["trainer"]
    assert results["on"] == results["trainer"]


class EventLog(TrainerCallback):
    """The names of the callback events, in order."""

    def __init__(self):
        self.events = []

    def __getattribute__(self, name):
        if name.startswith("on_"):
            self_events = object.__getattribute__(self, "events")
            return lambda *args, **kwargs: self_events.append(name)
        return object.__getattribute__(self, name)


class Marker(TrainerCallback):
    pass


def test_callbacks_are_trainers(tmp_path):
    kinds = {}
    for arm in ARMS:
        trainer = make_trainer(arm, tmp_path / arm, tiny_vit(), trainer_kwargs=dict(train_dataset=images(),
                                                                                  callbacks=[Marker]))
        kinds[arm] = [type(c) for c in trainer.callback_handler.callbacks]
        trainer.add_callback(EarlyStoppingCallback)
        assert isinstance(trainer.pop_callback(EarlyStoppingCallback), EarlyStoppingCallback)
        trainer.remove_callback(Marker)
        assert Marker not in [type(c) for c in trainer.callback_handler.callbacks]
    assert kinds["off"] == kinds["trainer"]
    # Per-sample seeds (on by default) add the one callback that gives the seeded data set its epoch.
    assert kinds["on"] == kinds["trainer"] + [SampleSeedEpochCallback]

    events = {}
    for arm in ARMS:
        log = EventLog()
        make_trainer(arm, tmp_path / f"events-{arm}", tiny_vit(), max_steps=4, logging_steps=1, eval_strategy="steps",
                     eval_steps=2, save_strategy="steps", save_steps=2,
                     trainer_kwargs=dict(train_dataset=images(), eval_dataset=images(8, seed=1), callbacks=[log])).train()
        events[arm] = log.events
    assert "on_save" in events["trainer"] and "on_evaluate" in events["trainer"]
    assert events["off"] == events["trainer"] and events["on"] == events["trainer"]


def test_loader_and_collator_at_ratio_zero_are_trainers(tmp_path):
    tokenizer, data = text_setup(tmp_path)
    loaders = {}
    for arm in ARMS:
        collator = DataCollatorWithPadding(tokenizer)
        trainer = make_trainer(arm, tmp_path / arm, tiny_bert(vocab_size=tokenizer.vocab_size), text=True,
                               trainer_kwargs=dict(train_dataset=data, data_collator=collator))
        loader = trainer.get_train_dataloader()
        loaders[arm] = (loader.dataset, type(loader.collate_fn), loader.collate_fn.data_collator)
        assert trainer.data_collator is collator and trainer.data_collator.tokenizer is tokenizer
    assert loaders["off"][0] is data and loaders["off"][1] is loaders["trainer"][1]
    assert loaders["off"][2] is not None and type(loaders["off"][2]) is DataCollatorWithPadding
    # With per-sample seeds the loader reads through SeededDataset and hands the seeds beside the batch;
    # the wrapper still reads as the collator it wraps.
    assert loaders["on"][0].dataset is data and loaders["on"][2].tokenizer is tokenizer
    copied = pickle.loads(pickle.dumps(loaders["on"][2]))  # as spawned DataLoader workers receive it
    assert copied.tokenizer.vocab_size == tokenizer.vocab_size


def test_checkpoint_rotation_is_trainers(tmp_path):
    kept = {}
    for arm in ARMS:
        trainer = make_trainer(arm, tmp_path / arm, tiny_vit(), max_steps=6, save_strategy="steps", save_steps=1,
                               save_total_limit=2, eval_strategy="steps", eval_steps=1, load_best_model_at_end=True,
                               metric_for_best_model="eval_loss", greater_is_better=True,
                               trainer_kwargs=dict(train_dataset=images(), eval_dataset=images(8, seed=1)))
        trainer.train()
        kept[arm] = (sorted(os.listdir(tmp_path / arm)), os.path.basename(trainer.state.best_model_checkpoint))
    folders, best = kept["trainer"]
    assert len(folders) == 2 and "checkpoint-6" in folders and best in folders  # the last and the best
    assert kept["off"] == kept["trainer"] and kept["on"] == kept["trainer"]


def resume_result(arm, folder, build, data, text, **kwargs):
    """``(parameters after 4 steps in one go, after 2 steps and a resume from checkpoint-2 into other weights)``."""
    options = dict(max_steps=4, save_strategy="steps", save_steps=2, trainer_kwargs=dict(train_dataset=data, **kwargs))
    model, resumed = build(0), build(1)
    make_trainer(arm, folder, model, text=text, **options).train()
    make_trainer(arm, folder, resumed, text=text, **options).train(resume_from_checkpoint=str(folder / "checkpoint-2"))
    return parameters(model), parameters(resumed)


@pytest.mark.parametrize("arm", list(ARMS))
def test_resume_continues_exactly(tmp_path, arm):
    tokenizer, data = text_setup(tmp_path)
    full, resumed = resume_result(arm, tmp_path / "out", lambda seed: tiny_bert(vocab_size=tokenizer.vocab_size, seed=seed),
                                  data, True, data_collator=DataCollatorWithPadding(tokenizer))
    assert_same_parameters(full, resumed)


def test_resume_restores_weights_trainer_leaves_behind(tmp_path):
    """The one difference kept at ratio 0: transformers 5 saves ViT under legacy key names and Trainer's
    non-strict reload then silently keeps the new model's weights; MaskSubTrainer restores every one."""
    results = {arm: resume_result(arm, tmp_path / arm, lambda seed: tiny_vit(seed=seed), images(), False)
               for arm in ARMS}
    assert_same_parameters(*results["off"])
    assert_same_parameters(*results["on"])
    assert_same_parameters(*results["trainer"], equal=False)  # when transformers fixes this, docs/compatibility.md changes


def test_model_init_trains_the_model_it_builds(tmp_path):
    results, built = {}, []

    def model_init():
        model = tiny_vit()
        built.append((model, tokens_per_forward(model)))
        return model

    for arm in ARMS:
        trainer = make_trainer(arm, tmp_path / arm, None, max_steps=2,
                               trainer_kwargs=dict(model_init=model_init, train_dataset=images()))
        trainer.train()
        model, lengths = built[-1]
        assert trainer.model is model
        results[arm] = (parameters(model), lengths)
    assert_same_parameters(results["off"][0], results["trainer"][0])
    assert results["off"][1] == results["trainer"][1] == [17, 17]
    assert results["on"][1] == [17, 9, 17, 9]  # the sub branch ran on the model model_init built
    embeddings = built[-1][0].vit.embeddings
    assert not embeddings._forward_hooks  # no MaskSub hook left on the trained model


class TrialRecord(TrainerCallback):
    """What each training run used: the ratio in the arguments and the optimizer's learning rate."""

    def __init__(self):
        self.runs = []

    def on_train_begin(self, args, state, control, optimizer=None, **kwargs):
        self.runs.append((args.masksub_ratio, optimizer.param_groups[0]["lr"]))


def test_hyperparameter_search_applies_each_trials_ratio_and_learning_rate(tmp_path):
    import optuna

    grid = {"masksub_ratio": [0.0, 0.25, 0.75], "learning_rate": [1e-3, 1e-2]}
    trained = []

    def model_init(trial):
        model = tiny_vit()
        trained.append(tokens_per_forward(model))
        return model

    def hp_space(trial):
        return {name: trial.suggest_categorical(name, values) for name, values in grid.items()}

    record = TrialRecord()
    trainer = make_trainer("on", tmp_path, None, max_steps=2, eval_strategy="steps", eval_steps=2,
                           trainer_kwargs=dict(model_init=model_init, train_dataset=images(),
                                               eval_dataset=images(8, seed=1), callbacks=[record]))
    trainer.hyperparameter_search(hp_space=hp_space, n_trials=6, direction="minimize",
                                  sampler=optuna.samplers.GridSampler(grid, seed=0))
    assert sorted(record.runs) == sorted((r, lr) for r in grid["masksub_ratio"] for lr in grid["learning_rate"])
    for (ratio, _), lengths in zip(record.runs, trained[1:]):  # trained[0]: the model built at construction
        kept = 16 - round(16 * ratio)
        assert lengths == ([17, 17] if ratio == 0 else [17, 1 + kept] * 2), (ratio, lengths)
        assert not trainer.model.vit.embeddings._forward_hooks


def test_early_stopping_is_trainers(tmp_path):
    stopped = {}
    for arm in ARMS:
        trainer = make_trainer(arm, tmp_path / arm, tiny_vit(), max_steps=20, eval_strategy="steps", eval_steps=1,
                               save_strategy="steps", save_steps=1, load_best_model_at_end=True,
                               metric_for_best_model="eval_loss", greater_is_better=True,
                               trainer_kwargs=dict(train_dataset=images(), eval_dataset=images(8, seed=1),
                                                   callbacks=[EarlyStoppingCallback(early_stopping_patience=2)]))
        trainer.train()
        stopped[arm] = trainer.state.global_step
    assert stopped["trainer"] < 20
    assert stopped["off"] == stopped["trainer"] and stopped["on"] < 20


def test_train_twice_continues_like_trainer_and_takes_new_arguments(tmp_path):
    results = {}
    for arm in ("trainer", "off"):
        model = tiny_vit()
        trainer = make_trainer(arm, tmp_path / arm, model, max_steps=2, trainer_kwargs=dict(train_dataset=images()))
        trainer.train()
        trainer.train()
        results[arm] = parameters(model)
    assert_same_parameters(results["off"], results["trainer"])

    model = tiny_vit()
    lengths = tokens_per_forward(model)
    trainer = make_trainer("on", tmp_path / "on", model, max_steps=1, trainer_kwargs=dict(train_dataset=images()))
    trainer.train()
    trainer.args.masksub_ratio = 0.25  # a change between two train() calls takes effect
    trainer.train()
    trainer.args.masksub_ratio = 0.0
    trainer.train()
    assert lengths == [17, 9, 17, 13, 17]
    assert not model.vit.embeddings._forward_hooks
    trainer.args.masksub_ratio = 1.5
    with pytest.raises(ValueError, match="masksub_ratio must be a number in"):
        trainer.train()


def test_a_layer_decay_set_between_runs_takes_effect_with_model_init(tmp_path):
    """As a trial's learning rate: model_init makes a new model, so a new optimizer is built with the new groups."""
    trainer = make_trainer("on", tmp_path, None, max_steps=1,
                           trainer_kwargs=dict(model_init=lambda: tiny_vit(), train_dataset=images()))
    trainer.train()
    assert {group["lr"] for group in trainer.optimizer.param_groups} == {1e-2}
    trainer.args.layer_decay = 0.5
    trainer.train()
    rates = sorted({group["lr"] for group in trainer.optimizer.param_groups})
    assert rates == pytest.approx([1e-2 * 0.5 ** 3, 1e-2 * 0.5 ** 2, 1e-2 * 0.5, 1e-2])  # 2 blocks: L + 2 levels


def test_predict_with_a_masksub_collator_is_trainers(tmp_path):
    model, data = tiny_vit(), images(8, seed=1)
    plain = make_trainer("trainer", tmp_path / "a", model, trainer_kwargs=dict(data_collator=default_data_collator))
    masksub = make_trainer("on", tmp_path / "b", model, trainer_kwargs=dict(data_collator=MaskSubImageCollator(model)))
    expected, got = plain.predict(data), masksub.predict(data)
    torch.testing.assert_close(torch.as_tensor(got.predictions), torch.as_tensor(expected.predictions), rtol=0, atol=0)
    assert got.metrics.keys() == expected.metrics.keys()
    assert got.metrics["test_loss"] == expected.metrics["test_loss"]


def test_tokenizer_in_the_collator_draws_the_masks_of_a_masksub_collator(tmp_path):
    """The classic pattern (DataCollatorWithPadding(tokenizer), no processing_class) at ratio 0.15: the trainer
    finds the collator's tokenizer and draws each sample's mask from its seed, as MaskSubTextCollator does."""
    tokenizer, data = text_setup(tmp_path)
    runs = {}
    for name, collator in (("plain", DataCollatorWithPadding(tokenizer)), ("masksub", MaskSubTextCollator(tokenizer, 0.15)),
                           ("off", DataCollatorWithPadding(tokenizer))):
        model = tiny_bert(vocab_size=tokenizer.vocab_size)
        args = MaskSubTrainingArguments(**COMMON, output_dir=str(tmp_path / name), max_steps=3, logging_steps=1,
                                        masksub_ratio=0.0 if name == "off" else 0.15)
        trainer = MaskSubTrainer(model=model, args=args, train_dataset=data, data_collator=collator)
        trainer.train()
        runs[name] = parameters(model)
        if name != "off":
            assert all(entry["sub_loss"] > 0 for entry in trainer.state.log_history if "loss" in entry)
    assert_same_parameters(runs["plain"], runs["masksub"])
    assert_same_parameters(runs["plain"], runs["off"], equal=False)


def test_a_collator_drawing_at_another_ratio_is_a_one_line_error(tmp_path):
    tokenizer, data = text_setup(tmp_path)
    args = MaskSubTrainingArguments(**COMMON, output_dir=str(tmp_path / "out"), max_steps=1, masksub_ratio=0.3)
    trainer = MaskSubTrainer(model=tiny_bert(vocab_size=tokenizer.vocab_size), args=args, train_dataset=data,
                             data_collator=MaskSubTextCollator(tokenizer, 0.15))
    with pytest.raises(ValueError, match=r"draws masks as TextMasking at ratio 0.15 .* masksub_ratio 0.3") as error:
        trainer.train()
    assert "\n" not in str(error.value)


class TrialLog(TrainerCallback):
    """Each training run's ratio and the token counts of its training forwards, written to a file: Ray runs each
    trial in a worker process of its own."""

    def __init__(self, path, arm):
        self.path, self.arm = path, arm

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.lengths = tokens_per_forward(model)
        self.ratio = getattr(args, "masksub_ratio", None)

    def on_train_end(self, args, state, control, **kwargs):
        with open(self.path, "a") as file:
            file.write(json.dumps([self.arm, self.ratio, self.lengths]) + "\n")


@pytest.mark.slow
def test_ray_tune_runs_each_trial_at_its_own_ratio(tmp_path):
    """Before: MaskSubTrainer could not be serialised for Ray's workers (it kept a weak reference to the model), and
    its trials never reported (its head objective sat in Trainer's ``objective``). Run in a fresh interpreter, as a
    user's script: Ray pickles the trainer, and state other tests leave in this process must not decide it."""
    import subprocess

    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scripts", "ray_trials.py")
    completed = subprocess.run([sys.executable, script, str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "trainer best objective" in completed.stdout and "on best objective" in completed.stdout
    runs = sorted(json.loads(line) for line in (tmp_path / "trials.jsonl").read_text().splitlines())
    # plain Trainer: one forward of 17 tokens a step; MaskSub: main 17, sub 1 + the patches the trial's ratio keeps
    assert runs == [["on", 0.25, [17, 13]], ["on", 0.75, [17, 5]], ["trainer", None, [17]], ["trainer", None, [17]]]


def test_torch_empty_cache_steps_empties_the_cache_as_trainer_does(tmp_path, monkeypatch):
    """Before: MaskSub's step (which replaces Trainer.training_step's body) never emptied the device cache."""
    import transformers.trainer

    import masksub_hf.training.trainer

    calls = {"trainer": 0, "masksub": 0}
    monkeypatch.setattr(transformers.trainer, "clear_device_cache", lambda: calls.__setitem__("trainer", calls["trainer"] + 1))
    monkeypatch.setattr(masksub_hf.training.trainer, "clear_device_cache",
                        lambda: calls.__setitem__("masksub", calls["masksub"] + 1))
    items = image_items(16, torch.arange(16) % 3, num_keep=8)
    for arm in ("trainer", "on"):
        make_trainer(arm, tmp_path / arm, model=tiny_vit(), trainer_kwargs={"train_dataset": ListDataset(items)},
                     max_steps=4, torch_empty_cache_steps=2, remove_unused_columns=False).train()
    assert calls["trainer"] == calls["masksub"] == 2


@pytest.mark.parametrize("optim", ["lomo", "adalomo"])
def test_optimizers_that_update_inside_backward_are_a_one_line_error(tmp_path, optim):
    with pytest.raises(ValueError, match=f"--optim {optim} updates the weights inside backward") as error:
        make_trainer("on", tmp_path, model=tiny_vit(), optim=optim)
    assert "\n" not in str(error.value)
