"""``masksub_step`` in a user's own loop over torch's FSDP2 (``fully_shard``), no Trainer, no Accelerate:

    torchrun --nproc_per_node 2 tests/scripts/fsdp2_loop.py --output FILE

Each of 2 gloo processes shards a tiny ViT (its layers, then the root) and runs one step on its half of a batch of 8,
under both backward plans: one backward for both branches, and two passes with the main branch's gradient sync held
back (``set_requires_gradient_sync(False)``). Rank 0 writes the batch with its masks, the initial model and each
plan's whole gradients (the shards gathered) to FILE; the test compares them with the method in plain torch.
"""

import argparse
import contextlib
import copy
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from exactness_cases import VitRows  # noqa: E402
from helpers import whole  # noqa: E402

from masksub_hf.functional import StepItems, masksub_step  # noqa: E402
from masksub_hf.masking import masking_for  # noqa: E402
from masksub_hf.objectives import objective_for  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--output", type=Path, required=True)
    output = parser.parse_args().output
    dist.init_process_group("gloo")
    rank, processes = dist.get_rank(), dist.get_world_size()
    assert processes == 2, processes
    case = VitRows("ce")
    initial, items = case.build(None)
    batch = {"pixel_values": torch.stack([item["pixel_values"] for item in items]),
             "labels": torch.stack([item["labels"] for item in items])}
    masking, objective = masking_for(initial, "tokens", ratio=0.5), objective_for(initial)
    masks = masking.draw(batch, torch.Generator().manual_seed(0))  # the same on both ranks
    rows = slice(0, 4) if rank == 0 else slice(4, len(masks))  # 4 and 3 rows
    gradients = {}
    for plan in ("one", "two"):
        model = copy.deepcopy(initial)
        for layer in model.vit.layers:
            fully_shard(layer)
        fully_shard(model)

        def held_back(model=model):  # the main branch's backward keeps its gradients unreduced
            model.set_requires_gradient_sync(False)
            try:
                yield
            finally:
                model.set_requires_gradient_sync(True)

        masksub_step(model, {k: v[rows] for k, v in batch.items()}, masking, objective, masks[rows],
                     items=StepItems(main=len(masks), sub=len(masks), processes=processes),
                     one_backward=plan == "one", main_no_sync=contextlib.contextmanager(held_back))
        gradients[plan] = {name: whole(p.grad).clone() for name, p in model.named_parameters()}
        sharded = sum(isinstance(p, DTensor) for p in model.parameters())
        assert sharded == len(list(model.parameters())), sharded
    if rank == 0:
        torch.save({"batch": {**batch, masking.key: masks}, "initial": initial, "gradients": gradients,
                    "processes": processes}, output)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
