"""``load_best_model_at_end``: the final model holds the best checkpoint's weights, every one of them.

transformers 5.23 saves some models (ViT, ...) under legacy key names and reloads the best checkpoint
with a non-strict ``load_state_dict``: without MaskSub's repair, the encoder layers silently keep the
last step's values. The reference is independent of any loading code: the weights the model held in
memory at the best step.
"""

import pytest
import torch
import transformers
from helpers import ListDataset, tiny_bert, tiny_vit, training_args
from models import hf_model, pair_items, tiny_clip
from test_families import timm_wrapper
from transformers import TrainerCallback

from masksub_hf import MaskSubTrainer

BEST_STEP, EVAL_EVERY, STEPS = 2, 2, 6


class ScriptedBestMetric(TrainerCallback):
    """Makes the first evaluation the best one (``eval_score`` 3, then 1, 0) and keeps the weights of every step."""

    def __init__(self):
        self.scores = iter([3.0, 1.0, 0.0])
        self.weights = {}
        self.owned = list  # the trainer's MaskSub-owned parameters (a mask token), set once it exists

    def on_step_end(self, args, state, control, model=None, **kwargs):
        weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        weights.update({f"owned.{i}": p.detach().clone() for i, p in enumerate(self.owned())})
        self.weights[state.global_step] = weights

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        metrics["eval_score"] = next(self.scores)


def tiny_deit():
    torch.manual_seed(0)
    config = transformers.DeiTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=64, num_labels=3)
    return transformers.DeiTForImageClassification(config)


def image_data(seed=0):
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randn(16, 3, 32, 32, generator=generator)
    return [{"pixel_values": pixels[i], "labels": torch.tensor(i % 3)} for i in range(16)]


def text_data(seed=0):
    """Token ids with their sub-branch copy ([MASK] = 4 at two positions), as MaskSubTextCollator would draw."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, 64, (16, 12), generator=generator)
    masked = input_ids.clone()
    masked[:, [3, 7]] = 4
    return [{"input_ids": input_ids[i], "attention_mask": torch.ones(12, dtype=torch.long),
             "masksub_input_ids": masked[i], "labels": torch.tensor(i % 2)} for i in range(16)]


FAMILIES = {
    "vit": (tiny_vit, image_data),
    "deit": (tiny_deit, image_data),
    "swin": (lambda: hf_model("swin"), image_data),
    "beit": (lambda: hf_model("beit"), image_data),
    "resnet": (lambda: hf_model("resnet"), image_data),
    "convnext": (lambda: hf_model("convnext"), image_data),
    "bert": (tiny_bert, text_data),
    "clip": (tiny_clip, lambda seed=0: pair_items(seed) * 2),
    "timm_vit": (lambda: timm_wrapper("vit_tiny_patch16_224"), image_data),
    "timm_resnet": (lambda: timm_wrapper("resnet18"), image_data),
}


def train_keeping_best(tmp_path, family, ratio):
    build, data = FAMILIES[family]
    model = build()
    args = training_args(tmp_path, masksub_ratio=ratio, masksub_block_size=8, max_steps=STEPS,
                         per_device_train_batch_size=4, optim="sgd", learning_rate=0.1, eval_strategy="steps",
                         eval_steps=EVAL_EVERY, save_strategy="steps", save_steps=EVAL_EVERY,
                         per_device_eval_batch_size=8, load_best_model_at_end=True,
                         metric_for_best_model="score", greater_is_better=True)
    recorder = ScriptedBestMetric()
    trainer = MaskSubTrainer(model=model, args=args, train_dataset=ListDataset(data()),
                             eval_dataset=ListDataset(data(seed=1)[:8]), callbacks=[recorder])
    recorder.owned = trainer._owned_parameters
    trainer.train()
    assert trainer.state.best_model_checkpoint.endswith(f"checkpoint-{BEST_STEP}")
    return model, recorder.weights, trainer


@pytest.mark.parametrize("family", list(FAMILIES))
def test_best_model_at_end_restores_every_weight(tmp_path, family):
    model, weights, trainer = train_keeping_best(tmp_path, family, ratio=0.5)
    best, last = weights[BEST_STEP], weights[STEPS]
    final = model.state_dict()
    final.update({f"owned.{i}": p for i, p in enumerate(trainer._owned_parameters())})  # a mask token too
    assert final.keys() == best.keys()
    for name, value in best.items():
        assert torch.equal(final[name], value), name
    # the run moved on after the best step, so restoring it is a real change
    assert any(not torch.equal(last[name], best[name]) for name in best)


def test_best_model_at_end_with_ratio_zero_restores_every_weight(tmp_path):
    """masksub_ratio=0 is plain Trainer's step, and the repaired reload still applies."""
    model, weights, _ = train_keeping_best(tmp_path, "vit", ratio=0.0)
    final = model.state_dict()
    for name, value in weights[BEST_STEP].items():
        assert torch.equal(final[name], value), name
