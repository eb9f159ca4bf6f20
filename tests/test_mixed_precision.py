"""Mixed precision. fp16: both branches' losses go through the same gradient scaler, and an overflow in
either branch skips the optimizer step once and backs the scale off once. On CPU Accelerate runs fp16 as
fp32 (no autocast, no scaler), so the test switches on the path a GPU run takes: fp16 autocast
(``native_amp``) and torch's CPU ``GradScaler``; under ``MASKSUB_TEST_DEVICE=cuda`` (benchmarks/gpu.py) the
CUDA ``GradScaler`` Accelerate uses, with the tests' initial scale. bf16 trains close to fp32."""

import pytest
import torch
from helpers import TEST_DEVICE, GradientProbe, ListDataset, image_items, tiny_vit, training_args
from transformers import TrainerCallback

from masksub_hf import MaskSubTrainer
from masksub_hf.objectives import ClassificationObjective

INIT_SCALE = 2.0**12


class ParameterProbe(TrainerCallback):
    """The parameters after every optimizer step (skipped or not)."""

    def __init__(self):
        self.states = []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.states.append([p.detach().clone() for p in model.parameters()])


def fp16_run(tmp_path, init_scale=INIT_SCALE, **overrides):
    model = tiny_vit()
    args = training_args(tmp_path, per_device_train_batch_size=4, max_steps=3, fp16=True, max_grad_norm=1.0,
                         **overrides)
    items = image_items(12, torch.arange(12) % 3, num_keep=8)
    trainer = MaskSubTrainer(model=model, args=args, train_dataset=ListDataset(items))
    trainer.accelerator.native_amp = True
    trainer.accelerator.scaler = torch.amp.GradScaler(TEST_DEVICE, init_scale=init_scale, growth_interval=1000)
    gradients, parameters = GradientProbe(), ParameterProbe()
    trainer.add_callback(gradients)
    trainer.add_callback(parameters)
    trainer.train()
    return trainer, gradients.gradients, parameters.states


@pytest.mark.parametrize("branch", ["main", "sub"])
def test_fp16_scaler_scales_each_branch(tmp_path, branch):
    """With only one branch weighted, its unscaled gradients equal those of a run with scale 1: a branch
    that bypassed the scaler would come out divided by the scale."""
    weights = {"masksub_main_weight": float(branch == "main"), "masksub_sub_weight": float(branch == "sub")}
    # SGD: Adam would turn the scaler's rescued tiny gradients (zeros without it) into full-size steps.
    _, scaled, _ = fp16_run(tmp_path / "scaled", optim="sgd", learning_rate=0.1, **weights)
    _, plain, _ = fp16_run(tmp_path / "plain", init_scale=1.0, optim="sgd", learning_rate=0.1, **weights)
    assert len(scaled) == len(plain) == 3
    for step_scaled, step_plain in zip(scaled, plain):
        a, b = (torch.cat([step[name].flatten() for name in sorted(step_plain)]) for step in (step_scaled, step_plain))
        assert b.abs().max() > 0
        assert (a - b).abs().max() <= 1e-2 * b.abs().max()  # fp16 rounding; a bypass would be off by ~100%


@pytest.mark.parametrize("branch", ["main", "sub"])
def test_fp16_overflow_in_either_branch_skips_the_step_once(tmp_path, monkeypatch, branch):
    trainer_holder = []

    def overflow_on_second_step(loss):
        return loss * float("inf") if trainer_holder[0].state.global_step == 1 else loss

    if branch == "sub":
        original = ClassificationObjective.sub_loss_sum
        monkeypatch.setattr(ClassificationObjective, "sub_loss_sum",
                            lambda *a, **k: overflow_on_second_step(original(*a, **k)))
    else:
        original = MaskSubTrainer.compute_loss

        def compute_loss(self, *args, **kwargs):
            loss, outputs = original(self, *args, **kwargs)
            return overflow_on_second_step(loss), outputs

        monkeypatch.setattr(MaskSubTrainer, "compute_loss", compute_loss)
    original_init = MaskSubTrainer.__init__
    monkeypatch.setattr(MaskSubTrainer, "__init__",
                        lambda self, *a, **k: (original_init(self, *a, **k), trainer_holder.append(self))[0])
    trainer, _, states = fp16_run(tmp_path, gradient_accumulation_steps=2)
    assert trainer.accelerator.scaler.get_scale() == INIT_SCALE / 2  # backed off once, not twice
    assert all(torch.equal(a, b) for a, b in zip(states[0], states[1]))  # step 2 skipped
    assert not all(torch.equal(a, b) for a, b in zip(states[1], states[2]))  # step 3 trained
    assert all(torch.isfinite(p).all() for p in states[2])


def test_bf16_on_cpu_trains_close_to_fp32(tmp_path):
    def final_parameters(output_dir, **precision):
        model = tiny_vit()
        args = training_args(output_dir, per_device_train_batch_size=4, max_steps=4, logging_steps=1, **precision)
        items = image_items(16, torch.arange(16) % 3, num_keep=8)
        trainer = MaskSubTrainer(model=model, args=args, train_dataset=ListDataset(items))
        trainer.train()
        logged = [entry for entry in trainer.state.log_history if "loss" in entry]
        assert all(torch.isfinite(torch.tensor([e["main_loss"], e["sub_loss"]])).all() for e in logged)
        return trainer.accelerator.mixed_precision, torch.cat([p.detach().flatten() for p in model.parameters()])

    start = torch.cat([p.detach().flatten() for p in tiny_vit().parameters()])
    precision, bf16 = final_parameters(tmp_path / "bf16", bf16=True)
    _, fp32 = final_parameters(tmp_path / "fp32")
    assert precision == "bf16"
    assert not torch.equal(bf16, fp32)  # autocast really ran in bf16
    # ...and took nearly the same steps (measured: the updates differ by 6%)
    assert (bf16 - fp32).norm() < 0.15 * (fp32 - start).norm()
