"""The README's demo command, shortened (DEMO_QUICK=1): both arms train and evaluate on real MNIST."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quick_demo_prints_the_side_by_side_table_and_writes_plots(tmp_path):
    env = {**os.environ, "DEMO_QUICK": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    completed = subprocess.run([sys.executable, str(ROOT / "examples" / "mnist_demo.py"), "--output_dir", str(tmp_path)],
                               capture_output=True, text=True, env=env, timeout=900)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "arm" in completed.stdout and "step time (s)" in completed.stdout and "MaskSub - baseline" in completed.stdout
    results = json.loads((tmp_path / "results.json").read_text())
    assert 0 <= results["baseline"]["eval_accuracy"] <= 1 and 0 <= results["masksub"]["eval_accuracy"] <= 1
    assert "sub_loss" in results["masksub"] and "sub_loss" not in results["baseline"]
    assert (tmp_path / "losses.png").stat().st_size > 0 and (tmp_path / "grad_norms.png").stat().st_size > 0
    assert "%|" in completed.stderr  # Trainer's progress bars are shown
