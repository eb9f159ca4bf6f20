"""MaskSub's two backward plans side by side: peak memory and step time of ``--masksub_backward two`` (the main
branch's backward, then the sub branch's) and ``one`` (both branches' losses in one backward), beside plain Trainer.

    python benchmarks/backward_plans.py                       # ViT and a decoder LM on 2 CPU cores, ~5 minutes
    python benchmarks/backward_plans.py --quick               # toy sizes, a smoke test
    python benchmarks/backward_plans.py --device cuda --sizes paper --bf16

The plan changes what is alive at the peak, not the method (both are exact: tests/test_exactness.py): two passes
free the main branch's activations before the sub forward; one backward holds both graphs at once, and in exchange
an engine that reduces gradients on every backward (DeepSpeed ZeRO, FSDP2) reduces once per micro-batch
(``masksub_backward auto`` picks it there). Peak memory and step times are measured as in ``overhead.py`` (each
variant's peak in its own process; step times interleaved, the median). Writes ``backward_plans[_paper][_quick]``
``.json`` and ``.md`` to ``--results_dir``.
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overhead import RESULTS, Setting, memory_of, run_variant  # noqa: E402

CASES = ("vit", "causal_lm")  # a ViT (patch tokens dropped) and a decoder LM at 512 tokens (token drop)
RUNS = {"trainer": ("trainer_baseline", "auto"), "two": ("trainer_masksub", "two"), "one": ("trainer_masksub", "one")}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sizes", choices=["small", "paper"], default="small")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--cases", nargs="+", default=list(CASES))
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--results_dir", default=str(RESULTS))
    args = parser.parse_args()
    repetitions, steps = (1, 2) if args.quick else (args.repetitions, args.steps)
    device = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU ({os.cpu_count()} cores)"
    report = {"command": " ".join(["python benchmarks/backward_plans.py", *sys.argv[1:]]), "device": device,
              "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__, "cases": {}}
    settings = {run: Setting(args.sizes, args.quick, args.device, args.bf16, plan) for run, (_, plan) in RUNS.items()}
    for name in args.cases:
        times = {run: [] for run in RUNS}
        for _ in range(repetitions):
            for run, (variant, _) in RUNS.items():  # interleaved: machine drift hits every run alike
                times[run] += run_variant(name, variant, settings[run], steps)
        median = {run: statistics.median(values) for run, values in times.items()}
        memory = {run: memory_of(name, variant, settings[run])["peak_bytes"] for run, (variant, _) in RUNS.items()}
        case = {"batch_size": settings["one"].batch(name), "median_step_s": median, "peak_memory_bytes": memory,
                "memory_one_over_two": memory["one"] / memory["two"],
                "memory_two_over_trainer": memory["two"] / memory["trainer"],
                "memory_one_over_trainer": memory["one"] / memory["trainer"],
                "step_one_over_two": median["one"] / median["two"]}
        report["cases"][name] = case
        print(name, json.dumps(case), flush=True)
    results = Path(args.results_dir)
    results.mkdir(parents=True, exist_ok=True)
    out_name = "backward_plans" + ("_paper" if args.sizes == "paper" else "") + ("_quick" if args.quick else "")
    (results / f"{out_name}.json").write_text(json.dumps(report, indent=2))
    lines = [f"Device: {device}, {report['date']}, torch {report['torch']}{', bf16' if args.bf16 else ''}. "
             f"Command: `{report['command']}`.", "",
             "| case | batch | peak MiB: Trainer, two, one | two / Trainer | one / Trainer | one / two | "
             "step one / two |", "|---|---|---|---|---|---|---|"]
    for name, case in report["cases"].items():
        mib = case["peak_memory_bytes"]
        lines.append(f"| {name} | {case['batch_size']} | {mib['trainer'] / 2**20:.0f}, {mib['two'] / 2**20:.0f}, "
                     f"{mib['one'] / 2**20:.0f} | x{case['memory_two_over_trainer']:.2f} "
                     f"| x{case['memory_one_over_trainer']:.2f} | x{case['memory_one_over_two']:.2f} "
                     f"| x{case['step_one_over_two']:.2f} |")
    (results / f"{out_name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
