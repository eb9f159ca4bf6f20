"""Layer-wise learning-rate decay (BEiT / MAE / DeiT-III fine-tuning): the learning rate of layer ``i`` is
``lr * decay ** (num_layers + 1 - i)``.

Layer 0 is everything before the first block (embeddings, CLS / distillation tokens, position embeddings),
layers 1..L the blocks in forward order, L + 1 everything after them (final norm, pooler, head), as the
official ``mae/util/lr_decay.py``. A parameter between two blocks (Swin's patch merging, ConvNeXt's
downsampling) belongs to the block before it. No weight decay on 1-D parameters (biases, norms, layer
scales) and on tokens and position embeddings (timm's ``no_weight_decay``). timm models use timm's own
``param_groups_layer_decay``, which knows each architecture's grouping.
"""

import re

from ..masking import timm_model_of

# A transformer block's index in a parameter name: vit.layers.3., bert.encoder.layer.3., swin ... blocks.1.
_BLOCK_INDEX = re.compile(r"(?<![^.])(?:layers|layer|blocks)\.\d+(?=\.)")
NO_WEIGHT_DECAY_NAMES = ("cls_token", "distillation_token", "dist_token", "mask_token", "position_embeddings",
                         "pos_embed", "relative_position_bias_table", "logit_scale")


def _block_of(name):
    """The name's innermost block prefix (``swin.encoder.layers.0.blocks.1``), or None."""
    matches = list(_BLOCK_INDEX.finditer(name))
    return name[: matches[-1].end()] if matches else None


def layer_ids(model):
    """``({parameter name: layer id}, number of blocks)`` for a transformers model, ids as the module doc says.

    Raises a ``ValueError`` naming the model when it has no blocks to number, or several towers (a dual
    encoder), whose blocks have no single order.
    """
    names = [name for name, parameter in model.named_parameters() if parameter.requires_grad]
    prefixes = {prefix for prefix in map(_block_of, names) if prefix}
    # A prefix holding other blocks is a stage (Swin's layers.0 around blocks.0, blocks.1), not a block.
    blocks = [p for p in dict.fromkeys(map(_block_of, names)) if p and not any(q.startswith(p + ".") for q in prefixes)]
    towers = {block.split(".")[0] for block in blocks}
    if not blocks or len(towers) > 1:
        reason = "no numbered blocks" if not blocks else f"several towers {sorted(towers)}"
        raise ValueError(f"--layer_decay cannot number the layers of {type(model).__name__} ({reason}); it supports "
                         "single-tower transformers (ViT, DeiT, BEiT, Swin, ConvNeXt, BERT family) and timm models.")
    block_id = {block: i + 1 for i, block in enumerate(blocks)}
    ids, current = {}, 0
    for name in names:
        block = _block_of(name)
        if block in block_id:
            current = block_id[block]
        elif current == len(blocks):
            current = len(blocks) + 1  # after the last block: final norm, pooler, head
        ids[name] = current
    return ids, len(blocks)


def _decays(name, parameter):
    return parameter.ndim > 1 and name.rsplit(".", 1)[-1] not in NO_WEIGHT_DECAY_NAMES


def param_groups_layer_decay(model, learning_rate, weight_decay, layer_decay):
    """Optimizer parameter groups, one per (layer, decays or not), each with ``lr`` and ``lr_scale``."""
    timm_model = timm_model_of(model)
    if timm_model is not None:
        groups = _timm_param_groups(timm_model, weight_decay, layer_decay)
    else:
        ids, num_layers = layer_ids(model)
        by_key = {}
        for name, parameter in model.named_parameters():
            if not parameter.requires_grad:
                continue
            decays = _decays(name, parameter)
            scale = layer_decay ** (num_layers + 1 - ids[name])
            group = by_key.setdefault((ids[name], decays), {
                "params": [], "weight_decay": weight_decay if decays else 0.0, "lr_scale": scale})
            group["params"].append(parameter)
        groups = list(by_key.values())
    for group in groups:
        group["lr"] = learning_rate * group["lr_scale"]
    return groups


def _timm_param_groups(timm_model, weight_decay, layer_decay):
    from timm.optim import param_groups_layer_decay as timm_groups

    no_decay = getattr(timm_model, "no_weight_decay", lambda: set())()
    return timm_groups(timm_model, weight_decay=weight_decay, no_weight_decay_list=no_decay, layer_decay=layer_decay)
