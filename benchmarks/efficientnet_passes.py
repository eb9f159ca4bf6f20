"""Why EfficientNet-B0's step costs x2.98 on the CPU (``overhead.py --cases efficientnet``): each pass timed alone.

    python benchmarks/efficientnet_passes.py          # about 6 minutes on 2 CPU cores

``overhead.py`` measured EfficientNet-B0's MaskSub step at x2.98 of its baseline and the bare two-pass loop at x2.90
in the same run, where two passes should cost about x2; by hand a pass took either ~3 s or ~7 s, the slow rate on a
freshly initialised model and in loops without an optimizer step. Hypothesis tested here: subnormal floats (the
x86 CPU computes on them at a fraction of its speed). Per arm, one process each (``torch.set_flush_denormal``
is process-wide): forward + backward passes over the same clean and masked batches, the model as initialised
(no optimizer step, the slow case), with and without flushing subnormals to zero; and the share of subnormal
values among the gradients of a pass. Writes ``efficientnet_passes.json`` / ``.md`` to ``--results_dir``.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overhead import RESULTS, Setting, build_case, collator_for  # noqa: E402

from masksub_hf.masking import masking_for  # noqa: E402


def subnormal_share(tensors):
    """The share of nonzero values below float32's smallest normal number."""
    tiny = torch.finfo(torch.float32).tiny
    values = torch.cat([t.detach().flatten().float() for t in tensors])
    nonzero = values != 0
    return float(((values.abs() < tiny) & nonzero).sum() / nonzero.sum().clamp(min=1))


def time_passes(flush, passes):
    """Seconds of each forward + backward pass (clean, masked, alternating) and the gradients' subnormal share."""
    torch.set_flush_denormal(flush)
    setting = Setting()
    model, samples, ratio, tokenizer = build_case("efficientnet", setting)
    model.train()
    batch = collator_for("efficientnet", "bare_masksub", model, ratio, tokenizer)(samples[:setting.batch("efficientnet")])
    masking = masking_for(model, "auto", ratio)
    mask = batch.pop(masking.key)
    labels = batch.pop("labels")
    times = {"clean": [], "masked": []}
    share = None
    for index in range(passes):
        kind = "clean" if index % 2 == 0 else "masked"
        started = time.perf_counter()
        if kind == "clean":
            logits = model(**batch).logits
        else:
            with masking.apply(model, batch, mask) as masked:
                logits = model(**masked).logits
        F.cross_entropy(logits, labels).backward()
        times[kind].append(time.perf_counter() - started)
        if share is None:
            share = subnormal_share([p.grad for p in model.parameters() if p.grad is not None])
        model.zero_grad(set_to_none=True)
    return {"seconds": times, "median_s": {k: statistics.median(v) for k, v in times.items()},
            "gradient_subnormal_share": share}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=8)
    parser.add_argument("--results_dir", default=str(RESULTS))
    parser.add_argument("--arm", choices=["kept", "flushed"])
    args = parser.parse_args()
    if args.arm:
        print(json.dumps(time_passes(args.arm == "flushed", args.passes)))
        return
    report = {"command": " ".join(["python benchmarks/efficientnet_passes.py", *sys.argv[1:]]),
              "device": f"CPU ({os.cpu_count()} cores)", "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__,
              "arms": {}}
    for arm in ("kept", "flushed"):
        output = subprocess.run([sys.executable, __file__, "--arm", arm, "--passes", str(args.passes)], check=True,
                                capture_output=True, text=True).stdout
        report["arms"][arm] = json.loads(output.strip().splitlines()[-1])
        print(arm, json.dumps(report["arms"][arm]), flush=True)
    kept, flushed = report["arms"]["kept"], report["arms"]["flushed"]
    report["kept_over_flushed"] = {k: kept["median_s"][k] / flushed["median_s"][k] for k in ("clean", "masked")}
    results = Path(args.results_dir)
    results.mkdir(parents=True, exist_ok=True)
    (results / "efficientnet_passes.json").write_text(json.dumps(report, indent=2))
    lines = [f"Device: {report['device']}, {report['date']}, torch {report['torch']}. Command: `{report['command']}`.",
             "", "| subnormals | pass over clean batch, median s | pass over masked batch, median s | "
             "gradients' subnormal share |", "|---|---|---|---|"]
    for arm, values in report["arms"].items():
        lines.append(f"| {arm} | {values['median_s']['clean']:.2f} | {values['median_s']['masked']:.2f} | "
                     f"{values['gradient_subnormal_share']:.2e} |")
    (results / "efficientnet_passes.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
