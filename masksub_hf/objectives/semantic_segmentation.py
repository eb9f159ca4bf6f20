"""The sub loss of semantic segmentation heads (``*ForSemanticSegmentation``: SegFormer, BEiT, DPT, UperNet,
MobileViT, ...): one class distribution per pixel.

The heads give logits at their own resolution (SegFormer a quarter of the image's) and are trained, as
transformers computes their loss, on the logits upsampled bilinearly to the label map's size, with cross-entropy
at every pixel whose label is not ``config.semantic_loss_ignore_index``. The sub branch sees the image masked
(zero-filled pixel blocks, or a mask token where the encoder has one: patch tokens cannot be dropped, the decoder
reads every patch at its place in the grid) and learns, at the same pixels, the main branch's detached per-pixel
distribution, both upsampled to the label resolution. Items: the labelled pixels, for both branches.

A head with one label (``num_labels == 1``: transformers trains it with a sigmoid) is refused in one line. The main
loss here is the head's cross-entropy; an auxiliary head's loss (BEiT, DPT, UperNet with ``use_auxiliary_head``)
is part of the main branch through ``Trainer.compute_loss`` (the model's own loss), not of ``masksub_step``'s
default main branch.
"""

import contextlib

import torch
import torch.nn.functional as F

from .base import Objective, head_name, sub_logits, unwrap


def at_label_resolution(logits, labels):
    """``(B, C, H, W)`` float32 logits upsampled to the label map's ``(H, W)``, as the heads' own loss does."""
    return F.interpolate(logits.float(), size=labels.shape[-2:], mode="bilinear", align_corners=False)


class SemanticSegmentationObjective(Objective):
    heads = ("ForSemanticSegmentation",)
    trains = "semantic segmentation heads (*ForSemanticSegmentation)"

    def __init__(self, ignore_index=255):
        self.ignore_index = ignore_index

    @classmethod
    def for_model(cls, model, sub_loss="auto"):
        cls.check_sub_loss(model, sub_loss)
        config = unwrap(model).config
        if config.num_labels < 2:
            raise ValueError(f"MaskSub trains {head_name(model)} with one class distribution per pixel: num_labels="
                             f"{config.num_labels} (a sigmoid per pixel) is not supported; use num_labels >= 2.")
        return cls(getattr(config, "semantic_loss_ignore_index", 255))

    def labelled(self, labels):
        return labels != self.ignore_index

    def main_items(self, batch, labels):
        return self.labelled(labels).sum()

    def main_loss_sum(self, outputs, labels):
        logits = at_label_resolution(outputs["logits"], labels)
        return F.cross_entropy(logits, labels.to(logits.device), ignore_index=self.ignore_index, reduction="sum")

    def targets(self, outputs, inputs, labels, masking, mask):
        # held through the sub pass at the head's resolution (a sixteenth of the label map's pixels for SegFormer),
        # upsampled again there: the same values, without a label-sized copy held
        return {"logits": outputs["logits"].detach(), "labelled": self.labelled(labels.to(outputs["logits"].device))}

    def sub_loss_sum(self, model, inputs, labels, targets, masking, mask, forward_context=contextlib.nullcontext):
        sub = at_label_resolution(sub_logits(model, inputs, masking, mask, forward_context), labels)
        with torch.no_grad():
            target = at_label_resolution(targets["logits"], labels).softmax(dim=1)
        # cross-entropy to probabilities, per pixel: -sum_c softmax(main)_c * log_softmax(sub)_c
        return F.cross_entropy(sub, target, reduction="none")[targets["labelled"]].sum()
