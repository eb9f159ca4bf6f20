"""The sub loss of token classifiers (NER, POS: ``*ForTokenClassification``): one prediction per token.

What the paper's rule implies per token: the sub branch learns the main branch's detached prediction wherever
the main branch is supervised, that is at every position whose label is not -100 (first sub-words, as
``run_ner.py`` labels them), and nowhere else: padding, special tokens and the sub-words ``-100`` leaves out
carry no target. Under ``[MASK]`` (``text``) the sub branch keeps every position, so a masked position still
learns its token's prediction, from context. Under token drop (``text_drop``) a dropped token has no output:
each kept token is compared with the main prediction at its own original position (never a neighbour's:
``kept`` maps the repacked sequence back), and dropped tokens add nothing.

Each supervised token weighs what it weighs in the main loss: the per-token soft cross-entropy is summed and
divided by the number of labelled tokens of the accumulated batch (``num_items_in_batch``, Trainer's
normaliser), or averaged over this micro-batch's labelled tokens when there is none.
"""

from ..masking import peft_base_model
from .losses import soft_cross_entropy_per_item


def is_token_classifier(model) -> bool:
    return type(peft_base_model(model)).__name__.endswith("ForTokenClassification")


def token_sub_loss(sub_logits, main_logits, labels, kept=None, num_items=None):
    """Soft cross-entropy of each supervised token's sub logits to its detached main logits.

    Args:
        sub_logits: ``(B, W, C)``; ``main_logits``: ``(B, L, C)``; ``labels``: ``(B, L)``, -100 unsupervised.
        kept: ``(B, W)`` original position of each sub token, -1 for padding (token drop); ``None``: ``W == L``,
            the same positions (``[MASK]``).
        num_items: the labelled tokens of the accumulated batch, or ``None`` (mean over this batch's).
    """
    if kept is not None:
        index = kept.clamp(min=0)
        main_logits = main_logits.gather(1, index.unsqueeze(-1).expand(-1, -1, main_logits.shape[-1]))
        labels = labels.gather(1, index).masked_fill(kept < 0, -100)
    supervised = labels != -100
    total = soft_cross_entropy_per_item(sub_logits, main_logits).masked_fill(~supervised, 0.0).sum()
    if num_items is not None:
        return total / num_items
    return total / supervised.sum().clamp(min=1)
