"""MaskSub written out in plain torch, for the tests to compare the trainer with: forwards with the mask applied
by hand (no masksub_hf code), the losses of each branch, and the comparison of gradients."""

import torch
import torch.nn.functional as F
import transformers


def row_by_row_logits(model, batch, dropped):
    """Each row's kept tokens alone, unpadded, at their original positions (0..L-1 of the padded batch)."""
    rows = []
    for row in range(batch["input_ids"].shape[0]):
        kept = torch.tensor(kept_positions(batch, dropped, row))
        # With the mask given: without one, transformers >= 5.25 reads gapped position_ids as packed sequences.
        single = {"input_ids": batch["input_ids"][row, kept][None], "position_ids": kept[None],
                  "attention_mask": torch.ones(1, len(kept), dtype=torch.long)}
        if "token_type_ids" in batch:
            single["token_type_ids"] = batch["token_type_ids"][row, kept][None]
        rows.append(model(**single).logits[0])
    return torch.stack(rows)


def patch_mask(block_mask, patches_per_block):
    return torch.kron(block_mask.int(), torch.ones(patches_per_block, patches_per_block, dtype=torch.int)).bool()


def reference_image_embeds(model, pixel_values, keep):
    """The vision tower run by hand, kept patch tokens gathered explicitly (no MaskSub code)."""
    tower = model.vision_model
    hidden = tower.embeddings(pixel_values)
    kept = torch.stack([hidden[b, 1:][keep[b]] for b in range(len(keep))])
    hidden = torch.cat([hidden[:, :1], kept], dim=1)
    if isinstance(tower, transformers.CLIPVisionModel):
        hidden = tower.encoder(inputs_embeds=tower.pre_layrnorm(hidden)).last_hidden_state
        pooled = tower.post_layernorm(hidden[:, 0])
    else:  # ViTModel
        for layer in tower.layers:
            hidden = layer(hidden, None)
        pooled = tower.pooler(tower.layernorm(hidden))
    return model.visual_projection(pooled)


def reference_vit_logits(model, pixel_values, keep_indices=None):
    vit = model.vit
    hidden = vit.embeddings(pixel_values)
    if keep_indices is not None:
        kept = torch.stack([hidden[b, 1:][keep_indices[b]] for b in range(len(keep_indices))])
        hidden = torch.cat([hidden[:, :1], kept], dim=1)
    for layer in vit.layers:
        hidden = layer(hidden, None)
    return model.classifier(vit.layernorm(hidden)[:, 0])


REFERENCE_LOSSES = {
    # name: (main loss vs labels, sub loss vs detached main logits)
    "ce": (
        lambda z, y: F.cross_entropy(z, y),
        lambda s, t: -(t.softmax(-1) * s.log_softmax(-1)).sum(-1).mean(),
    ),
    "label_smoothing": (
        lambda z, y: F.cross_entropy(z, y, label_smoothing=0.1),
        lambda s, t: -(t.softmax(-1) * s.log_softmax(-1)).sum(-1).mean(),
    ),
    "bce": (
        lambda z, y: F.binary_cross_entropy_with_logits(z, y),
        lambda s, t: F.binary_cross_entropy_with_logits(s, t.sigmoid()),
    ),
    "mse": (
        lambda z, y: ((z.squeeze(-1) - y) ** 2).mean(),
        lambda s, t: ((s - t) ** 2).mean(),
    ),
}


def assert_same_gradients(actual, expected, atol=1e-6):
    """Max abs difference <= atol, relative to a tensor's largest gradient where that exceeds 1 (fp32 rounding)."""
    assert actual.keys() == expected.keys()
    for name in expected:
        scale = max(1.0, expected[name].abs().max().item())
        difference = (actual[name] - expected[name]).abs().max().item()
        assert difference <= atol * scale, f"{name}: max abs gradient difference {difference:.3g} > {atol} x {scale:.3g}"


def kept_positions(batch, dropped, row):
    return [i for i in range(batch["input_ids"].shape[1]) if batch["attention_mask"][row, i] and not dropped[row, i]]
