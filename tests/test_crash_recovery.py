"""A script killed with SIGKILL after a checkpoint, then started again with the same command, ends with
the same weights as an uninterrupted run, bit for bit (CPU, fp32): random augmentations and masks
included. Real MNIST digits (image) and real review snippets (text)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from script_fixtures import mnist_imagefolder, rotten_tomatoes_csv, tiny_bert_dir, tiny_vit_dir

from masksub_hf import MaskSubTrainingArguments
from masksub_hf.scripts.resume import last_checkpoint
from masksub_hf.training.checkpoint import is_complete_checkpoint

ROOT = Path(__file__).resolve().parents[1]
COMMON = ["--do_train", "--num_train_epochs", "2", "--per_device_train_batch_size", "8", "--save_strategy",
          "steps", "--save_steps", "5", "--logging_steps", "3", "--report_to", "none", "--use_cpu", "--seed", "3",
          "--disable_tqdm", "true", "--learning_rate", "1e-3"]
KILL_AFTER = "checkpoint-5"  # mid-epoch: 96 samples, 12 steps an epoch


def command(script, output_dir, script_args):
    return [sys.executable, str(ROOT / script), "--output_dir", str(output_dir), *COMMON, *script_args]


def run(script, output_dir, script_args):
    completed = subprocess.run(command(script, output_dir, script_args), capture_output=True, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed


def run_and_kill(script, output_dir, script_args):
    """Start the script, SIGKILL it as soon as ``KILL_AFTER`` is complete; return the kill's exit status."""
    process = subprocess.Popen(command(script, output_dir, script_args), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    marker = Path(output_dir) / KILL_AFTER
    deadline = time.monotonic() + 600
    while not is_complete_checkpoint(marker) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    return process.wait()


def assert_same_weights(expected_dir, actual_dir):
    expected, actual = load_file(Path(expected_dir) / "model.safetensors"), load_file(Path(actual_dir) / "model.safetensors")
    assert expected.keys() == actual.keys()
    for name, tensor in expected.items():
        assert tensor.equal(actual[name]), name


def check_kill_and_resume(tmp_path, script, script_args):
    run(script, tmp_path / "uninterrupted", script_args)
    killed = tmp_path / "killed"
    assert run_and_kill(script, killed, script_args) == -signal.SIGKILL
    assert not (killed / "model.safetensors").exists()  # it died mid-training
    resumed = run(script, killed, script_args)  # the same command: it finds its newest complete checkpoint
    assert f"resuming training from {killed}" in resumed.stdout
    assert_same_weights(tmp_path / "uninterrupted", killed)


def check_image_script(tmp_path, *flags):
    train_dir, validation_dir = mnist_imagefolder(tmp_path / "data", train=96, validation=16)
    model = tiny_vit_dir(tmp_path / "vit")
    check_kill_and_resume(tmp_path, "run_image_classification.py", [
        "--model_name_or_path", str(model), "--train_dir", str(train_dir), "--validation_dir", str(validation_dir),
        "--ignore_mismatched_sizes", "--masksub_ratio", "0.5", "--dataloader_num_workers", "1", *flags])


@pytest.mark.slow
def test_image_script_resumes_bit_for_bit_after_sigkill(tmp_path):
    check_image_script(tmp_path)  # the HF example's random augmentations (RandomResizedCrop, flips), token masks


@pytest.mark.slow
def test_image_recipe_resumes_bit_for_bit_after_sigkill(tmp_path):
    # Mixup/CutMix (drawn from the batch's sample seeds), RandAugment, random erasing, label smoothing,
    # repeated augmentation: every random draw of the recipe is replayed after the kill.
    check_image_script(tmp_path, "--mixup", "0.8", "--cutmix", "1.0", "--mixup_mode", "elem",
                       "--label_smoothing_factor", "0.1", "--auto_augment", "rand-m9-mstd0.5-inc1", "--reprob", "0.25",
                       "--repeated_aug")


@pytest.mark.slow
def test_text_script_resumes_bit_for_bit_after_sigkill(tmp_path):
    paths = rotten_tomatoes_csv(tmp_path / "data", train=96, validation=16, test=0)
    words = " ".join(open(paths["train"]).read().split()).lower().split()
    model = tiny_bert_dir(tmp_path / "bert", words)
    check_kill_and_resume(tmp_path, "run_glue.py", [
        "--model_name_or_path", str(model), "--train_file", str(paths["train"]),
        "--validation_file", str(paths["validation"]), "--max_seq_length", "48", "--pad_to_max_length", "false",
        "--masksub_ratio", "0.15"])


def test_last_checkpoint_skips_those_left_incomplete_by_a_kill(tmp_path):
    """No trainer state, a trainer state cut mid-write, a weights file cut mid-write: each is skipped."""
    from safetensors.torch import save_file

    def checkpoint(step, state='{"global_step": 1}', cut_weights=False):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        save_file({"weight": torch.ones(64)}, folder / "model.safetensors")
        if cut_weights:
            whole = (folder / "model.safetensors").read_bytes()
            (folder / "model.safetensors").write_bytes(whole[:-10])
        if state is not None:
            (folder / "trainer_state.json").write_text(state)
        return folder

    complete = checkpoint(6)
    checkpoint(12, state=None)
    checkpoint(18, state='{"global_st')
    checkpoint(24, cut_weights=True)
    assert is_complete_checkpoint(complete)
    args = MaskSubTrainingArguments(output_dir=str(tmp_path), do_train=True, report_to="none")
    assert last_checkpoint(args) == str(complete)


@pytest.mark.slow
def test_a_rerun_with_other_settings_stops_instead_of_resuming(tmp_path):
    """Before: a ratio-0 "baseline" rerun into a MaskSub run's folder resumed its checkpoint silently (a mixed run).
    Now: one line naming the changed flags and the ways on; --overwrite_output_dir starts over; an explicit
    --resume_from_checkpoint resumes anyway; the same command still resumes (the kill tests above)."""
    train_dir, validation_dir = mnist_imagefolder(tmp_path / "data", train=96, validation=16)
    model, output = tiny_vit_dir(tmp_path / "vit"), tmp_path / "out"
    common = ["--model_name_or_path", str(model), "--train_dir", str(train_dir), "--validation_dir",
              str(validation_dir), "--ignore_mismatched_sizes"]
    run("run_image_classification.py", output, [*common, "--masksub_ratio", "0.5"])
    baseline = [*common, "--masksub_ratio", "0", "--num_train_epochs", "4"]
    refused = subprocess.run(command("run_image_classification.py", output, baseline), capture_output=True, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert refused.returncode == 2, refused.stderr[-2000:]
    message = refused.stderr.strip().splitlines()[-1]
    assert message.startswith("error: --output_dir") and "--masksub_ratio 0.5 -> 0.0" in message, message
    assert "--num_train_epochs 2.0 -> 4.0" in message and "--overwrite_output_dir" in message, message
    assert "--resume_from_checkpoint" in message and "/checkpoint-" in message, message

    started_over = run("run_image_classification.py", output, [*baseline, "--overwrite_output_dir"])
    assert "resuming training" not in started_over.stdout
    fresh = run("run_image_classification.py", tmp_path / "fresh", baseline)
    assert_same_weights(tmp_path / "fresh", output)  # the same as a run in a new folder: nothing of the old run
    assert "resuming training" not in fresh.stdout

    anyway = run("run_image_classification.py", output,
                 [*common, "--masksub_ratio", "0.5", "--resume_from_checkpoint", str(output / "checkpoint-10")])
    assert f"Loading model from {output / 'checkpoint-10'}" in anyway.stdout + anyway.stderr


@pytest.mark.slow
def test_rerunning_a_finished_run_changes_nothing(tmp_path):
    """Before: the same command after the end resumed from the last checkpoint, took one more step (checkpoint-5 of
    max_steps 4) and overwrote the results with that step's. Now it says the run is finished, in one line, and leaves
    every file as it was; a run that stopped after its last checkpoint but before its final save is saved from that
    checkpoint without another step."""
    import json

    from masksub_hf.scripts import run_image_classification

    train_dir, validation_dir = mnist_imagefolder(tmp_path / "data", train=48, validation=16)
    output = tmp_path / "out"
    args = ["--model_name_or_path", str(tiny_vit_dir(tmp_path / "vit")), "--ignore_mismatched_sizes",
            "--train_dir", str(train_dir), "--validation_dir", str(validation_dir), "--output_dir", str(output),
            "--do_train", "--do_eval", "--max_steps", "4", "--save_strategy", "steps", "--save_steps", "2",
            "--per_device_train_batch_size", "8", "--report_to", "none", "--use_cpu", "--seed", "0",
            "--disable_tqdm", "true"]
    run_image_classification.main(args)

    def files():
        return {path.relative_to(output): path.read_bytes() for path in output.rglob("*") if path.is_file()}

    finished = files()
    assert {"checkpoint-2", "checkpoint-4"} == {p.name for p in output.glob("checkpoint-*")}
    rerun = subprocess.run(command_line(args), capture_output=True, text=True, timeout=600,
                           env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    said = [line for line in (rerun.stdout + rerun.stderr).splitlines() if "holds this run, finished" in line]
    assert len(said) == 1 and "(step 4 of 4)" in said[0]
    assert "resuming training" not in rerun.stdout + rerun.stderr
    assert files() == finished  # no checkpoint-5, the same weights, results, state and card

    # Killed after checkpoint-4 was complete, before the final model and state were saved.
    for name in ("model.safetensors", "trainer_state.json", "all_results.json", "train_results.json"):
        (output / name).unlink()
    run_image_classification.main(args)
    assert {"checkpoint-2", "checkpoint-4"} == {p.name for p in output.glob("checkpoint-*")}
    assert_same_weights(output / "checkpoint-4", output)
    assert json.loads((output / "trainer_state.json").read_text())["global_step"] == 4


def command_line(script_args):
    return [sys.executable, str(ROOT / "run_image_classification.py"), *script_args]


@pytest.mark.parametrize("script", ["run_image_classification", "run_glue", "run_ner", "run_clip"])
def test_the_flags_a_rerun_may_change_are_declared_beside_their_fields(script):
    """Each argument dataclass names its own fields that do not change training (RESUMABLE): every name is a field of
    that class, and evaluation, logging, saving and upload flags are among them while what trains is not."""
    import dataclasses
    import importlib

    from masksub_hf.scripts.resume import resumable_flags

    types = importlib.import_module(f"masksub_hf.scripts.{script}").ARGUMENT_TYPES
    for argument_type in types:
        for cls in argument_type.__mro__:
            declared = set(vars(cls).get("RESUMABLE", ())) - {"logging_dir"}  # a field of older transformers releases
            assert not declared or set(declared) <= {f.name for f in dataclasses.fields(cls)}, (cls.__name__, declared)
    instances = [t.__new__(t) for t in types]  # only their classes are read: no __init__ needed
    flags = resumable_flags(instances)
    assert {"eval_steps", "logging_steps", "save_steps", "push_to_hub", "output_dir", "max_eval_samples"} <= flags
    assert not flags & {"learning_rate", "seed", "masksub_ratio", "masksub_mode", "num_train_epochs", "train_file",
                        "train_dir", "max_train_samples", "per_device_train_batch_size", "model_name_or_path"}
