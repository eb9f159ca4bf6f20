"""Ending, at exit, a process group that MaskSub's own set-up started, while Python is still whole.

A gloo process group keeps worker threads; DDP (and DeepSpeed) keep the group alive through the wrapped model.
Left to the interpreter's exit, the group is freed during its final garbage collection, when a worker thread that
still needs the GIL is stopped by Python in the middle of C++ code: ``terminate called without an active
exception``, exit -6. Measured with ``benchmarks/process_exit.py`` (docs/compatibility.md has the figures).

What is released: every trainer's engine-wrapped model, which holds the group (a group the user destroys in an exit
handler of theirs is otherwise freed only at the interpreter's final collection: the same abort, measured with
``tests/test_distributed.py``'s ``own_group`` case), and its optimizer and scheduler: DeepSpeed's ZeRO optimizer
holds its process groups too (a ZeRO-2 run aborted at exit once in a test suite of 2026-12-07, after training; it
did not recur in 18 runs of it alone, so the effect of releasing the optimizer is not measured). What is ended: only a group that started during MaskSub's
set-up (``MaskSubArguments``' device set-up, where Accelerate starts it under ``torchrun`` / ``accelerate
launch``, or a ``MaskSubMixin`` trainer's). A group the
user created before is theirs: it is left alone. When: the handler is registered when this module is imported,
so that it runs after the exit handlers a user registers later (``atexit`` runs the last registered first): a
user's exit-time ``barrier()`` or ``destroy_process_group()`` finds the group alive.
"""

import atexit
import contextlib
import gc
import weakref

import torch

_trainers = weakref.WeakSet()
_started = False  # whether the default group was started during MaskSub's set-up


def group_initialized():
    return torch.distributed.is_available() and torch.distributed.is_initialized()


@contextlib.contextmanager
def noting_a_started_group():
    """Remember whether the default process group is started inside this block."""
    global _started
    before = group_initialized()
    try:
        yield
    finally:
        _started = _started or (not before and group_initialized())


def release_at_exit(trainer):
    """Release ``trainer``'s engine-wrapped model at exit, before a group MaskSub started is destroyed."""
    _trainers.add(trainer)


def end_process_group():
    """Release the trainers' engine-wrapped models (DDP, DeepSpeed hold the group), whoever started it; then, if
    MaskSub's set-up started the default group and it is still there, destroy it. Collect after each, so a group
    is freed here, while Python is whole: a group the user destroyed in an exit handler of theirs is freed only
    when the wrapped model that still holds it goes."""
    trainers = list(_trainers)
    for trainer in trainers:
        trainer.model_wrapped = trainer.model
        trainer.deepspeed = trainer.optimizer = trainer.lr_scheduler = None
        trainer.accelerator.free_memory()
    if trainers:
        gc.collect()
    if _started and group_initialized():
        torch.distributed.destroy_process_group()
        gc.collect()


atexit.register(end_process_group)
