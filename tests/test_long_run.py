"""Long-run sanity: 2,000 MaskSub steps of a tiny ViT, fed through the per-sample seeded data pipeline
and the MaskSub collator, keep memory flat (RSS sampled every 100 steps) and every loss finite."""

import math

import psutil
import pytest
import torch
from helpers import ListDataset, image_items, tiny_vit, training_args
from transformers import TrainerCallback

from masksub_hf import MaskSubImageCollator, MaskSubTrainer

STEPS, EVERY, WARM_UP = 2000, 100, 300


class ResidentMemory(TrainerCallback):
    def __init__(self):
        self.samples = {}

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % EVERY == 0:
            self.samples[state.global_step] = psutil.Process().memory_info().rss


@pytest.mark.slow
def test_two_thousand_steps_keep_memory_flat_and_losses_finite(tmp_path):
    model = tiny_vit()
    items = [{k: v for k, v in item.items() if not k.startswith("masksub")}
             for item in image_items(64, torch.arange(64) % 3, num_keep=8)]
    args = training_args(tmp_path, per_device_train_batch_size=8, max_steps=STEPS, logging_steps=EVERY,
                         learning_rate=1e-3, max_grad_norm=1.0, lr_scheduler_type="cosine")
    memory = ResidentMemory()
    trainer = MaskSubTrainer(model=model, args=args, train_dataset=ListDataset(items),
                             data_collator=MaskSubImageCollator(model, 0.5), callbacks=[memory])
    trainer.train()

    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logged) == STEPS // EVERY
    assert all(math.isfinite(entry[key]) for entry in logged for key in ("loss", "main_loss", "sub_loss"))
    assert all(torch.isfinite(p).all() for p in model.parameters())
    after_warm_up = [rss for step, rss in sorted(memory.samples.items()) if step >= WARM_UP]
    growth = max(after_warm_up) / after_warm_up[0] - 1
    print(f"RSS from step {WARM_UP} to {STEPS}: {after_warm_up[0] / 2**20:.1f} MiB -> "
          f"{after_warm_up[-1] / 2**20:.1f} MiB (max growth {growth:+.2%})")
    assert growth < 0.05
