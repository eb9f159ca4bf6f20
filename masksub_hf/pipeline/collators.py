"""Collators that draw the sub branch's masks in the data pipeline, next to the batch they belong to.

Both wrap a base collator and add one ``masksub_*`` key; the trainer pops it before the main
forward, so models never see it. Under ``MaskSubTrainer`` each sample carries its own mask seed
(``masksub_hf.pipeline.seeding``) and its mask is drawn from that; otherwise masks come from ``generator``, or
torch's global RNG.
"""

from transformers import DataCollatorWithPadding, default_data_collator

from ..masking import masking_for, text_masking, timm_model_of
from .seeding import pop_sample_seeds


class MaskingCollator:
    """Collate with ``base_collator``, then add the batch's mask under ``masking.key``."""

    uses_sample_seeds = True  # MaskSubTrainer passes the per-sample seeds through to this collator

    def __init__(self, masking, base_collator, generator):
        self.masking = masking
        self.base_collator = base_collator
        self.generator = generator

    def __call__(self, features):
        features, seeds = pop_sample_seeds(features)
        batch = self.base_collator(features)
        if self.masking.key is not None:
            batch[self.masking.key] = self._draw(batch, seeds)
        return batch

    def _draw(self, batch, seeds):
        if seeds is None:
            return self.masking.draw(batch, self.generator)
        return self.masking.draw(batch, seeds)


class MaskSubImageCollator(MaskingCollator):
    """Wrap an image collator and add a per-sample patch mask for the model's patch grid.

    The mask fits the family ``mode`` picks (``auto``: by model family): patch keep-indices for ViTs,
    a block mask for CNNs (zero-filled pixels) and Swin/BEiT (mask token), nothing for DropSub/PathSub.

    Args:
        model_or_config: the model, or its transformers config; a timm model must be passed itself.
        ratio: fraction of the patch tokens / blocks the sub branch loses (exact count in every sample).
        mode: masking mode, as ``MaskSubTrainingArguments.masksub_mode``.
        base_collator: builds ``pixel_values``/``labels``; defaults to ``default_data_collator``.
        generator: optional ``torch.Generator`` for the masks.
        block_size: pixels per masked block for ``pixels``/``mask_token`` (default: 32 at 224 px, scaled).
    """

    def __init__(self, model_or_config, ratio: float = 0.5, mode: str = "auto", base_collator=None,
                 generator=None, block_size=None):
        # A transformers model is read through its config, so the collator never owns a mask token.
        if timm_model_of(model_or_config) is None:
            model_or_config = getattr(model_or_config, "config", model_or_config)
        masking = masking_for(model_or_config, mode, ratio, block_size=block_size)
        super().__init__(masking, base_collator or default_data_collator, generator)


class MaskSubTextCollator(MaskingCollator):
    """Wrap a text collator and add the sub branch's text mask for the batch.

    Args:
        tokenizer: the model's tokenizer.
        ratio: fraction of each row's real, non-special tokens hidden (paper: 0.15, BERT's ratio).
        base_collator: pads the batch; defaults to ``DataCollatorWithPadding(tokenizer)``.
        generator: optional ``torch.Generator`` for the masks.
        mode: ``text`` (``masksub_input_ids``: the tokens replaced by ``[MASK]``), ``text_drop``
            (``masksub_drop_mask``: the tokens removed) or ``auto`` (``text`` when the tokenizer has a mask token).
    """

    def __init__(self, tokenizer, ratio: float = 0.15, base_collator=None, generator=None, mode: str = "auto"):
        base_collator = base_collator or DataCollatorWithPadding(tokenizer)
        self.tokenizer = tokenizer  # where Trainer looks for a tokenizer to save when processing_class is None
        super().__init__(text_masking(tokenizer, ratio, mode), base_collator, generator)
