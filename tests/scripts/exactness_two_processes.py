"""The exactness matrix's 2-process runs: every two-process setup (DDP, FSDP2; each backward plan), case and
precision, one optimizer step each, in one launch.

    accelerate launch --multi_gpu --num_processes 2 tests/scripts/exactness_two_processes.py --use_cpu --output_dir DIR

The FSDP2 setups shard on these gloo CPU processes as Trainer does on GPUs (``helpers.fsdp_on_cpu``). Per setup and
case, rank 0 writes ``DIR/<setup>/<case>_<precision>.pt``: both ranks' micro-batches (as each step received them),
the gradients before the optimizer step (reduced; FSDP2's shards gathered whole), the initial model and an owned
mask token's initial value; and ``DIR/launch.json``: per setup the engine, processes and sharded parameters as
Accelerate saw them, the cases the engine cannot shard (plain Trainer fails the same) and MaskSub's refusals.
"""

import argparse
import gc
import itertools
import json
import sys
from pathlib import Path

import torch
from torch.distributed.tensor import DTensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from exactness_cases import CASES, TWO_PROCESS_SETUPS, RecordingTrainer, Unshardable, run_case  # noqa: E402
from helpers import freeze_what_survives, fsdp_on_cpu, training_args  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--output_dir", type=Path, required=True)
    parser.add_argument("--use_cpu", action="store_true")
    parser.add_argument("--setups", nargs="+", default=TWO_PROCESS_SETUPS)
    parser.add_argument("--cases", nargs="+", default=list(CASES))
    arguments = parser.parse_args()
    output = arguments.output_dir
    fsdp_on_cpu()  # the FSDP setups' processes shard as they would on GPUs
    engines, unshardable, refused = {}, {}, {}
    for setup, name, precision in itertools.product(arguments.setups, arguments.cases, ("fp32", "bf16")):
        freeze_what_survives()  # earlier runs' survivors: ~0.3 s a run saved
        try:
            case, initial, trainer, gradients = run_case(name, setup, precision, output / "runs", training_args,
                                                         RecordingTrainer)
        except Unshardable as refusal:  # the engine cannot (plain Trainer fails the same)
            unshardable[f"{setup}/{name}/{precision}"] = str(refusal)
            continue
        except ValueError as refusal:  # MaskSub's one-line refusal, which the test checks
            refused[f"{setup}/{name}/{precision}"] = str(refusal)
            continue
        batches = [None, None]
        torch.distributed.all_gather_object(batches, trainer.recorded)
        accelerator = trainer.accelerator
        engine = {"distributed_type": accelerator.distributed_type.value, "num_processes": accelerator.num_processes,
                  "sharded_parameters": sum(isinstance(p, DTensor) for p in trainer.model.parameters())}
        assert engines.setdefault(setup, engine)["distributed_type"] == engine["distributed_type"], (setup, engine)
        if trainer.is_world_process_zero():
            (output / setup).mkdir(exist_ok=True)
            torch.save({"batches": batches, "gradients": gradients, "initial": initial,
                        "token": None if case.token is None else case.token.detach()},
                       output / setup / f"{name}_{precision}.pt")
    if trainer.is_world_process_zero():
        (output / "launch.json").write_text(json.dumps({"engines": engines, "unshardable": unshardable,
                                                        "refused": refused}))
    # The trainers' DDP models hold the group's gloo threads: free them while the group and Python are whole. Left to
    # the interpreter's exit, a thread stopped mid-call aborted rank 1 once in CI ("terminate called without an
    # active exception", exit -6; as MaskSub's own exit hook frees the trainers' models before ending a group).
    del trainer, accelerator
    gc.collect()
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
