"""Process exit: how often a 2-process gloo run ends with a non-zero exit code, with and without MaskSub's exit hook.

    python benchmarks/process_exit.py --runs 40      # about 15 minutes on 2 CPU cores

Each run is a user's script with no clean-up of its own (two ranks started as torchrun would, environment
variables only): build a trainer over a tiny ViT, train two steps, print, end. Variants, interleaved run by run:

- ``trainer``: plain ``transformers.Trainer``;
- ``masksub``: ``MaskSubTrainer`` as shipped (it ends, at exit, a group its set-up started:
  ``masksub_hf/training/process_group.py``);
- ``masksub_without_exit_hook``: ``MaskSubTrainer`` with that exit handler unregistered.

A run counts as failed when either rank exits non-zero or does not end within 5 minutes. Writes
``benchmarks/results/process_exit.json`` and ``.md``.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
VARIANTS = ("trainer", "masksub", "masksub_without_exit_hook")


def worker(variant, output_dir):
    """One rank of one run."""
    sys.path[:0] = [str(ROOT / "tests")]
    import atexit

    import torch
    from helpers import ListDataset, image_items, tiny_vit, training_args
    from transformers import Trainer, TrainingArguments

    from masksub_hf import MaskSubTrainer

    items = [{k: v for k, v in item.items() if not k.startswith("masksub_")}
             for item in image_items(16, torch.arange(16) % 3, num_keep=8)]
    args = training_args(output_dir, per_device_train_batch_size=4, max_steps=2, masksub_ratio=0.5)
    if variant == "trainer":
        kwargs = {k: v for k, v in args.to_dict().items() if not k.startswith(("masksub_", "layer_decay", "timm_",
                                                                                 "repeated_aug"))}
        args = TrainingArguments(**{k: v for k, v in kwargs.items() if k in TrainingArguments.__dataclass_fields__
                                    and TrainingArguments.__dataclass_fields__[k].init})
        trainer = Trainer(model=tiny_vit(), args=args, train_dataset=ListDataset(items))
    else:
        trainer = MaskSubTrainer(model=tiny_vit(), args=args, train_dataset=ListDataset(items))
    if variant == "masksub_without_exit_hook":
        from masksub_hf.training.process_group import end_process_group

        atexit.unregister(end_process_group)
    assert trainer.accelerator.distributed_type.value == "MULTI_CPU", trainer.accelerator.distributed_type
    assert trainer.accelerator.num_processes == 2, trainer.accelerator.num_processes
    trainer.train()
    print("trained", trainer.state.global_step)


def one_run(variant, output_dir, port):
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2",
           "LOCAL_WORLD_SIZE": "2", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    ranks = [subprocess.Popen([sys.executable, __file__, "--worker", variant, str(output_dir)], text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)}) for rank in (0, 1)]
    codes, tail = [], ""
    for process in ranks:
        try:
            stdout, stderr = process.communicate(timeout=300)
            codes.append(process.returncode)
            if process.returncode != 0:
                tail = stderr[-300:]
        except subprocess.TimeoutExpired:
            process.kill()
            codes.append("timeout")
    return codes, tail


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--worker", nargs=2, metavar=("VARIANT", "OUTPUT_DIR"))
    parser.add_argument("--output", default=str(RESULTS / "process_exit"))
    args = parser.parse_args()
    if args.worker:
        return worker(*args.worker)
    import tempfile

    import torch

    outcomes = {variant: [] for variant in args.variants}
    started = time.time()
    with tempfile.TemporaryDirectory() as folder:
        for run in range(args.runs):
            for index, variant in enumerate(args.variants):
                codes, tail = one_run(variant, Path(folder) / f"{variant}{run}", 29700 + (run * 3 + index) % 200)
                outcomes[variant].append({"codes": codes, "error": tail})
                print(f"run {run} {variant}: exit codes {codes}", flush=True)
    summary = {variant: {"runs": len(runs), "failed": sum(any(code != 0 for code in r["codes"]) for r in runs)}
               for variant, runs in outcomes.items()}
    result = {"date": time.strftime("%Y-%m-%d"), "torch": torch.__version__, "python": platform.python_version(),
              "seconds": round(time.time() - started), "summary": summary, "runs": outcomes}
    Path(args.output + ".json").write_text(json.dumps(result, indent=1))
    lines = [f"# Process exit ({result['date']}, torch {result['torch']}, `python benchmarks/process_exit.py "
             f"--runs {args.runs} --variants {' '.join(args.variants)}`)", "", "| variant | runs | non-zero exits |", "|---|---|---|"]
    lines += [f"| {variant} | {s['runs']} | {s['failed']} |" for variant, s in summary.items()]
    Path(args.output + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
