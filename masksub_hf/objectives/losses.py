"""Relaxed sub-branch losses: the sub branch learns the main branch's detached output, not the labels.

Each ``*_per_item`` loss takes ``(sub_logits, main_logits)`` and returns one value per prediction (the last
dimension holds the classes or outputs); ``soft_cross_entropy`` and ``sigmoid_binary_cross_entropy`` average them
over the predictions (for plain loops). The main logits are
detached here, so no gradient from the sub branch ever reaches the main branch's output (paper Eq. 3,
stop-gradient).
"""

import torch
import torch.nn.functional as F


def soft_cross_entropy_per_item(sub_logits: torch.Tensor, main_logits: torch.Tensor) -> torch.Tensor:
    """``-sum_c softmax(z_main)_c * log_softmax(z_sub)_c`` for each prediction."""
    target = F.softmax(main_logits.detach().float(), dim=-1)
    log_probs = F.log_softmax(sub_logits.float(), dim=-1)
    return -(target * log_probs).sum(dim=-1)


def sigmoid_binary_cross_entropy_per_item(sub_logits: torch.Tensor, main_logits: torch.Tensor) -> torch.Tensor:
    """BCE against ``sigmoid(z_main)``, averaged over each prediction's labels (multi-label: the sigmoid variant)."""
    target = torch.sigmoid(main_logits.detach().float())
    return F.binary_cross_entropy_with_logits(sub_logits.float(), target, reduction="none").mean(dim=-1)


def squared_error_per_item(sub_logits: torch.Tensor, main_logits: torch.Tensor) -> torch.Tensor:
    """Squared error to the detached main prediction, averaged over each prediction's outputs (regression)."""
    return (sub_logits.float() - main_logits.detach().float()).pow(2).mean(dim=-1)


def soft_cross_entropy(sub_logits, main_logits):
    return soft_cross_entropy_per_item(sub_logits, main_logits).mean()


def sigmoid_binary_cross_entropy(sub_logits, main_logits):
    return sigmoid_binary_cross_entropy_per_item(sub_logits, main_logits).mean()


SUB_LOSSES_PER_ITEM = {
    "soft_ce": soft_cross_entropy_per_item,
    "bce": sigmoid_binary_cross_entropy_per_item,
    "mse": squared_error_per_item,
}

# transformers' `config.problem_type` values -> the matching relaxed loss.
_LOSS_FOR_PROBLEM_TYPE = {
    "single_label_classification": "soft_ce",
    "multi_label_classification": "bce",
    "regression": "mse",
}


def sub_loss_name(name: str, config=None) -> str:
    """``name``, or for ``"auto"`` the loss ``config.problem_type`` calls for.

    ``problem_type`` is set by transformers' classification heads during the first labelled forward, so ``auto``
    is resolved after the main forward. A config without it follows the same rule as transformers: one label is
    regression, more are single-label classification.
    """
    if name != "auto":
        if name not in SUB_LOSSES_PER_ITEM:
            raise ValueError(f"masksub_loss must be 'auto' or one of {sorted(SUB_LOSSES_PER_ITEM)}, got {name!r}.")
        return name
    problem_type = getattr(config, "problem_type", None)
    if problem_type is None:
        problem_type = "regression" if getattr(config, "num_labels", 2) == 1 else "single_label_classification"
    if problem_type not in _LOSS_FOR_PROBLEM_TYPE:
        raise ValueError(
            f"masksub_loss='auto' does not know problem_type={problem_type!r}; "
            f"pass one of {sorted(SUB_LOSSES_PER_ITEM)} as --masksub_loss."
        )
    return _LOSS_FOR_PROBLEM_TYPE[problem_type]
