"""What each micro-batch of an optimizer step carries into the step, added where Trainer hands MaskSub the step's
micro-batches (``get_batch_samples``): its mask (unless the collator drew it), and the step's item counts.

The counts travel *in* each batch, under ``batch.STEP_ITEMS``: ``training_step`` reads them from the batch it is
given, so a step can never be normalised by another step's counts, whatever order Trainer calls its methods in.
"""

import torch

from ..batch import SEED, STEP_ITEMS, split_masksub_entries
from ..functional import StepItems, batch_items


def add_mask(batch, masking):
    """Draw the batch's mask into it, from its samples' seeds when they came along, unless the collator drew it."""
    if masking.key is not None and masking.key not in batch:
        inputs, entries = split_masksub_entries(batch)
        seeds = entries.get(SEED)
        batch[masking.key] = masking.draw(inputs, None if seeds is None else seeds.tolist())


def count_step_items(batches, objective, masking, accelerator, num_items_in_batch, average_tokens_across_devices):
    """``(StepItems, trainer_share)``: the items of ``batches`` on all processes (one all-reduce), and the part of the
    main items ``num_items_in_batch`` counts (1 unless Trainer counted this process's only)."""
    counted_here = (num_items_in_batch is not None and accelerator.num_processes > 1
                    and not average_tokens_across_devices)
    counts = [0.0, 0.0, float(num_items_in_batch) if counted_here else 0.0]
    for batch in batches:
        inputs, entries = split_masksub_entries(batch)
        main, sub = batch_items(objective, inputs, masking, entries.get(masking.key))
        counts[0], counts[1] = counts[0] + float(main), counts[1] + float(sub)
    counts = torch.tensor(counts, device=accelerator.device)
    if accelerator.num_processes > 1:
        counts = accelerator.reduce(counts, reduction="sum")
    share = float(num_items_in_batch) / counts[2].item() if counted_here else 1.0
    return StepItems(counts[0], counts[1], accelerator.num_processes), share


def prepare_step(batches, objective, masking, accelerator, num_items_in_batch, average_tokens_across_devices):
    """Each of the step's micro-batches gets its mask, and the step's item counts under ``STEP_ITEMS``."""
    for batch in batches:
        objective.check_batch(batch)
        add_mask(batch, masking)
    step_items = count_step_items(batches, objective, masking, accelerator, num_items_in_batch,
                                  average_tokens_across_devices)
    for batch in batches:
        batch[STEP_ITEMS] = step_items
