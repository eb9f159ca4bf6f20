"""Ending the process group while Python is still whole.

A gloo process group keeps worker threads; DDP (and DeepSpeed) keep the group alive through the wrapped
model. Left to the interpreter's exit, the group is freed during its final garbage collection, when a worker
thread that still needs the GIL is stopped by Python in the middle of C++ code: ``terminate called without
an active exception``, exit -6, about one 2-process run in four here, with ``Trainer`` as with
``MaskSubTrainer``, even after ``torch.distributed.destroy_process_group()`` alone (the wrapped model still
holds the group). So at exit, before the interpreter's own clean-up, every trainer's wrapped model is
released, the default group destroyed and the garbage collected.
"""

import atexit
import gc
import weakref

import torch

_trainers = weakref.WeakSet()


def end_process_group():
    """Release the trainers' engine-wrapped models, destroy the default process group, collect."""
    for trainer in list(_trainers):
        trainer.model_wrapped = trainer.model
        trainer.deepspeed = None
        trainer.accelerator.free_memory()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    gc.collect()


def end_process_group_at_exit(trainer):
    """Have :func:`end_process_group` run at exit (once), if ``trainer`` runs in a process group."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    atexit.unregister(end_process_group)  # registered once, whichever trainers are still alive
    atexit.register(end_process_group)
    _trainers.add(trainer)
