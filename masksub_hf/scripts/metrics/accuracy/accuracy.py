"""Top-1 (and top-k) accuracy from scores, and subset accuracy + micro F1 for multi-label, via scikit-learn."""

import datasets
import evaluate
import numpy as np
from sklearn.metrics import accuracy_score, f1_score, top_k_accuracy_score

_DESCRIPTION = """
Config ``default``: ``predictions`` are per-class scores (logits), ``references`` class ids; returns
``accuracy`` (top-1) and, with ``top_k=k`` when there are more than k classes, ``top{k}_accuracy``.
Config ``multilabel``: ``predictions`` and ``references`` are 0/1 vectors; returns ``accuracy``
(exact match of the whole vector) and ``f1`` (micro average).
"""


class Accuracy(evaluate.Metric):
    def _info(self):
        if self.config_name == "multilabel":
            features = {"predictions": datasets.Sequence(datasets.Value("int32")),
                        "references": datasets.Sequence(datasets.Value("int32"))}
        else:
            features = {"predictions": datasets.Sequence(datasets.Value("float32")),
                        "references": datasets.Value("int32")}
        return evaluate.MetricInfo(description=_DESCRIPTION, citation="", inputs_description=_DESCRIPTION,
                                   features=datasets.Features(features))

    def _compute(self, predictions, references, top_k=None):
        predictions, references = np.asarray(predictions), np.asarray(references)
        if self.config_name == "multilabel":
            return {"accuracy": float(accuracy_score(references, predictions)),
                    "f1": float(f1_score(references, predictions, average="micro", zero_division=0))}
        result = {"accuracy": float(accuracy_score(references, predictions.argmax(axis=-1)))}
        num_classes = predictions.shape[-1]
        if top_k is not None and num_classes > top_k:
            result[f"top{top_k}_accuracy"] = float(
                top_k_accuracy_score(references, predictions, k=top_k, labels=np.arange(num_classes))
            )
        return result
