"""The official GLUE metric of each task, via scikit-learn and SciPy (same keys as the Hub's ``glue`` metric).

CoLA: Matthews correlation; STS-B: Pearson and Spearman correlation; MRPC and QQP: accuracy and F1;
every other task: accuracy.
"""

import datasets
import evaluate
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

GLUE_TASKS = ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "mnli_mismatched", "mnli_matched", "qnli", "rte",
              "wnli", "hans", "ax")
_DESCRIPTION = "GLUE metric for the task given as config name: " + ", ".join(GLUE_TASKS) + "."


class Glue(evaluate.Metric):
    def _info(self):
        if self.config_name not in GLUE_TASKS:
            raise KeyError(f"GLUE task must be one of {list(GLUE_TASKS)}, got {self.config_name!r}.")
        value = datasets.Value("float32" if self.config_name == "stsb" else "int64")
        return evaluate.MetricInfo(description=_DESCRIPTION, citation="", inputs_description=_DESCRIPTION,
                                   features=datasets.Features({"predictions": value, "references": value}))

    def _compute(self, predictions, references):
        if self.config_name == "cola":
            return {"matthews_correlation": float(matthews_corrcoef(references, predictions))}
        if self.config_name == "stsb":
            return {"pearson": float(pearsonr(predictions, references)[0]),
                    "spearmanr": float(spearmanr(predictions, references)[0])}
        accuracy = float(accuracy_score(references, predictions))
        if self.config_name in ("mrpc", "qqp"):
            return {"accuracy": accuracy, "f1": float(f1_score(references, predictions))}
        return {"accuracy": accuracy}
