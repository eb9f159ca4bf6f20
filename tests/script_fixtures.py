"""Real offline data and tiny local models for the script tests."""

from pathlib import Path

import pandas as pd
from PIL import Image
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    BertTokenizerFast,
    ConvNextImageProcessor,
    ResNetConfig,
    ResNetForImageClassification,
    SwinConfig,
    SwinForImageClassification,
    TimmWrapperConfig,
    TimmWrapperForImageClassification,
    ViTConfig,
    ViTForImageClassification,
    ViTImageProcessor,
)

from masksub_hf.scripts.demo_data import mnist_digits, rotten_tomatoes


def mnist_imagefolder(root, train=200, validation=100):
    """Real MNIST digits as an image folder (train/<digit>/*.png, validation/<digit>/*.png), grayscale PNGs."""
    images, labels = mnist_digits(seed=0)
    root = Path(root)
    for split, start, count in (("train", 0, train), ("validation", train, validation)):
        for index in range(start, start + count):
            folder = root / split / str(labels[index])
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[index], mode="L").save(folder / f"{index}.png")
    return root / "train", root / "validation"


def tiny_vit_dir(path, image_size=32):
    model = ViTForImageClassification(ViTConfig(image_size=image_size, patch_size=8, hidden_size=32,
                                                num_hidden_layers=2, num_attention_heads=2, intermediate_size=64))
    model.save_pretrained(path)
    ViTImageProcessor(size={"height": image_size, "width": image_size}).save_pretrained(path)
    return path


def tiny_swin_dir(path, image_size=32):
    config = SwinConfig(image_size=image_size, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[1, 2],
                        window_size=4)
    SwinForImageClassification(config).save_pretrained(path)
    ViTImageProcessor(size={"height": image_size, "width": image_size}).save_pretrained(path)
    return path


def tiny_timm_vit_dir(path, image_size=32):
    """A timm ViT in transformers' wrapper; its preprocessing lives in config.json (pretrained_cfg)."""
    config = TimmWrapperConfig(
        architecture="vit_tiny_patch16_224",
        model_args=dict(img_size=image_size, patch_size=8, embed_dim=32, depth=2, num_heads=2),
        pretrained_cfg={"input_size": [3, image_size, image_size], "mean": [0.5] * 3, "std": [0.5] * 3,
                        "interpolation": "bicubic", "crop_pct": 1.0, "crop_mode": "center"},
    )
    TimmWrapperForImageClassification(config).save_pretrained(path)
    return path


def tiny_resnet_dir(path, image_size=32):
    model = ResNetForImageClassification(ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                                                      layer_type="basic"))
    model.save_pretrained(path)
    ConvNextImageProcessor(size={"shortest_edge": image_size}, crop_pct=1.0).save_pretrained(path)
    return path


def rotten_tomatoes_csv(root, train=300, validation=100, test=50):
    frame = rotten_tomatoes(seed=0)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, start, count in (("train", 0, train), ("validation", train, validation),
                                ("test", train + validation, test)):
        part = frame.iloc[start:start + count]
        paths[split] = root / f"{split}.csv"
        part.to_csv(paths[split], index=False)
    return paths


def tiny_bert_dir(path, vocab_words):
    """A tiny BERT (random weights) with a word-level WordPiece vocabulary built from the data."""
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set(vocab_words))]
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab=str(path / "vocab.txt"))  # transformers 5 ignores vocab_file= here
    assert tokenizer.vocab_size == len(vocab), tokenizer.vocab_size
    tokenizer.save_pretrained(path)
    BertForSequenceClassification(BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                                             num_attention_heads=2, intermediate_size=64,
                                             max_position_embeddings=128)).save_pretrained(path)
    return path


def stsb_style_csv(root, train=200, validation=80):
    """Sentence pairs from real reviews with a float similarity label (word overlap, 0-5), STS-B style."""
    frame = rotten_tomatoes(seed=1)
    rows = []
    for first, second in zip(frame["sentence"][: train + validation], frame["sentence"][1: train + validation + 1]):
        a, b = set(first.lower().split()), set(second.lower().split())
        rows.append({"sentence1": first, "sentence2": second, "label": 5.0 * len(a & b) / max(1, len(a | b))})
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    paths = {"train": root / "train.csv", "validation": root / "validation.csv"}
    pd.DataFrame(rows[:train]).to_csv(paths["train"], index=False)
    pd.DataFrame(rows[train:]).to_csv(paths["validation"], index=False)
    return paths


DIGIT_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def mnist_caption_csv(root, train=160, validation=64):
    """Real MNIST digits as PNG files with captions ("a photo of the digit seven") and class names."""
    images, labels = mnist_digits(seed=0)
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for index in range(train + validation):
        path = root / "images" / f"{index}.png"
        Image.fromarray(images[index], mode="L").save(path)
        name = DIGIT_NAMES[labels[index]]
        rows.append({"image_path": str(path), "caption": f"a photo of the digit {name}", "label": name})
    paths = {"train": root / "train.csv", "validation": root / "validation.csv"}
    pd.DataFrame(rows[:train]).to_csv(paths["train"], index=False)
    pd.DataFrame(rows[train:]).to_csv(paths["validation"], index=False)
    return paths


def hub_card_metadata(card):
    """The card's metadata as the Hub reads it (huggingface_hub's own parser); every base model a repo id."""
    from huggingface_hub import ModelCard
    from huggingface_hub.utils import validate_repo_id

    metadata = ModelCard(card).data.to_dict()
    bases = metadata.get("base_model") or []
    for base_model in [bases] if isinstance(bases, str) else bases:
        validate_repo_id(base_model)
    assert "huggingface.co//" not in card and "](https://huggingface.co/)" not in card
    return metadata

