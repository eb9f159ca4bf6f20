import json

import pytest
import torch
from helpers import ListDataset, image_items, tiny_bert, tiny_vit, training_args
from safetensors.torch import load_file
from transformers import AutoModelForImageClassification, CLIPConfig, CLIPForImageClassification, Trainer

from masksub_hf import MaskSubImageCollator, MaskSubTrainer


def labelled_items(n=16, seed=0):
    return image_items(n, torch.arange(n) % 3, num_keep=8, seed=seed)


def without_masks(items):
    return [{k: v for k, v in item.items() if not k.startswith("masksub_")} for item in items]


def test_ratio_zero_is_exactly_trainer(tmp_path):
    items = labelled_items()
    baseline, masksub_off = tiny_vit(), tiny_vit()
    common = dict(per_device_train_batch_size=4, max_steps=3, learning_rate=1e-2)
    Trainer(model=baseline, args=training_args(tmp_path / "a", **common),
            train_dataset=ListDataset(without_masks(items))).train()
    # The MaskSub trainer even gets batches carrying masks; at ratio 0 they are ignored.
    MaskSubTrainer(model=masksub_off, args=training_args(tmp_path / "b", masksub_ratio=0.0, **common),
                   train_dataset=ListDataset(items)).train()
    for (name, a), (_, b) in zip(baseline.named_parameters(), masksub_off.named_parameters()):
        assert torch.equal(a, b), name
    assert "masksub" not in (masksub_off.model_tags or [])


def test_logs_carry_both_branch_losses(tmp_path, monkeypatch):
    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(tmp_path / "tb"))
    model = tiny_vit()
    args = training_args(tmp_path, per_device_train_batch_size=4, max_steps=4, logging_steps=2,
                         gradient_accumulation_steps=2, report_to="tensorboard")
    trainer = MaskSubTrainer(model=model, args=args, train_dataset=ListDataset(labelled_items(32)))
    trainer.train()
    trainer.save_state()
    logged = [entry for entry in json.loads((tmp_path / "trainer_state.json").read_text())["log_history"]
              if "loss" in entry]
    assert len(logged) == 2
    for entry in logged:
        assert entry["main_loss"] > 0 and entry["sub_loss"] > 0
        assert entry["loss"] == pytest.approx(0.5 * entry["main_loss"] + 0.5 * entry["sub_loss"], abs=1e-5)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert {"train/main_loss", "train/sub_loss", "train/loss"} <= set(events.Tags()["scalars"])
    assert "masksub" in model.model_tags


def sequence_lengths_seen(model):
    """Record the token count entering the first encoder layer on every forward."""
    lengths = []
    model.vit.layers[0].register_forward_pre_hook(lambda module, args: lengths.append(args[0].shape[1]))
    return lengths


def test_masks_are_drawn_when_the_batch_has_none(tmp_path):
    model = tiny_vit()
    lengths = sequence_lengths_seen(model)
    args = training_args(tmp_path, per_device_train_batch_size=4, max_steps=2)
    MaskSubTrainer(model=model, args=args, train_dataset=ListDataset(without_masks(labelled_items()))).train()
    assert lengths == [17, 9, 17, 9]  # main: CLS + 16 patches; sub: CLS + 8 kept patches


def test_evaluation_and_prediction_never_run_a_sub_branch(tmp_path):
    model = tiny_vit()
    args = training_args(tmp_path, per_device_train_batch_size=4, per_device_eval_batch_size=4, max_steps=1)
    trainer = MaskSubTrainer(model=model, args=args, train_dataset=ListDataset(labelled_items()),
                             data_collator=MaskSubImageCollator(model))
    trainer.train()
    lengths = sequence_lengths_seen(model)
    eval_items = without_masks(labelled_items(8, seed=1))
    metrics = trainer.evaluate(ListDataset(eval_items))
    predictions = trainer.predict(ListDataset(eval_items))
    assert lengths == [17] * 4  # 2 eval + 2 predict batches, one full forward each
    assert "eval_loss" in metrics and predictions.predictions.shape == (8, 3)


def test_saved_model_reloads_in_plain_transformers(tmp_path):
    model = tiny_vit()
    args = training_args(tmp_path / "run", per_device_train_batch_size=4, max_steps=3, learning_rate=1e-2)
    trainer = MaskSubTrainer(model=model, args=args, train_dataset=ListDataset(labelled_items()))
    trainer.train()
    trainer.save_model(str(tmp_path / "export"))
    assert not model.vit.embeddings._forward_hooks
    tiny_vit().save_pretrained(tmp_path / "untouched")  # what transformers itself writes for this model
    saved_keys = set(load_file(str(tmp_path / "export" / "model.safetensors")))
    assert saved_keys == set(load_file(str(tmp_path / "untouched" / "model.safetensors")))
    reloaded = AutoModelForImageClassification.from_pretrained(tmp_path / "export").eval()
    pixels = torch.randn(2, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        assert torch.equal(reloaded(pixel_values=pixels).logits, model(pixel_values=pixels).logits)


def test_clip_vision_tower_token_drop(tmp_path):
    torch.manual_seed(0)
    config = CLIPConfig(
        vision_config=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64,
                           num_hidden_layers=2, num_attention_heads=2),
        text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2),
        num_labels=3,
    )
    model = CLIPForImageClassification(config)
    lengths = []
    model.vision_model.encoder.layers[0].register_forward_pre_hook(lambda m, a, kw: lengths.append(
        (a[0] if a else kw["hidden_states"]).shape[1]), with_kwargs=True)
    args = training_args(tmp_path, per_device_train_batch_size=4, max_steps=1)
    MaskSubTrainer(model=model, args=args, train_dataset=ListDataset(without_masks(labelled_items()))).train()
    assert lengths == [17, 9]


def test_unsupported_model_is_refused_with_its_name(tmp_path):
    with pytest.raises(ValueError, match="BertForSequenceClassification"):
        MaskSubTrainer(model=tiny_bert(), args=training_args(tmp_path, masksub_mode="tokens"))


def test_plain_training_arguments_are_refused(tmp_path):
    from transformers import TrainingArguments

    with pytest.raises(TypeError, match="MaskSubTrainingArguments"):
        MaskSubTrainer(model=tiny_vit(), args=TrainingArguments(output_dir=str(tmp_path)))


def test_main_backward_never_syncs_and_sub_backward_syncs_once_per_step(tmp_path):
    """Accelerate's sync flag at each backward: DeepSpeed steps its engine, and DDP/FSDP all-reduce, only when set."""
    model = tiny_vit()
    args = training_args(tmp_path, per_device_train_batch_size=4, gradient_accumulation_steps=2, max_steps=2)
    trainer = MaskSubTrainer(model=model, args=args, train_dataset=ListDataset(labelled_items()))
    flags, backward = [], trainer.accelerator.backward
    trainer.accelerator.backward = lambda loss, **kw: (flags.append(trainer.accelerator.sync_gradients),
                                                       backward(loss, **kw))
    trainer.train()
    # per micro-batch: (main, sub); per optimizer step: 2 micro-batches; sync only on the last sub backward
    assert flags == [False, False, False, True] * 2


def test_models_never_receive_mask_keys(tmp_path):
    model = tiny_vit()
    seen = []
    model.register_forward_pre_hook(lambda module, args, kwargs: seen.append(set(kwargs)), with_kwargs=True)
    args = training_args(tmp_path, per_device_train_batch_size=4, max_steps=2)
    MaskSubTrainer(model=model, args=args, train_dataset=ListDataset(labelled_items()),
                   data_collator=MaskSubImageCollator(model)).train()
    assert len(seen) == 4 and not any(key.startswith("masksub_") for keys in seen for key in keys)


@pytest.mark.parametrize("model_class", ["DeiTForImageClassification", "DeiTForImageClassificationWithTeacher"])
def test_deit_keeps_cls_and_distillation_tokens(model_class):
    import transformers

    from masksub_hf import masking_for

    config = transformers.DeiTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=64, num_labels=3)
    model = getattr(transformers, model_class)(config).eval()
    masking = masking_for(model, "auto", 0.5)
    pixels = torch.randn(2, 3, 32, 32)
    keep = masking.draw({"pixel_values": pixels})
    full = model.deit.embeddings(pixels)
    lengths = []
    model.deit.layers[0].register_forward_pre_hook(lambda m, a: lengths.append(a[0].shape[1]))
    with masking.apply(model, {"pixel_values": pixels}, keep) as sub_inputs:
        dropped = model.deit.embeddings(pixels)
        logits = model(**sub_inputs).logits
    torch.testing.assert_close(dropped[:, :2], full[:, :2])
    assert lengths == [2 + 8] and logits.shape == (2, 3)


def test_the_log_says_what_auto_chose(tmp_path, caplog):
    """Before: the log read "mode auto" without naming the masking or sub loss that auto picked."""
    from transformers import ResNetConfig, ResNetForImageClassification

    resnet = ResNetForImageClassification(ResNetConfig(num_channels=3, embedding_size=8, hidden_sizes=[8, 16],
                                                       depths=[1, 1], num_labels=3, problem_type="multi_label_classification"))
    with caplog.at_level("INFO", logger="masksub_hf"):
        MaskSubTrainer(model=tiny_vit(), args=training_args(tmp_path, masksub_ratio=0.5))
        MaskSubTrainer(model=resnet, args=training_args(tmp_path, masksub_ratio=0.3, masksub_mode="auto"))
        MaskSubTrainer(model=tiny_vit(), args=training_args(tmp_path, masksub_ratio=0.0))
    lines = [record.getMessage() for record in caplog.records if record.getMessage().startswith("MaskSub")]
    assert "MaskSub for ViTForImageClassification: ratio 0.5, mode auto (tokens), loss auto (soft_ce), " \
           "main_weight 0.5, sub_weight 0.5" in lines
    assert "MaskSub for ResNetForImageClassification: ratio 0.3, mode auto (pixels), loss auto (bce), main_weight " \
           "0.5, sub_weight 0.5, block_size default (32 px at 224 px)" in lines
    assert "MaskSub: ratio 0.0: off, every step is Trainer.training_step" in lines


def test_the_cards_loss_table_takes_a_history_whose_branch_losses_stop_midway():
    """A run resumed with --resume_from_checkpoint at ratio 0 logs main/sub losses for its first steps only; the card
    crashed on it (KeyError 'main_loss')."""
    from masksub_hf.training.model_card import logged_losses_table

    history = [{"loss": 1.5, "main_loss": 1.0, "sub_loss": 2.0, "step": 2, "epoch": 0.5},
               {"loss": 1.25, "step": 4, "epoch": 1.0}, {"train_runtime": 3.0, "step": 4}]
    table = logged_losses_table(history)
    assert "| 2 | 0.5 | 1.5 | 1 | 2 |" in table and "| 4 | 1 | 1.25 |  |  |" in table


def test_the_cards_loss_table_spreads_its_rows_and_ends_at_the_last_logged_step():
    from masksub_hf.training.model_card import logged_losses_table

    table = logged_losses_table([{"loss": float(step), "step": step, "epoch": step / 10} for step in range(1, 31)])
    steps = [int(line.split("|")[1]) for line in table.splitlines() if line.startswith("| ") and "Step" not in line]
    assert steps[0] == 1 and steps[-1] == 30 and len(steps) == 10 and steps == sorted(set(steps))


def test_each_micro_batch_carries_its_own_steps_item_counts(tmp_path):
    """The step's item counts travel in each micro-batch from get_batch_samples to training_step: 10 rows in
    micro-batches of 4, accumulated 2 at a time, make a step of 4 + 4 rows and a step of 2."""
    from masksub_hf.batch import STEP_ITEMS

    seen = []

    class Spying(MaskSubTrainer):
        def training_step(self, model, inputs, num_items_in_batch=None):
            items, share = inputs[STEP_ITEMS]
            seen.append((len(inputs["labels"]), float(items.main), float(items.sub), share))
            return super().training_step(model, inputs, num_items_in_batch)

    args = training_args(tmp_path, per_device_train_batch_size=4, gradient_accumulation_steps=2, num_train_epochs=1)
    Spying(model=tiny_vit(), args=args, train_dataset=ListDataset(labelled_items(10))).train()
    assert seen == [(4, 8.0, 8.0, 1.0), (4, 8.0, 8.0, 1.0), (2, 2.0, 2.0, 1.0)]


def test_a_micro_batch_that_skipped_get_batch_samples_is_an_error_not_a_silent_step(tmp_path):
    """If Trainer's loop ever hands training_step batches that did not pass through get_batch_samples, each would be
    normalised as a whole step by itself (silently wrong under accumulation): MaskSub says so instead."""

    class Bypassing(MaskSubTrainer):
        def get_batch_samples(self, epoch_iterator, num_batches, device):
            return Trainer.get_batch_samples(self, epoch_iterator, num_batches, device)

    args = training_args(tmp_path, per_device_train_batch_size=4, gradient_accumulation_steps=2, max_steps=1)
    with pytest.raises(RuntimeError, match="without its step's item counts"):
        Bypassing(model=tiny_vit(), args=args, train_dataset=ListDataset(labelled_items(8))).train()
