"""MaskSub in TRL's ``SFTTrainer``: ``MaskSubSFTTrainer`` and ``MaskSubSFTConfig`` (needs ``trl``).

``SFTTrainer`` computes its loss with a fused LM head that never builds the logits; the sub branch learns the main
branch's next-token distributions, so under MaskSub the main branch is the model's own forward, with logits: its
loss is ``Trainer``'s (the model's next-token cross-entropy: SFT's ``nll`` at temperature 1, label smoothing and
``compute_loss_func`` as SFT applies them), and SFT's training metrics (``entropy``, ``mean_token_accuracy``,
``num_tokens``) are measured on those logits. Everything else is ``SFTTrainer``'s: dataset preparation, the
completion-only and assistant-only labels, evaluation, the model card (with the ``masksub`` tag). With
``masksub_ratio=0`` every step is ``SFTTrainer``'s own.

Refused in one line while MaskSub is on: packing and padding-free batches (the masking reads each row as one
sequence), ``loss_type="dft"`` and a MoE router loss (SFT's weightings of the fused head's outputs, not built here).
"""

from dataclasses import dataclass

import torch
from transformers import Trainer
from trl import SFTConfig, SFTTrainer

from .arguments import MaskSubArguments
from .trainer import MaskSubMixin

# Supervised positions whose full-vocabulary distribution the metrics hold at once: a few logits-rows of memory,
# never a copy of the logits (at 512 tokens x 30,522 words a copy took 250 MiB more than MaskSubTrainer's peak).
METRIC_ROWS = 256


@dataclass
class MaskSubSFTConfig(MaskSubArguments, SFTConfig):
    """``SFTConfig`` with MaskSub's fields (``--masksub_ratio 0.5`` turns it on)."""


class MaskSubSFTTrainer(MaskSubMixin, SFTTrainer):
    """TRL's ``SFTTrainer`` with MaskSub's sub branch; ``args`` must be :class:`MaskSubSFTConfig`."""

    default_arguments = MaskSubSFTConfig
    steps_wrapped = (SFTTrainer,)  # its training_step only enters the activation-offloading context: done below

    def check_settings(self):
        args = self.args
        if args.packing or args.padding_free:
            raise ValueError("MaskSub cannot train packed or padding-free SFT batches (several sequences in one "
                             "row, which its masking reads as one sequence): set packing=False and "
                             "padding_free=False.")
        if args.loss_type != "nll":
            raise ValueError(f"MaskSub trains SFT's loss_type='nll' (the model's next-token cross-entropy); "
                             f"loss_type={args.loss_type!r} weights the fused LM head's outputs, which MaskSub's "
                             "main branch does not run.")
        if getattr(self, "aux_loss_enabled", False):
            raise ValueError("MaskSub does not add SFT's MoE router loss to its main branch: set "
                             "router_aux_loss_coef=0.0 to train this model with MaskSub.")

    def training_step(self, model, inputs, num_items_in_batch=None):
        if self.masking is None:
            return super().training_step(model, inputs, num_items_in_batch)  # SFTTrainer's, its context included
        inputs["use_cache"] = False  # as SFT's loss asks, for both branches: no cache is built in training
        with self.maybe_activation_offload_context:
            return super().training_step(model, inputs, num_items_in_batch)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.masking is None or not (model.training and return_outputs):
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)  # SFT's: evaluation
        # MaskSub's main branch needs the logits: the model's own forward and loss, as in Trainer
        labels = inputs["labels"]  # Trainer pops them under label smoothing
        loss, outputs = Trainer.compute_loss(self, model, inputs, True, num_items_in_batch)
        self.log_sft_metrics(outputs["logits"], labels, inputs)
        return loss, outputs

    @torch.no_grad()
    def log_sft_metrics(self, logits, labels, inputs):
        """SFT's training metrics from the main branch's logits, as its fused head measures them."""
        labels = labels.to(logits.device)
        supervised = labels[:, 1:] != -100
        entropy, correct = logits.new_zeros((), dtype=torch.float32), logits.new_zeros((), dtype=torch.long)
        for chunk in supervised.nonzero().split(METRIC_ROWS):
            rows, positions = chunk.unbind(1)
            chosen = logits[rows, positions].float()
            log_probs = chosen.log_softmax(-1)
            entropy += -(log_probs.exp() * log_probs).sum()
            correct += (chosen.argmax(-1) == labels[rows, positions + 1]).sum()
        gather = self.accelerator.gather_for_metrics
        valid = gather(supervised.sum()).sum()
        entropy, correct = gather(entropy).sum(), gather(correct).sum()
        metrics = self._metrics["train"]
        metrics["entropy"].append((entropy / valid).item() if valid > 0 else 0.0)
        metrics["mean_token_accuracy"].append((correct / valid).item() if valid > 0 else 0.0)
        self._total_train_tokens += gather(inputs["attention_mask"].sum()).sum().item() // self._tp_size
        metrics["num_tokens"] = [self._total_train_tokens]
