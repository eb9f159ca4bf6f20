"""MaskSub's fields, validated at construction: ``MaskSubArguments`` on any ``TrainingArguments`` class.

``MaskSubTrainingArguments`` is them on ``TrainingArguments``, ``MaskSubSeq2SeqTrainingArguments`` on
``Seq2SeqTrainingArguments`` (``sft.MaskSubSFTConfig`` on TRL's ``SFTConfig``); on another one, declare the pair in a
module of yours, so that a checkpoint's pickled arguments load::

    @dataclass
    class MyMaskSubArguments(MaskSubArguments, MyTrainingArguments):
        pass
"""

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import ClassVar

from transformers import Seq2SeqTrainingArguments, TrainingArguments

from ..masking import MASKSUB_MODES
from ..objectives.losses import SUB_LOSSES_PER_ITEM
from .process_group import noting_a_started_group

MASKSUB_LOSSES = ("auto", *SUB_LOSSES_PER_ITEM)
BACKWARD_PLANS = ("auto", "one", "two")


@dataclass
class MaskSubArguments:
    """MaskSub's flags (``--masksub_ratio 0.5`` turns it on), to put before a ``TrainingArguments`` class."""

    # Fields that do not change what a run trains: a rerun may change them and still resume (the scripts' guard).
    RESUMABLE: ClassVar[tuple] = ("overwrite_output_dir", "masksub_log_grad_norm", "masksub_backward")

    masksub_ratio: float = field(
        default=0.5,
        metadata={
            "help": "Fraction of the input the sub branch loses (patch tokens, pixels or text tokens). "
            "0 disables MaskSub: each training step is then exactly transformers.Trainer's."
        },
    )
    masksub_mode: str = field(
        default="auto",
        metadata={
            "help": "How the sub branch is masked. 'auto' picks by model family: 'tokens' (patch-token drop: "
            "ViT/DeiT/CLIP vision/timm ViT), 'pixels' (zero-filled blocks: ResNet/ConvNeXt/timm CNNs), "
            "'mask_token' (Swin/BEiT), 'text' ([MASK]: BERT family), 'text_drop' (tokens removed, positions kept: "
            "any text classifier, e.g. decoder-only models, whose tokenizers have no mask token; auto picks it "
            "for them). 'dropout' (DropSub) and 'droppath' (PathSub) work for any model.",
            "choices": list(MASKSUB_MODES),
        },
    )
    masksub_loss: str = field(
        default="auto",
        metadata={
            "help": "Sub-branch loss against the detached main output. 'auto' reads config.problem_type: "
            "soft cross-entropy (single-label), BCE with sigmoid targets (multi-label), MSE (regression).",
            "choices": list(MASKSUB_LOSSES),
        },
    )
    masksub_block_size: int | None = field(
        default=None,
        metadata={
            "help": "Pixels per masked block for the 'pixels' and 'mask_token' modes "
            "(default: the paper's 32 px at 224 px, scaled with the input size)."
        },
    )
    masksub_main_weight: float = field(
        default=0.5, metadata={"help": "Weight of the main-branch loss (paper: 1/2, Table A.8)."}
    )
    masksub_sub_weight: float = field(
        default=0.5, metadata={"help": "Weight of the sub-branch loss (paper: 1/2, Table A.8)."}
    )
    masksub_backward: str = field(
        default="auto",
        metadata={
            "help": "Backward passes per micro-batch. 'two': the main branch's, then the sub branch's (the main "
            "branch's activations are freed before the sub forward: the lower peak; its gradient sync held back). "
            "'one': both branches' losses in one backward (both graphs held at once): one gradient reduction per "
            "micro-batch on engines that reduce on every backward. 'auto': 'one' under DeepSpeed and FSDP, 'two' "
            "on one process and under DDP.",
            "choices": list(BACKWARD_PLANS),
        },
    )
    masksub_sample_seeds: bool = field(
        default=True,
        metadata={
            "help": "Draw each training sample's augmentations and mask from seeds of (seed, epoch, sample index): "
            "--resume_from_checkpoint then replays them exactly, on any number of processes and workers. "
            "False: the data pipeline draws from torch's global RNG, as under plain Trainer."
        },
    )
    masksub_log_grad_norm: bool = field(
        default=False,
        metadata={
            "help": "Log each branch's gradient norm (main_grad_norm, sub_grad_norm; paper Fig. 2d). Costs two "
            "copies of the gradients per step; one process only."
        },
    )

    layer_decay: float | None = field(
        default=None,
        metadata={
            "help": "Layer-wise learning-rate decay (BEiT / MAE fine-tuning: 0.65-0.75): with L blocks, block i trains "
            "at lr * layer_decay^(L+1-i), the embeddings at lr * layer_decay^(L+1), the head at lr; no weight "
            "decay on biases, norms, tokens and position embeddings. ViT, DeiT, BEiT, Swin, ConvNeXt, BERT family, "
            "timm models."
        },
    )
    timm_optimizer: str | None = field(
        default=None,
        metadata={
            "help": "An optimizer from timm's factory instead of --optim, e.g. 'lamb' (DeiT-III, ResNet strikes "
            "back), 'lars', 'adan'; with --learning_rate, --weight_decay and Trainer's schedulers."
        },
    )
    repeated_aug: bool = field(
        default=False,
        metadata={
            "help": "Repeated augmentation (DeiT, DeiT-III): each epoch repeats every sample --repeated_aug_repeats "
            "times, differently augmented, dealt to different processes; an epoch keeps the dataset's length."
        },
    )
    repeated_aug_repeats: int = field(default=3, metadata={"help": "Copies of each sample under --repeated_aug (DeiT: 3)."})
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Start over in an --output_dir that holds a run: its checkpoints are deleted. Without it the "
                  "scripts resume the newest checkpoint there when the settings are the run's, and stop when not."},
    )

    def __post_init__(self):
        # Validate first: a bad MaskSub value should fail before any of TrainingArguments' set-up.
        self.validate_masksub()
        super().__post_init__()

    @cached_property
    def _setup_devices(self):
        # Where Accelerate starts the process group under torchrun / accelerate launch: MaskSub ends it at exit.
        with noting_a_started_group():
            return super()._setup_devices

    def validate_masksub(self):
        """Check the MaskSub fields; ``MaskSubTrainer`` checks again what a trial or a user set since."""
        if not (isinstance(self.masksub_ratio, (int, float)) and 0 <= self.masksub_ratio < 1):
            raise ValueError(f"masksub_ratio must be a number in [0, 1), got {self.masksub_ratio!r}.")
        if self.masksub_mode not in MASKSUB_MODES:
            raise ValueError(f"masksub_mode must be one of {list(MASKSUB_MODES)}, got {self.masksub_mode!r}.")
        if self.masksub_loss not in MASKSUB_LOSSES:
            raise ValueError(f"masksub_loss must be one of {list(MASKSUB_LOSSES)}, got {self.masksub_loss!r}.")
        if self.masksub_backward not in BACKWARD_PLANS:
            raise ValueError(f"masksub_backward must be one of {list(BACKWARD_PLANS)}, got {self.masksub_backward!r}.")
        if self.masksub_log_grad_norm and self.masksub_backward == "one":
            raise ValueError("masksub_log_grad_norm measures each branch's gradient between its two backward passes: "
                             "use masksub_backward 'two' (or 'auto' on one process).")
        if self.masksub_block_size is not None and not (
            isinstance(self.masksub_block_size, int) and self.masksub_block_size > 0
        ):
            raise ValueError(f"masksub_block_size must be a positive integer, got {self.masksub_block_size!r}.")
        if self.layer_decay is not None and not (isinstance(self.layer_decay, (int, float)) and 0 < self.layer_decay <= 1):
            raise ValueError(f"layer_decay must be a number in (0, 1], got {self.layer_decay!r}.")
        if self.timm_optimizer:
            from timm.optim import list_optimizers

            if self.timm_optimizer.lower() not in list_optimizers():
                raise ValueError(f"timm_optimizer must be one of timm's optimizers ({', '.join(list_optimizers())}), "
                                 f"got {self.timm_optimizer!r}.")
        if not (isinstance(self.repeated_aug_repeats, int) and self.repeated_aug_repeats >= 1):
            raise ValueError(f"repeated_aug_repeats must be an integer >= 1, got {self.repeated_aug_repeats!r}.")
        for name in ("masksub_main_weight", "masksub_sub_weight"):
            weight = getattr(self, name)
            if not (isinstance(weight, (int, float)) and math.isfinite(weight) and weight >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {weight!r}.")


@dataclass
class MaskSubTrainingArguments(MaskSubArguments, TrainingArguments):
    """Every ``TrainingArguments`` flag, plus MaskSub's (``--masksub_ratio 0.5`` turns it on)."""

    # The fields that do not change what a run trains (where it logs, saves, evaluates or uploads): a rerun may change
    # them and still resume the run's checkpoints (the scripts' resume guard compares every other field). Each
    # argument dataclass declares its own; a field transformers adds counts as changing training until named here.
    RESUMABLE: ClassVar[tuple] = (
        "output_dir", "resume_from_checkpoint", "do_train", "do_eval", "do_predict", "run_name", "logging_dir",
        "logging_strategy", "logging_steps", "logging_first_step", "logging_nan_inf_filter", "report_to",
        "disable_tqdm", "log_level", "log_level_replica", "save_strategy", "save_steps", "save_total_limit",
        "save_only_model", "eval_strategy", "eval_steps", "eval_delay", "eval_on_start", "per_device_eval_batch_size",
        "eval_accumulation_steps", "load_best_model_at_end", "metric_for_best_model", "greater_is_better",
        "push_to_hub", "hub_model_id", "hub_strategy", "hub_token", "hub_private_repo", "hub_always_push",
        "hub_revision", "dataloader_num_workers", "dataloader_prefetch_factor", "dataloader_persistent_workers",
    )


@dataclass
class MaskSubSeq2SeqTrainingArguments(MaskSubTrainingArguments, Seq2SeqTrainingArguments):
    """Every ``Seq2SeqTrainingArguments`` flag (``--predict_with_generate``, ``--generation_max_length``, ...), plus
    MaskSub's: the arguments of ``MaskSubSeq2SeqTrainer`` and of ``masksub-hf seq2seq``."""

    RESUMABLE: ClassVar[tuple] = (*MaskSubTrainingArguments.RESUMABLE, "predict_with_generate",
                                  "generation_max_length", "generation_num_beams", "generation_config")
