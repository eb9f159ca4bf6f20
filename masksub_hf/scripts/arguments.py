"""The argument dataclasses the scripts share: which model (``ModelArguments``, with a tokenizer:
``TokenizerArguments``), how many samples of each split (``SampleLimits``) and the prediction file
(``PredictionFile``). Each dataclass names its fields that do not change what a run trains in ``RESUMABLE`` (as
``MaskSubTrainingArguments`` does), and the resume guard (``scripts/resume.py``) compares every other field with
the run in ``--output_dir``.
"""

from dataclasses import dataclass, field
from typing import ClassVar

from .errors import UserInputError

# The text scripts' defaults: the paper's BERT setting masks 15% of the tokens (images: 50%, the library's default).
TEXT_DEFAULTS = {"masksub_ratio": 0.15}


@dataclass
class ModelArguments:
    """Which model to fine-tune (the flags of transformers' example scripts)."""

    RESUMABLE: ClassVar[tuple] = ("cache_dir", "token")

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Path to a local model or a model id on huggingface.co/models."}
    )
    config_name: str | None = field(
        default=None, metadata={"help": "Config name or path, if not the model's; alone (no --model_name_or_path) "
                                        "the model is built from it with random weights: training from scratch."})
    cache_dir: str | None = field(default=None, metadata={"help": "Where downloaded models and data are stored."})
    model_revision: str = field(default="main", metadata={"help": "Model version: branch, tag or commit id."})
    token: str | None = field(default=None, metadata={"help": "Hub token (default: the one of `hf auth login`)."})
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Allow models and datasets with custom code from the Hub (off by default)."}
    )
    ignore_mismatched_sizes: bool = field(
        default=False, metadata={"help": "Load a checkpoint whose head has a different number of labels."}
    )

    def __post_init__(self):
        if self.model_name_or_path is None and self.config_name is None:
            raise UserInputError("give --model_name_or_path (a model to fine-tune), or --config_name alone to train "
                                 "from scratch.")

    def scratch_config(self):
        """The config a model trained from scratch is built from (``--config_name`` alone), else None."""
        return self.config_name if self.model_name_or_path is None else None

    def hub_kwargs(self):
        return {"cache_dir": self.cache_dir, "revision": self.model_revision, "token": self.token,
                "trust_remote_code": self.trust_remote_code}


@dataclass
class TokenizerArguments(ModelArguments):
    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer name or path, if not the model's."})


@dataclass
class LanguageModelArguments(TokenizerArguments):
    """A language model's (``run_clm.py``, ``run_seq2seq.py``): ``--use_fast_tokenizer`` too."""

    use_fast_tokenizer: bool = field(default=True, metadata={"help": "Use a fast (tokenizers-backed) tokenizer."})


@dataclass
class SampleLimits:
    """``--max_train_samples`` / ``--max_eval_samples``: truncate a split (debugging, quick runs)."""

    RESUMABLE: ClassVar[tuple] = ("max_eval_samples",)

    max_train_samples: int | None = field(default=None, metadata={"help": "Truncate the training set (debugging)."})
    max_eval_samples: int | None = field(default=None,
                                             metadata={"help": "Truncate the evaluation set (debugging)."})


@dataclass
class PredictionFile:
    """``--test_file`` for ``--do_predict``, and ``--max_predict_samples``."""

    RESUMABLE: ClassVar[tuple] = ("test_file", "max_predict_samples")

    test_file: str | None = field(default=None, metadata={"help": "A csv or json file with test data."})
    max_predict_samples: int | None = field(default=None, metadata={"help": "Truncate the test set (debugging)."})

    def prediction_files(self, do_predict):
        """``{"test": --test_file}`` under ``--do_predict`` (which needs it), else ``{}``."""
        if not do_predict:
            return {}
        if self.test_file is None:
            raise UserInputError("--do_predict needs --test_file.")
        return {"test": self.test_file}
