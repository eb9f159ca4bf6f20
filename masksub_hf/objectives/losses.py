"""Relaxed sub-branch losses: the sub branch learns the main branch's detached output, not the labels.

Each loss takes ``(sub_logits, main_logits)`` and returns a scalar averaged over samples. The main
logits are detached here, so no gradient from the sub branch ever reaches the main branch's output
(paper Eq. 3, stop-gradient).
"""

import torch
import torch.nn.functional as F


def soft_cross_entropy_per_item(sub_logits: torch.Tensor, main_logits: torch.Tensor) -> torch.Tensor:
    """``-sum_c softmax(z_main)_c * log_softmax(z_sub)_c`` for each prediction (the last dimension is the classes)."""
    target = F.softmax(main_logits.detach().float(), dim=-1)
    log_probs = F.log_softmax(sub_logits.float(), dim=-1)
    return -(target * log_probs).sum(dim=-1)


def soft_cross_entropy(sub_logits: torch.Tensor, main_logits: torch.Tensor) -> torch.Tensor:
    """``mean_i(-sum_c softmax(z_main)_ic * log_softmax(z_sub)_ic)``, for single-label classification."""
    return soft_cross_entropy_per_item(sub_logits, main_logits).mean()


def sigmoid_binary_cross_entropy(sub_logits: torch.Tensor, main_logits: torch.Tensor) -> torch.Tensor:
    """BCE against ``sigmoid(z_main)``, for multi-label classification (the paper's sigmoid variant)."""
    target = torch.sigmoid(main_logits.detach().float())
    return F.binary_cross_entropy_with_logits(sub_logits.float(), target)


def mean_squared_error(sub_logits: torch.Tensor, main_logits: torch.Tensor) -> torch.Tensor:
    """MSE to the detached main prediction, for regression."""
    return F.mse_loss(sub_logits.float(), main_logits.detach().float())


SUB_LOSSES = {
    "soft_ce": soft_cross_entropy,
    "bce": sigmoid_binary_cross_entropy,
    "mse": mean_squared_error,
}

# transformers' `config.problem_type` values -> the matching relaxed loss.
_LOSS_FOR_PROBLEM_TYPE = {
    "single_label_classification": "soft_ce",
    "multi_label_classification": "bce",
    "regression": "mse",
}


def sub_loss_for(name: str, config=None):
    """Return the sub loss function called ``name``; ``"auto"`` reads ``config.problem_type``.

    ``problem_type`` is set by transformers' classification heads during the first labelled forward,
    so ``auto`` is resolved after the main forward. A config without it follows the same rule as
    transformers: one label is regression, more are single-label classification.
    """
    if name != "auto":
        return SUB_LOSSES[name]
    problem_type = getattr(config, "problem_type", None)
    if problem_type is None:
        problem_type = "regression" if getattr(config, "num_labels", 2) == 1 else "single_label_classification"
    if problem_type not in _LOSS_FOR_PROBLEM_TYPE:
        raise ValueError(
            f"masksub_loss='auto' does not know problem_type={problem_type!r}; "
            f"pass one of {sorted(SUB_LOSSES)} as --masksub_loss."
        )
    return SUB_LOSSES[_LOSS_FOR_PROBLEM_TYPE[problem_type]]
