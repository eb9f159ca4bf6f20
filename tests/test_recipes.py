"""The paper's recipe flags (run_image_classification.py): Mixup/CutMix drawn from the batch's sample seeds,
soft-target / BCE main losses, timm's augmentation stages, drop-path, repeated augmentation and recipe files.

References are written independently of the code under test: the mixed pixels and targets from timm's own
Mixup and from the mixing formula, the masked sub-branch input from the mask drawn for the batch, gradients
from a plain PyTorch computation of the recipe's loss."""

import copy
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import GradientProbe, ListDataset, training_args
from script_fixtures import mnist_imagefolder, tiny_swin_dir, tiny_timm_vit_dir, tiny_vit_dir
from timm.data import Mixup
from transformers import AutoConfig, ResNetConfig, ResNetForImageClassification

from masksub_hf import MaskSubImageCollator, MaskSubTrainer
from masksub_hf.batch import SEED
from masksub_hf.pipeline.samplers import RepeatedAugSampler
from masksub_hf.pipeline.seeding import SeededDataset
from masksub_hf.recipes.image_transforms import eval_transform, train_transform
from masksub_hf.recipes.mixing import MixupCollator, batch_seed
from masksub_hf.recipes.target_losses import TargetLoss
from masksub_hf.scripts import run_image_classification
from masksub_hf.scripts.cli import parse_arguments
from masksub_hf.scripts.errors import UserInputError

ROOT = Path(__file__).resolve().parents[1]

NUM_CLASSES = 5


def stack(features):
    return {"pixel_values": torch.stack([f["pixel_values"] for f in features]),
            "labels": torch.tensor([f["labels"] for f in features])}


def features(count, seed=0, with_seeds=True):
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randn(count, 3, 32, 32, generator=generator)
    labels = torch.arange(count) % NUM_CLASSES
    return [{"pixel_values": pixels[i], "labels": int(labels[i]), **({SEED: 1000 + 7 * i + seed} if with_seeds else {})}
            for i in range(count)]


def mixup(**overrides):
    settings = dict(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1, num_classes=NUM_CLASSES, mode="elem")
    return Mixup(**{**settings, **overrides})


@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
def test_mixed_batch_is_timms_draw_from_the_sample_seeds_and_targets_sum_to_one(mode):
    batch_features = features(8)
    numpy_state = np.random.get_state()
    mixed = MixupCollator(stack, mixup(mode=mode))(batch_features)
    assert all(np.array_equal(a, b) for a, b in zip(np.random.get_state(), numpy_state))  # caller's RNG untouched

    np.random.seed(batch_seed([f[SEED] for f in batch_features]))  # timm, by hand, under that seed
    reference_pixels, reference_targets = mixup(mode=mode)(stack(batch_features)["pixel_values"],
                                                           stack(batch_features)["labels"])
    assert torch.equal(mixed["pixel_values"], reference_pixels)
    assert torch.equal(mixed["labels"], reference_targets)
    assert torch.allclose(mixed["labels"].sum(-1), torch.ones(8))
    assert not torch.equal(mixed["pixel_values"], stack(batch_features)["pixel_values"])

    again = MixupCollator(stack, mixup(mode=mode))(features(8))
    assert torch.equal(again["pixel_values"], mixed["pixel_values"])  # a pure function of the seeds
    other = MixupCollator(stack, mixup(mode=mode))([{**f, SEED: f[SEED] + 1} for f in features(8)])
    assert not torch.equal(other["labels"], mixed["labels"])


def test_mixup_pixels_and_targets_follow_the_mixing_formula():
    """Independent of timm: x_i' = lam x_i + (1 - lam) x_(B-1-i), y_i' = lam y_i + (1 - lam) y_(B-1-i)."""
    batch_features = features(6)
    pixels, labels = stack(batch_features)["pixel_values"], stack(batch_features)["labels"]
    mixed = MixupCollator(stack, mixup(cutmix_alpha=0.0, label_smoothing=0.0, mode="batch"))(batch_features)
    lam = float(mixed["labels"][1, labels[1]])  # sample 1 (label 1) is mixed with sample 4 (label 4)
    assert 0 < lam < 1
    assert torch.allclose(mixed["pixel_values"], lam * pixels + (1 - lam) * pixels.flip(0), atol=1e-6)
    one_hot = F.one_hot(labels, NUM_CLASSES).float()
    assert torch.allclose(mixed["labels"], lam * one_hot + (1 - lam) * one_hot.flip(0), atol=1e-6)


def test_an_odd_batch_leaves_its_last_sample_unmixed():
    batch_features = features(7)
    mixed = MixupCollator(stack, mixup(label_smoothing=0.0))(batch_features)
    assert torch.equal(mixed["pixel_values"][-1], batch_features[-1]["pixel_values"])
    assert torch.equal(mixed["labels"][-1], F.one_hot(torch.tensor(batch_features[-1]["labels"]), NUM_CLASSES).float())
    assert torch.allclose(mixed["labels"].sum(-1), torch.ones(7))


def test_without_sample_seeds_mixup_draws_from_numpys_global_rng():
    np.random.seed(5)
    first = MixupCollator(stack, mixup())(features(8, with_seeds=False))
    np.random.seed(5)
    second = MixupCollator(stack, mixup())(features(8, with_seeds=False))
    assert torch.equal(first["labels"], second["labels"])


def test_target_loss_is_the_hand_written_loss_normalised_over_the_accumulated_batch():
    logits = torch.randn(4, NUM_CLASSES)
    soft = torch.softmax(torch.randn(4, NUM_CLASSES), -1)
    outputs = {"logits": logits}
    soft_ce = -(soft * torch.log_softmax(logits, -1)).sum(-1).mean()
    assert torch.allclose(TargetLoss()(outputs, soft), soft_ce)
    # Trainer counts label entries: 4 rows x 5 classes here, twice that over two accumulated micro-batches.
    assert torch.allclose(TargetLoss()(outputs, soft, num_items_in_batch=torch.tensor(40)), soft_ce / 2)
    binarised = F.binary_cross_entropy_with_logits(logits, (soft > 0).float())
    assert torch.allclose(TargetLoss(bce=True)(outputs, soft), binarised)  # DeiT-III: every target > 0 is 1
    thresholded = F.binary_cross_entropy_with_logits(logits, (soft > 0.2).float())
    assert torch.allclose(TargetLoss(bce=True, bce_target_thresh=0.2)(outputs, soft), thresholded)
    hard = torch.tensor([0, 3, 1, 4])
    smoothed = F.cross_entropy(logits, hard, label_smoothing=0.1)
    assert torch.allclose(TargetLoss(label_smoothing=0.1)(outputs, hard), smoothed)
    assert TargetLoss(bce=True).masksub_sub_loss == "bce" and TargetLoss().masksub_sub_loss == "soft_ce"


def tiny_resnet(seed=0):
    torch.manual_seed(seed)
    return ResNetForImageClassification(ResNetConfig(num_channels=3, embedding_size=8, hidden_sizes=[8, 16],
                                                     depths=[1, 1], layer_type="basic", num_labels=NUM_CLASSES))


class Recording:
    """Keeps a copy of every batch a collator makes (the trainer's loader may fetch one batch ahead)."""

    uses_sample_seeds = True

    def __init__(self, collator):
        self.collator, self.batches = collator, []

    def __call__(self, batch_features):
        batch = self.collator(batch_features)
        self.batches.append({k: v.clone() for k, v in batch.items()})
        return batch


def recipe_run(tmp_path, model, ratio, bce=True, mixing=None, steps=1):
    base = MaskSubImageCollator(model, ratio, block_size=8, base_collator=stack) if ratio > 0 else stack
    collator = Recording(MixupCollator(base, mixing or mixup(label_smoothing=0.0)))
    data = ListDataset([{k: v for k, v in f.items() if k != SEED} for f in features(16)])
    args = training_args(tmp_path, masksub_ratio=ratio, masksub_block_size=8, per_device_train_batch_size=8,
                         max_steps=steps, remove_unused_columns=False)
    probe = GradientProbe()
    trainer = MaskSubTrainer(model=model, args=args, train_dataset=data, data_collator=collator,
                             compute_loss_func=TargetLoss(bce=bce), callbacks=[probe])
    return trainer, collator, probe


def test_sub_branch_sees_the_mixed_image_with_the_mask_and_bce_gradients_match_a_plain_loop(tmp_path):
    model = tiny_resnet()
    reference = copy.deepcopy(model)
    seen = []
    model.register_forward_pre_hook(lambda module, args, kwargs: seen.append(kwargs["pixel_values"].clone()),
                                    with_kwargs=True)
    trainer, collator, probe = recipe_run(tmp_path, model, ratio=0.5)
    trainer.train()
    batch = collator.batches[0]
    block_mask = batch["masksub_zeroed_blocks"]  # (8, 4, 4) blocks of 8 px, True = masked
    pixel_mask = block_mask.repeat_interleave(8, 1).repeat_interleave(8, 2).unsqueeze(1)
    assert torch.equal(seen[0], batch["pixel_values"])  # main branch: the mixed batch
    assert torch.equal(seen[1], batch["pixel_values"].masked_fill(pixel_mask, 0.0))  # sub: mixed, then masked
    assert not torch.equal(batch["pixel_values"], stack(features(16)[:8])["pixel_values"])

    # Plain PyTorch: DeiT-III's binarised BCE on the main branch, sigmoid targets for the sub branch.
    reference.train()
    main_logits = reference(pixel_values=batch["pixel_values"]).logits
    main_loss = F.binary_cross_entropy_with_logits(main_logits, (batch["labels"] > 0).float())
    sub_logits = reference(pixel_values=batch["pixel_values"] * ~pixel_mask).logits
    sub_loss = F.binary_cross_entropy_with_logits(sub_logits, torch.sigmoid(main_logits).detach())
    (0.5 * main_loss + 0.5 * sub_loss).backward()
    for name, parameter in reference.named_parameters():
        torch.testing.assert_close(probe.gradients[0][name], parameter.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_vit_sub_branch_embeds_the_mixed_image(tmp_path):
    from helpers import tiny_vit

    model = tiny_vit(num_labels=NUM_CLASSES)
    seen = []
    model.vit.embeddings.patch_embeddings.register_forward_hook(lambda module, args, output: seen.append(args[0].clone()))
    trainer, collator, _ = recipe_run(tmp_path, model, ratio=0.5, bce=False)
    trainer.train()
    batch = collator.batches[0]
    assert torch.equal(seen[0], batch["pixel_values"]) and torch.equal(seen[1], batch["pixel_values"])
    assert "masksub_keep_indices" in batch  # the tokens of the mixed image are dropped after embedding


def test_mixup_that_never_mixes_trains_as_without_it_and_the_sub_branch_runs(tmp_path):
    never = mixup(cutmix_alpha=0.0, prob=0.0, label_smoothing=0.0)
    trainer, _, probe = recipe_run(tmp_path / "never", tiny_resnet(), ratio=0.5, bce=False, mixing=never, steps=2)
    trainer.train()
    plain_model = tiny_resnet()
    args = training_args(tmp_path / "plain", masksub_ratio=0.5, masksub_block_size=8, per_device_train_batch_size=8,
                         max_steps=2, remove_unused_columns=False)
    plain_probe = GradientProbe()
    data = ListDataset([{k: v for k, v in f.items() if k != SEED} for f in features(16)])
    MaskSubTrainer(model=plain_model, args=args, train_dataset=data, callbacks=[plain_probe],
                   data_collator=MaskSubImageCollator(plain_model, 0.5, block_size=8, base_collator=stack)).train()
    for step in range(2):
        for name, gradient in plain_probe.gradients[step].items():
            torch.testing.assert_close(probe.gradients[step][name], gradient, rtol=1e-5, atol=1e-7, msg=name)
    ratio_zero, _, zero_probe = recipe_run(tmp_path / "zero", tiny_resnet(), ratio=0.0, bce=False, mixing=never)
    ratio_zero.train()
    assert any(not torch.allclose(zero_probe.gradients[0][n], g) for n, g in probe.gradients[0].items())


def test_evaluation_batches_are_never_mixed(tmp_path):
    model = tiny_resnet()
    collator = MixupCollator(MaskSubImageCollator(model, 0.5, block_size=8, base_collator=stack), mixup())
    trainer = MaskSubTrainer(model=model, args=training_args(tmp_path, remove_unused_columns=False),
                             data_collator=collator, compute_loss_func=TargetLoss())
    evaluation = ListDataset([{k: v for k, v in f.items() if k != SEED} for f in features(6)])
    batch = next(iter(trainer.get_eval_dataloader(evaluation)))
    assert batch["labels"].dtype == torch.int64
    assert torch.equal(batch["pixel_values"], stack(features(6))["pixel_values"])



def test_prediction_is_never_mixed_and_the_collator_stays_the_users(tmp_path):
    model = tiny_resnet()
    collator = MixupCollator(MaskSubImageCollator(model, 0.5, block_size=8, base_collator=stack), mixup())
    trainer = MaskSubTrainer(model=model, args=training_args(tmp_path, remove_unused_columns=False),
                             data_collator=collator)
    unseeded = [{k: v for k, v in f.items() if k != SEED} for f in features(6)]
    output = trainer.predict(ListDataset(unseeded))
    model.eval()
    with torch.no_grad():
        clean = model(pixel_values=stack(features(6))["pixel_values"]).logits
    torch.testing.assert_close(torch.as_tensor(output.predictions), clean)
    assert output.label_ids.dtype.kind == "i" and trainer.data_collator is collator


def test_repeated_augmentation_deals_copies_to_processes_batch_by_batch():
    sampler = RepeatedAugSampler(10, num_repeats=3, num_processes=2, batch_size=2, seed=1, distinct_copies=True)
    order = list(sampler)
    assert len(order) == len(sampler) == 8  # whole batches: 4 samples a process
    # Accelerate gives process p the batches p, p + 2, ...: rebuild each process's sequence.
    per_process = [[i for b in range(p, len(order) // 2, 2) for i in order[2 * b:2 * b + 2]] for p in range(2)]
    # DeiT's rule: the shuffled samples, each 3 times in a row (copy k = index + 10 k), dealt to the processes in
    # turn. Interleaving the processes' sequences must give back such a sequence.
    dealt = [per_process[position % 2][position // 2] for position in range(8)]
    for start in range(0, 6, 3):
        assert dealt[start] < 10 and dealt[start:start + 3] == [dealt[start] + 10 * k for k in range(3)]
    assert dealt[6:8] == [dealt[6], dealt[6] + 10] and len({i % 10 for i in dealt}) == 3
    sampler.set_epoch(1)
    assert list(sampler) != order
    same = RepeatedAugSampler(10, num_repeats=3, num_processes=2, batch_size=2, seed=1, distinct_copies=True)
    assert list(same) == order  # a pure function of (seed, epoch): a resume replays it
    plain = RepeatedAugSampler(10, num_repeats=3, seed=1)
    assert len(plain) == 10 and all(i < 10 for i in plain)


def test_repeated_copies_get_their_own_augmentation_seeds():
    class Noisy(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, index):
            return {"pixel_values": torch.rand(3), "labels": index}

    dataset = SeededDataset(Noisy(), seed=0)
    copies = dataset.__getitems__([1, 5, 9])  # sample 1 and its two repeated copies
    assert [c["labels"] for c in copies] == [1, 1, 1]
    assert not torch.equal(copies[0]["pixel_values"], copies[1]["pixel_values"])
    assert len({c[SEED] for c in copies}) == 3
    assert torch.equal(dataset.__getitems__([5])[0]["pixel_values"], copies[1]["pixel_values"])


def test_default_train_transform_is_the_hf_examples_and_recipe_stages_come_from_timm():
    from PIL import Image
    from torchvision.transforms import Compose, Normalize, RandomHorizontalFlip, RandomResizedCrop, ToTensor

    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8))
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    hf_example = Compose([RandomResizedCrop(32), RandomHorizontalFlip(), ToTensor(), Normalize(mean, std)])
    ours = train_transform(32, mean, std)
    for seed in range(4):
        torch.manual_seed(seed)
        expected = hf_example(image)
        torch.manual_seed(seed)
        assert torch.equal(ours(image), expected)
    recipe = repr(train_transform(32, mean, std, "simple_random_crop", auto_augment="3a", color_jitter=0.3, reprob=0.25))
    for stage in ("padding=4", "Solarize", "Desaturate", "GaussianBlurRand", "ColorJitter", "RandomErasing"):
        assert stage in recipe, stage
    assert "RandAugment" in repr(train_transform(32, mean, std, auto_augment="rand-m9-mstd0.5-inc1"))
    assert "size=36" in repr(eval_transform(32, int(32 / 0.875), mean, std))  # DeiT's crop ratio 0.875


def test_drop_path_rate_reaches_models_that_have_it_and_is_refused_for_others(tmp_path):
    swin = AutoConfig.from_pretrained(tiny_swin_dir(tmp_path / "swin"))
    run_image_classification.set_drop_path_rate(swin, 0.3)
    assert swin.drop_path_rate == 0.3
    timm_config = AutoConfig.from_pretrained(tiny_timm_vit_dir(tmp_path / "timm"))
    run_image_classification.set_drop_path_rate(timm_config, 0.2)
    assert timm_config.model_args["drop_path_rate"] == 0.2 and timm_config.model_args["depth"] == 2
    vit = AutoConfig.from_pretrained(tiny_vit_dir(tmp_path / "vit"))
    with pytest.raises(UserInputError, match="--drop_path_rate"):
        run_image_classification.set_drop_path_rate(vit, 0.1)
    run_image_classification.set_drop_path_rate(vit, 0.0)  # DeiT-III S's recipe line: no drop-path, as the model has
    assert not hasattr(vit, "drop_path_rate")


def test_every_documented_crop_is_a_flag_value(tmp_path):
    """Before: --augmentation simple_random_crop (docs/recipes.md, the --three_augment help) was an invalid choice."""
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "a.png").write_bytes(b"")
    for crop in ("random_resized_crop", "simple_random_crop", "shift", "none"):
        parsed = parse_arguments(run_image_classification.ARGUMENT_TYPES, args=[
            "--train_dir", str(tmp_path), "--model_name_or_path", "unused", "--output_dir", "unused",
            "--augmentation", crop])
        assert [a.augmentation for a in parsed if hasattr(a, "augmentation")] == [crop]


def test_odd_batch_size_with_mixing_is_refused():
    recipe = run_image_classification.RecipeArguments(mixup=0.8)
    with pytest.raises(UserInputError, match="--per_device_train_batch_size"):
        run_image_classification.check_recipe(recipe, training_args("/tmp/unused", per_device_train_batch_size=15))


def test_recipe_file_trains_with_its_flags_overridden_and_the_model_gets_its_drop_path(tmp_path):
    train_dir, validation_dir = mnist_imagefolder(tmp_path / "data", train=48, validation=16)
    model = tiny_swin_dir(tmp_path / "swin")
    output = tmp_path / "out"
    run_image_classification.main([
        "recipes/cpu/deit3_mnist.yaml", "--model_name_or_path", str(model), "--train_dir",
        str(train_dir), "--validation_dir", str(validation_dir), "--output_dir", str(output), "--max_steps", "2",
        "--per_device_train_batch_size", "8", "--use_cpu", "--report_to", "none", "--save_strategy", "no",
        "--drop_path_rate", "0.25", "--disable_tqdm", "true", "--logging_steps", "1"])
    results = json.loads((output / "all_results.json").read_text())
    assert results["train_samples"] == 48 and 0 <= results["eval_accuracy"] <= 1
    assert json.loads((output / "config.json").read_text())["drop_path_rate"] == 0.25
    state = json.loads((output / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    logged = [entry for entry in state["log_history"] if "sub_loss" in entry]
    assert logged and logged[0]["sub_loss"] > 0  # the sub branch ran, on the recipe's BCE


SHIPPED = ROOT / "masksub_hf" / "recipes" / "configs"


def recipe_files():
    return sorted(SHIPPED.rglob("*.yaml"))


@pytest.mark.parametrize("path", recipe_files(), ids=lambda p: str(p.relative_to(SHIPPED)))
def test_every_recipe_file_parses_with_its_script(path):
    """Each recipe names its script on its first line; every key is one of that script's flags."""
    import importlib

    script = path.read_text().splitlines()[0].split()[1].rstrip(":")  # first line: "# <script>: ..."
    module = importlib.import_module("masksub_hf.scripts." + script.removesuffix(".py"))
    data = {"run_clip": ["--train_file", "unused.csv", "--model_name_or_path", "unused"]}.get(
        module.__name__.rsplit(".", 1)[-1], ["--dataset_name", "unused", "--model_name_or_path", "unused"])  # the recipes' commands name it
    parsed = parse_arguments(module.ARGUMENT_TYPES, args=[str(path), *data, "--output_dir", "unused", "--use_cpu"])
    assert parsed[-1].masksub_ratio > 0
    if parsed[-1].bf16:  # a GPU recipe: it says how to run it on a CPU, and so does the error without --use_cpu
        assert "# On a CPU (to try it): add --use_cpu" in path.read_text()
        if not torch.accelerator.is_available():
            with pytest.raises(UserInputError, match=r"^--bf16: this machine has no GPU; add --use_cpu"):
                parse_arguments(module.ARGUMENT_TYPES, args=[str(path), *data, "--output_dir", "unused"])


def test_randaugment_posterize_at_zero_bits_gives_a_black_image_instead_of_pillows_error():
    from PIL import Image

    from masksub_hf.recipes.image_transforms import _posterize

    image = Image.fromarray(np.random.default_rng(0).integers(1, 255, (8, 8), dtype=np.uint8), mode="L")
    assert np.asarray(_posterize(image, 0)).max() == 0 and _posterize(image, 8) is image
    policy = train_transform(16, [0.5], [0.5], "none", auto_augment="rand-m10-mstd0.5-inc1")  # reaches 0 bits
    for seed in range(100):
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)
        policy(image)


def test_repeated_augmentation_on_two_processes_deals_each_samples_copies_to_both(tmp_path):
    from helpers import launch

    result = tmp_path / "batches"
    launch([ROOT / "tests" / "scripts" / "repeated_aug_batches.py", result], processes=2, port=29531)
    runs = [json.loads((tmp_path / f"batches.{rank}").read_text()) for rank in (0, 1)]
    seen = [[i for batch in run["batches"] for i in batch] for run in runs]
    assert [len(s) for s in seen] == [8, 8]  # an epoch keeps the dataset's length, split between the processes
    # DeiT's dealing: copies 0, 1, 2 of a sample at consecutive positions, dealt in turn, so the two processes'
    # t-th samples are consecutive copies, and no process holds two copies of a sample next to each other.
    dealt = [seen[position % 2][position // 2] for position in range(16)]
    runs_of_three = [dealt[start:start + 3] for start in range(0, 15, 3)]
    assert all(len(set(run)) == 1 for run in runs_of_three)
    assert len({run[0] for run in runs_of_three}) == 5
    copies_seeds = {}
    for run in runs:
        for index, seeds in run["seeds"].items():
            copies_seeds.setdefault(index, set()).update(seeds)
    first = str(dealt[0])
    assert len(copies_seeds[first]) == 3  # its three copies carry three different seeds, on two processes
