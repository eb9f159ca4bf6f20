"""A user's 2-process MaskSubTrainer script with no clean-up of its own: trains two steps, then just ends.

Started as rank ``RANK`` of 2 by tests/test_distributed.py (environment variables, as torchrun sets them).
``argv[2]``, what the user adds:

- ``none``: nothing; Accelerate starts the group, MaskSub ends it at exit;
- ``own_group``: the user starts the group before MaskSub's set-up and destroys it in an exit handler;
- ``exit_barrier``: an exit handler of the user's that meets the other process at a ``barrier()``.

An exit handler of the user's prints what it found, so the test can check it ran with the group alive.
"""

import atexit
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import ListDataset, image_items, tiny_vit, training_args  # noqa: E402

from masksub_hf import MaskSubTrainer  # noqa: E402

output_dir, addition = sys.argv[1], sys.argv[2]


def users_exit_handler():
    alive = dist.is_initialized()
    if addition == "exit_barrier":
        dist.barrier()
    else:
        dist.destroy_process_group()
    print(f"user's exit handler: group alive {alive}", flush=True)


if addition == "own_group":
    dist.init_process_group("gloo")
if addition != "none":
    atexit.register(users_exit_handler)
items = [{k: v for k, v in item.items() if not k.startswith("masksub_")}
         for item in image_items(16, torch.arange(16) % 3, num_keep=8)]
trainer = MaskSubTrainer(model=tiny_vit(), args=training_args(output_dir, per_device_train_batch_size=4, max_steps=2),
                         train_dataset=ListDataset(items))
assert trainer.accelerator.distributed_type.value == "MULTI_CPU", trainer.accelerator.distributed_type
assert trainer.accelerator.num_processes == 2, trainer.accelerator.num_processes
trainer.train()
print("trained", trainer.state.global_step)
