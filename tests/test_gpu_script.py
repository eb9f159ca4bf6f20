"""``benchmarks/gpu.py --quick`` on the CPU: the prepared GPU pass runs end to end at toy sizes (a smoke test of
the script, not a measurement). Its correctness and cost parts are what a lent GPU runs; its compile and
text parts run by hand (`python benchmarks/gpu.py --quick`, about 7 minutes here)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_pass_runs_at_toy_sizes_on_the_cpu(tmp_path):
    completed = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--quick", "--parts", "tests",
                                "overhead", "--results_dir", str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert completed.returncode == 0, completed.stdout[-3000:]
    report = json.loads((tmp_path / "gpu.json").read_text())
    assert report["device"].startswith("CPU") and set(report["parts"]) == {"tests", "overhead"}
    assert all(part["exit_status"] == 0 for part in report["parts"].values())
    # The GPU pass's tests, read from its JUnit report: each CUDA gradient test was skipped for want of a GPU
    import xml.etree.ElementTree as ElementTree

    outcomes = {}
    for case in ElementTree.parse(tmp_path / "tests.xml").getroot().iter("testcase"):
        skipped = case.find("skipped")
        failed = case.find("failure") is not None or case.find("error") is not None
        outcome = "failed" if failed else "skipped" if skipped is not None else "passed"
        outcomes.setdefault(case.get("classname").split(".")[-1], []).append(outcome)
        assert skipped is None or "needs a CUDA GPU" in skipped.get("message"), case.get("name")
    assert set(outcomes) == {"test_cuda"} and set(outcomes["test_cuda"]) == {"skipped"}
    overhead = json.loads((tmp_path / "overhead_paper_quick.json").read_text())
    case = overhead["cases"]["vit"]
    assert case["median_step_s"]["trainer_masksub"] > 0 and case["samples_per_s"]["trainer_baseline"] > 0
    assert (tmp_path / "overhead_paper_quick.md").read_text().count("| vit |") == 1
