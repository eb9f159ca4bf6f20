"""The sub branch's objective, one per head kind (the method's second half; ``masking/`` is the first).

- ``classification``: one prediction per input (image and sequence classifiers, timm models): soft
  cross-entropy to ``softmax(main)``, its sigmoid form for multi-label heads, squared error for regression;
- ``token_classification``: one prediction per token, at the supervised tokens;
- ``multiple_choice``: one distribution over each input's choices;
- ``question_answering``: the answer's start and end, two distributions over each input's tokens;
- ``causal_lm``: one next-token prediction per position, at the supervised next tokens;
- ``seq2seq_lm``: one next-token prediction per target position, the source masked;
- ``semantic_segmentation``: one class distribution per labelled pixel, at the label resolution;
- ``clip``: CLIP-style dual encoders distil the N x N image-text similarity matrix;
- ``losses``: the relaxed per-item losses they use.

``OBJECTIVES`` is the registry: each objective says which heads it serves (``Objective.serves``), and
``objective_for`` takes the first that does. A head none serves (object detection, instance segmentation, masked LM, ...) is a one-line
error in every ``masksub_mode``. A new head: one module, one line here.
"""

from .base import Objective, head_name
from .causal_lm import CausalLMObjective
from .classification import ClassificationObjective
from .clip import DualEncoderObjective, SigmoidDualEncoderObjective
from .multiple_choice import MultipleChoiceObjective
from .question_answering import QuestionAnsweringObjective
from .semantic_segmentation import SemanticSegmentationObjective
from .seq2seq_lm import Seq2SeqLMObjective
from .token_classification import TokenClassificationObjective

OBJECTIVES = (
    SigmoidDualEncoderObjective,
    DualEncoderObjective,
    TokenClassificationObjective,
    Seq2SeqLMObjective,
    CausalLMObjective,
    MultipleChoiceObjective,
    QuestionAnsweringObjective,
    SemanticSegmentationObjective,
    ClassificationObjective,
)


class UnsupportedHead(ValueError):
    """A head MaskSub has no sub-branch objective for (object detection, instance segmentation, masked LM, ...)."""


# Heads refused with their own reason: set predictions, no fixed one-to-one pairing of the two branches' outputs.
SET_PREDICTION_HEADS = ("ForObjectDetection", "ForInstanceSegmentation", "ForUniversalSegmentation",
                        "ForPanopticSegmentation")


def objective_for(model, sub_loss="auto") -> Objective:
    """The objective for ``model``'s head; ``sub_loss`` (``masksub_loss``) applies to one-prediction-per-input heads."""
    for objective in OBJECTIVES:
        if objective.serves(model):
            return objective.for_model(model, sub_loss)
    if head_name(model).endswith(SET_PREDICTION_HEADS):
        raise UnsupportedHead(
            f"MaskSub has no sub-branch objective for {head_name(model)}: it predicts a set of objects, each matched "
            "to a ground-truth object by its loss (bipartite matching) anew in every forward, so the masked "
            "branch's predictions have no fixed counterpart among the main branch's to learn from.")
    trains = [objective.trains for objective in OBJECTIVES if objective.trains]
    raise UnsupportedHead(
        f"MaskSub has no sub-branch objective for {head_name(model)}: it trains {', '.join(trains[:-1])} and "
        f"{trains[-1]}.")


__all__ = ["OBJECTIVES", "CausalLMObjective", "ClassificationObjective", "DualEncoderObjective",
           "MultipleChoiceObjective", "Objective", "QuestionAnsweringObjective", "SemanticSegmentationObjective",
           "Seq2SeqLMObjective", "SigmoidDualEncoderObjective", "TokenClassificationObjective", "UnsupportedHead", "objective_for"]
