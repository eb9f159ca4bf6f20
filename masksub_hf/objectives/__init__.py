"""The sub branch's objective, one per head kind (the method's second half; ``masking/`` is the first).

- ``classification``: one prediction per input (image and sequence classifiers, timm models): soft
  cross-entropy to ``softmax(main)``, its sigmoid form for multi-label heads, squared error for regression;
- ``token_classification``: one prediction per token, at the supervised tokens;
- ``clip``: CLIP-style dual encoders distil the N x N image-text similarity matrix;
- ``losses``: the relaxed per-item losses they use.

``objective_for`` picks one by what the model is; a head none fits (question answering, multiple choice,
generation, ...) is a one-line error in every ``masksub_mode``.
"""

from ..masking import timm_model_of
from ..masking.structure import is_dual_encoder
from . import classification, token_classification
from .base import Objective, head_name, unwrap
from .classification import ClassificationObjective
from .clip import DualEncoderObjective, SigmoidDualEncoderObjective
from .token_classification import TokenClassificationObjective


class UnsupportedHead(ValueError):
    """A head MaskSub has no sub-branch objective for (question answering, generation, ...)."""


def objective_for(model, sub_loss="auto") -> Objective:
    """The objective for ``model``'s head; ``sub_loss`` (``masksub_loss``) applies to one-prediction-per-input heads."""
    bare = unwrap(model)
    name = head_name(model)
    if is_dual_encoder(bare):  # SigLIP's logit_bias marks its pairwise sigmoid loss
        return SigmoidDualEncoderObjective() if getattr(bare, "logit_bias", None) is not None else DualEncoderObjective()
    if name.endswith(token_classification.HEADS):
        return TokenClassificationObjective()
    if name.endswith(classification.HEADS) or timm_model_of(bare) is not None:
        return ClassificationObjective(getattr(bare, "config", None), sub_loss)
    raise UnsupportedHead(
        f"MaskSub has no sub-branch objective for {name}: it trains classifiers with one prediction per input "
        f"(*{', *'.join(classification.HEADS)}, timm models), token classifiers (*ForTokenClassification) and "
        "CLIP-style dual encoders; question answering, multiple choice and generation heads are not supported.")


__all__ = ["ClassificationObjective", "DualEncoderObjective", "Objective", "SigmoidDualEncoderObjective",
           "TokenClassificationObjective",
           "UnsupportedHead",
           "objective_for"]
