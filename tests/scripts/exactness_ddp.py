"""The exactness matrix's 2-process runs: every case and precision, one optimizer step each, in one launch.

    accelerate launch --multi_gpu --num_processes 2 tests/scripts/exactness_ddp.py --use_cpu --output_dir DIR

Per case, rank 0 writes ``DIR/<case>_<precision>.pt``: both ranks' micro-batches (as each step received them),
the gradients before the optimizer step (after the all-reduce), the initial model and an owned mask token's
initial value; and ``DIR/launch.json``: the engine and the processes, as Accelerate saw them.
"""

import argparse
import gc
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from exactness_cases import CASES, RecordingTrainer, run_case  # noqa: E402
from helpers import training_args  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--output_dir", type=Path, required=True)
    parser.add_argument("--use_cpu", action="store_true")
    output = parser.parse_args().output_dir
    for name in CASES:
        for precision in ("fp32", "bf16"):
            case, initial, trainer, gradients = run_case(name, "ddp_ga2", precision, output / "runs",
                                                         training_args, RecordingTrainer)
            batches = [None, None]
            torch.distributed.all_gather_object(batches, trainer.recorded)
            if trainer.is_world_process_zero():
                torch.save({"batches": batches, "gradients": gradients, "initial": initial,
                            "token": None if case.token is None else case.token.detach()},
                           output / f"{name}_{precision}.pt")
    accelerator = trainer.accelerator
    if trainer.is_world_process_zero():
        (output / "launch.json").write_text(json.dumps({"distributed_type": accelerator.distributed_type.value,
                                                        "num_processes": accelerator.num_processes}))
    # 24 trainers' DDP models hold the group's gloo threads: free them while the group and Python are whole. Left to
    # the interpreter's exit, a thread stopped mid-call aborted rank 1 once in CI ("terminate called without an
    # active exception", exit -6; as MaskSub's own exit hook frees the trainers' models before ending a group).
    del trainer, accelerator
    gc.collect()
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
