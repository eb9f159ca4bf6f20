"""What a batch carries: the model's inputs, and MaskSub's own entries beside them.

MaskSub's entries are the only keys that start with ``masksub_``: the mask a masking drew (one key per kind of
mask, ``Masking.key``), the samples' mask seeds (``SEED``) and the step's item counts (``STEP_ITEMS``). They
travel through collators and ``Trainer``'s loop with the batch and are split off before any forward.

An image model's inputs are read by name, from what the batch carries: the pixel values (under the model's own
input name or ``pixel_values``, which every transformers image model accepts), and for images already cut into
patch rows (NaFlex) their mask and grid.
"""

import torch

PREFIX = "masksub_"
SEED = "masksub_seed"  # the sample's mask seed, carried from the dataset to the collator or the trainer
STEP_ITEMS = "masksub_step_items"  # (StepItems, Trainer's share) of the optimizer step this micro-batch is in

PATCH_MASK = "pixel_attention_mask"
IMAGE_INPUTS = ("pixel_values", PATCH_MASK, "spatial_shapes")


def split_masksub_entries(batch):
    """``(the model's inputs, MaskSub's entries)`` of a batch."""
    inputs = {k: v for k, v in batch.items() if not k.startswith(PREFIX)}
    entries = {k: v for k, v in batch.items() if k.startswith(PREFIX)}
    return inputs, entries


def image_inputs(batch):
    """An image model's inputs in a batch (or an example): its pixel values, and its patch rows' mask and grid."""
    return {name: batch[name] for name in IMAGE_INPUTS if name in batch}


def image_key(batch, model_input_name="pixel_values"):
    """The key a batch holds its images under: the model's input name (Perceiver: ``inputs``) or ``pixel_values``."""
    for name in (model_input_name, "pixel_values"):
        if name in batch:
            return name
    raise KeyError(f"The batch holds no images: neither {model_input_name!r} nor 'pixel_values' "
                   f"(it holds {sorted(batch)}).")


def stack_image_inputs(examples):
    """A batch's image inputs: each example's pixel values (and patch rows' mask and grid), stacked."""
    return {name: torch.stack([torch.as_tensor(example[name]) for example in examples])
            for name in image_inputs(examples[0])}


def patch_rows(processor, images):
    """``images`` cut by a NaFlex ``processor``: per image, its patch rows, their mask and its grid (lists of rows)."""
    return {name: list(rows) for name, rows in processor(images=images, return_tensors="pt").items()}
