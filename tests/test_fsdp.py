"""FSDP: on CPU, Accelerate drops the FSDP plugin without a word and runs DDP; MaskSubTrainer says so. With the
plugin kept on CPU (``helpers.fsdp_on_cpu``, tests only), Trainer's FSDP2 path runs on 2 gloo processes: its
exactness rows are in tests/test_exactness.py; here its checkpoints and an exact resume, and ``masksub_step`` in a
user's own loop over ``fully_shard``. The GPU test runs where CUDA is present.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from exactness_cases import VitRows, assert_gradients_equal, reference_gradients
from helpers import launch
from test_distributed import COMMON, SCRIPT

FSDP2_ON_CPU = ["--keep_fsdp_on_cpu", "--expect_distributed_type", "FSDP", "--fsdp", "--fsdp_config",
                '{"transformer_layer_cls_to_wrap": ["ViTLayer"]}']

FSDP = ["--fsdp", "full_shard", "--fsdp_config", '{"transformer_layer_cls_to_wrap": ["ViTLayer"]}']


@pytest.mark.slow
def test_fsdp_asked_on_cpu_warns_and_trains_as_ddp(tmp_path):
    """Accelerate drops the FSDP plugin on CPU without a word (Trainer refuses --fsdp on one process)."""
    completed = launch([SCRIPT, "--output_dir", tmp_path / "fsdp", "--result_file", tmp_path / "fsdp.pt",
                        "--expect_processes", 2, *COMMON, *FSDP, "--masksub_ratio", "0.5"], port=29551)
    assert "FSDP was asked for, but Accelerate runs MULTI_CPU with 2 process(es)" in completed.stdout + completed.stderr
    fsdp = torch.load(tmp_path / "fsdp.pt")
    assert fsdp["distributed_type"] == "DistributedType.MULTI_CPU" and fsdp["sharded_parameters"] == 0


@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="FSDP needs CUDA GPUs; Accelerate runs DDP on CPU")
def test_fsdp_on_gpus_equals_one_process_with_accumulation(tmp_path):
    processes = min(torch.cuda.device_count(), 2)
    on_gpu = [argument for argument in COMMON if argument != "--use_cpu"]
    result = tmp_path / "fsdp.pt"
    launch([SCRIPT, "--output_dir", tmp_path / "fsdp", "--result_file", result, "--expect_processes", processes,
            "--expect_distributed_type", "FSDP", *on_gpu, *FSDP, "--masksub_ratio", "0.5"], processes=processes,
           port=29553)
    fsdp = torch.load(result)
    accumulated = tmp_path / "accumulated.pt"
    launch([SCRIPT, "--output_dir", tmp_path / "accumulated", "--result_file", accumulated, *on_gpu,
            "--masksub_ratio", "0.5", "--gradient_accumulation_steps", processes], processes=1, port=29553)
    for name, value in torch.load(accumulated)["parameters"].items():
        torch.testing.assert_close(fsdp["parameters"][name].cpu(), value.cpu(), rtol=0, atol=1e-5, msg=name)


@pytest.mark.slow
def test_fsdp2_checkpoint_resumes_exactly(tmp_path):
    """3 steps under FSDP2 saving every step == the same run resumed from its step-1 checkpoint (sharded model and
    optimizer state saved and loaded by Trainer's FSDP path, MaskSub's masks replayed)."""
    saving = ["--save_strategy", "steps", "--save_steps", "1", "--masksub_ratio", "0.5"]
    # AdamW: an optimizer with state (torch's FSDP2 optimizer load fails on SGD's empty one, plain Trainer alike)
    common = [{"sgd": "adamw_torch", "0.1": "1e-3"}.get(arg, arg) for arg in COMMON
              if arg not in ("--save_strategy", "no")]
    whole = tmp_path / "whole.pt"
    launch([SCRIPT, "--output_dir", tmp_path / "run", "--result_file", whole, "--expect_processes", 2, *common,
            *FSDP2_ON_CPU, *saving], port=29555)
    whole = torch.load(whole)
    assert whole["distributed_type"] == "DistributedType.FSDP" and whole["sharded_parameters"] > 0
    # one backward for both branches (auto): each FSDP unit reduce-scatters its gradients once a step, as plain
    # Trainer's step (two backward passes without FSDP2's no_sync would reduce twice)
    assert whole["collectives_per_step"]["reduce_scatter_single"] == whole["fsdp_units"] > 1
    assert whole["log_history"][-1]["step"] == 3 and all(e["sub_loss"] > 0 for e in whole["log_history"] if "loss" in e)
    checkpoint = tmp_path / "run" / "checkpoint-1"
    assert (checkpoint / "trainer_state.json").exists()
    resumed = tmp_path / "resumed.pt"
    launch([SCRIPT, "--output_dir", tmp_path / "resumed", "--result_file", resumed, "--expect_processes", 2, *common,
            *FSDP2_ON_CPU, *saving, "--resume_from_checkpoint", checkpoint], port=29555)
    resumed = torch.load(resumed)
    for name, value in whole["parameters"].items():
        assert torch.equal(resumed["parameters"][name], value), name


@pytest.mark.slow
def test_masksub_step_in_a_users_fsdp2_loop_is_the_method(tmp_path):
    """``masksub_step`` on each process's rows of a ``fully_shard`` model (no Trainer): the whole gradient equals
    the method on the whole batch in plain torch, under both backward plans."""
    output = tmp_path / "loop.pt"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29557",
               str(Path(__file__).parent / "scripts" / "fsdp2_loop.py"), "--output", str(output)]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert completed.returncode == 0, completed.stderr[-4000:]
    result = torch.load(output, weights_only=False)  # written by our own script
    assert result["processes"] == 2
    case = VitRows("ce")
    expected = reference_gradients(case, result["initial"], [result["batch"]], "fp32")
    for plan in ("one", "two"):
        assert_gradients_equal(result["gradients"][plan], expected, "fp32", f"fully_shard/{plan}")
