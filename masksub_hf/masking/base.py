"""What every sub-branch masking shares: the exact-count rule and the small interface."""

import contextlib
import math

import torch

from ..counter_rng import seeded_uniform


def num_masked(num_items, ratio: float):
    """How many of ``num_items`` a ``ratio`` masks: rounded half up (196 x 0.5 = 98, 49 x 0.5 = 25). Given an
    integer tensor of counts (one per row), a tensor of the same rule, in double precision like Python's."""
    if isinstance(num_items, torch.Tensor):
        return torch.floor(num_items.double() * ratio + 0.5).long()
    return math.floor(num_items * ratio + 0.5)


def peft_base_model(model):
    """The model a PEFT wrapper trains (``get_base_model()``), else ``model`` itself."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def uniform_noise(shape, generator=None) -> torch.Tensor:
    """``torch.rand(shape)`` from ``generator``, or, given an array of one seed per sample (row), from
    :func:`seeded_uniform`, so a sample's mask depends on its own seed only (``masksub_hf.pipeline.seeding``)."""
    if generator is not None and not isinstance(generator, torch.Generator):
        return seeded_uniform(generator, math.prod(shape[1:])).view(shape)
    return torch.rand(shape, generator=generator)


def choose_uniformly(eligible, ratio: float, generator=None) -> torch.Tensor:
    """``(B, ..., L)`` booleans: ``num_masked(n, ratio)`` of each sequence's ``n`` ``eligible`` positions (the last
    dimension; a multiple-choice batch ``(B, C, L)`` has ``C`` sequences a sample), chosen uniformly from the
    sample's noise (:func:`uniform_noise`)."""
    num_chosen = num_masked(eligible.sum(dim=-1), ratio)
    # Rank eligible positions in random order; ineligible ones sort last and are never chosen.
    noise = uniform_noise(eligible.shape, generator).to(eligible.device).masked_fill(~eligible, 2.0)
    ranks = noise.argsort(dim=-1).argsort(dim=-1)
    return ranks < num_chosen.unsqueeze(-1)


class Masking:
    """Turns a clean batch into the sub branch's input.

    - ``mode``: its ``masksub_mode`` name; ``key``: the batch key its mask travels under (``masksub_*``; ``None`` when there is no mask),
      so collators can draw it in the data pipeline and the trainer can pop it before the main forward;
    - ``draw(batch, generator=None)``: a mask for a collated batch, same exact count in every sample
      (``generator``: a ``torch.Generator``, or a list or array of one seed per sample);
    - ``apply(model, inputs, mask)``: a context manager yielding the sub-branch inputs; whatever it
      changes on the model (a hook's mask, a dropout rate) acts only inside the block;
    - ``parameters()``: trainable state the masking owns (a mask token), trained with the model;
    - ``install_hooks(model)`` / ``remove_hooks()``: put on and take off the hooks a masking keeps on the
      model, passing outputs through outside ``apply`` (``hooks.SubBranchHook``: what keeps the sub
      branch right under ``torch.compile``); install before the model's first forward.
    """

    key = None
    mode = None  # its masksub_mode name

    def parameters(self):
        return []

    def install_hooks(self, model):
        pass

    def remove_hooks(self):
        pass

    def draw(self, batch, generator=None):
        return None

    @contextlib.contextmanager
    def apply(self, model, inputs, mask=None):
        yield inputs
