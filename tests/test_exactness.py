"""The exactness matrix: one optimizer step's gradients equal the method on the whole global batch, written here in
plain torch, for every head kind x masking MaskSub supports (``exactness_cases.CASES``) x {one micro-batch;
accumulation 2 with a smaller last micro-batch; 2 gloo processes x accumulation 2 with unequal rows and labelled
tokens per process} x {fp32; bf16 autocast}.

The method: ``0.5 * (main loss averaged over every row / labelled token / pair of all micro-batches and
processes) + 0.5 * (sub loss averaged the same way over the items the sub branch predicts)``. The reference
reads only the batches the collator made (with the masks MaskSub drew for them, applied here by hand), never
another MaskSub configuration. Tolerance, relative to each tensor's largest gradient: 1e-5 in fp32, 5e-2 under bf16 autocast (the
trainer's two backward passes and the reference's one round bf16 values differently; measured up to 3%). A branch
normalised wrongly is off by 30% or more.
"""

import json
from pathlib import Path

import pytest
import torch
from exactness_cases import CASES, RecordingTrainer, assert_gradients_equal, reference_gradients, run_case
from helpers import launch, training_args

SCRIPT = Path(__file__).parent / "scripts" / "exactness_ddp.py"


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("setup", ["ga1", "ga2"])
@pytest.mark.parametrize("name", list(CASES))
def test_one_process(tmp_path, name, setup, precision):
    case, initial, trainer, gradients = run_case(name, setup, precision, tmp_path, training_args, RecordingTrainer)
    assert len(trainer.recorded) == {"ga1": 1, "ga2": 2}[setup]
    assert trainer.linear_dtypes == {torch.bfloat16 if precision == "bf16" else torch.float32}
    expected = reference_gradients(case, initial, trainer.recorded, precision)
    assert_gradients_equal(gradients, expected, precision, f"{name}/{setup}/{precision}")


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """Every case and precision trained in one 2-process launch: per case, each rank's batches, rank 0's gradients."""
    folder = tmp_path_factory.mktemp("exactness_ddp")
    launch([SCRIPT, "--use_cpu", "--output_dir", folder], port=29531, timeout=900)
    return folder, json.loads((folder / "launch.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("name", list(CASES))
def test_two_processes_with_accumulation(tmp_path, two_processes, name, precision):
    folder, launched = two_processes
    assert launched == {"distributed_type": "MULTI_CPU", "num_processes": 2}
    result = torch.load(folder / f"{name}_{precision}.pt", weights_only=False)  # written by our own script
    batches = [batch for rank in (0, 1) for batch in result["batches"][rank]]
    rows = [sum(len(next(v for k, v in batch.items() if k in ("labels", "start_positions", "pixel_values")))
                for batch in result["batches"][rank]) for rank in (0, 1)]
    assert len(batches) == 4 and rows == [4, 3], rows  # unequal processes
    case = CASES[name]()
    if result["token"] is not None:
        case.token = torch.nn.Parameter(result["token"])
    # the case's model with the launch's initial weights (an unpickled transformers model records no hidden states:
    # the segmenters' decoders read them)
    initial, _ = case.build(tmp_path)
    initial.load_state_dict(result["initial"].state_dict())
    expected = reference_gradients(case, initial, batches, precision)
    assert_gradients_equal(result["gradients"], expected, precision, f"{name}/ddp_ga2/{precision}")
