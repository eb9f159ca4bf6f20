"""Tiny models of every type in the installed transformers' classification mappings, for ``test_zoo.py``.

A type listed here gets its own small config; a type that is not (a newer transformers' family) gets the
default config with its common size fields shrunk, so it still shows up in the table, by name.
"""

import torch
import transformers
from transformers import CONFIG_MAPPING
from transformers.models.auto import modeling_auto

IMAGE_SIZE = 32
VIT = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=16, image_size=IMAGE_SIZE,
           patch_size=4)
SWIN = dict(image_size=IMAGE_SIZE, patch_size=4, embed_dim=8, depths=[1, 1], num_heads=[1, 1], window_size=4)
TOWERS = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16)

# model_type -> config fields (image size: IMAGE_SIZE unless "image_size" says otherwise)
IMAGE_CONFIGS = {
    "beit": VIT,
    "bit": dict(embedding_size=8, hidden_sizes=[8, 8, 16, 16], depths=[1, 1, 1, 1], num_groups=2),
    "clip": dict(vision_config={**TOWERS, "image_size": IMAGE_SIZE, "patch_size": 4}, text_config=TOWERS),
    "convnext": dict(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2),
    "convnextv2": dict(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2),
    "cvt": dict(embed_dim=[8, 16, 16], num_heads=[1, 1, 1], depth=[1, 2, 3]),  # stage s reads rate s of its own depth
    "data2vec-vision": VIT,
    "deit": VIT,
    "dinat": dict(embed_dim=8, depths=[1, 1], num_heads=[1, 1], kernel_size=3, dilations=[[1], [1]]),
    "dinov2": VIT,
    "dinov2_with_registers": {**VIT, "num_register_tokens": 2},
    "donut-swin": SWIN,
    "efficientnet": dict(image_size=IMAGE_SIZE, width_coefficient=0.25, depth_coefficient=0.25, hidden_dim=320),
    "focalnet": dict(embed_dim=8, depths=[1, 1], hidden_sizes=[16, 16], image_size=IMAGE_SIZE),
    "hgnet_v2": dict(embedding_size=8, depths=[1, 1, 1, 1], hidden_sizes=[16, 16, 32, 32], stem_channels=[3, 8, 8],
                     stage_in_channels=[8, 16, 16, 32], stage_mid_channels=[8, 8, 8, 8],
                     stage_out_channels=[16, 16, 32, 32], stage_num_blocks=[1, 1, 1, 1],
                     stage_numb_of_layers=[1, 1, 1, 1]),
    "hiera": dict(embed_dim=8, image_size=[64, 64], depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1]),
    "ijepa": VIT,
    "imagegpt": dict(vocab_size=17, n_positions=64, n_embd=16, n_layer=1, n_head=2),
    "levit": dict(image_size=64, hidden_sizes=[16, 32, 48], num_attention_heads=[1, 2, 3], depths=[1, 1, 1],
                  key_dim=[8, 8, 8], down_ops=[["Subsample", 8, 1, 4, 2, 2], ["Subsample", 8, 2, 4, 2, 2]]),
    "metaclip_2": dict(vision_config={**TOWERS, "image_size": IMAGE_SIZE, "patch_size": 4}, text_config=TOWERS),
    "mobilenet_v1": dict(image_size=IMAGE_SIZE, depth_multiplier=0.25),
    "mobilenet_v2": dict(image_size=IMAGE_SIZE, depth_multiplier=0.25),
    "mobilevit": dict(image_size=IMAGE_SIZE, hidden_sizes=[16, 16, 16], neck_hidden_sizes=[8, 8, 16, 16, 16, 16, 32],
                      num_attention_heads=2),
    "mobilevitv2": dict(image_size=64, width_multiplier=0.25, n_attn_blocks=[1, 1, 1]),
    "perceiver": dict(image_size=IMAGE_SIZE, num_latents=8, d_latents=16, d_model=16, num_self_attends_per_block=1,
                      num_self_attention_heads=1, num_cross_attention_heads=1),
    "poolformer": dict(hidden_sizes=[8, 8, 16, 16], depths=[1, 1, 1, 1]),
    "pp_lcnet": dict(scale=0.25),
    "pvt": dict(image_size=IMAGE_SIZE, hidden_sizes=[8, 8, 16, 16], depths=[1, 1, 1, 1],
                num_attention_heads=[1, 1, 1, 1]),
    "pvt_v2": dict(image_size=IMAGE_SIZE, hidden_sizes=[8, 8, 16, 16], depths=[1, 1, 1, 1],
                   num_attention_heads=[1, 1, 1, 1]),
    "regnet": dict(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], groups_width=8),
    "resnet": dict(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic"),
    "segformer": dict(hidden_sizes=[8, 8, 16, 16], depths=[1, 1, 1, 1], num_attention_heads=[1, 1, 1, 1],
                      decoder_hidden_size=16),
    "siglip": dict(vision_config={**TOWERS, "image_size": IMAGE_SIZE, "patch_size": 4}, text_config=TOWERS),
    "siglip2": dict(vision_config={**TOWERS, "patch_size": 4, "num_patches": 64}, text_config=TOWERS),
    "swiftformer": dict(depths=[1, 1, 1, 1], embed_dims=[8, 8, 16, 16]),
    "swin": SWIN,
    "swinv2": SWIN,
    "textnet": dict(image_size=[IMAGE_SIZE, IMAGE_SIZE], stem_out_channels=8, hidden_sizes=[8, 8, 16, 16, 32]),
    "timm_wrapper": dict(architecture="vit_tiny_patch16_224",
                         model_args=dict(img_size=IMAGE_SIZE, patch_size=4, embed_dim=16, depth=2, num_heads=2)),
    "vit": VIT,
    "vit_msn": VIT,
}

# semantic segmentation: the classifiers' configs, their decoders' pyramids and feature taps fitted to 2 layers
FOUR_LAYERS = {**VIT, "num_hidden_layers": 4}
BEIT_SEGMENTER = {**FOUR_LAYERS, "out_indices": [0, 1, 2, 3], "pool_scales": [1, 2], "auxiliary_channels": 16}
SEGMENTATION_CONFIGS = {**IMAGE_CONFIGS, "beit": BEIT_SEGMENTER, "data2vec-vision": BEIT_SEGMENTER,
                        "dpt": {**FOUR_LAYERS, "backbone_out_indices": [0, 1, 2, 3],
                                "neck_hidden_sizes": [8, 8, 16, 16], "fusion_hidden_size": 16},
                        # its ViT backbone's defaults (768 wide, 12 layers at 448 px: 110M parameters) took 14 s
                        "tipsv2_dpt": {"backbone_config": {"model_type": "tipsv2_vision_model", **FOUR_LAYERS,
                                                           "out_indices": [1, 2, 3, 4],
                                                           "reshape_hidden_states": False},  # as its default
                                       "neck_hidden_sizes": [8, 8, 16, 16], "fusion_hidden_size": 16}}

GENERIC_SHRINK = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=16,
                      image_size=IMAGE_SIZE, patch_size=4)


def mapping(name):
    return getattr(modeling_auto, f"MODEL_FOR_{name}_MAPPING_NAMES")


def model_class(names):
    """The mapping's class (its first, where a type lists several: transformers then needs
    ``config.architectures`` to choose)."""
    return getattr(transformers, names[0] if isinstance(names, (tuple, list)) else names)


def tiny_config(model_type, known, num_labels=3):
    """A small config for ``model_type``: ``known[model_type]``, else the defaults with common size fields shrunk."""
    config_class = CONFIG_MAPPING[model_type]
    if model_type in known:
        return config_class(num_labels=num_labels, **known[model_type])
    defaults = config_class().to_dict()
    fields = {key: value for key, value in GENERIC_SHRINK.items() if key in defaults}
    for tower in ("vision_config", "text_config"):
        if isinstance(defaults.get(tower), dict):
            fields[tower] = {key: value for key, value in GENERIC_SHRINK.items() if key in defaults[tower]}
    return config_class(num_labels=num_labels, **fields)


def image_size_of(config):
    size = getattr(getattr(config, "vision_config", None) or config, "image_size", IMAGE_SIZE)
    return size[0] if isinstance(size, (tuple, list)) else size


def image_processor_reading_ids(model):
    """The processing class a user passes for an image model that reads ids (ImageGPT's colour clusters): its image
    processor, built with defaults; None for the others."""
    if model.main_input_name != "input_ids":
        return None
    from transformers.models.auto.image_processing_auto import IMAGE_PROCESSOR_MAPPING_NAMES

    names = IMAGE_PROCESSOR_MAPPING_NAMES[model.config.model_type]  # 5.2x: {'pil': ..., 'torchvision': ...}
    name = names.get("pil") if isinstance(names, dict) else next(name for name in names if name)
    return getattr(transformers, name)()


def image_batch(model, batch_size, generator):
    """Random inputs in the form the model reads, and labels."""
    config = model.config
    labels = torch.randint(0, config.num_labels, (batch_size,), generator=generator)
    if model.main_input_name == "input_ids":  # ImageGPT: colour-cluster ids
        ids = torch.randint(0, config.vocab_size - 1, (batch_size, config.n_positions), generator=generator)
        return {"input_ids": ids, "labels": labels}
    if config.model_type == "siglip2":  # NaFlex: patches already cut, with their grid and a mask
        patch = config.vision_config.patch_size
        num_patches = config.vision_config.num_patches
        side = int(num_patches ** 0.5)
        return {"pixel_values": torch.randn(batch_size, num_patches, 3 * patch * patch, generator=generator),
                "pixel_attention_mask": torch.ones(batch_size, num_patches, dtype=torch.long),
                "spatial_shapes": torch.tensor([[side, side]] * batch_size), "labels": labels}
    size = image_size_of(config)
    return {model.main_input_name: torch.randn(batch_size, 3, size, size, generator=generator), "labels": labels}


# Text: the common size fields of text configs, shrunk; TEXT_CONFIGS overrides per type where these do not fit.
TEXT_SHRINK = dict(
    hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, num_key_value_heads=2,
    head_dim=8, d_model=16, n_embd=16, n_layer=2, n_head=2, num_layers=2, num_heads=2, encoder_layers=1,
    decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
    ffn_dim=32, d_ff=32, d_kv=8, n_inner=32, embedding_size=16, vocab_size=320, max_position_embeddings=64,
    n_positions=64, moe_intermediate_size=16, shared_expert_intermediate_size=16, num_experts=4, num_local_experts=4,
    num_experts_per_tok=2, kv_lora_rank=8, q_lora_rank=8, qk_rope_head_dim=4, qk_nope_head_dim=4, v_head_dim=8,
    attention_window=8, linear_key_head_dim=4, linear_value_head_dim=4, linear_num_key_heads=2,
    linear_num_value_heads=2, emb_dim=16, n_layers=2, n_heads=2, dim=16, hidden_dim=32, dff=32, d_inner=32, d_head=8,
    entity_vocab_size=8, entity_emb_size=16, pronunciation_embed_dim=16, shape_embed_dim=16, shape_vocab_size=32,
    pronunciation_vocab_size=32, num_hash_buckets=64, d_latents=16, num_latents=8, num_self_attends_per_block=1,
    num_self_attention_heads=1, num_cross_attention_heads=1)
ENCODER_DECODER_EOS = dict(eos_token_id=3, decoder_start_token_id=0)  # their heads pool at eos: word_tokenizer's [SEP]
TEXT_CONFIGS = {  # merged over TEXT_SHRINK's fields
    "gpt_neo": dict(attention_types=[[["global", "local"], 1]]),
    "reformer": dict(axial_pos_shape=[2, 7], axial_pos_embds_dim=[8, 8], attn_layers=["local", "local"],
                     local_attn_chunk_length=7),  # its positions factor the 14-token rows
    "t5": ENCODER_DECODER_EOS, "mt5": ENCODER_DECODER_EOS, "umt5": ENCODER_DECODER_EOS,
    "bigbird_pegasus": ENCODER_DECODER_EOS, "longt5": ENCODER_DECODER_EOS, "switch_transformers": ENCODER_DECODER_EOS,
    "marian": dict(decoder_vocab_size=320, decoder_start_token_id=0),
    # their Mamba mixers' defaults (128 heads, a 256-state, 256-token chunks) take minutes on a CPU
    "falcon_h1": dict(mamba_d_ssm=16, mamba_n_heads=2, mamba_d_head=8, mamba_d_state=8, mamba_chunk_size=8),
    "nemotron_h": dict(mamba_num_heads=2, mamba_head_dim=8, ssm_state_size=8, n_groups=1, chunk_size=8), "fsmt": dict(src_vocab_size=320, tgt_vocab_size=320),
}
WORDS = [f"w{i}" for i in range(60)]
PAD_ID = 0  # [PAD] of helpers.word_tokenizer, <pad> of helpers.bpe_tokenizer


def tiny_text_config(model_type, num_labels=3):
    """TEXT_SHRINK's fields that ``model_type``'s config has (and its towers'), then ``TEXT_CONFIGS[model_type]``."""
    config_class = CONFIG_MAPPING[model_type]
    defaults = config_class().to_dict()
    fields = {key: value for key, value in TEXT_SHRINK.items() if key in defaults}
    for tower in ("text_config", "vision_config", "audio_config", "encoder", "decoder"):
        if isinstance(defaults.get(tower), dict):
            fields[tower] = {key: value for key, value in TEXT_SHRINK.items() if key in defaults[tower]}
    return config_class(num_labels=num_labels, pad_token_id=PAD_ID, **{**fields, **TEXT_CONFIGS.get(model_type, {})})


def text_batch(tokenizer, num_labels, per_token, size, generator, choices=None, answers=False, targets=False,
               next_tokens=False):
    """``size`` rows of 6 to 12 random words, right-padded, and labels (per token: -100 on padding); with
    ``choices``, ``size`` inputs of that many rows each, ``(size, choices, L)``, labelled with a choice; with
    ``answers``, each row's answer span among its words (``start_positions``, ``end_positions``); with
    ``targets``, a target text of 2 to 6 words a row, its padding labelled -100; with ``next_tokens``, the input
    ids as labels (a causal LM's), -100 on padding."""
    rows = size * (choices or 1)
    lengths = torch.randint(6, 13, (rows,), generator=generator)
    words = torch.randint(0, len(WORDS), (rows, 12), generator=generator)
    sentences = [" ".join(WORDS[i] for i in row[:n]) for row, n in zip(words.tolist(), lengths.tolist())]
    batch = dict(tokenizer(sentences, padding="max_length", truncation=True, max_length=14, return_tensors="pt"))
    batch.pop("token_type_ids", None)
    if answers:
        starts = (torch.rand(size, generator=generator) * (lengths - 2)).long() + 1  # after [CLS], in the words
        batch["start_positions"] = starts
        batch["end_positions"] = torch.minimum(starts + torch.randint(0, 3, (size,), generator=generator), lengths)
    elif next_tokens:
        batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    elif targets:
        lengths = torch.randint(2, 7, (size,), generator=generator)
        words = torch.randint(0, len(WORDS), (size, 6), generator=generator)
        target = tokenizer([" ".join(WORDS[i] for i in row[:n]) for row, n in zip(words.tolist(), lengths.tolist())],
                           padding="max_length", truncation=True, max_length=8, return_tensors="pt")
        batch["labels"] = target["input_ids"].masked_fill(target["attention_mask"] == 0, -100)
    elif choices:
        batch = {key: value.view(size, choices, -1) for key, value in batch.items()}
        batch["labels"] = torch.randint(0, choices, (size,), generator=generator)
    elif per_token:
        labels = torch.randint(0, num_labels, batch["input_ids"].shape, generator=generator)
        batch["labels"] = labels.masked_fill(batch["attention_mask"] == 0, -100)
    else:
        batch["labels"] = torch.randint(0, num_labels, (size,), generator=generator)
    return batch
