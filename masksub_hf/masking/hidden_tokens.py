"""Token drop for models that take no ``position_ids``: hide the dropped tokens from attention.

Removing tokens renumbers the kept ones for a model that numbers positions itself, from ``0..L-1`` over its
input (T5's relative bias, RoFormer's rotary, MPT's ALiBi, XLNet's relative attention). Keeping each row at
full length and zeroing the dropped tokens' attention-mask entries keeps every kept token where it was, and no
token can attend to a dropped one: the sub branch sees the kept tokens alone, at their own positions. It saves
no compute (the row keeps its length).

This is right only where attention is the one path between tokens and where positions do not come from the
attention mask. Neither can be read from a signature, so :func:`why_hiding_is_not_dropping` asks the model
itself, once, when the masking is built: Funnel pools neighbouring tokens outside attention (a hidden token
reaches the kept ones), Bloom numbers its ALiBi positions by the mask's running count (hiding a token shifts
every later one, the same as removing it). A seq2seq language model is asked as it trains: its encoder reads the
row, its decoder the same fixed tokens each time (in training, those made from the labels), and what is compared
is the decoder's output, which reaches the encoder's tokens through cross-attention only.
"""

import torch

from .base import peft_base_model
from .structure import is_seq2seq_lm

# The probe: a random row with a run of tokens inside it hidden (never the first or last: CLS, or the token a
# decoder classifier pools). A long run moves the tokens after it far, so that even a freshly initialised model
# (near-uniform attention) shows where it keeps positions.
PROBE_LENGTH = 16
PROBE_HIDDEN = tuple(range(3, 11))
PROBE_DECODER_LENGTH = 4  # a seq2seq LM's fixed decoder tokens (their output is compared whole)
# "The same output", relative to its largest entry. float32: Bloom's hidden-vs-removed outputs differ by ~4e-8
# (float noise), a fresh tiny RoFormer's or XLNet's by ~5e-6 (their positions); a hidden token that leaks moves
# them by > 1e-1. Half precision: a few units in the last place.
FLOAT32_TOLERANCE = 1e-6


def hide_tokens(inputs, dropped):
    """The batch with the ``dropped`` ``(B, L)`` positions zeroed in the attention mask, all else as it was."""
    input_ids = inputs["input_ids"]
    attention_mask = inputs.get("attention_mask")
    keep = ~dropped.to(input_ids.device)
    if attention_mask is None:
        return {**inputs, "attention_mask": keep.long()}
    return {**inputs, "attention_mask": attention_mask * keep.to(attention_mask.dtype)}


def hidden_kept_positions(inputs, dropped):
    """``(B, L)``: each position where its token is real and kept, -1 elsewhere (the layout stays the input's)."""
    input_ids = inputs["input_ids"]
    attention_mask = inputs.get("attention_mask")
    keep = ~dropped.to(input_ids.device)
    if attention_mask is not None:
        keep &= attention_mask.bool()
    positions = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
    return positions.masked_fill(~keep, -1)


def _output(model, **inputs):
    outputs = model(**inputs)
    return (outputs.logits if hasattr(outputs, "logits") else outputs[0]).float()


def _differs(a, b, tolerance):
    return bool((a - b).abs().max() > tolerance * a.abs().max().clamp(min=1e-12))


def _probe_row(config, vocab, device):
    """Two random rows of the upper half of the vocabulary (clear of the usual low special ids), no pad id inside
    (it would move where a decoder classifier pools), ending at eos where the model has one (encoder-decoder
    classifiers pool there and require it); and the same rows with the hidden run's tokens changed."""
    generator = torch.Generator().manual_seed(0)
    low = vocab // 2
    ids = torch.randint(low, vocab, (2, PROBE_LENGTH), generator=generator)
    pad = getattr(config, "pad_token_id", None)
    if pad is not None:
        ids[ids == pad] = low + (pad + 1) % (vocab - low)
    eos = getattr(config, "eos_token_id", None)
    if isinstance(eos, int) and eos < vocab:
        ids[:, -1] = eos
    hidden = torch.zeros_like(ids, dtype=torch.bool)
    hidden[:, list(PROBE_HIDDEN)] = True
    others = ids.clone()
    others[hidden] = low + (ids[hidden] - low + 1) % (vocab - low)
    return ids.to(device), others.to(device), hidden.to(device)


@torch.no_grad()
def why_hiding_is_not_dropping(model):
    """``None`` where hiding tokens from attention drops them from ``model``'s view with every kept token at its
    position; else why not, in words. Three eval forwards of two short random rows: the kept tokens' outputs do
    not change with the hidden tokens' ids (no other path), and differ from those with the hidden run removed
    (positions kept, not renumbered)."""
    base = peft_base_model(model)
    parameter = next(base.parameters())
    table_size = getattr(base.get_input_embeddings(), "num_embeddings", None)
    vocab = min(size for size in (table_size, getattr(base.config, "vocab_size", None)) if size)
    tolerance = FLOAT32_TOLERANCE if parameter.dtype in (torch.float32, torch.float64) \
        else 8 * torch.finfo(parameter.dtype).eps
    ids, others, hidden = _probe_row(base.config, vocab, parameter.device)
    kept = [i for i in range(PROBE_LENGTH) if i not in PROBE_HIDDEN]
    decoder = {"decoder_input_ids": ids[:, -PROBE_DECODER_LENGTH:]} if is_seq2seq_lm(base) else {}

    def at_kept(output):  # per-token outputs at the kept positions; per-row outputs as they are
        return output[:, kept] if output.dim() == 3 and output.shape[1] == PROBE_LENGTH else output

    was_training = model.training
    model.eval()
    try:
        seen = at_kept(_output(model, **hide_tokens({"input_ids": ids}, hidden), **decoder))
        if _differs(seen, at_kept(_output(model, **hide_tokens({"input_ids": others}, hidden), **decoder)), tolerance):
            return "the hidden tokens still reach the kept ones (it mixes tokens outside attention)"
        removed = _output(model, input_ids=ids[:, kept], attention_mask=torch.ones_like(ids[:, kept]), **decoder)
        if not _differs(seen, removed, tolerance):
            return ("it numbers its tokens by the attention mask, so hidden tokens shift the kept ones as removing "
                    "them would")
        return None
    except Exception as error:  # noqa: BLE001  (a row it cannot take: its own error is the answer)
        return f"the check could not run it on a random row ({type(error).__name__}: {str(error).splitlines()[0]})"
    finally:
        model.train(was_training)
