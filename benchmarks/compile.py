"""``torch_compile=True`` with MaskSub: compile time, graphs, recompiles and step time, eager vs compiled.

    python benchmarks/compile.py            # about 5 minutes on 2 CPU cores
    python benchmarks/compile.py --steps 6  # shorter
    python benchmarks/compile.py --device cuda --model vit_b16 --bf16   # ViT-B/16 at 224 px on a GPU

One model, four arms in one run: baseline (``masksub_ratio 0``) and MaskSub (token drop 0.5), each eager
and compiled (inductor, the default backend). Per arm: the first step's time (compilation included),
the median of the later steps, how many graphs Dynamo compiled, and the last step that compiled one
(recompiles after the first steps would mean a guard flips every step). A MaskSub step compiles one
graph for the main forward and one for the sub forward (its hook's mask is guarded: masking/hooks.py).
Inductor's on-disk caches are off, so every compiled arm pays its full compilation. Writes
``compile[_<model>][_<device>].json`` and ``.md`` to ``--results_dir`` (default ``benchmarks/results``).
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

# Each compiled arm compiles from scratch: no kernels from an earlier arm or run on disk.
os.environ.setdefault("TORCHINDUCTOR_FORCE_DISABLE_CACHES", "1")
import torch  # noqa: E402
import torch._dynamo.utils  # noqa: E402
from transformers import TrainerCallback, ViTConfig, ViTForImageClassification  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from masksub_hf import MaskSubTrainer, MaskSubTrainingArguments  # noqa: E402
from masksub_hf.scripts.demo_data import ListDataset  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


class StepClock(TrainerCallback):
    """Wall time of each step and Dynamo's count of compiled graphs after it."""

    def __init__(self):
        self.times, self.graphs = [], []

    def on_step_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self.start)
        self.graphs.append(torch._dynamo.utils.counters["stats"]["unique_graphs"])


MODELS = {  # --model: (config, image size, description)
    "demo": (dict(image_size=32, patch_size=4, hidden_size=128, num_hidden_layers=6, num_attention_heads=4,
                  intermediate_size=512), 32, "ViT 128 x 6, 32 px, patch 4 (the earlier demo's)"),
    "vit_b16": ({}, 224, "ViT-B/16, 224 px (ViTConfig's defaults), randomly initialised"),
    "tiny": (dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=64), 32, "ViT 32 x 2, 32 px, patch 8 (a smoke run)"),
}


def run_arm(ratio, compiled, steps, batch_size, model_name="demo", device="cpu", bf16=False):
    torch.manual_seed(0)
    config, size, _ = MODELS[model_name]
    model = ViTForImageClassification(ViTConfig(num_labels=10, **config))
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randn(steps * batch_size, 3, size, size, generator=generator)
    data = ListDataset([{"pixel_values": pixels[i], "labels": i % 10} for i in range(len(pixels))])
    args = MaskSubTrainingArguments(output_dir="/tmp/masksub-compile-bench", use_cpu=device == "cpu", report_to="none",
                                    save_strategy="no", max_steps=steps, per_device_train_batch_size=batch_size,
                                    masksub_ratio=ratio, torch_compile=compiled, disable_tqdm=True, seed=0, bf16=bf16)
    clock = StepClock()
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    MaskSubTrainer(model=model, args=args, train_dataset=data, callbacks=[clock]).train()
    graphs = clock.graphs
    last_compiling_step = max((i + 1 for i in range(len(graphs)) if graphs[i] > (graphs[i - 1] if i else 0)),
                              default=0)
    return {"first_step_s": round(clock.times[0], 2),
            "step_s": round(statistics.median(clock.times[3:]), 4),
            "graphs": graphs[-1], "last_step_that_compiled": last_compiling_step}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--model", choices=list(MODELS), default="demo")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--results_dir", default=str(RESULTS))
    options = parser.parse_args()
    if options.device == "cpu":
        torch.set_num_threads(2)
    results = {}
    for compiled in (False, True):
        for ratio in (0.0, 0.5):
            name = f"{'compiled' if compiled else 'eager'}_{'masksub' if ratio else 'baseline'}"
            results[name] = run_arm(ratio, compiled, options.steps, options.batch_size, options.model, options.device,
                                    options.bf16)
            print(name, results[name], flush=True)
    for arm in ("baseline", "masksub"):
        results[f"speedup_{arm}"] = round(results[f"eager_{arm}"]["step_s"] / results[f"compiled_{arm}"]["step_s"], 3)
    device = torch.cuda.get_device_name() if options.device == "cuda" else f"CPU ({os.cpu_count()} cores)"
    results["settings"] = {"model": MODELS[options.model][2], "batch_size": options.batch_size, "steps": options.steps,
                           "backend": "inductor", "torch": torch.__version__, "device": device, "bf16": options.bf16,
                           "date": time.strftime("%Y-%m-%d"),
                           "command": " ".join(["python benchmarks/compile.py", *sys.argv[1:]])}
    suffix = "".join(f"_{part}" for part in (options.model, options.device) if part not in ("demo", "cpu"))
    out = Path(options.results_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"compile{suffix}.json").write_text(json.dumps(results, indent=2) + "\n")
    rows = ["| arm | first step (s, compile included) | later steps, median (s) | graphs compiled | last step that compiled |",
            "|---|---|---|---|---|"]
    rows += [f"| {name} | {r['first_step_s']} | {r['step_s']} | {r['graphs']} | {r['last_step_that_compiled']} |"
             for name, r in results.items() if name.startswith(("eager", "compiled"))]
    rows.append(f"\nCompiled speed-up (eager / compiled step): baseline x{results['speedup_baseline']}, "
                f"MaskSub x{results['speedup_masksub']}.")
    (out / f"compile{suffix}.md").write_text("\n".join(rows) + "\n")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
