"""MaskSub for Hugging Face Trainer: "Masking meets Supervision: A Strong Learning Alliance" (arXiv 2306.11339)."""

from .log import library_logger
from .masking import PatchTokenDrop, TextMasking, masking_for
from .objectives import objective_for
from .objectives.losses import sigmoid_binary_cross_entropy, soft_cross_entropy
from .pipeline.collators import MaskSubImageCollator, MaskSubTextCollator
from .recipes.mixing import MixupCollator
from .recipes.target_losses import TargetLoss
from .training.arguments import MaskSubArguments, MaskSubSeq2SeqTrainingArguments, MaskSubTrainingArguments
from .training.trainer import MaskSubMixin, MaskSubSeq2SeqTrainer, MaskSubTrainer

__version__ = "0.1.0"

library_logger()  # what auto chose reaches a plain Python session's stderr

# Need trl (masksub-hf[sft]): imported when asked for, and outside __all__ (a star import without trl still works).
SFT_CLASSES = ("MaskSubSFTConfig", "MaskSubSFTTrainer")


def __getattr__(name):
    if name in SFT_CLASSES:
        from .training import sft

        return getattr(sft, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "MaskSubArguments",
    "MaskSubImageCollator",
    "MaskSubMixin",
    "MaskSubSeq2SeqTrainer",
    "MaskSubSeq2SeqTrainingArguments",
    "MaskSubTextCollator",
    "MaskSubTrainer",
    "MaskSubTrainingArguments",
    "MixupCollator",
    "PatchTokenDrop",
    "TargetLoss",
    "TextMasking",
    "masking_for",
    "objective_for",
    "sigmoid_binary_cross_entropy",
    "soft_cross_entropy",
]
