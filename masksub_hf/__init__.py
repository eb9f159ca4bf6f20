"""MaskSub for Hugging Face Trainer: "Masking meets Supervision: A Strong Learning Alliance" (arXiv 2306.11339)."""

from .arguments import MaskSubTrainingArguments
from .collators import MaskSubImageCollator, MaskSubTextCollator
from .losses import sigmoid_binary_cross_entropy, soft_cross_entropy, sub_loss_for
from .masking import PatchTokenDrop, TokenMasking, masking_for
from .mixing import MixupCollator
from .target_losses import TargetLoss
from .trainer import MaskSubTrainer

__version__ = "0.1.0"

__all__ = [
    "MaskSubImageCollator",
    "MaskSubTextCollator",
    "MaskSubTrainer",
    "MaskSubTrainingArguments",
    "MixupCollator",
    "PatchTokenDrop",
    "TargetLoss",
    "TokenMasking",
    "masking_for",
    "sigmoid_binary_cross_entropy",
    "soft_cross_entropy",
    "sub_loss_for",
]
