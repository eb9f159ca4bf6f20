"""The exactness matrix: one optimizer step's gradients equal the method on the whole global batch, written here in
plain torch, for every head kind x masking MaskSub supports (``exactness_cases.CASES``) x every setup
(``exactness_cases.SETUPS``: one micro-batch; accumulation 2 with a smaller last micro-batch; 2 gloo processes with
unequal rows and labelled tokens per process, under DDP and under FSDP2 (Trainer's own FSDP path, ``fsdp=True``);
each backward plan, two passes and one) x {fp32; bf16}.

The method: ``0.5 * (main loss averaged over every row / labelled token / pair of all micro-batches and
processes) + 0.5 * (sub loss averaged the same way over the items the sub branch predicts)``. The reference
reads only the batches the collator made (with the masks MaskSub drew for them, applied here by hand), never
another MaskSub configuration. Tolerance, relative to each tensor's largest gradient: 1e-5 in fp32, 5e-2 under bf16
autocast (the trainer's two backward passes and the reference's one round bf16 values differently; measured up to
3%), 1e-1 under FSDP2's bf16 (parameters cast to bf16, gradients reduced in bf16; measured up to 5.8%). A branch
normalised wrongly is off by 30% or more.

A model that Accelerate's FSDP2 cannot train on CPU (plain Trainer fails the same: ``fsdp_refusal``) skips its
FSDP2 rows with the reason.
"""

import json
from pathlib import Path

import pytest
import torch
from exactness_cases import (
    CASES,
    DUAL_ENCODERS,
    ONE_PROCESS_SETUPS,
    SETUPS,
    TWO_PROCESS_SETUPS,
    RecordingTrainer,
    assert_gradients_equal,
    reference_gradients,
    run_case,
)
from helpers import launch, training_args

SCRIPT = Path(__file__).parent / "scripts" / "exactness_two_processes.py"


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("setup", ONE_PROCESS_SETUPS)
@pytest.mark.parametrize("name", list(CASES))
def test_one_process(tmp_path, name, setup, precision):
    case, initial, trainer, gradients = run_case(name, setup, precision, tmp_path, training_args, RecordingTrainer)
    assert len(trainer.recorded) == SETUPS[setup][2]
    assert trainer.linear_dtypes == {torch.bfloat16 if precision == "bf16" else torch.float32}
    expected = reference_gradients(case, initial, trainer.recorded, precision)
    assert_gradients_equal(gradients, expected, precision, f"{name}/{setup}/{precision}")


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """Every two-process setup, case and precision trained in one launch: per setup and case, each rank's batches and
    rank 0's gradients (whole, FSDP2's shards gathered)."""
    folder = tmp_path_factory.mktemp("exactness_two_processes")
    launch([SCRIPT, "--use_cpu", "--output_dir", folder], port=29531, timeout=900)
    return folder, json.loads((folder / "launch.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("setup", TWO_PROCESS_SETUPS)
def test_two_processes(tmp_path, two_processes, setup, name, precision):
    folder, launched = two_processes
    key = f"{setup}/{name}/{precision}"
    if key in launched["unshardable"]:  # plain Trainer fails the same
        pytest.skip(launched["unshardable"][key])
    processes, _, accumulation, engine = SETUPS[setup]
    # a dual encoder's sub branch (its image tower) on a sharded engine: one backward for both branches, or refused
    refusal = engine.get("fsdp") and engine.get("masksub_backward") == "two" and name in DUAL_ENCODERS
    assert (key in launched["refused"]) == bool(refusal), launched["refused"].get(key)
    if refusal:
        assert "use --masksub_backward one" in launched["refused"][key]
        return
    launched = launched["engines"]
    expected_engine = "FSDP" if engine.get("fsdp") else "MULTI_CPU"
    assert launched[setup]["distributed_type"] == expected_engine and launched[setup]["num_processes"] == 2
    assert (launched[setup]["sharded_parameters"] > 0) == (expected_engine == "FSDP"), launched[setup]
    result = torch.load(folder / setup / f"{name}_{precision}.pt", weights_only=False)  # written by our own script
    batches = [batch for rank in (0, 1) for batch in result["batches"][rank]]
    rows = [sum(len(next(v for k, v in batch.items() if k in ("labels", "start_positions", "pixel_values")))
                for batch in result["batches"][rank]) for rank in (0, 1)]
    assert len(batches) == processes * accumulation and rows == [4, 3], rows  # unequal processes
    case = CASES[name]()
    if result["token"] is not None:
        case.token = torch.nn.Parameter(result["token"])
    # the case's model with the launch's initial weights (an unpickled transformers model records no hidden states:
    # the segmenters' decoders read them)
    initial, _ = case.build(tmp_path)
    initial.load_state_dict(result["initial"].state_dict())
    expected = reference_gradients(case, initial, batches, precision)
    tolerance = f"{precision}_fsdp2" if engine.get("fsdp") and precision == "bf16" else precision
    assert_gradients_equal(result["gradients"], expected, tolerance, f"{name}/{setup}/{precision}")
