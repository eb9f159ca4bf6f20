"""Trainer features combined with MaskSub (docs/compatibility.md), each against the same run without it.

A feature that only changes how a step is computed (gradient checkpointing, the fused optimizer,
``auto_find_batch_size`` without an out-of-memory error, explicit ``label_names``) must give the same
parameters as the run without it; MaskSub at ``masksub_ratio=0`` with a feature that changes the data
order (``train_sampling_strategy="group_by_length"``) must give plain ``Trainer``'s; every run must really have a sub branch
(the parameters differ from ``masksub_ratio=0``).
"""

import pytest
import torch
from helpers import ListDataset, image_items, tiny_bert, tiny_vit, training_args
from test_best_model import text_data
from test_trainer import sequence_lengths_seen
from transformers import Trainer

from masksub_hf import MaskSubTrainer


def vit_items():
    return image_items(16, torch.arange(16) % 3, num_keep=8)


def train_vit(tmp_path, ratio=0.5, dataset=None, **features):
    model = tiny_vit()
    args = training_args(tmp_path, masksub_ratio=ratio, max_steps=3, per_device_train_batch_size=4,
                         learning_rate=1e-2, **features)
    MaskSubTrainer(model=model, args=args, train_dataset=dataset or ListDataset(vit_items())).train()
    return {name: p.detach().clone() for name, p in model.named_parameters()}


SAME_RESULT = {  # feature -> (flags with it, flags without it, tolerance)
    "gradient_checkpointing": ({"gradient_checkpointing": True}, {}, 1e-6),
    "adamw_torch_fused": ({"optim": "adamw_torch_fused"}, {"optim": "adamw_torch"}, 1e-6),
    "auto_find_batch_size": ({"auto_find_batch_size": True}, {}, 0.0),
    "label_names": ({"label_names": ["labels"]}, {}, 0.0),
}


@pytest.mark.parametrize("feature", list(SAME_RESULT))
def test_feature_gives_the_run_without_it(tmp_path, feature):
    with_feature, without, atol = SAME_RESULT[feature]
    actual = train_vit(tmp_path / "with", **with_feature)
    expected = train_vit(tmp_path / "without", **without)
    for name, value in expected.items():
        if "k_proj.bias" in name and "optim" in with_feature:
            continue  # its gradient is 0 up to rounding (softmax ignores a shift); Adam makes noise full steps
        torch.testing.assert_close(actual[name], value, rtol=0, atol=atol, msg=name)
    plain = train_vit(tmp_path / "ratio0", ratio=0.0, **with_feature)
    assert not torch.allclose(plain["classifier.weight"], actual["classifier.weight"])


def test_adafactor_steps_on_the_methods_gradient(tmp_path):
    """``--optim adafactor``: one step moves the weights as transformers' Adafactor, with the arguments Trainer gives
    it, moves them from the method's gradient written in plain torch (test_equivalence's reference)."""
    import copy

    from models import make_case
    from test_equivalence import reference_gradients

    model, items = make_case("ce")
    reference = copy.deepcopy(model)
    args = training_args(tmp_path, masksub_ratio=0.5, max_steps=1, per_device_train_batch_size=len(items),
                         learning_rate=1e-2, optim="adafactor")
    MaskSubTrainer(model=model, args=args, train_dataset=ListDataset(items)).train()
    gradients = reference_gradients(reference, items, "ce")
    optimizer_class, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(args, reference)
    assert optimizer_class.__name__ == "Adafactor"
    optimizer = optimizer_class(reference.parameters(), **optimizer_kwargs)
    for name, parameter in reference.named_parameters():
        parameter.grad = gradients.get(name)
    optimizer.step()
    moved = 0
    for (name, actual), (_, expected) in zip(model.named_parameters(), reference.named_parameters()):
        if "k_proj.bias" in name:
            continue  # its gradient is 0 up to rounding (softmax ignores a shift); Adafactor makes noise full steps
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6, msg=name)
        moved += not torch.equal(expected, dict(make_case("ce")[0].named_parameters())[name])
    assert moved > 0


def test_group_by_length_keeps_trainers_order(tmp_path):
    """At ratio 0 MaskSubTrainer (whose loader wraps the data for per-sample seeds) batches like Trainer."""
    items = [{"input_ids": item["input_ids"][: 6 + i % 6], "attention_mask": item["attention_mask"][: 6 + i % 6],
              "labels": item["labels"]} for i, item in enumerate(text_data())]
    features = dict(train_sampling_strategy="group_by_length", max_steps=4, per_device_train_batch_size=4, learning_rate=1e-2)
    models = {}
    for name, trainer_class in (("trainer", Trainer), ("masksub", MaskSubTrainer)):
        model = tiny_bert()
        trainer_class(model=model, args=training_args(tmp_path / name, masksub_ratio=0.0, **features),
                      train_dataset=ListDataset([dict(item) for item in items]),
                      data_collator=_pad_collator).train()
        models[name] = model
    for (name, a), (_, b) in zip(models["trainer"].named_parameters(), models["masksub"].named_parameters()):
        assert torch.equal(a, b), name


def _pad_collator(features):
    length = max(len(f["input_ids"]) for f in features)
    batch = {"labels": torch.stack([f["labels"] for f in features])}
    for key in ("input_ids", "attention_mask"):
        batch[key] = torch.stack([torch.nn.functional.pad(f[key], (0, length - len(f[key]))) for f in features])
    return batch


def test_iterable_dataset_reaches_the_sub_branch(tmp_path):
    """Iterable datasets train with masks (here the samples' own); they get no per-sample seeds."""

    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            return iter(vit_items())

    model = tiny_vit()
    lengths = sequence_lengths_seen(model)
    args = training_args(tmp_path, max_steps=2, per_device_train_batch_size=4)
    MaskSubTrainer(model=model, args=args, train_dataset=Stream()).train()
    assert lengths == [17, 9, 17, 9]  # main: CLS + 16 patches; sub: CLS + 8 kept


def test_include_for_metrics_sees_clean_inputs(tmp_path):
    """Evaluation batches lose their masksub_* keys; compute_metrics gets the inputs the model saw."""
    seen = {}

    def compute_metrics(prediction):
        seen["inputs"] = prediction.inputs
        return {"score": 1.0}

    model = tiny_vit()
    args = training_args(tmp_path, include_for_metrics=["inputs"], per_device_eval_batch_size=8)
    trainer = MaskSubTrainer(model=model, args=args, compute_metrics=compute_metrics)
    trainer.evaluate(ListDataset(vit_items()))
    assert seen["inputs"].shape == (16, 3, 32, 32)
