"""--layer_decay and --timm_optimizer: parameter groups per layer, against layer numbers written out by hand
for each family; the same training as without them when they change nothing; one-line errors."""

import pytest
import torch
from helpers import ListDataset, image_items, tiny_bert, tiny_vit, training_args
from models import hf_model, tiny_clip
from test_families import timm_wrapper

from masksub_hf import MaskSubTrainer
from masksub_hf.recipes.layer_decay import param_groups_layer_decay

LR, WD, DECAY = 1e-3, 0.05, 0.5  # two blocks: embeddings at LR / 8, block 1 at LR / 4, block 2 at LR / 2, head at LR


def expected_vit(name):  # tiny ViT / BEiT: 2 blocks
    if ".embeddings." in name:
        return 0
    for block in (0, 1):
        if f".layers.{block}." in name:
            return block + 1
    return 3  # final norm / pooler, classifier


def expected_bert(name):
    if ".embeddings." in name:
        return 0
    for block in (0, 1):
        if f".encoder.layer.{block}." in name:
            return block + 1
    return 3  # pooler, classifier


def expected_swin(name):  # depths [1, 1]: stage 0's block and its patch merging, then stage 1's block
    if ".embeddings." in name:
        return 0
    if ".encoder.layers.0." in name:
        return 1
    if ".encoder.layers.1." in name:
        return 2
    return 3


NO_DECAY_NAMES = ("bias", "cls_token", "position_embeddings", "lambda_1", "lambda_2", "relative_position_bias_table")


def expected_no_decay(name, parameter):
    norm = any(part in name for part in ("layernorm", "LayerNorm", ".norm."))
    return norm or name.rsplit(".", 1)[-1] in NO_DECAY_NAMES


CASES = {"vit": (tiny_vit, expected_vit), "beit": (lambda: hf_model("beit"), expected_vit),
         "bert": (tiny_bert, expected_bert), "swin": (lambda: hf_model("swin"), expected_swin)}


@pytest.mark.parametrize("family", list(CASES))
def test_groups_give_each_layer_its_rate_and_decay(family):
    build, expected_layer = CASES[family]
    model = build()
    groups = param_groups_layer_decay(model, LR, WD, DECAY)
    group_of = {id(p): group for group in groups for p in group["params"]}
    assert sum(len(group["params"]) for group in groups) == len(group_of) == len(list(model.parameters()))
    for name, parameter in model.named_parameters():
        group = group_of[id(parameter)]
        assert group["lr"] == pytest.approx(LR * DECAY ** (3 - expected_layer(name))), name
        assert group["weight_decay"] == (0.0 if expected_no_decay(name, parameter) else WD), name


def test_timm_models_use_timms_grouping():
    model = timm_wrapper("vit_tiny_patch16_224")
    groups = param_groups_layer_decay(model, LR, WD, DECAY)
    assert sum(len(group["params"]) for group in groups) == len(list(model.parameters()))
    head = model.timm_model.head.weight
    assert next(group for group in groups if any(p is head for p in group["params"]))["lr"] == LR
    assert min(group["lr"] for group in groups) == pytest.approx(LR * DECAY ** 3)


def train(tmp_path, **overrides):
    model = tiny_vit()
    args = training_args(tmp_path, max_steps=3, per_device_train_batch_size=4, learning_rate=LR,
                         lr_scheduler_type="linear", **overrides)
    trainer = MaskSubTrainer(model=model, args=args, train_dataset=ListDataset(image_items(16, torch.arange(16) % 3, 8)))
    trainer.train()
    return trainer, {name: p.detach().clone() for name, p in model.named_parameters()}


def test_trainer_schedules_every_group_and_decay_one_changes_nothing(tmp_path):
    trainer, decayed = train(tmp_path / "decay", layer_decay=DECAY)
    rates = sorted({group["initial_lr"] for group in trainer.optimizer.param_groups})
    assert rates == pytest.approx([LR * DECAY ** k for k in (3, 2, 1, 0)])
    last_lrs = trainer.lr_scheduler.get_last_lr()  # linear decay scales every group alike
    assert all(lr / group["initial_lr"] == pytest.approx(last_lrs[0] / trainer.optimizer.param_groups[0]["initial_lr"])
               for lr, group in zip(last_lrs, trainer.optimizer.param_groups))
    # decay 1 and no weight decay: the groups are a relabelling, the training is the same
    _, plain = train(tmp_path / "plain")
    _, flat = train(tmp_path / "flat", layer_decay=1.0)
    for name, value in plain.items():
        assert torch.equal(flat[name], value), name
    assert not torch.allclose(decayed["vit.embeddings.patch_embeddings.projection.weight"],
                              plain["vit.embeddings.patch_embeddings.projection.weight"])


def test_timm_lamb_equals_a_hand_built_lamb(tmp_path):
    from timm.optim import Lamb

    trainer, via_flag = train(tmp_path / "flag", timm_optimizer="lamb")
    assert isinstance(trainer.optimizer.optimizer if hasattr(trainer.optimizer, "optimizer") else trainer.optimizer,
                      Lamb)
    model = tiny_vit()
    decay = MaskSubTrainer(model=model, args=training_args(tmp_path / "x")).get_decay_parameter_names(model)
    groups = [{"params": [p for n, p in model.named_parameters() if n in decay], "weight_decay": 0.0},
              {"params": [p for n, p in model.named_parameters() if n not in decay], "weight_decay": 0.0}]
    args = training_args(tmp_path / "hand", max_steps=3, per_device_train_batch_size=4, learning_rate=LR,
                         lr_scheduler_type="linear")
    MaskSubTrainer(model=model, args=args, train_dataset=ListDataset(image_items(16, torch.arange(16) % 3, 8)),
                   optimizers=(Lamb(groups, lr=LR), None)).train()
    for name, value in model.named_parameters():
        assert torch.equal(via_flag[name], value), name


def test_unsupported_models_and_values_fail_naming_them(tmp_path):
    with pytest.raises(ValueError, match="CLIPModel"):
        MaskSubTrainer(model=tiny_clip(), args=training_args(tmp_path, layer_decay=0.75))
    with pytest.raises(ValueError, match="layer_decay"):
        training_args(tmp_path, layer_decay=1.5)
    with pytest.raises(ValueError, match="timm_optimizer"):
        training_args(tmp_path, timm_optimizer="no-such-optimizer")
