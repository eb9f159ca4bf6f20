"""FSDP: on CPU, Accelerate drops the FSDP plugin without a word and runs DDP; MaskSubTrainer says so.

The FSDP path itself (``_defer_fsdp_gradient_reduction``) needs GPUs: its test runs where CUDA is
present and skips with the reason elsewhere (it has not run on this project's CPU machines).
"""

import pytest
import torch
from helpers import launch
from test_distributed import COMMON, SCRIPT, run

FSDP = ["--fsdp", "full_shard", "--fsdp_config", '{"transformer_layer_cls_to_wrap": ["ViTLayer"]}']


@pytest.mark.slow
def test_fsdp_asked_on_cpu_warns_and_trains_as_ddp(tmp_path):
    completed = launch([SCRIPT, "--output_dir", tmp_path / "fsdp", "--result_file", tmp_path / "fsdp.pt",
                        "--expect_processes", 2, *COMMON, *FSDP, "--masksub_ratio", "0.5"], port=29551)
    assert "FSDP was asked for, but Accelerate runs MULTI_CPU with 2 process(es)" in completed.stdout + completed.stderr
    fsdp = torch.load(tmp_path / "fsdp.pt")
    assert fsdp["distributed_type"] == "DistributedType.MULTI_CPU"
    ddp = run(tmp_path, "ddp", 2, ["--masksub_ratio", "0.5"])
    for name, value in ddp["parameters"].items():
        assert torch.equal(fsdp["parameters"][name], value), name


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
