"""How the loss ``Trainer.compute_loss`` returns is normalised, read once per run, so that the step can turn the main
branch's loss into a sum over its items and normalise it exactly as the sub branch's.

``Trainer``'s own rule (``training_step``) counts a loss as normalised over the accumulated batch when the model
accepts loss kwargs (and Trainer counted ``num_items_in_batch``) or a ``compute_loss_func`` is set, and otherwise
divides it by the accumulation steps. The rule trusts the model: ``BertForSequenceClassification`` takes
``num_items_in_batch`` and still returns a micro-batch mean, and transformers' generic decoder heads do not pass it
to their loss, so plain ``Trainer`` weighs their accumulated micro-batches wrongly. At ``masksub_ratio > 0`` the
main branch must be exactly the method's, so MaskSub reads the normalisation instead:

- stated by whoever computes the loss: ``Trainer.loss_is_scaled_for_ga`` (a subclass's own ``compute_loss``), a
  ``compute_loss_func`` (Trainer's contract: normalised by ``num_items_in_batch``), label smoothing (Trainer's
  ``LabelSmoother`` divides by ``num_items_in_batch``); without ``num_items_in_batch`` a loss can only be a
  micro-batch mean;
- otherwise (the model's own loss, or a ``compute_loss`` that says nothing) read off the loss: compared with the
  head's usual loss on the same logits (``Objective.main_loss_sum``) divided by either count, at the first step
  where the two counts differ (until then both readings give the same value). A loss equal to neither (a loss
  of the user's own) follows Trainer's rule, with one warning.
"""

import logging

logger = logging.getLogger("masksub_hf")

MEAN = "a mean over the micro-batch"
ACCUMULATED = "normalised over the accumulated batch"
# How close a loss must be to one reading, relative, to be read as it (bf16 logits round at about 4e-3).
TOLERANCE = 2e-2


class MainLossReading:
    """Turns the loss ``compute_loss`` returned into the main branch's sum over the micro-batch's items."""

    def __init__(self, trainer):
        self.trainer = trainer
        self.reading = None  # MEAN or ACCUMULATED once known

    def _stated(self, num_items_in_batch):
        trainer = self.trainer
        stated = getattr(trainer, "loss_is_scaled_for_ga", None)  # transformers >= 5.23
        if stated is not None:
            return ACCUMULATED if stated else MEAN
        if num_items_in_batch is None:
            return MEAN
        if trainer.compute_loss_func is not None or trainer.label_smoother is not None:
            return ACCUMULATED
        return None

    def _trainer_scale(self, num_items_in_batch):
        """What ``Trainer.compute_loss`` multiplied the loss by (the processes, under ``average_tokens_across_devices``)."""
        trainer = self.trainer
        if (trainer.args.average_tokens_across_devices and num_items_in_batch is not None
                and (trainer.model_accepts_loss_kwargs or trainer.compute_loss_func)):
            tensor_parallel = trainer.get_tp_size() if hasattr(trainer, "get_tp_size") else 1
            return trainer.accelerator.num_processes // tensor_parallel
        return 1

    def as_sum(self, loss, outputs, labels, objective, local_items, num_items_in_batch, step_items, trainer_share):
        """``loss`` (from ``compute_loss``) as a sum over this micro-batch's ``local_items``.

        ``step_items``: the main items of the accumulated batch on all processes; ``trainer_share``: the part of
        them ``num_items_in_batch`` counts (1 unless Trainer counted this process only)."""
        loss = loss / self._trainer_scale(num_items_in_batch)
        reading = self.reading or self._stated(num_items_in_batch)
        if reading is None:
            reading = self._read(loss, outputs, labels, objective, local_items, num_items_in_batch)
        if reading == ACCUMULATED:
            return loss * step_items * trainer_share
        return loss * local_items

    def _read(self, loss, outputs, labels, objective, local_items, num_items_in_batch):
        """MEAN or ACCUMULATED, remembered; MEAN for this step only while the two counts agree."""
        local, accumulated = float(local_items), float(num_items_in_batch)
        if local == accumulated:
            return MEAN  # the same value either way; read at a later step
        try:
            usual = float(objective.main_loss_sum(outputs, labels).detach())
        except (KeyError, TypeError, RuntimeError, AttributeError):
            usual = None
        value = float(loss.detach())
        candidates = {} if usual is None else {MEAN: usual / max(local, 1), ACCUMULATED: usual / accumulated}
        close = [name for name, expected in candidates.items()
                 if abs(value - expected) <= TOLERANCE * max(abs(expected), 1e-8)]
        if len(close) == 1:
            self.reading = close[0]
        else:
            self.reading = ACCUMULATED if self.trainer.model_accepts_loss_kwargs else MEAN
            logger.warning(f"MaskSub could not tell how the main loss is normalised (it is not the head's usual loss); "
                           f"it follows Trainer's rule: {self.reading}. Set the trainer's loss_is_scaled_for_ga to "
                           "say which.")
        logger.info(f"MaskSub: the main loss is {self.reading}.")
        return self.reading
