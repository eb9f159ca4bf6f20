"""Text masking for the sub branch, two ways to hide ``ratio`` of each row's real tokens.

- ``TextMasking`` (``text``): replace them by the tokenizer's mask token, as in the paper (BERT's masking,
  mask-token replacement only: no random/keep split). BERT-family tokenizers.
- ``TextTokenDrop`` (``text_drop``): remove them from the sub branch's input, as ViT token drop removes patches:
  the rows are repacked (right-padded), keeping the attention mask and each token's original position as
  explicit ``position_ids``. Any tokenizer (decoder-only models have no mask token), and cheaper: the sub
  pass runs on ``1 - ratio`` of the tokens. A model without ``position_ids`` gets its dropped tokens hidden
  from attention instead, where it shows that this keeps positions (``hidden_tokens.py``).

Special tokens and padding are never chosen; ``TextTokenDrop`` also never drops the token a sequence classifier
pools: decoder heads pool at the rightmost token that is not the pad id (with ``pad_token == eos_token``, the
token before a trailing eos), encoders at CLS, a special token.
"""

import contextlib
import inspect

import torch

from .base import Masking, choose_uniformly, peft_base_model
from .hidden_tokens import hidden_kept_positions, hide_tokens, why_hiding_is_not_dropping


def real_tokens(input_ids, attention_mask):
    """``(B, L)`` booleans: the positions that are not padding (all of them without an attention mask)."""
    return attention_mask.bool() if attention_mask is not None else torch.ones_like(input_ids, dtype=torch.bool)


def pooled_positions(input_ids, attention_mask, pad_token_id):
    """``(B, ..., 1)``: where a decoder ``*ForSequenceClassification`` head pools, by transformers' rule: the
    rightmost token whose id is not ``pad_token_id``; without a pad id, the sequence's last real token."""
    positions = torch.arange(input_ids.shape[-1], device=input_ids.device).expand_as(input_ids)
    poolable = real_tokens(input_ids, attention_mask) if pad_token_id is None else input_ids != pad_token_id
    return positions.masked_fill(~poolable, -1).amax(dim=-1, keepdim=True)


def maskable_tokens(input_ids, attention_mask, special_token_ids):
    """``(B, ..., L)`` booleans: the real tokens that are not special, the ones a text masking may take."""
    special = torch.isin(input_ids, torch.as_tensor(special_token_ids, dtype=input_ids.dtype))
    return real_tokens(input_ids, attention_mask) & ~special


def choose_tokens(input_ids, attention_mask, special_token_ids, ratio, generator=None, protected=None):
    """``(B, ..., L)`` booleans: ``round(ratio * n)`` of each sequence's ``n`` eligible tokens (real, not special,
    and not at its ``protected`` position, ``(B, ..., 1)``), chosen uniformly from the sample's noise."""
    eligible = maskable_tokens(input_ids, attention_mask, special_token_ids)
    if protected is not None:
        eligible &= torch.arange(input_ids.shape[-1], device=input_ids.device) != protected
    return choose_uniformly(eligible, ratio, generator)


def mask_tokens(input_ids, attention_mask, mask_token_id, special_token_ids, ratio, generator=None):
    """Return a copy of ``input_ids`` with ``round(ratio * n)`` of each row's ``n`` real tokens masked."""
    masked = choose_tokens(input_ids, attention_mask, special_token_ids, ratio, generator)
    return input_ids.masked_fill(masked, mask_token_id)


def kept_order(real, dropped):
    """``(order, filled)``, both ``(B, W)``: each row's kept positions (real, not dropped) in their order, then
    filler; ``filled`` marks the real entries. ``W`` is the longest row's kept count."""
    keep = real & ~dropped
    counts = keep.sum(dim=1)
    # A stable sort puts each row's kept positions first, in their order.
    order = torch.sort((~keep).to(torch.int8), dim=1, stable=True).indices[:, :int(counts.max())]
    return order, torch.arange(order.shape[1], device=order.device).unsqueeze(0) < counts.unsqueeze(1)


def default_position_ids(model, input_ids):
    """The positions ``model`` gives its tokens when given none, as its embeddings compute them:

    - where its position table has a padding index ``p`` (RoBERTa's convention: RoBERTa, XLM-R, Longformer, ESM,
      MPNet, ...): ``p + k`` for the row's ``k``-th token that is not ``p`` (from 1), and ``p`` on those that are;
    - else its ``position_ids`` buffer, cut to the length (``0..L-1`` for BERT; ``2..L+1`` for Nystromformer,
      YOSO, MRA);
    - else ``0..L-1``.
    """
    model = peft_base_model(model)
    table = next((module for name, module in model.named_modules()
                  if name.endswith("position_embeddings") and getattr(module, "padding_idx", None) is not None), None)
    if table is not None:
        counted = input_ids.ne(table.padding_idx).long()
        return torch.cumsum(counted, dim=1) * counted + table.padding_idx
    length = input_ids.shape[1]
    buffer = next((value for name, value in model.named_buffers() if name.endswith("embeddings.position_ids")), None)
    if buffer is not None and buffer.shape[-1] >= length:
        return buffer.reshape(-1)[:length].to(input_ids.device).expand_as(input_ids)
    return torch.arange(length, device=input_ids.device).expand_as(input_ids)


def drop_tokens(inputs, dropped, pad_token_id, default_positions):
    """The batch without the ``dropped`` ``(B, L)`` positions (and without padding), repacked to the longest row
    left and right-padded with ``pad_token_id``; per-token inputs (``token_type_ids``, ...) follow their tokens,
    and ``position_ids`` keep each token's original position (given, else ``default_positions``: those the model
    takes by itself)."""
    input_ids = inputs["input_ids"]
    batch, length = input_ids.shape
    attention_mask = inputs.get("attention_mask")
    order, filled = kept_order(real_tokens(input_ids, attention_mask), dropped.to(input_ids.device))
    width = order.shape[1]
    positions = inputs.get("position_ids")
    if positions is None:
        positions = default_positions
    repacked = {}
    for key, value in {**inputs, "position_ids": positions}.items():
        if torch.is_tensor(value) and value.shape[:2] == (batch, length):
            index = order.view(batch, width, *([1] * (value.dim() - 2))).expand(batch, width, *value.shape[2:])
            fill = pad_token_id if key == "input_ids" else 0
            value = value.gather(1, index).masked_fill(~filled.view(batch, width, *([1] * (value.dim() - 2))), fill)
        repacked[key] = value
    # Always given: without a mask, transformers (>= 5.25) reads position_ids with gaps as packed sequences and
    # would cut each row's attention into blocks at every dropped token.
    repacked["attention_mask"] = filled.to(attention_mask.dtype if attention_mask is not None else torch.long)
    return repacked


class TextMasking(Masking):
    """Sub-branch input ids with ``[MASK]`` in place of a ``ratio`` of the tokens."""

    key = "masksub_input_ids"
    mode = "text"

    def __init__(self, mask_token_id, special_token_ids, ratio: float):
        self.mask_token_id = mask_token_id
        self.special_token_ids = special_token_ids
        self.ratio = ratio

    @classmethod
    def from_tokenizer(cls, tokenizer, ratio: float) -> "TextMasking":
        """A masking for ``tokenizer`` (or a processor holding one); ``None`` defers the check to :meth:`draw`."""
        tokenizer = getattr(tokenizer, "tokenizer", tokenizer)
        if tokenizer is None:
            return cls(None, [], ratio)
        if getattr(tokenizer, "mask_token_id", None) is None:  # no mask token, or an image processor (ImageGPT)
            raise ValueError(
                f"{type(tokenizer).__name__} has no mask token, so MaskSub cannot mask text for it; "
                "use a BERT-family tokenizer or add a mask token."
            )
        return cls(tokenizer.mask_token_id, list(tokenizer.all_special_ids), ratio)

    def draw(self, batch, generator=None) -> torch.Tensor:
        if self.mask_token_id is None:
            raise ValueError(
                "The batch has no masksub_input_ids and the trainer has no tokenizer to draw them: "
                "use MaskSubTextCollator or pass processing_class=tokenizer to MaskSubTrainer (for ImageGPT, its image "
                "processor: token drop)."
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


def takes_position_ids(model) -> bool:
    """Whether ``model``'s forward takes ``position_ids``, through which token drop keeps each token's position."""
    return "position_ids" in inspect.signature(peft_base_model(model).forward).parameters


class TextTokenDrop(Masking):
    """Sub-branch inputs without a ``ratio`` of each row's real, non-special tokens (never the one a sequence
    classifier pools: ``pad_token_id`` is the model's, which decides where it pools)."""

    key = "masksub_drop_mask"
    mode = "text_drop"

    def __init__(self, special_token_ids, ratio: float, pad_token_id=None, hides=False):
        self.special_token_ids = special_token_ids
        self.ratio = ratio
        self.pad_token_id = pad_token_id
        # For a model without position_ids: the dropped tokens stay in place, hidden from attention (see
        # hidden_tokens.py). Set by ``for_model`` after the model passed the check.
        self.hides = hides

    def for_model(self, model) -> "TextTokenDrop":
        """This drop made fit for ``model``: removing tokens where it takes position_ids, else hiding them where
        the model itself shows that hiding drops them; a one-line ``ValueError`` where neither keeps positions."""
        if getattr(getattr(peft_base_model(model), "config", None), "axial_pos_embds", False):
            raise ValueError(
                f"masksub_mode='text_drop' shortens each row: {type(model).__name__} trains only on rows of the length "
                "its axial position embeddings fix (axial_pos_shape); use masksub_mode='text' with a tokenizer that "
                "has a mask token, or 'dropout' (DropSub).")
        if takes_position_ids(model):
            return self
        why = why_hiding_is_not_dropping(model)
        if why is not None:
            raise ValueError(
                f"masksub_mode='text_drop' keeps each token's position: {type(model).__name__}.forward takes no "
                f"position_ids, and hiding the dropped tokens from attention is no drop for it: {why}; use "
                "masksub_mode='text' with a tokenizer that has a mask token, or 'dropout' (DropSub).")
        self.hides = True
        return self

    @classmethod
    def from_tokenizer(cls, tokenizer, ratio: float) -> "TextTokenDrop":
        """A token drop for ``tokenizer`` (or a processor holding one); without one, nothing counts as special."""
        tokenizer = getattr(tokenizer, "tokenizer", tokenizer)
        if tokenizer is None or not hasattr(tokenizer, "all_special_ids"):  # none, or an image processor (ImageGPT)
            return cls([], ratio)
        return cls(list(tokenizer.all_special_ids), ratio, tokenizer.pad_token_id)

    def draw(self, batch, generator=None) -> torch.Tensor:
        input_ids, attention_mask = batch["input_ids"], batch.get("attention_mask")
        return choose_tokens(input_ids, attention_mask, self.special_token_ids, self.ratio, generator,
                             protected=pooled_positions(input_ids, attention_mask, self.pad_token_id))

    def kept_positions(self, inputs, dropped):
        """``(B, W)``: the original position of each sub-branch token, -1 where a row is padded (or, hiding, where
        a token is hidden: ``W == L``)."""
        if self.hides:
            return hidden_kept_positions(inputs, dropped)
        input_ids = inputs["input_ids"]
        order, filled = kept_order(real_tokens(input_ids, inputs.get("attention_mask")), dropped.to(input_ids.device))
        return order.masked_fill(~filled, -1)

    @contextlib.contextmanager
    def apply(self, model, inputs, dropped: torch.Tensor):
        if inputs["input_ids"].dim() == 3:  # multiple choice, (B, C, L): each choice is a sequence of its own
            with self._apply_to_choices(model, inputs, dropped) as sub_inputs:
                yield sub_inputs
            return
        if self.hides:
            yield hide_tokens(inputs, dropped)
            return
        if not takes_position_ids(model):  # a drop built without the model (a collator's) cannot keep positions
            raise ValueError(f"masksub_mode='text_drop' keeps each token's position through position_ids, which "
                             f"{type(model).__name__}.forward does not take; build the masking for the model: "
                             "masking_for(model, 'text_drop', ...).")
        # Pad with the id the model pools by: decoder heads pool at the last token that is not padding.
        pad = getattr(getattr(model, "config", None), "pad_token_id", None)
        pad = pad if pad is not None else (self.pad_token_id if self.pad_token_id is not None else 0)
        yield drop_tokens(inputs, dropped, pad, default_position_ids(model, inputs["input_ids"]))

    @contextlib.contextmanager
    def _apply_to_choices(self, model, inputs, dropped):
        """The drop of ``B * C`` sequences, given back as ``(B, C, W)`` (multiple-choice models flatten it again)."""
        choices = inputs["input_ids"].shape[:2]
        per_choice = {key for key, value in inputs.items() if torch.is_tensor(value) and value.shape[:2] == choices}
        flat = {key: value.flatten(0, 1) if key in per_choice else value for key, value in inputs.items()}
        with self.apply(model, flat, dropped.flatten(0, 1)) as sub_inputs:
            # what the drop gives per sequence: the inputs it repacked, and the position_ids it adds
            yield {key: value.unflatten(0, choices) if key in per_choice or key not in inputs else value
                   for key, value in sub_inputs.items()}


def text_masking(tokenizer, ratio: float, mode: str = "auto", pad_token_id=None) -> Masking:
    """The text masking for ``tokenizer``: ``text`` (``[MASK]``), ``text_drop``, or ``auto``: ``[MASK]`` when the
    tokenizer has a mask token (or none is known yet: ``TextMasking`` then asks for one when it draws), token
    drop when it has none (decoder-only models' tokenizers) or is an image processor (ImageGPT's colour-cluster
    ids have no words to mask and no special ids). ``pad_token_id``: the model's (its config's), where
    it differs from the tokenizer's."""
    if mode == "auto":
        inner = getattr(tokenizer, "tokenizer", tokenizer)
        mode = "text_drop" if inner is not None and getattr(inner, "mask_token_id", None) is None else "text"
    if mode == "text":
        return TextMasking.from_tokenizer(tokenizer, ratio)
    if mode == "text_drop":
        drop = TextTokenDrop.from_tokenizer(tokenizer, ratio)
        drop.pad_token_id = pad_token_id if pad_token_id is not None else drop.pad_token_id
        return drop
    raise ValueError(f"text masking mode must be 'auto', 'text' or 'text_drop', got {mode!r}.")
