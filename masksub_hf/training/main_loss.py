"""The main branch's loss as a sum over its items, by rules from ``Trainer``'s documented contract.

The step divides both branches' sums by the items of the accumulated batch (``functional.StepItems``), so the
loss ``Trainer.compute_loss`` returns must be turned into a sum first, and how to do that must be *known*, not
guessed: ``BertForSequenceClassification`` takes ``num_items_in_batch`` and still returns a micro-batch mean,
while transformers' generic decoder heads do not pass it to their loss. The rules, first that applies:

1. ``Trainer.loss_is_scaled_for_ga`` set (a subclass's own ``compute_loss`` says which, transformers >= 5.23):
   ``True`` normalised over the accumulated batch by ``num_items_in_batch``, ``False`` a micro-batch mean;
2. a ``compute_loss_func``: Trainer's contract hands it ``num_items_in_batch`` to normalise by;
3. everything else (the model's own loss, label smoothing, a ``compute_loss`` that states nothing) is called
   *without* ``num_items_in_batch``: Trainer's contract for a loss computed without the count is a mean over
   the micro-batch's items (transformers' heads, ``LabelSmoother``), whatever the model does with a count.

A loss normalised over the accumulated batch needs the count: where Trainer has none (a batch without labels)
that is a one-line error.
"""

MEAN = "a mean over the micro-batch"
ACCUMULATED = "normalised over the accumulated batch"


def main_loss_normalisation(trainer):
    """MEAN or ACCUMULATED: how ``trainer.compute_loss`` normalises the loss, by the rules above."""
    stated = getattr(trainer, "loss_is_scaled_for_ga", None)
    if stated is not None:
        return ACCUMULATED if stated else MEAN
    return ACCUMULATED if trainer.compute_loss_func is not None else MEAN


def trainer_scale(trainer, num_items_in_batch):
    """What ``Trainer.compute_loss`` multiplied the loss by (the processes, under ``average_tokens_across_devices``)."""
    if (trainer.args.average_tokens_across_devices and num_items_in_batch is not None
            and (trainer.model_accepts_loss_kwargs or trainer.compute_loss_func)):
        tensor_parallel = trainer.get_tp_size() if hasattr(trainer, "get_tp_size") else 1
        return trainer.accelerator.num_processes // tensor_parallel
    return 1


def main_loss_sum(trainer, model, inputs, objective, num_items_in_batch, step_main_items, trainer_share):
    """``(the main branch's loss as a sum over this micro-batch's items, the outputs)``, from ``compute_loss``.

    ``step_main_items``: the main items of the accumulated batch on all processes; ``trainer_share``: the part of
    them ``num_items_in_batch`` counts (1 unless Trainer counted this process's only)."""
    normalisation = main_loss_normalisation(trainer)
    if normalisation == ACCUMULATED and num_items_in_batch is None:
        raise ValueError("MaskSub: the main loss is normalised over the accumulated batch (loss_is_scaled_for_ga or "
                         "compute_loss_func), but Trainer counted no items in this batch (no labels?).")
    labels = objective.labels(inputs)  # read first: compute_loss pops labels under label smoothing / compute_loss_func
    count = num_items_in_batch if normalisation == ACCUMULATED else None
    loss, outputs = trainer.compute_loss(model, inputs, return_outputs=True, num_items_in_batch=count)
    loss = loss.mean() if trainer.args.n_gpu > 1 else loss  # DataParallel returns one loss per device
    if normalisation == ACCUMULATED:
        return loss / trainer_scale(trainer, count) * step_main_items * trainer_share, outputs
    return loss * objective.main_items(inputs, labels), outputs
