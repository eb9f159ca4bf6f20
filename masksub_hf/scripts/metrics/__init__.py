"""``evaluate`` metric modules shipped with the package, so metrics load offline (no Hub fetch).

    metric = load_metric("glue", "mrpc")          # = evaluate.load(<this folder>/glue, "mrpc")

Each module computes with scikit-learn / SciPy, or in plain Python (``seqeval``: entity-level F1 for NER).
"""

import os

import evaluate

METRICS_DIR = os.path.dirname(os.path.abspath(__file__))


def load_metric(name: str, config_name: str | None = None, **kwargs):
    """``evaluate.load`` of one of the shipped modules: ``accuracy``, ``glue`` or ``seqeval``."""
    path = os.path.join(METRICS_DIR, name)
    if not os.path.isfile(os.path.join(path, f"{name}.py")):
        raise ValueError(f"No shipped metric {name!r}; available: accuracy, glue, seqeval.")
    return evaluate.load(path, config_name, **kwargs)
