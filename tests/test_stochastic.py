"""DropSub / PathSub: stronger dropout or drop-path in the sub branch only, rates restored exactly."""

import pytest
import timm
import torch
import transformers
from helpers import ListDataset, image_items, training_args
from torch import nn

from masksub_hf import MaskSubTrainer
from masksub_hf.masking import DropSub, PathSub, masking_for


def hf_vit(dropout=0.0):
    torch.manual_seed(0)
    config = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                    num_attention_heads=2, intermediate_size=64, num_labels=3,
                                    hidden_dropout_prob=dropout)
    return transformers.ViTForImageClassification(config)


def hf_convnext(drop_path_rate):
    torch.manual_seed(0)
    config = transformers.ConvNextConfig(num_stages=2, hidden_sizes=[8, 16], depths=[2, 2], num_labels=3,
                                         drop_path_rate=drop_path_rate)
    return transformers.ConvNextForImageClassification(config)


def timm_vit(drop_path_rate):
    return timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2,
                             num_classes=3, drop_rate=0.1, drop_path_rate=drop_path_rate)


def rates(model):
    dropout = [m.p for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
    drop_path = [m.drop_prob for m in model.modules() if isinstance(getattr(m, "drop_prob", None), float)]
    return dropout, drop_path


@pytest.mark.parametrize("build", [hf_vit, lambda: timm_vit(0.1)], ids=["hf_vit", "timm_vit"])
def test_dropsub_sets_every_dropout_to_0_2_inside_the_block_only(build):
    model = build()
    before = rates(model)
    masking = masking_for(model, "dropout", 0.5)
    assert isinstance(masking, DropSub) and masking.key is None
    with masking.apply(model, {}) as inputs:
        dropout, drop_path = rates(model)
        assert dropout and all(p == 0.2 for p in dropout) and drop_path == before[1]
    assert inputs == {} and rates(model) == before


@pytest.mark.parametrize("build", [lambda: hf_convnext(0.1), lambda: timm_vit(0.1)], ids=["hf_convnext", "timm_vit"])
def test_pathsub_adds_0_1_to_every_drop_path_rate(build):
    model = build()
    before = rates(model)
    with masking_for(model, "droppath", 0.5).apply(model, {}):
        dropout, drop_path = rates(model)
        assert drop_path == pytest.approx([rate + 0.1 for rate in before[1]]) and dropout == before[0]
    assert rates(model) == before  # exactly, not approximately


def test_rates_are_restored_after_an_exception():
    model = hf_convnext(0.1)
    before = rates(model)
    with pytest.raises(RuntimeError), PathSub(model).apply(model, {}):
        raise RuntimeError("sub forward failed")
    with pytest.raises(RuntimeError), DropSub(hf_vit()).apply(model, {}):
        raise RuntimeError("sub forward failed")
    assert rates(model) == before


def test_pathsub_needs_drop_path_modules():
    with pytest.raises(ValueError, match="drop_path_rate > 0"):
        masking_for(hf_convnext(0.0), "droppath", 0.5)


def test_trainer_runs_main_with_model_rates_and_sub_with_raised_rates(tmp_path):
    model = hf_convnext(0.1)
    seen = []  # drop-path rate of the last stage's last layer at each forward
    layer = model.convnext.encoder.stages[-1].layers[-1]
    layer.register_forward_pre_hook(lambda m, a: seen.append(round(m.drop_path.drop_prob, 6)))
    args = training_args(tmp_path, per_device_train_batch_size=4, max_steps=2, masksub_mode="droppath")
    items = image_items(8, torch.arange(8) % 3, num_keep=8)
    MaskSubTrainer(model=model, args=args, train_dataset=ListDataset(items)).train()
    assert seen == [0.1, 0.2, 0.1, 0.2]
    assert rates(model) == rates(hf_convnext(0.1))


def test_auto_mode_explains_what_it_cannot_mask():
    # Perceiver's text classifier reads `inputs` (bytes), neither input_ids nor an image
    config = transformers.PerceiverConfig(num_latents=4, d_latents=16, d_model=16, num_blocks=1,
                                          num_self_attends_per_block=1, num_self_attention_heads=2,
                                          num_cross_attention_heads=2, vocab_size=40, max_position_embeddings=32,
                                          num_labels=3)
    model = transformers.PerceiverForSequenceClassification(config)
    with pytest.raises(ValueError) as error:
        masking_for(model, "auto", 0.5)
    message = str(error.value)
    assert "\n" not in message and "PerceiverForSequenceClassification" in message and "reads 'inputs'" in message
    assert "'dropout'" in message and "'droppath'" in message
