"""The tiny models and training items the tests share (the exactness matrix's cases, the equivalence, family,
text and CLIP tests): built from configs, with real text where text is needed."""

import torch
import transformers
from helpers import bpe_tokenizer, image_items, tiny_vit, word_tokenizer
from transformers import (
    BertConfig,
    BertForTokenClassification,
    GPT2Config,
    LlamaConfig,
    MistralConfig,
    MptConfig,
    MptForTokenClassification,
    Qwen2Config,
    Qwen2ForTokenClassification,
)

from masksub_hf.scripts.demo_data import rotten_tomatoes

NUM_SAMPLES, NUM_KEEP = 8, 8  # 16 patches, ratio 0.5
SIZE = 32  # image side, px
NO_DROPOUT = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, drop_path_rate=0.0)
N, SEQ, PATCHES, KEEP = 8, 10, 16, 8
VISION = dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
              num_attention_heads=2)
TEXT = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            max_position_embeddings=32)




def make_case(kind, seed=0):
    generator = torch.Generator().manual_seed(seed + 1)
    if kind == "bce":
        model = tiny_vit(num_labels=3, problem_type="multi_label_classification", seed=seed)
        labels = torch.randint(0, 2, (NUM_SAMPLES, 3), generator=generator).float()
    elif kind == "mse":
        model = tiny_vit(num_labels=1, problem_type="regression", seed=seed)
        labels = torch.randn(NUM_SAMPLES, generator=generator)
    else:
        model = tiny_vit(num_labels=3, seed=seed)
        labels = torch.randint(0, 3, (NUM_SAMPLES,), generator=generator)
    return model, image_items(NUM_SAMPLES, labels, NUM_KEEP, seed=seed)


NUM_TAGS = 3


def tagged_items(tokenizer):
    """Reviews as words, the first sub-token of each word tagged (word length mod 3), the rest -100."""
    items = []
    for review in REVIEWS:
        words = review.lower().replace(",", " ").replace(".", " ").split()[:20]
        encoded = tokenizer(words, is_split_into_words=True, truncation=True, max_length=48)
        labels, previous = [], None
        for word in encoded.word_ids():
            labels.append(-100 if word is None or word == previous else len(words[word]) % NUM_TAGS)
            previous = word
        items.append({**encoded, "labels": labels})
    return items


def model_and_tokenizer(family, tmp_path):
    torch.manual_seed(0)
    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                 num_labels=NUM_TAGS)
    if family == "bert":
        tokenizer = word_tokenizer(tmp_path / "vocab", REVIEWS)
        config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_dropout_prob=0.0,
                            attention_probs_dropout_prob=0.0, **small)
        return BertForTokenClassification(config), tokenizer
    tokenizer = bpe_tokenizer(REVIEWS, padding_side="left")
    tokenizer._tokenizer.pre_tokenizer.add_prefix_space = True  # words given one by one: "Ġword" as in running text
    if family == "mpt":  # ALiBi, no position_ids: token drop hides the dropped tokens from attention
        config = MptConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, d_model=32, n_layers=2,
                           n_heads=2, max_seq_len=64, num_labels=NUM_TAGS, classifier_dropout=0.0)
        return MptForTokenClassification(config), tokenizer
    config = Qwen2Config(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, num_key_value_heads=1,
                         classifier_dropout=0.0,  # the generic token head drops 10% by default
                         max_position_embeddings=64, **small)
    return Qwen2ForTokenClassification(config), tokenizer


REVIEWS = list(rotten_tomatoes(seed=0)["sentence"][:8])


def tiny_decoder(family, vocab_size, pad_token_id, seed=0, head="sequence_classification"):
    """A 2-layer decoder without dropout; ``head``: ``"sequence_classification"`` or ``"causal_lm"``."""
    torch.manual_seed(seed)
    shared = dict(vocab_size=vocab_size, pad_token_id=pad_token_id, num_labels=2)
    auto_class = {"sequence_classification": transformers.AutoModelForSequenceClassification,
                  "causal_lm": transformers.AutoModelForCausalLM}[head]
    if family == "gpt2":
        config = GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=64, resid_pdrop=0.0, embd_pdrop=0.0,
                            attn_pdrop=0.0, **shared)
        return auto_class.from_config(config)
    llama_like = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=1, max_position_embeddings=64, **shared)
    config_class = {"llama": LlamaConfig, "qwen2": Qwen2Config, "mistral": MistralConfig}[family]
    return auto_class.from_config(config_class(**llama_like))


def tiny_seq2seq(family, vocab_size, pad_token_id, eos_token_id, seed=0, init=0.02):
    """A 2+2-layer encoder-decoder LM without dropout: BART (learned absolute positions) or T5 (relative bias);
    the decoder starts from the pad token; ``init``: the initialiser's scale."""
    torch.manual_seed(seed)
    shared = dict(vocab_size=vocab_size, pad_token_id=pad_token_id, eos_token_id=eos_token_id,
                  decoder_start_token_id=pad_token_id, bos_token_id=pad_token_id)
    if family == "bart":
        config = transformers.BartConfig(d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
                                         decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                                         max_position_embeddings=64, dropout=0.0, attention_dropout=0.0,
                                         activation_dropout=0.0, init_std=init, **shared)
    else:
        config = transformers.T5Config(d_model=32, d_kv=16, d_ff=64, num_layers=2, num_heads=2, dropout_rate=0.0,
                                       initializer_factor=init / 0.02, **shared)
    return transformers.AutoModelForSeq2SeqLM.from_config(config)


def tiny_segmenter(family, num_labels=3, seed=0):
    """A semantic segmentation model on 32 px images without dropout: SegFormer (hierarchical, logits at a quarter of
    the image) or BEiT (ViT blocks, a UPerNet decoder, logits at half the image; embeddings taking
    ``bool_masked_pos``; its pyramid pools to 2 x 2 at least: batch norm over one image's 1 x 1 cannot train)."""
    torch.manual_seed(seed)
    if family == "segformer":
        config = transformers.SegformerConfig(
            num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[8, 16], patch_sizes=[7, 3],
            strides=[4, 2], num_attention_heads=[1, 2], mlp_ratios=[2, 2], decoder_hidden_size=16,
            num_labels=num_labels, classifier_dropout_prob=0.0, **NO_DROPOUT)
    else:
        config = transformers.BeitConfig(image_size=SIZE, patch_size=8, hidden_size=32, num_hidden_layers=4,
                                         num_attention_heads=2, intermediate_size=64, out_indices=[0, 1, 2, 3],
                                         pool_scales=[2], use_auxiliary_head=False, num_labels=num_labels,
                                         **NO_DROPOUT)
    return transformers.AutoModelForSemanticSegmentation.from_config(config)


def hf_model(name):
    torch.manual_seed(0)
    configs = {
        "resnet": transformers.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic",
                                            num_labels=3),
        "convnext": transformers.ConvNextConfig(num_stages=2, hidden_sizes=[8, 16], depths=[1, 1], num_labels=3),
        "convnextv2": transformers.ConvNextV2Config(num_stages=2, hidden_sizes=[8, 16], depths=[1, 1], num_labels=3),
        "swin": transformers.SwinConfig(image_size=SIZE, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[1, 2],
                                        window_size=4, num_labels=3, **NO_DROPOUT),
        "swinv2": transformers.Swinv2Config(image_size=SIZE, patch_size=4, embed_dim=16, depths=[1, 1],
                                            num_heads=[1, 2], window_size=4, num_labels=3, **NO_DROPOUT),
        "beit": transformers.BeitConfig(image_size=SIZE, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                        num_attention_heads=2, intermediate_size=64, num_labels=3,
                                        use_mean_pooling=True, **NO_DROPOUT),
    }
    return transformers.AutoModelForImageClassification.from_config(configs[name])


def tiny_clip():
    torch.manual_seed(0)
    config = transformers.CLIPConfig(vision_config=VISION, text_config=dict(TEXT, eos_token_id=63), projection_dim=16)
    return transformers.CLIPModel(config)


def pair_items(seed=0):
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randn(N, 3, 32, 32, generator=generator)
    input_ids = torch.randint(1, 62, (N, SEQ), generator=generator)
    input_ids[:, -1] = 63  # CLIP pools at the end-of-text token
    keep = torch.rand(N, PATCHES, generator=generator).argsort(dim=1)[:, :KEEP].sort(dim=1).values
    return [{"pixel_values": pixels[i], "input_ids": input_ids[i], "attention_mask": torch.ones(SEQ, dtype=torch.long),
             "masksub_keep_indices": keep[i]} for i in range(N)]


def tiny_siglip2():
    torch.manual_seed(0)
    return transformers.Siglip2Model(transformers.Siglip2Config(
        vision_config=dict(VISION, patch_size=4, num_patches=PATCHES), text_config=dict(TEXT, projection_size=32)))


def patch_row_items(seed=0):
    """SigLIP 2's inputs (NaFlex): each image as 4 x 4 patch rows, a mask of the real rows and the image's grid; the
    second image is 3 x 4 patches plus padding. Half of each image's real patches hidden, chosen here."""
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randn(N, PATCHES, 3 * 4 * 4, generator=generator)
    real = torch.ones(N, PATCHES, dtype=torch.long)
    real[1, 12:] = 0
    shapes = torch.tensor([[4, 4]] * N)
    shapes[1] = torch.tensor([3, 4])
    hidden = torch.zeros(N, PATCHES, dtype=torch.bool)
    for i in range(N):
        count = int(real[i].sum())
        hidden[i, torch.randperm(count, generator=generator)[:count // 2]] = True
    texts = pair_items(seed)
    return [{"pixel_values": rows[i], "pixel_attention_mask": real[i], "spatial_shapes": shapes[i],
             "input_ids": texts[i]["input_ids"], "attention_mask": texts[i]["attention_mask"],
             "masksub_hidden_patches": hidden[i]} for i in range(N)]
