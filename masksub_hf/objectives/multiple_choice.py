"""The sub loss of multiple-choice heads (``*ForMultipleChoice``): one distribution over an input's choices.

Each input is ``C`` sequences, ``(B, C, L)``, one per choice; the model scores each and gives ``(B, C)`` logits,
trained with cross-entropy to the right choice whatever ``config.num_labels`` or ``problem_type`` say. The text
masking masks every choice as a sequence of its own (the same ratio of its real tokens); the sub branch learns
the main branch's detached distribution over the choices, soft cross-entropy to ``softmax(main)``. Items: the
inputs whose label is not -100.
"""

from .classification import ClassificationObjective


class MultipleChoiceObjective(ClassificationObjective):
    heads = ("ForMultipleChoice",)
    trains = "multiple-choice heads (*ForMultipleChoice)"

    @classmethod
    def for_model(cls, model, sub_loss="auto"):
        cls.check_sub_loss(model, sub_loss)  # cross-entropy over the choices, whatever the config says
        return cls(None, "soft_ce")
