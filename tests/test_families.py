"""Every image family: mask fraction and polarity, gradients vs an independent reference given the
same mask, and a saved model that reloads in plain transformers / timm with identical outputs.

References use the model's own code paths, never MaskSub's hooks: pixels are zeroed with
``torch.kron``; Swin/BEiT get the mask token through transformers' own ``bool_masked_pos``; a timm
ViT is run piece by piece with the kept tokens gathered by hand.
"""

import copy

import pytest
import timm
import torch
import transformers
from exactness_cases import (
    MASK_TOKEN_FAMILIES,
    PIXEL_FAMILIES,
    RecordingTrainer,
    assert_gradients_equal,
    reference_gradients,
    run_case,
)
from helpers import ListDataset, TokenProbe, training_args
from models import SIZE, hf_model
from references import REFERENCE_LOSSES, assert_same_gradients, patch_mask
from safetensors.torch import load_file
from transformers import TimmWrapperConfig, TimmWrapperForImageClassification

from masksub_hf import MaskSubImageCollator, MaskSubTrainer, MaskSubTrainingArguments
from masksub_hf.functional import masksub_step
from masksub_hf.masking import MaskTokenBlocks, PixelMasking, masking_for
from masksub_hf.objectives import objective_for

BLOCK, NUM_SAMPLES = 8, 8  # 8-px blocks on 32-px images: a 4 x 4 block grid, 8 of 16 masked at ratio 0.5


def timm_wrapper(architecture):
    torch.manual_seed(0)
    model_args = {
        "vit_tiny_patch16_224": dict(img_size=SIZE, patch_size=8, embed_dim=32, depth=2, num_heads=2),
        "resnet18": dict(layers=[1, 1, 1, 1], channels=(8, 16, 32, 64)),
    }[architecture]
    return TimmWrapperForImageClassification(TimmWrapperConfig(architecture=architecture, num_labels=3,
                                                               model_args=model_args))


def block_items(seed=0, key=PixelMasking.key):
    """Items with block masks drawn beforehand, under ``key``: the batch key of the masking that reads them."""
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randn(NUM_SAMPLES, 3, SIZE, SIZE, generator=generator)
    labels = torch.randint(0, 3, (NUM_SAMPLES,), generator=generator)
    masks = PixelMasking(0.5, BLOCK).draw({"pixel_values": pixels}, generator)
    return [{"pixel_values": pixels[i], "labels": labels[i], key: masks[i]} for i in range(NUM_SAMPLES)]


def stacked(items):
    return {k: torch.stack([item[k] for item in items]) for k in items[0]}


def one_step_trainer(tmp_path, model, items, **overrides):
    args = MaskSubTrainingArguments(
        output_dir=str(tmp_path), use_cpu=True, report_to="none", save_strategy="no", max_steps=1,
        per_device_train_batch_size=NUM_SAMPLES, masksub_ratio=0.5, masksub_block_size=BLOCK,
        disable_tqdm=True, **{"max_grad_norm": 0.0, **overrides},
    )
    trainer = MaskSubTrainer(model=model, args=args, train_dataset=ListDataset(items))
    probe = TokenProbe(trainer._owned_parameters)
    trainer.add_callback(probe)
    return trainer, probe


HF_BLOCK_FAMILIES = [*PIXEL_FAMILIES, *MASK_TOKEN_FAMILIES]


@pytest.mark.parametrize("family", HF_BLOCK_FAMILIES)
def test_block_families_match_reference_and_reload(tmp_path, family):
    """The exactness matrix's block case (tests/exactness_cases.py: pixels zeroed by hand, or transformers' own
    ``bool_masked_pos`` path with the owned mask token) for every block family, at one micro-batch."""
    case, initial, trainer, gradients = run_case(f"{family}_blocks", "ga1", "fp32", tmp_path, training_args,
                                                 RecordingTrainer)
    assert len(trainer._owned_parameters()) == (1 if family in MASK_TOKEN_FAMILIES else 0)
    expected = reference_gradients(case, initial, trainer.recorded, "fp32")
    assert_gradients_equal(gradients, expected, "fp32", family)
    model, batch = trainer.model, trainer.recorded[0]

    # The export is the model alone: same keys as transformers' own save, identical outputs on reload.
    trainer.save_model(str(tmp_path / "export"))
    hf_model(family).save_pretrained(tmp_path / "untouched")
    assert set(load_file(str(tmp_path / "export/model.safetensors"))) == set(
        load_file(str(tmp_path / "untouched/model.safetensors")))
    reloaded = transformers.AutoModelForImageClassification.from_pretrained(tmp_path / "export").eval()
    model.eval()
    with torch.no_grad():
        assert torch.equal(reloaded(pixel_values=batch["pixel_values"]).logits,
                           model(pixel_values=batch["pixel_values"]).logits)


@pytest.mark.parametrize("ratio", [0.25, 0.5, 0.75])
def test_pixel_masking_zeroes_exactly_the_removed_fraction(ratio):
    model = hf_model("resnet")
    seen = []
    model.register_forward_pre_hook(lambda m, a, kw: seen.append(kw["pixel_values"]), with_kwargs=True)
    collator = MaskSubImageCollator(model, ratio=ratio, block_size=BLOCK)
    batch = collator([{"pixel_values": torch.ones(3, SIZE, SIZE), "labels": 0} for _ in range(4)])
    masking = masking_for(model, "auto", ratio, block_size=BLOCK)
    with masking.apply(model, {"pixel_values": batch["pixel_values"]}, batch[PixelMasking.key]) as sub_inputs:
        model(**sub_inputs)
    zero_fraction = (seen[0] == 0).float().mean(dim=(1, 2, 3))
    assert torch.equal(zero_fraction, torch.full((4,), ratio))  # the fraction *removed* is the ratio


def test_block_size_scales_with_the_input():
    masking = PixelMasking(0.5)
    assert masking.draw({"pixel_values": torch.zeros(2, 3, 224, 224)}).shape == (2, 7, 7)  # 32-px blocks
    assert masking.draw({"pixel_values": torch.zeros(2, 3, 112, 112)}).shape == (2, 7, 7)  # 16-px blocks
    grid = masking_for(hf_model("swin"), "auto", 0.5).draw({"pixel_values": torch.zeros(1, 3, 224, 224)})
    assert grid.shape == (1, 7, 7) and int(grid.sum()) == 25  # 8x8-patch blocks, round(49 / 2)


def test_owned_mask_token_trains_and_resumes_but_is_never_exported(tmp_path):
    model = hf_model("swin")
    args = MaskSubTrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", max_steps=2,
                                    save_steps=1, per_device_train_batch_size=4, learning_rate=0.1,
                                    disable_tqdm=True, masksub_block_size=BLOCK)
    trainer = MaskSubTrainer(model=model, args=args, train_dataset=ListDataset(block_items(key=MaskTokenBlocks.key)))
    (token,) = trainer._owned_parameters()
    initial = token.detach().clone()
    trainer.train()
    assert not torch.equal(token, initial)  # the optimizer trains it
    assert token.grad is None  # cleared after every optimizer step, like the model's gradients
    saved = torch.load(tmp_path / "checkpoint-2" / "masksub_state.pt")
    assert torch.equal(saved[0], token.detach())
    assert not any("mask_token" in key for key in load_file(str(tmp_path / "checkpoint-2/model.safetensors")))
    assert model.swin.embeddings.mask_token is None and not model.swin.embeddings.norm._forward_hooks

    resumed = MaskSubTrainer(model=hf_model("swin"), args=args, train_dataset=ListDataset(block_items(key=MaskTokenBlocks.key)))
    resumed._load_from_checkpoint(str(tmp_path / "checkpoint-1"))
    assert torch.equal(resumed._owned_parameters()[0], torch.load(tmp_path / "checkpoint-1/masksub_state.pt")[0])


def test_model_init_resume_restores_the_owned_mask_token_into_the_new_models_masking(tmp_path):
    args = MaskSubTrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", max_steps=2,
                                    save_steps=1, per_device_train_batch_size=4, learning_rate=0.1,
                                    disable_tqdm=True, masksub_block_size=BLOCK)
    trainer = MaskSubTrainer(model_init=lambda: hf_model("swin"), args=args, train_dataset=ListDataset(block_items(key=MaskTokenBlocks.key)))
    trainer.train()
    resumed = MaskSubTrainer(model_init=lambda: hf_model("swin"), args=args, train_dataset=ListDataset(block_items(key=MaskTokenBlocks.key)))
    resumed.train(resume_from_checkpoint=str(tmp_path / "checkpoint-1"))
    # The resumed run's token went on from checkpoint-1's, as the uninterrupted run's did: the same at step 2.
    assert torch.equal(resumed._owned_parameters()[0], trainer._owned_parameters()[0])
    assert torch.equal(resumed._owned_parameters()[0], torch.load(tmp_path / "checkpoint-2/masksub_state.pt")[0])


def timm_vit_reference_logits(timm_model, pixels, keep_indices):
    x = timm_model._pos_embed(timm_model.patch_embed(pixels))
    kept = torch.stack([x[b, 1:][keep_indices[b]] for b in range(len(keep_indices))])
    x = torch.cat([x[:, :1], kept], dim=1)
    x = timm_model.norm(timm_model.blocks(timm_model.norm_pre(x)))
    return timm_model.forward_head(x)


def test_timm_vit_in_transformers_wrapper(tmp_path):
    model = timm_wrapper("vit_tiny_patch16_224")
    masking = masking_for(model, "auto", 0.5)
    assert masking.patch_size == (8, 8)
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randn(NUM_SAMPLES, 3, SIZE, SIZE, generator=generator)
    labels = torch.randint(0, 3, (NUM_SAMPLES,), generator=generator)
    keep = masking.draw({"pixel_values": pixels}, generator)
    assert keep.shape == (NUM_SAMPLES, 8)  # 8 of the 16 patches
    items = [{"pixel_values": pixels[i], "labels": labels[i], "masksub_keep_indices": keep[i]}
             for i in range(NUM_SAMPLES)]
    reference = copy.deepcopy(model)
    lengths = []
    model.timm_model.blocks[0].register_forward_pre_hook(lambda m, a: lengths.append(a[0].shape[1]))
    trainer, probe = one_step_trainer(tmp_path / "run", model, items)
    trainer.train()
    assert lengths == [17, 9]

    main_loss_fn, sub_loss_fn = REFERENCE_LOSSES["ce"]
    main_logits = reference(pixel_values=pixels).logits
    sub_logits = timm_vit_reference_logits(reference.timm_model, pixels, keep)
    (0.5 * main_loss_fn(main_logits, labels) + 0.5 * sub_loss_fn(sub_logits, main_logits.detach())).backward()
    assert_same_gradients(probe.gradients[0], {n: p.grad for n, p in reference.named_parameters()})

    trainer.save_model(str(tmp_path / "export"))
    reloaded = TimmWrapperForImageClassification.from_pretrained(tmp_path / "export").eval()
    model.eval()
    with torch.no_grad():
        assert torch.equal(reloaded(pixel_values=pixels).logits, model(pixel_values=pixels).logits)


def bare_timm_resnet():
    torch.manual_seed(0)
    return timm.create_model("resnet18", num_classes=3, layers=[1, 1, 1, 1], channels=(8, 16, 32, 64))


def test_bare_timm_resnet_with_the_functional_api():
    model = bare_timm_resnet()
    masking = masking_for(model, "auto", 0.5, block_size=BLOCK)
    assert isinstance(masking, PixelMasking)
    batch = stacked(block_items())
    reference = copy.deepcopy(model)

    main_loss, sub_loss = masksub_step(model, {"pixel_values": batch["pixel_values"], "labels": batch["labels"]},
                                       masking, objective_for(model), batch[PixelMasking.key])

    main_loss_fn, sub_loss_fn = REFERENCE_LOSSES["ce"]
    main_logits = reference(batch["pixel_values"])
    keep = 1 - patch_mask(batch[PixelMasking.key], BLOCK).unsqueeze(1).float()
    sub_logits = reference(batch["pixel_values"] * keep)
    (0.5 * main_loss_fn(main_logits, batch["labels"]) + 0.5 * sub_loss_fn(sub_logits, main_logits.detach())).backward()
    assert_same_gradients({n: p.grad for n, p in model.named_parameters()},
                          {n: p.grad for n, p in reference.named_parameters()})
    assert main_loss > 0 and sub_loss > 0

    # Nothing of MaskSub stays on the model: plain timm loads its weights strictly, same outputs.
    fresh = bare_timm_resnet()
    fresh.load_state_dict(model.state_dict(), strict=True)
    model.eval(), fresh.eval()
    with torch.no_grad():
        assert torch.equal(fresh(batch["pixel_values"]), model(batch["pixel_values"]))


def test_timm_resnet_in_transformers_wrapper_gets_pixel_masking():
    assert isinstance(masking_for(timm_wrapper("resnet18"), "auto", 0.5), PixelMasking)


@pytest.mark.parametrize("family", ["swin", "beit"])
@pytest.mark.parametrize("ratio", [0.25, 0.75])
def test_mask_token_replaces_exactly_the_removed_fraction(family, ratio):
    model = hf_model(family)
    masking = masking_for(model, "auto", ratio, block_size=BLOCK)
    (token,) = masking.parameters()
    pixels = torch.randn(4, 3, SIZE, SIZE)
    block_mask = masking.draw({"pixel_values": pixels})
    num_patches = (SIZE // model.config.patch_size) ** 2
    seen = []
    getattr(model, family).embeddings.register_forward_hook(
        lambda m, a, output: seen.append((output[0] if isinstance(output, tuple) else output).detach()))
    with masking.apply(model, {"pixel_values": pixels}, block_mask):
        model(pixel_values=pixels)
    # the patch tokens after the embeddings (the tiny models add no absolute positions): masked ones are the token
    is_token = (seen[0][:, -num_patches:] == token.detach()).all(dim=-1)
    assert torch.equal(is_token.float().mean(dim=1), torch.full((4,), ratio))


def tiny_siglip2_classifier():
    torch.manual_seed(0)
    tower = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16, patch_size=4,
                 num_patches=16)
    return transformers.Siglip2ForImageClassification(transformers.Siglip2Config(
        vision_config=tower, text_config=dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                              intermediate_size=16), num_labels=3))


def test_siglip2_patches_hidden_through_its_own_mask_match_the_reference():
    """SigLIP 2 (NaFlex) reads patch rows with ``pixel_attention_mask`` and ``spatial_shapes``: ``auto`` hides
    ``ratio`` of each image's real patches (never padding) by zeroing them in that mask; a step's gradients
    equal the method written out with the mask built here by hand."""
    model = tiny_siglip2_classifier()
    masking = masking_for(model, "auto", 0.5)
    assert masking.mode == "tokens"
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randn(3, 16, 3 * 4 * 4, generator=generator)
    real = torch.ones(3, 16, dtype=torch.long)
    real[2, 12:] = 0  # the third image has 12 real patches (a 3 x 4 grid), then padding
    shapes = torch.tensor([[4, 4], [4, 4], [3, 4]])
    batch = {"pixel_values": pixels, "pixel_attention_mask": real, "spatial_shapes": shapes,
             "labels": torch.tensor([0, 1, 2])}
    hidden = masking.draw(batch, [1, 2, 3])
    assert hidden.sum(1).tolist() == [8, 8, 6] and not (hidden & ~real.bool()).any()
    reference = copy.deepcopy(model)

    masksub_step(model, dict(batch), masking, objective_for(model), hidden)

    main_loss_fn, sub_loss_fn = REFERENCE_LOSSES["ce"]
    inputs = {"pixel_values": pixels, "spatial_shapes": shapes}
    main_logits = reference(**inputs, pixel_attention_mask=real).logits
    seen = real * (1 - hidden.long())
    sub_logits = reference(**inputs, pixel_attention_mask=seen).logits
    (0.5 * main_loss_fn(main_logits, batch["labels"]) + 0.5 * sub_loss_fn(sub_logits, main_logits.detach())).backward()
    assert_same_gradients({n: p.grad for n, p in model.named_parameters() if p.grad is not None},
                          {n: p.grad for n, p in reference.named_parameters() if p.grad is not None})
    assert not torch.allclose(sub_logits, main_logits)


@pytest.mark.parametrize("image_key", ["inputs", "pixel_values"])
def test_perceiver_reads_its_images_from_either_name_the_batch_carries(tmp_path, image_key):
    """Perceiver's image classifiers read ``inputs`` and accept ``pixel_values``: plain Trainer trains either batch,
    and so does MaskSub, zero-filling blocks of whichever the batch carries (before: KeyError 'inputs')."""
    config = transformers.PerceiverConfig(image_size=SIZE, num_latents=8, d_latents=16, d_model=16,
                                          num_self_attends_per_block=1, num_self_attention_heads=1,
                                          num_cross_attention_heads=1, num_labels=3)
    torch.manual_seed(0)
    model = transformers.PerceiverForImageClassificationLearned(config)
    seen = []
    model.register_forward_pre_hook(lambda m, a, kw: seen.append(kw[image_key].clone()), with_kwargs=True)
    generator = torch.Generator().manual_seed(0)
    items = [{image_key: torch.randn(3, SIZE, SIZE, generator=generator), "labels": i % 3} for i in range(4)]
    args = training_args(tmp_path, per_device_train_batch_size=4, max_steps=1, masksub_block_size=BLOCK)
    MaskSubTrainer(model=model, args=args, train_dataset=ListDataset(items)).train()
    main, sub = seen
    assert (main == 0).float().mean() == 0 and (sub == 0).float().mean() == pytest.approx(0.5, abs=0.01)


def test_clipping_takes_the_owned_mask_token_with_the_models_gradients(tmp_path):
    """The owned mask token is one of the optimizer's parameters: Trainer's clipping sees it with the model's, so the
    norm of all of them together is the clip value (clipping the model's alone would leave the whole above it)."""
    model = hf_model("swin")
    unclipped, _ = one_step_trainer(tmp_path / "unclipped", copy.deepcopy(model), block_items(key=MaskTokenBlocks.key))
    unclipped_probe = unclipped.callback_handler.callbacks[-1]
    unclipped.train()
    total = torch.cat([g.flatten() for g in unclipped_probe.gradients[0].values()]).norm()
    clip = float(total) / 4
    trainer, probe = one_step_trainer(tmp_path / "clipped", model, block_items(key=MaskTokenBlocks.key),
                                      max_grad_norm=clip)
    trainer.train()
    gradients = probe.gradients[0]
    assert "owned.0" in gradients and gradients["owned.0"].norm() > 0
    assert torch.cat([g.flatten() for g in gradients.values()]).norm() == pytest.approx(clip, rel=1e-4)
