"""The GPU pass: correctness on CUDA, step cost at the paper's sizes, torch.compile, deterministic text pairs.

    python benchmarks/gpu.py                  # on a GPU: about 8 minutes on one H200
    python benchmarks/gpu.py --quick          # on a CPU: the same parts at toy sizes (a smoke test, not a result)

Parts, in this order, each a subprocess with its own time limit (a part that would start past ``--budget_s``
is skipped and reported as such):

1. ``tests``: ``tests/test_cuda.py`` (CUDA gradients == CPU gradients for token drop, pixels, [MASK]),
   ``tests/test_mixed_precision.py`` (fp16 through the CUDA ``GradScaler``, bf16 autocast),
   ``tests/test_compile.py`` (inductor on CUDA) and ``tests/test_fsdp.py`` (FSDP on the GPUs; its FSDP2 tests on
   gloo CPU processes), with ``MASKSUB_TEST_DEVICE=cuda``;
2. ``overhead``: ``benchmarks/overhead.py --sizes paper --bf16``: ViT-B/16, ResNet-50, Swin-T at 224 px,
   BERT-base at 128 tokens, CLIP ViT-B/32, MaskSub / baseline step and vs the bare two-pass loop, samples per
   second, peak memory;
3. ``plans``: ``benchmarks/backward_plans.py --sizes paper --bf16``: peak memory and step time of the two
   backward plans (two passes, one for both branches) beside plain Trainer, ViT-B/16 and a decoder LM;
4. ``compile``: ``benchmarks/compile.py --model vit_b16 --bf16``: compiled vs eager, both arms;
5. ``text``: ``benchmarks/quality.py --only text_cells --cells 500x3 1000x3 --full_determinism``: the text
   grid's worst and best cells again, 5 paired seeds, deterministic kernels.

Everything goes to ``--results_dir`` (default ``benchmarks/results/gpu``): each part's own json/md, its log,
and ``gpu.json`` (device, date, command, each part's exit status and time).
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("tests", "overhead", "plans", "compile", "text")
GPU_TESTS = ["tests/test_cuda.py", "tests/test_mixed_precision.py", "tests/test_compile.py", "tests/test_fsdp.py"]


def part_commands(results, quick, device, work_dir):
    """``{part: (command, extra environment, time limit in s)}``; ``quick``: toy sizes, on the CPU."""
    python = sys.executable
    if quick:
        return {
            # the CUDA tests only (skipped on a CPU): the suite runs the others itself
            "tests": ([python, "-m", "pytest", "-q", "tests/test_cuda.py", f"--junitxml={results / 'tests.xml'}"],
                      {}, 300),
            "overhead": ([python, "benchmarks/overhead.py", "--quick", "--sizes", "paper", "--device", device,
                          "--cases", "vit", "--results_dir", str(results)], {}, 300),
            "plans": ([python, "benchmarks/backward_plans.py", "--quick", "--sizes", "paper", "--device", device,
                       "--cases", "vit", "--results_dir", str(results)], {}, 300),
            "compile": ([python, "benchmarks/compile.py", "--model", "tiny", "--steps", "4", "--batch_size", "4",
                         "--device", device, "--results_dir", str(results)], {}, 300),
            "text": ([python, "benchmarks/quality.py", "--quick", "--only", "text_cells", "--device", device,
                      "--results_dir", str(results), "--work_dir", str(work_dir)], {}, 600),
        }
    return {
        "tests": ([python, "-m", "pytest", "-q", *GPU_TESTS, f"--junitxml={results / 'tests.xml'}"],
                  {"MASKSUB_TEST_DEVICE": device}, 150),
        "overhead": ([python, "benchmarks/overhead.py", "--sizes", "paper", "--bf16", "--device", device,
                      "--repetitions", "2", "--steps", "4", "--results_dir", str(results)], {}, 240),
        "plans": ([python, "benchmarks/backward_plans.py", "--sizes", "paper", "--bf16", "--device", device,
                   "--repetitions", "2", "--results_dir", str(results)], {}, 150),
        "compile": ([python, "benchmarks/compile.py", "--model", "vit_b16", "--bf16", "--batch_size", "128",
                     "--steps", "10", "--device", device, "--results_dir", str(results)], {}, 90),
        "text": ([python, "benchmarks/quality.py", "--only", "text_cells", "--cells", "500x3", "1000x3",
                  "--full_determinism", "--device", device, "--jobs", "10", "--results_dir", str(results),
                  "--work_dir", str(work_dir)], {}, 150),
    }


def device_name(device):
    if device == "cpu":
        return f"CPU ({os.cpu_count()} cores)"
    query = "import torch; print(torch.cuda.get_device_name(0))"  # in a child: this process holds no CUDA context
    return subprocess.run([sys.executable, "-c", query], check=True, capture_output=True, text=True).stdout.strip()


def run_part(name, command, environment, limit, results):
    """Run one part, its output to ``<name>.log``; ``{exit status, seconds, command}``."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONUNBUFFERED": "1", **environment}
    started = time.perf_counter()
    with open(results / f"{name}.log", "w") as log:
        try:
            status = subprocess.run(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    timeout=limit).returncode
        except subprocess.TimeoutExpired:
            status = "timed out"
    return {"exit_status": status, "seconds": round(time.perf_counter() - started, 1),
            "command": " ".join(str(part) for part in command[1:]), "time_limit_s": limit}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="toy sizes on the CPU: a smoke test of the script")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--results_dir", default=str(ROOT / "benchmarks" / "results" / "gpu"))
    parser.add_argument("--work_dir", default="/tmp/masksub-gpu-runs", help="the text part's training runs")
    parser.add_argument("--budget_s", type=float, default=480, help="no part starts after this many seconds")
    options = parser.parse_args()
    device = "cpu" if options.quick else "cuda"
    results = Path(options.results_dir).resolve()
    results.mkdir(parents=True, exist_ok=True)
    commands = part_commands(results, options.quick, device, Path(options.work_dir).resolve())
    report = {"device": device_name(device), "date": time.strftime("%Y-%m-%d"),
              "command": " ".join(["python benchmarks/gpu.py", *sys.argv[1:]]), "parts": {}}
    started = time.perf_counter()
    for name in options.parts:
        command, environment, limit = commands[name]
        left = options.budget_s - (time.perf_counter() - started)
        if left <= 0:
            report["parts"][name] = {"exit_status": "skipped: past --budget_s"}
        else:
            report["parts"][name] = run_part(name, command, environment, min(limit, left + 60), results)
        print(name, json.dumps(report["parts"][name]), flush=True)
        (results / "gpu.json").write_text(json.dumps(report, indent=2) + "\n")
    failed = [name for name, part in report["parts"].items() if part["exit_status"] != 0]
    print(f"done in {time.perf_counter() - started:.0f} s; " + (f"not passed: {failed}" if failed else "every part passed"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
