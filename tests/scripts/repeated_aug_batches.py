"""Under `accelerate launch`, record which (virtual) sample indices each process's training batches hold with
--repeated_aug, for tests/test_recipes.py. Asserts it runs as 2 gloo processes (MULTI_CPU), not alone."""

import json
import sys
from pathlib import Path

import torch
from accelerate.utils import DistributedType

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import ListDataset, tiny_vit, training_args  # noqa: E402

from masksub_hf import MaskSubTrainer  # noqa: E402
from masksub_hf.batch import SEED  # noqa: E402

result_file = sys.argv[1]
data = ListDataset([{"pixel_values": torch.zeros(3, 32, 32), "labels": 0, "index": index} for index in range(16)])
seen_seeds = {}


def collate(features):
    for feature in features:  # the per-sample mask seed tells the copies of one sample apart
        seen_seeds.setdefault(feature["index"], set()).add(feature[SEED])
    return {"pixel_values": torch.stack([f["pixel_values"] for f in features]),
            "labels": torch.tensor([f["labels"] for f in features]), "index": torch.tensor([f["index"] for f in features])}


collate.uses_sample_seeds = True
args = training_args(result_file + ".out", repeated_aug=True, per_device_train_batch_size=2, masksub_ratio=0.0,
                     remove_unused_columns=False)
trainer = MaskSubTrainer(model=tiny_vit(), args=args, train_dataset=data, data_collator=collate)
state = trainer.accelerator.state
assert state.distributed_type == DistributedType.MULTI_CPU and state.num_processes == 2, state
loader = trainer.get_train_dataloader()
loader.set_epoch(0)
batches = [batch["index"].tolist() for batch in loader]
with open(f"{result_file}.{state.process_index}", "w") as f:
    json.dump({"batches": batches, "seeds": {k: sorted(v) for k, v in seen_seeds.items()}}, f)
