"""DeepSpeed as a tested engine: ZeRO-2 and ZeRO-3 through ``accelerate launch``, on 2 gloo processes (CPU).

- 2 processes x batch 4 under ZeRO give the parameters of 1 process x batch 4 x accumulation 2 without
  DeepSpeed (ViT; SigLIP 2); 1 DeepSpeed process gives the run without DeepSpeed;
- gradient communication: ZeRO-2/3 reduce the gradients of every backward pass (they partition gradients:
  ``engine.no_sync`` refuses them): MaskSub's step there backpropagates both branches in one backward
  (``masksub_backward`` auto), one reduction per micro-batch as plain Trainer's; the two-pass plan's main backward
  adds one: both counted here, documented in docs/compatibility.md;
- dual encoders (SigLIP 2): the sub branch's bare image tower under ZeRO-2 (CLIP's 0-dim logit_scale fails
  DeepSpeed's initial broadcast on gloo, and SigLIP 2 built under ZeRO-3 fails its own weight init: plain Trainer
  the same);
- ``run_image_classification.py --deepspeed accelerate_configs/ds_zero2.json`` on 2 processes equals the
  same command under DDP.
"""

from pathlib import Path

import pytest
import torch
from helpers import launch
from script_fixtures import mnist_imagefolder, tiny_vit_dir
from test_distributed import COMMON, SCRIPT
from transformers import AutoModelForImageClassification

ROOT = Path(__file__).resolve().parents[1]
ZERO2 = ROOT / "accelerate_configs" / "deepspeed_zero2.yaml"
GRADIENT_REDUCTION = {2: "all_reduce", 3: "reduce_scatter_tensor"}  # how each stage reduces gradients on gloo


def zero_config(tmp_path, stage):
    config = tmp_path / f"zero{stage}.yaml"
    config.write_text(ZERO2.read_text().replace("zero_stage: 2", f"zero_stage: {stage}"))
    return config


def run(tmp_path, name, processes, extra, stage=None):
    result_file = tmp_path / f"{name}.pt"
    expected = ["--expect_distributed_type", "DEEPSPEED"] if stage else []
    launch([SCRIPT, "--output_dir", tmp_path / name, "--result_file", result_file, "--expect_processes", processes,
            *expected, *COMMON, *extra], processes=processes, port=29541,
           config_file=zero_config(tmp_path, stage) if stage else None)
    return torch.load(result_file)


def assert_same_parameters(actual, expected):
    for name, value in expected.items():
        torch.testing.assert_close(actual[name], value, rtol=0, atol=1e-5, msg=name)


def gradient_reductions(result, stage):
    return result["collectives_per_step"][GRADIENT_REDUCTION[stage]]


ONE_PROCESS_RUNS = {}  # the one-process references without DeepSpeed, shared by the tests (each launch ~15 s)


def one_process_accumulated(tmp_path, masksub):
    """1 process x batch 4 x accumulation 2 without DeepSpeed: what 2 ZeRO processes x batch 4 must equal."""
    key = tuple(masksub)
    if key not in ONE_PROCESS_RUNS:
        ONE_PROCESS_RUNS[key] = run(tmp_path, "one", 1, [*masksub, "--gradient_accumulation_steps", "2"])
    return ONE_PROCESS_RUNS[key]


@pytest.mark.slow
@pytest.mark.parametrize("family,ratio,plan,reductions", [("vit", "0.5", "two", 2), ("siglip2", "0.5", "auto", 1)])
def test_zero2_two_processes_equal_one_process_with_accumulation(tmp_path, family, ratio, plan, reductions):
    masksub = ["--family", family, "--masksub_ratio", ratio]
    two = run(tmp_path, "two", 2, [*masksub, "--masksub_backward", plan], stage=2)
    one = one_process_accumulated(tmp_path, masksub)

    assert two["distributed_type"] == "DistributedType.DEEPSPEED" and two["num_processes"] == 2
    assert_same_parameters(two["parameters"], one["parameters"])
    assert all(entry["sub_loss"] > 0 for entry in two["log_history"] if "loss" in entry)  # the sub branch ran
    # one gradient all-reduce per backward pass (the tiny model fits one bucket): under auto one backward for both
    # branches, a ratio-0 step's one (ZeRO-3's count, below, is auto's for ViT); the two-pass plan's main backward
    # adds one (collectives on gradients only: not the gradient norm's scalars, nor MaskSub's item counts)
    assert gradient_reductions(two, 2) == reductions


@pytest.mark.slow
def test_zero2_one_process_equals_no_deepspeed_and_zero3_equals_accumulation(tmp_path):
    masksub = ["--masksub_ratio", "0.5"]
    single = run(tmp_path, "single", 1, masksub, stage=2)
    plain = run(tmp_path, "plain", 1, masksub)
    assert single["distributed_type"] == "DistributedType.DEEPSPEED" and single["num_processes"] == 1
    assert_same_parameters(single["parameters"], plain["parameters"])

    zero3 = run(tmp_path, "zero3", 2, masksub, stage=3)
    accumulated = one_process_accumulated(tmp_path, ["--family", "vit", *masksub])
    assert zero3["distributed_type"] == "DistributedType.DEEPSPEED"
    assert_same_parameters(zero3["parameters"], accumulated["parameters"])
    assert gradient_reductions(zero3, 3) == 1  # reduce-scatters per step: one backward for both branches


@pytest.mark.slow
def test_image_script_with_deepspeed_flag_equals_ddp(tmp_path):
    train_dir, validation_dir = mnist_imagefolder(tmp_path / "data", train=64, validation=32)
    common = ["--model_name_or_path", tiny_vit_dir(tmp_path / "vit"), "--train_dir", train_dir,
              "--validation_dir", validation_dir, "--ignore_mismatched_sizes", "--do_train", "--do_eval",
              "--num_train_epochs", "1", "--per_device_train_batch_size", "8", "--optim", "sgd",
              "--learning_rate", "0.05", "--report_to", "none", "--use_cpu", "--save_strategy", "no", "--seed", "0",
              "--disable_tqdm", "true", "--masksub_ratio", "0.5", "--logging_steps", "1"]
    script = ROOT / "run_image_classification.py"
    completed = launch([script, *common, "--output_dir", tmp_path / "ds", "--deepspeed",
                        ROOT / "accelerate_configs" / "ds_zero2.json"], port=29543)
    assert "engine DEEPSPEED, 2 process(es)" in completed.stdout + completed.stderr
    launch([script, *common, "--output_dir", tmp_path / "ddp"], port=29543)
    deepspeed = AutoModelForImageClassification.from_pretrained(tmp_path / "ds")
    ddp = AutoModelForImageClassification.from_pretrained(tmp_path / "ddp")
    assert_same_parameters(dict(deepspeed.named_parameters()), dict(ddp.named_parameters()))
    assert "masksub" in (tmp_path / "ds" / "README.md").read_text()
