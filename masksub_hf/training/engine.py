"""What each engine (one process, DDP, DeepSpeed, FSDP) needs for MaskSub's step: which backward plan it runs
(two passes, or one for both branches), the main branch's backward with gradient sync held back, backward without
DeepSpeed's accumulation scaling, and the line that says which engine trains."""

import contextlib
import logging
import os

from accelerate.utils import DistributedType
from transformers.distributed.fsdp import is_fsdp_managed_module

logger = logging.getLogger("masksub_hf")


def one_backward(args, accelerator):
    """Whether the step backpropagates both branches at once (``masksub_backward``): under ``auto`` where the engine
    reduces gradients on every backward (DeepSpeed ZeRO) or would hold them unsharded to defer it (FSDP2's
    ``no_sync``); one process and DDP defer their one all-reduce for free and keep the lower peak of two."""
    if args.masksub_backward == "auto":
        return is_sharded(accelerator)
    return args.masksub_backward == "one"


def log_engine(args, accelerator):
    """Say which engine trains and how the step backpropagates; warn when FSDP was asked for but is not what
    runs."""
    engine, processes = accelerator.distributed_type, accelerator.num_processes
    fsdp_asked = args.fsdp or os.environ.get("ACCELERATE_USE_FSDP", "false").lower() in ("1", "true")
    if fsdp_asked and engine != DistributedType.FSDP:
        # Accelerate drops the FSDP plugin without a word on CPU and runs DDP (or one process).
        logger.warning(f"FSDP was asked for, but Accelerate runs {engine.value} with {processes} process(es): "
                       f"FSDP needs GPUs. Training goes on as {engine.value}, unsharded.")
    plan = "one backward (both branches)" if one_backward(args, accelerator) else "two backward passes (one a branch)"
    logger.info(f"MaskSub: engine {engine.value}, {processes} process(es), {plan} per micro-batch")


def check_two_pass_features(args, accelerator):
    """One line for a Trainer feature that cannot work with a step of two backward passes."""
    optim = getattr(args.optim, "value", args.optim)  # an OptimizerNames member once TrainingArguments parsed it
    if optim in ("lomo", "adalomo"):
        raise ValueError(f"--optim {optim} updates the weights inside backward, and MaskSub's step has two "
                         "backward passes (the main branch's, then the sub branch's): each would update with half "
                         "a gradient; use another optimizer.")
    parallelism = getattr(accelerator, "parallelism_config", None)
    if parallelism is not None and getattr(parallelism, "cp_enabled", False):
        raise ValueError("MaskSub does not support context parallelism: its masked sub batch is not sharded "
                         "along the sequence; train without a cp_size.")


def is_sharded(accelerator):
    return accelerator.distributed_type in (DistributedType.DEEPSPEED, DistributedType.FSDP)


@contextlib.contextmanager
def main_branch_without_sync(trainer, model):
    """Hold back gradient sync (DDP/FSDP all-reduce, DeepSpeed's step) for the main branch.

    The two-backward plan's main branch: the sub branch's backward then syncs the sum of both branches' gradients,
    one all-reduce per optimizer step under DDP (DeepSpeed ZeRO-2/3 reduce every backward anyway, and FSDP2 holds
    its gradients unsharded meanwhile: why ``one_backward`` is their default). On micro-batches that do not sync
    anyway, Trainer's own ``no_sync`` already holds.
    """
    accelerator = trainer.accelerator
    state = accelerator.gradient_state
    if not state.sync_gradients:
        yield
        return
    state._set_sync_gradients(False)  # DeepSpeed's backward steps the engine when this is True
    try:
        if accelerator.distributed_type == DistributedType.DEEPSPEED:
            yield
        elif (trainer.is_distributed_loading_by_transformers and is_fsdp_managed_module(trainer.model)
              and hasattr(trainer, "_defer_fsdp_gradient_reduction")):  # transformers >= 5.23, as its own loop
            with trainer._defer_fsdp_gradient_reduction():
                yield
        else:
            with accelerator.no_sync(model):
                yield
    finally:
        state._set_sync_gradients(True)


def backward(accelerator, loss):
    """``accelerator.backward``; the step has already divided the loss by the step's items (not DeepSpeed's GA)."""
    kwargs = {"scale_wrt_gas": False} if accelerator.distributed_type == DistributedType.DEEPSPEED else {}
    accelerator.backward(loss, **kwargs)


@contextlib.contextmanager
def forward_context(trainer):
    """Each branch's forward under Trainer's loss context and Accelerate's autocast: Accelerate puts autocast on the
    prepared model's forward, which a dual encoder's sub branch (the bare image tower) bypasses."""
    with trainer.compute_loss_context_manager(), trainer.accelerator.autocast():
        yield
