"""MaskSub for CLIP-style dual encoders (``CLIPModel``, ``VisionTextDualEncoderModel``) and SigLIP's
(``SiglipModel``, ``Siglip2Model``: a pairwise sigmoid loss, ``SigmoidDualEncoderObjective``).

Paper, appendix "CLIP pretraining": only images are masked; the sub branch gets the masked images and
learns the main branch's N x N image-text similarity matrix (cross-entropy to its softmax, both
directions). The sub branch re-encodes only the masked images: its text embeddings are the main
pass's, detached. There is no second text forward, which keeps the step near x1.4 at ratio 0.5
instead of ~x1.9, and the text tower learns from the main branch only.

Items: the image-text pairs of the micro-batch (each pair's row and column of the similarity matrix). The
contrastive losses compare a pair with the other pairs of its own micro-batch, as CLIP's loss does.

SigLIP scores every image-text pair on its own (a sigmoid of ``scale * cos + bias``: matched or not), so its sub
branch learns each pair's probability from the main branch: binary cross-entropy of the sub logits to the
sigmoid of the detached main logits, summed over the image's row (an image's item), as its main loss sums the
pair losses of a row.
"""

import contextlib

import torch
import torch.nn.functional as F

from ..batch import image_inputs
from ..masking.structure import is_dual_encoder
from .base import Objective, unwrap
from .losses import soft_cross_entropy_per_item


def similarity_distillation_per_pair(sub_logits_per_image, main_logits_per_image):
    """Soft cross-entropy of the sub similarities to the detached main ones, per pair: its image->text row and
    text->image column, averaged."""
    return 0.5 * (soft_cross_entropy_per_item(sub_logits_per_image, main_logits_per_image)
                  + soft_cross_entropy_per_item(sub_logits_per_image.t(), main_logits_per_image.t()))


def normalized(embeddings):
    return embeddings / embeddings.norm(dim=-1, keepdim=True)


class DualEncoderObjective(Objective):
    """Its sub forward runs the bare model's image tower (``get_image_features``): outside DDP's reducer. Under FSDP2
    it runs between the main forward and the one backward of both branches (the only plan sharded engines take for
    it): the root's parameters, which FSDP2 keeps gathered from a forward to its backward, are whole then."""

    sub_bypasses_wrapper = True
    sub_loss = "image-text similarity distillation"
    trains = "CLIP-style dual encoders (CLIPModel, SiglipModel, ...)"

    @classmethod
    def serves(cls, model):  # SigLIP's logit_bias marks its pairwise sigmoid loss
        bare = unwrap(model)
        return is_dual_encoder(bare) and getattr(bare, "logit_bias", None) is None

    def main_inputs(self, inputs):
        return {**inputs, "return_loss": True}

    def targets(self, outputs, inputs, labels, masking, mask):
        return {"logits_per_image": outputs["logits_per_image"].detach(), "text_embeds": outputs["text_embeds"].detach()}

    def main_items(self, batch, labels):
        return batch["pixel_values"].shape[0]

    def main_loss_sum(self, outputs, labels):
        logits = outputs["logits_per_image"].float()
        pairs = torch.arange(len(logits), device=logits.device)
        return 0.5 * (F.cross_entropy(logits, pairs, reduction="sum") + F.cross_entropy(logits.t(), pairs, reduction="sum"))

    def sub_loss_sum(self, model, inputs, labels, targets, masking, mask, forward_context=contextlib.nullcontext):
        bare = unwrap(model)
        with masking.apply(bare, inputs, mask) as sub_inputs, forward_context():
            image_embeds = bare.get_image_features(**image_inputs(sub_inputs)).pooler_output
        image_embeds = normalized(image_embeds)
        # the models' own order (cosines, then the scale): SigLIP's scale is a 1-element tensor, which would
        # promote bf16 image embeddings to float32 before the product with bf16 text embeddings
        cosines = image_embeds @ targets["text_embeds"].to(image_embeds.dtype).t()
        sub_logits_per_image = cosines * bare.logit_scale.exp()
        return self.sub_loss_per_pair(self.biased(bare, sub_logits_per_image), targets["logits_per_image"]).sum()

    @staticmethod
    def biased(bare, logits):
        return logits

    @staticmethod
    def sub_loss_per_pair(sub_logits_per_image, main_logits_per_image):
        return similarity_distillation_per_pair(sub_logits_per_image, main_logits_per_image)


def pairwise_sigmoid_distillation_per_image(sub_logits_per_image, main_logits_per_image):
    """Each image's row of pair losses, summed: BCE of its sub logits to the sigmoid of the detached main ones."""
    targets = torch.sigmoid(main_logits_per_image.float())
    return F.binary_cross_entropy_with_logits(sub_logits_per_image.float(), targets, reduction="none").sum(dim=1)


class SigmoidDualEncoderObjective(DualEncoderObjective):
    """SigLIP: every pair scored on its own, ``sigmoid(scale * cos + bias)``; the main loss is the model's own."""

    sub_loss = "pairwise sigmoid distillation"
    trains = ""  # listed with DualEncoderObjective

    @classmethod
    def serves(cls, model):
        bare = unwrap(model)
        return is_dual_encoder(bare) and getattr(bare, "logit_bias", None) is not None

    def main_loss_sum(self, outputs, labels):
        logits = outputs["logits_per_image"].float()
        signs = 2 * torch.eye(len(logits), device=logits.device) - 1  # +1 matched pair, -1 every other
        return -F.logsigmoid(signs * logits).sum()

    @staticmethod
    def biased(bare, logits):
        return logits + bare.logit_bias

    @staticmethod
    def sub_loss_per_pair(sub_logits_per_image, main_logits_per_image):
        return pairwise_sigmoid_distillation_per_image(sub_logits_per_image, main_logits_per_image)


def retrieval_recalls(image_embeds, text_embeds, ks=(1, 5)):
    """Recall@k of image->text and text->image retrieval over paired rows (row i of each is a pair).

    Candidates that score exactly as the paired one are ordered at random: a query's recall@k is the chance its
    pair lands in the top k, ``(k - higher) / (ties + 1)`` clamped to [0, 1]. Counting ties as hits would give a
    tower that embeds every caption alike a recall of 1.
    """
    similarity = normalized(image_embeds) @ normalized(text_embeds).t()
    targets = torch.arange(len(similarity), device=similarity.device)
    recalls = {}
    for direction, scores in (("image_to_text", similarity), ("text_to_image", similarity.t())):
        paired = scores[targets, targets].unsqueeze(1)
        higher = (scores > paired).sum(dim=1)
        ties = (scores == paired).sum(dim=1) - 1  # the other candidates scoring exactly as the pair
        recalls.update({f"{direction}_recall@{k}": float(((k - higher) / (ties + 1)).clamp(0, 1).mean()) for k in ks})
    return recalls


def zero_shot_accuracy(image_embeds, class_text_embeds, labels):
    """Accuracy of the nearest class prompt embedding (one row per class, prompts already averaged). Classes that
    tie for nearest are chosen at random, as recall orders ties: an image scores 1 / (classes tied), if its own
    is among them (an argmax would credit the first class, so prompts embedded alike would score its frequency)."""
    scores = normalized(image_embeds) @ normalized(class_text_embeds).t()
    nearest = scores == scores.max(dim=1, keepdim=True).values
    own = nearest.gather(1, labels.to(scores.device).view(-1, 1)).squeeze(1)
    return float((own / nearest.sum(dim=1)).mean())
