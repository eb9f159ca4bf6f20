"""Figure-2 style plots from a run's ``trainer_state.json`` (paper Fig. 2b-d).

    python -m masksub_hf.scripts.plot OUTPUT_DIR [--baseline BASELINE_OUTPUT_DIR] [--out DIR]

OUTPUT_DIR is a run's output folder: the scripts' (its ``trainer_state.json``), a library run's or one still
training (its newest checkpoint's), or a checkpoint.

writes ``losses.png`` (main, sub and total loss over steps; the baseline's loss when given) and, when the
run logged them (``--masksub_log_grad_norm``), ``grad_norms.png`` (each branch's gradient norm).
"""

import argparse
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STATE = "trainer_state.json"


class NoRun(ValueError):
    """A folder that holds no run's trainer state."""


def trainer_state(folder):
    """The ``trainer_state.json`` of the run in ``folder``: its own (the scripts save it after training, and each
    checkpoint holds one), else its newest checkpoint's (a library run, or one still training)."""
    if os.path.isfile(os.path.join(folder, STATE)):
        return os.path.join(folder, STATE)
    if not os.path.isdir(folder):
        raise NoRun(f"{folder}: no such folder.")
    from transformers.trainer_utils import sort_checkpoints

    for checkpoint in reversed(sort_checkpoints(folder)):
        if os.path.isfile(os.path.join(checkpoint, STATE)):
            return os.path.join(checkpoint, STATE)
    raise NoRun(f"{folder}: no {STATE} in it or in a checkpoint-* folder of it; give a run's --output_dir.")


def training_logs(output_dir):
    with open(trainer_state(output_dir)) as f:
        return [entry for entry in json.load(f)["log_history"] if "loss" in entry]


def series(logs, key):
    points = [(entry["step"], entry[key]) for entry in logs if key in entry]
    return [step for step, _ in points], [value for _, value in points]


def plot_run(output_dir, baseline_dir=None, out_dir=None):
    """Write the PNGs for one run; returns their paths."""
    logs = training_logs(output_dir)
    out_dir = out_dir or output_dir
    os.makedirs(out_dir, exist_ok=True)
    written = []

    figure, axis = plt.subplots(figsize=(6, 4))
    for key, label in (("loss", "MaskSub total"), ("main_loss", "MaskSub main branch"), ("sub_loss", "MaskSub sub branch")):
        axis.plot(*series(logs, key), label=label)
    if baseline_dir is not None:
        axis.plot(*series(training_logs(baseline_dir), "loss"), label="baseline", linestyle="--", color="black")
    axis.set(xlabel="step", ylabel="training loss", title="Training loss (paper Fig. 2b-c)")
    axis.legend()
    written.append(os.path.join(out_dir, "losses.png"))
    figure.savefig(written[-1], dpi=120, bbox_inches="tight")
    plt.close(figure)

    if any("main_grad_norm" in entry for entry in logs):
        figure, axis = plt.subplots(figsize=(6, 4))
        axis.plot(*series(logs, "main_grad_norm"), label="main branch")
        axis.plot(*series(logs, "sub_grad_norm"), label="sub branch")
        axis.set(xlabel="step", ylabel="gradient norm", title="Gradient norm per branch (paper Fig. 2d)")
        axis.legend()
        written.append(os.path.join(out_dir, "grad_norms.png"))
        figure.savefig(written[-1], dpi=120, bbox_inches="tight")
        plt.close(figure)
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output_dir", help="A MaskSub run's output directory (holding trainer_state.json).")
    parser.add_argument("--baseline", help="A baseline run's output directory, drawn for comparison.")
    parser.add_argument("--out", help="Where to write the PNGs (default: output_dir).")
    args = parser.parse_args(argv)
    try:
        paths = plot_run(args.output_dir, args.baseline, args.out)
    except NoRun as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    for path in paths:
        print(path)


if __name__ == "__main__":
    main()
