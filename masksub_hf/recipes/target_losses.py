"""Main-branch losses of the paper's recipes, as ``Trainer(compute_loss_func=...)``.

- soft-target cross-entropy (timm's ``SoftTargetCrossEntropy``): mixed targets from Mixup/CutMix (DeiT,
  MAE / BEiT fine-tuning);
- binary cross-entropy (timm's ``BinaryCrossEntropy``): DeiT-III binarises the mixed targets
  (``targets.gt(0)``), ResNet strikes back thresholds them (``bce_target_thresh 0.2``).

Why not the model's own loss: transformers' classification heads read float ``(batch, classes)`` labels as
multi-label and switch to BCE without thresholding, and record that in ``config.problem_type``.

Normalised as Trainer expects of a ``compute_loss_func``: over the samples of the whole accumulated batch
(``num_items_in_batch`` counts label entries, so a soft-target row counts ``classes`` of them), which makes
gradient accumulation and data parallelism equal one large batch. The sub branch keeps its own relaxed loss:
``masksub_sub_loss`` says which one matches (sigmoid targets under BCE, softmax targets otherwise).
"""

import torch.nn.functional as F
from timm.loss import BinaryCrossEntropy, SoftTargetCrossEntropy


class TargetLoss:
    """Soft-target cross-entropy, or BCE when ``bce`` (targets above ``bce_target_thresh`` become 1, others 0;
    ``None`` binarises as DeiT-III, every target above 0).

    ``label_smoothing`` applies to integer labels only (evaluation, or training without mixing); mixed
    targets are smoothed by the Mixup that made them.
    """

    def __init__(self, bce=False, bce_target_thresh=None, label_smoothing=0.0):
        self.bce = bce
        self.label_smoothing = label_smoothing
        if bce:
            threshold = 0.0 if bce_target_thresh is None else bce_target_thresh
            self.loss = BinaryCrossEntropy(smoothing=label_smoothing, target_threshold=threshold)
        else:
            self.loss = SoftTargetCrossEntropy()
        self.masksub_sub_loss = "bce" if bce else "soft_ce"

    def __call__(self, outputs, labels, num_items_in_batch=None):
        logits = outputs["logits"].float()
        if self.bce or labels.dim() == 2:
            loss = self.loss(logits, labels.to(logits.dtype) if labels.dim() == 2 else labels)
        else:
            loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        if num_items_in_batch is None:
            return loss
        # A per-micro-batch mean -> a sum over these samples, divided by the accumulated batch's sample count.
        samples = num_items_in_batch / (labels.shape[-1] if labels.dim() == 2 else 1)
        return loss * labels.shape[0] / samples
