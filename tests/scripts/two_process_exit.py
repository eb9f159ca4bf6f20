"""A user's 2-process MaskSubTrainer script with no clean-up of its own: trains two steps, then just ends.

Started as rank ``RANK`` of 2 by tests/test_distributed.py (environment variables, as torchrun sets them).
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import ListDataset, image_items, tiny_vit, training_args  # noqa: E402

from masksub_hf import MaskSubTrainer  # noqa: E402

items = [{k: v for k, v in item.items() if not k.startswith("masksub_")}
         for item in image_items(16, torch.arange(16) % 3, num_keep=8)]
trainer = MaskSubTrainer(model=tiny_vit(), args=training_args(sys.argv[1], per_device_train_batch_size=4, max_steps=2),
                         train_dataset=ListDataset(items))
assert trainer.accelerator.distributed_type.value == "MULTI_CPU", trainer.accelerator.distributed_type
assert trainer.accelerator.num_processes == 2, trainer.accelerator.num_processes
trainer.train()
print("trained", trainer.state.global_step)
