"""Train a tiny ViT with MaskSubTrainer for the distributed tests; run under `accelerate launch` or plain python.

Writes the final parameters and the gradient communication per optimizer step to --result_file: DDP's
all-reduces (bucket calls of a counting comm hook), or under DeepSpeed and FSDP2 every collective call by name.
It asserts the run really is --expect_processes processes of --expect_distributed_type (e.g. 2 gloo
processes, MULTI_CPU), not a process training alone.
"""

import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate.utils import DistributedType
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.distributed.fsdp import FSDPModule
from torch.distributed.tensor import DTensor
from torch.nn.parallel import DistributedDataParallel
from transformers import HfArgumentParser

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import (  # noqa: E402
    ListDataset,
    freeze_what_survives,
    fsdp_on_cpu,
    image_items,
    review_items,
    tiny_bert,
    tiny_vit,
    whole,
)

from masksub_hf import MaskSubTextCollator, MaskSubTrainer, MaskSubTrainingArguments  # noqa: E402


@dataclass
class RunArguments:
    result_file: str
    expect_processes: int = 1
    family: str = "vit"  # "clip" / "siglip2": a dual encoder (its sub branch runs the bare image tower); "text": a BERT
    expect_distributed_type: str = "MULTI_CPU"  # checked with more than 1 process, or when set to another type
    keep_fsdp_on_cpu: bool = False  # --fsdp shards on these CPU processes as on GPUs (helpers.fsdp_on_cpu)


class AllReduceCountingTrainer(MaskSubTrainer):
    """Counts gradient all-reduce calls made by DDP (one per bucket per synchronising backward)."""

    allreduce_calls = 0

    def training_step(self, model, inputs, num_items_in_batch=None):
        if isinstance(model, DistributedDataParallel) and not getattr(model, "_counting", False):
            model.register_comm_hook(None, self._count_allreduce)
            model._counting = True
        return super().training_step(model, inputs, num_items_in_batch)

    def _count_allreduce(self, state, bucket):
        self.allreduce_calls += 1
        return default_hooks.allreduce_hook(None, bucket)


COLLECTIVES = ("all_reduce", "reduce", "reduce_scatter_tensor", "all_gather_into_tensor", "broadcast",
               "reduce_scatter_single", "all_gather_single")  # the last two: FSDP2's


def count_collectives(counts):
    """Count calls of torch.distributed's collectives by name (DeepSpeed calls them from Python), on tensors of
    more than 16 numbers: gradients, not the scalars of a gradient norm or MaskSub's per-step item counts."""
    for name in COLLECTIVES:
        original = getattr(torch.distributed, name)

        def counted(*args, _name=name, _original=original, **kwargs):
            tensor = next((a for a in (*args, *kwargs.values()) if torch.is_tensor(a)), None)
            if tensor is not None and tensor.numel() > 16:
                counts[_name] = counts.get(_name, 0) + 1
            return _original(*args, **kwargs)

        setattr(torch.distributed, name, counted)


def text_model_and_data(output_dir):
    """A tiny BERT without dropout, a word-level tokenizer, 8 real reviews of different lengths."""
    tokenizer, items = review_items(output_dir)
    return tiny_bert(vocab_size=tokenizer.vocab_size), items, MaskSubTextCollator(tokenizer, 0.15)


def main():
    parser = HfArgumentParser((RunArguments, MaskSubTrainingArguments))
    if "--keep_fsdp_on_cpu" in sys.argv:  # before the arguments set Accelerate up
        fsdp_on_cpu()
    run_args, args = parser.parse_args_into_dataclasses()
    # Images and CLIP pairs carry their masks; text masks are drawn by the collator from per-sample seeds.
    # Either way, 1 and 2 processes apply the same masks to the same samples.
    collator = None
    if run_args.family == "clip":
        from models import pair_items, tiny_clip

        model, items = tiny_clip(), pair_items()
    elif run_args.family == "siglip2":
        from models import patch_row_items, tiny_siglip2

        model, items = tiny_siglip2(), patch_row_items()
    elif run_args.family == "text":
        model, items, collator = text_model_and_data(args.output_dir)
    else:
        model, items = tiny_vit(seed=0), image_items(8, torch.arange(8) % 3, num_keep=8, seed=0)
    freeze_what_survives()
    trainer = AllReduceCountingTrainer(model=model, args=args, train_dataset=ListDataset(items),
                                       data_collator=collator)
    if run_args.expect_processes > 1 or run_args.expect_distributed_type != "MULTI_CPU":
        expected = DistributedType[run_args.expect_distributed_type]
        assert trainer.accelerator.distributed_type == expected, trainer.accelerator.distributed_type
        assert trainer.accelerator.num_processes == run_args.expect_processes, trainer.accelerator.num_processes
    collectives = {}
    if trainer.accelerator.distributed_type in (DistributedType.DEEPSPEED, DistributedType.FSDP):
        count_collectives(collectives)  # after set-up: only training's communication
    trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    parameters = {n: whole(p).detach().clone() for n, p in model.named_parameters()}  # FSDP2's shards gathered
    if trainer.is_world_process_zero():
        sharded = sum(isinstance(p, DTensor) for p in model.parameters())
        torch.save(
            {
                "parameters": parameters,
                "sharded_parameters": sharded,
                "fsdp_units": sum(isinstance(m, FSDPModule) for m in model.modules()),
                "allreduce_calls_per_step": trainer.allreduce_calls / trainer.state.global_step,
                "collectives_per_step": {k: v / trainer.state.global_step for k, v in collectives.items()},
                "distributed_type": str(trainer.accelerator.distributed_type),
                "num_processes": trainer.accelerator.num_processes,
                "log_history": trainer.state.log_history,
            },
            run_args.result_file,
        )
    # No process-group clean-up here: MaskSubTrainer ends the group at exit (masksub_hf/process_group.py).


if __name__ == "__main__":
    main()
