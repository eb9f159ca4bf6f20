"""BERT-family masking: replace a ``ratio`` of the real tokens by the tokenizer's mask token.

As in the paper (BERT's masking, mask-token replacement only): no random/keep split, and special
tokens and padding are never masked.
"""

import contextlib

import torch

from .base import Masking, num_masked, uniform_noise


def mask_tokens(input_ids, attention_mask, mask_token_id, special_token_ids, ratio, generator=None):
    """Return a copy of ``input_ids`` with ``round(ratio * n)`` of each row's ``n`` real tokens masked."""
    eligible = ~torch.isin(input_ids, torch.as_tensor(special_token_ids, dtype=input_ids.dtype))
    if attention_mask is not None:
        eligible &= attention_mask.bool()
    num_to_mask = num_masked(eligible.sum(dim=1), ratio)
    # Rank eligible positions in random order; ineligible ones sort last and are never chosen.
    noise = uniform_noise(input_ids.shape, generator).masked_fill(~eligible, 2.0)
    ranks = noise.argsort(dim=1).argsort(dim=1)
    masked = ranks < num_to_mask.unsqueeze(1)
    return input_ids.masked_fill(masked, mask_token_id)


class TokenMasking(Masking):
    """Sub-branch input ids with ``[MASK]`` in place of a ``ratio`` of the tokens."""

    key = "masksub_input_ids"

    def __init__(self, mask_token_id, special_token_ids, ratio: float):
        self.mask_token_id = mask_token_id
        self.special_token_ids = special_token_ids
        self.ratio = ratio

    @classmethod
    def from_tokenizer(cls, tokenizer, ratio: float) -> "TokenMasking":
        """A masking for ``tokenizer`` (or a processor holding one); ``None`` defers the check to :meth:`draw`."""
        tokenizer = getattr(tokenizer, "tokenizer", tokenizer)
        if tokenizer is None:
            return cls(None, [], ratio)
        if tokenizer.mask_token_id is None:
            raise ValueError(
                f"{type(tokenizer).__name__} has no mask token, so MaskSub cannot mask text for it; "
                "use a BERT-family tokenizer or add a mask token."
            )
        return cls(tokenizer.mask_token_id, list(tokenizer.all_special_ids), ratio)

    def draw(self, batch, generator=None) -> torch.Tensor:
        if self.mask_token_id is None:
            raise ValueError(
                "The batch has no masksub_input_ids and the trainer has no tokenizer to draw them: "
                "use MaskSubTextCollator or pass processing_class=tokenizer to MaskSubTrainer."
            )
        return mask_tokens(
            batch["input_ids"],
            batch.get("attention_mask"),
            self.mask_token_id,
            self.special_token_ids,
            self.ratio,
            generator,
        )

    @contextlib.contextmanager
    def apply(self, model, inputs, masked_input_ids: torch.Tensor):
        yield {**inputs, "input_ids": masked_input_ids.to(inputs["input_ids"].device)}
