"""The README's demo command, shortened (DEMO_QUICK=1): both arms train and evaluate on real MNIST."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quick_demo_prints_paired_seeds_and_writes_plots(tmp_path):
    # One thread asked of the environment: the demo runs at its own fixed count all the same (the baseline arm's
    # accuracy moves with the thread count: docs/benchmarks.md#demo).
    env = {**os.environ, "DEMO_QUICK": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    completed = subprocess.run([sys.executable, str(ROOT / "examples" / "mnist_demo.py"), "--output_dir", str(tmp_path)],
                               capture_output=True, text=True, env=env, timeout=900)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "paired seeds" in completed.stdout and "MaskSub - baseline" in completed.stdout
    assert "95% t-interval over 2 seeds" in completed.stdout
    results = json.loads((tmp_path / "results.json").read_text())
    assert len(results["paired_gain_points"]) == 2 and results["ci95_half_width"] is not None
    assert results["threads_used"] == results["settings"]["threads"] == 2 and "2 threads" in completed.stdout
    for arms in results["runs"].values():
        for arm in arms.values():  # two epochs, evaluated on the 200 validation digits: a count of them right
            assert arm["epoch"] == 2 and arm["train_loss"] > 0
            assert abs(arm["eval_accuracy"] * 200 - round(arm["eval_accuracy"] * 200)) < 1e-9
        assert "sub_loss" in arms["masksub"] and "sub_loss" not in arms["baseline"]
    gain = 100 * (arms["masksub"]["eval_accuracy"] - arms["baseline"]["eval_accuracy"])
    assert abs(results["paired_gain_points"][-1] - gain) < 1e-9  # the printed gain is MaskSub minus baseline
    assert (tmp_path / "losses.png").stat().st_size > 0 and (tmp_path / "grad_norms.png").stat().st_size > 0
    assert "%|" in completed.stderr  # Trainer's progress bars are shown
