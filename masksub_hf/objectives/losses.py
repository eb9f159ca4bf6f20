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


def soft_cross_entropy_over(sub_logits, main_logits, valid):
    """``soft_cross_entropy_per_item`` with both distributions over the ``valid`` classes only (booleans of the
    logits' shape; each prediction needs one): the main branch's renormalised over the classes the sub branch has."""
    target = F.softmax(main_logits.detach().float().masked_fill(~valid, float("-inf")), dim=-1)
    log_probs = F.log_softmax(sub_logits.float().masked_fill(~valid, float("-inf")), dim=-1)
    return -(target * log_probs.masked_fill(~valid, 0.0)).sum(dim=-1)


class _SoftCrossEntropyRows(torch.autograd.Function):
    """``sum_r CE(sub[sub_rows[r]], softmax(target[target_rows[r]]))`` over selected rows of two ``(N, C)`` tensors,
    ``chunk`` rows at a time in float32.

    Why not ``soft_cross_entropy_per_item`` on gathered rows: with a vocabulary for classes (causal LMs) each of its
    float32 intermediates (the gathered rows, the target probabilities, the log-probabilities, their product) is as
    large as the logits. Here only the gradient, ``softmax(sub) - softmax(target)`` on the selected rows and zero
    elsewhere, is logits-sized, as for any loss; the inputs are saved by reference.
    """

    @staticmethod
    def forward(ctx, sub, sub_rows, target, target_rows, chunk):
        total = torch.zeros((), dtype=torch.float32, device=sub.device)
        for start in range(0, len(sub_rows), chunk):
            logits = sub.index_select(0, sub_rows[start:start + chunk]).float()
            probabilities = F.softmax(target.index_select(0, target_rows[start:start + chunk]).float(), dim=-1)
            # CE(sub, p) = logsumexp(sub) - sum_c p_c * sub_c, as the probabilities sum to 1
            total += (torch.logsumexp(logits, dim=-1) - (probabilities * logits).sum(dim=-1)).sum()
        ctx.save_for_backward(sub, sub_rows, target, target_rows)
        ctx.chunk = chunk
        return total

    @staticmethod
    def backward(ctx, grad_total):
        sub, sub_rows, target, target_rows = ctx.saved_tensors
        grad = torch.zeros_like(sub)
        for start in range(0, len(sub_rows), ctx.chunk):
            rows = sub_rows[start:start + ctx.chunk]
            difference = (F.softmax(sub.index_select(0, rows).float(), dim=-1)
                          - F.softmax(target.index_select(0, target_rows[start:start + ctx.chunk]).float(), dim=-1))
            grad.index_add_(0, rows, (difference * grad_total).to(sub.dtype))
        return grad, None, None, None, None


def soft_cross_entropy_rows(sub, sub_rows, target, target_rows, chunk=256):
    """Soft cross-entropy summed over pairs of rows: ``sub[sub_rows[r]]`` learns ``softmax(target[target_rows[r]])``
    (``target`` detached). ``sub``, ``target``: ``(N, C)`` and ``(M, C)``; rows: index tensors of one length."""
    return _SoftCrossEntropyRows.apply(sub, sub_rows, target.detach(), target_rows, chunk)


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
