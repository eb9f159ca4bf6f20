"""``MaskSubMixin``: a masked sub branch (Heo et al., CVPR'25) in any ``transformers.Trainer`` subclass;
``MaskSubTrainer`` is it on ``Trainer``.

One training step (one micro-batch):

1. ``get_batch_samples``: each micro-batch of the optimizer step gets its mask (unless the collator drew it) and
   the step's item counts over all micro-batches and processes (``micro_batches``);
2. ``training_step``: main forward + backward on the clean batch (Trainer's ``compute_loss``, as a sum over its
   items: ``main_loss``), gradient sync held back (``engine``);
3. sub forward on the masked batch (the masking acts only inside that block), loss against the detached main
   output, backward: gradients are synchronised here (``functional.masksub_step``).

Clipping, the optimizer step and the scheduler stay Trainer's, once per optimizer step. Evaluation and prediction
are Trainer's too: no sub branch. Each override below is a few lines over a named helper: ``sub_branch`` (masking
and objective for the model that trains), ``pipeline.loaders`` (seeded loaders), ``owned`` (a MaskSub-owned mask
token), ``checkpoint``, ``branch_logs``, ``model_card``.
"""

from accelerate.optimizer import AcceleratedOptimizer
from accelerate.utils.memory import clear_device_cache
from transformers import Seq2SeqTrainer, Trainer
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ..batch import SEED, STEP_ITEMS, split_masksub_entries
from ..functional import masksub_step
from ..pipeline.loaders import collator_for_loader, repeated_aug_sampler, seeded_train_loader, sync_sample_seed_callback
from ..recipes.optim import create_optimizer
from .arguments import MaskSubArguments, MaskSubSeq2SeqTrainingArguments, MaskSubTrainingArguments
from .branch_logs import BranchLogs, flat_gradients
from .checkpoint import held_key_warnings, restore_weights, save_owned
from .engine import backward, forward_context, log_engine, main_branch_without_sync, one_backward
from .main_loss import main_loss_sum
from .micro_batches import prepare_step
from .model_card import MASKSUB, card_settings, write_model_card
from .owned import add_owned_group, average_gradients_by_hand
from .process_group import noting_a_started_group, release_at_exit
from .sub_branch import check_collator_masks, configure_sub_branch


class MaskSubMixin:
    """MaskSub's sub branch in a ``Trainer`` subclass: ``class MyTrainer(MaskSubMixin, Seq2SeqTrainer)``.

    Takes the arguments of the class it goes before; ``args`` carries MaskSub's fields (:class:`MaskSubArguments`
    before that class's arguments, e.g. :class:`MaskSubTrainingArguments`). With ``masksub_ratio=0`` every step is
    the class's own ``training_step``. With it, MaskSub's step replaces ``Trainer.training_step``: a class in
    between that overrides ``training_step`` would be skipped, so it is refused in one line.
    """

    method_card = MASKSUB  # the model card's tag, paragraph and citation of the method
    default_arguments = None  # the arguments built when none are given (MaskSubTrainer: MaskSubTrainingArguments)
    steps_wrapped = ()  # classes after the mixin whose training_step this class applies around MaskSub's step

    def __init__(self, model=None, args=None, *trainer_args, **trainer_kwargs):
        if args is None and self.default_arguments is not None:
            args = self.default_arguments(output_dir="trainer_output")
        if not isinstance(args, MaskSubArguments):
            raise TypeError(f"{type(self).__name__} needs arguments with MaskSub's fields (MaskSubTrainingArguments, "
                            f"or a dataclass of MaskSubArguments before {type(args).__name__}), got "
                            f"{type(args).__name__}.")
        with noting_a_started_group():
            super().__init__(model, args, *trainer_args, **trainer_kwargs)
        release_at_exit(self)
        # masksub_objective: the head kind's objective (Trainer's own `objective` is a hyperparameter search's value)
        self.masking = self.masksub_objective = self._masking_built_for = self._owned_gradient_callback = None
        self.branch_logs = BranchLogs()
        if args.masksub_log_grad_norm and args.world_size > 1:
            raise ValueError("masksub_log_grad_norm measures each branch's gradient on one process; "
                             "run it without distributed training.")
        if args.masksub_log_grad_norm and one_backward(args, self.accelerator):  # DeepSpeed on one process
            raise ValueError(f"masksub_log_grad_norm measures each branch's gradient between its two backward "
                             f"passes, and under {self.accelerator.distributed_type.value} the step backpropagates "
                             "both branches at once (masksub_backward auto): pass --masksub_backward two.")
        check_step_not_overridden(type(self))  # before a trial can turn MaskSub on
        if self.model is not None:  # an unsupported model or setting fails here, not after the data is loaded
            configure_sub_branch(self)
        sync_sample_seed_callback(self)
        log_engine(args, self.accelerator)

    def train(self, *args, **kwargs):
        # The sub branch is (re)built and its hooks go on in get_train_dataloader, the first thing a training run does
        # once model_init and a trial's arguments have made the model that trains; they come off here.
        try:
            return super().train(*args, **kwargs)
        finally:
            if self.masking is not None:
                self.masking.remove_hooks()

    def check_settings(self):
        """A one-line error for a setting of the class MaskSub goes in that its step cannot train (while it is on)."""

    def _owned_parameters(self):
        return self.masking.parameters() if self.masking is not None else []

    # --- optimizer, clipping, checkpoints: the owned parameters (a mask token) beside the model's

    def create_optimizer(self, model=None):
        if self.optimizer is None and (self.args.layer_decay is not None or self.args.timm_optimizer):
            model = self.model if model is None else model
            self.optimizer = create_optimizer(model, self.args, self.get_decay_parameter_names(model))
        optimizer = super().create_optimizer(model)
        if self.is_fsdp_enabled and not isinstance(optimizer, AcceleratedOptimizer):
            # FSDP2's prepare swaps the model's parameters in the optimizer for their shards and fails on any other:
            # the owned group joins once it is prepared (create_scheduler)
            return optimizer
        return add_owned_group(optimizer, self._owned_parameters())

    def create_scheduler(self, num_training_steps, optimizer=None):
        add_owned_group(self.optimizer if optimizer is None else optimizer, self._owned_parameters())
        return super().create_scheduler(num_training_steps, optimizer)

    def _clip_grad_norm(self, model):
        owned = self._owned_parameters()
        if not owned:
            return super()._clip_grad_norm(model)
        return self.accelerator.clip_grad_norm_([*model.parameters(), *owned], self.args.max_grad_norm)

    def _save_checkpoint(self, model, trial):
        # Before Trainer's files: its trainer_state.json, written last, marks a checkpoint as complete.
        if self._owned_parameters() and self.args.should_save:
            folder = f"{self._get_output_dir(trial=trial)}/{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            save_owned(folder, self._owned_parameters())
        super()._save_checkpoint(model, trial)

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        configure_sub_branch(self)  # model_init may have built the model this run resumes: its owned token first
        with held_key_warnings() as held:
            super()._load_from_checkpoint(resume_from_checkpoint, model)
        restore_weights(self, resume_from_checkpoint, held, self._owned_parameters(), model)

    def _load_best_model(self):
        # load_best_model_at_end: Trainer's reload has the same non-strict gap as its resume.
        with held_key_warnings() as held:
            super()._load_best_model()
        restore_weights(self, self.state.best_model_checkpoint, held, self._owned_parameters())

    # --- data: seeded training loader, MaskSub's batch entries kept, evaluation never masked or mixed

    def get_train_dataloader(self):
        if self.is_in_train:  # a training run starts: its sub branch, hooks on before the first forward
            configure_sub_branch(self)
            check_collator_masks(self.data_collator, self.masking)
            if self.masking is not None:
                self.masking.install_hooks(self.model)
        sync_sample_seed_callback(self)
        return seeded_train_loader(self, super().get_train_dataloader)

    def get_eval_dataloader(self, *args, **kwargs):
        with collator_for_loader(self, is_training=False):
            return super().get_eval_dataloader(*args, **kwargs)

    def get_test_dataloader(self, *args, **kwargs):
        with collator_for_loader(self, is_training=False):
            return super().get_test_dataloader(*args, **kwargs)

    def _get_train_sampler(self, train_dataset=None):
        if not self.args.repeated_aug:
            return super()._get_train_sampler(train_dataset)
        return repeated_aug_sampler(self, train_dataset if train_dataset is not None else self.train_dataset)

    def _set_signature_columns_if_needed(self):
        # Keep what MaskSub adds to samples (a precomputed mask column, the mask seed): no model names them.
        super()._set_signature_columns_if_needed()
        for key in (self.masking.key if self.masking is not None else None,
                    SEED if self.args.masksub_sample_seeds else None):
            if key and key not in self._signature_columns:
                self._signature_columns.append(key)

    # --- the step

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        batch_samples, num_items_in_batch = super().get_batch_samples(epoch_iterator, num_batches, device)
        if self.masking is not None and batch_samples:
            prepare_step(batch_samples, self.masksub_objective, self.masking, self.accelerator, num_items_in_batch,
                         self.args.average_tokens_across_devices)
        return batch_samples, num_items_in_batch

    def training_step(self, model, inputs, num_items_in_batch=None):
        inputs, entries = split_masksub_entries(inputs)
        if self.masking is None:
            return super().training_step(model, inputs, num_items_in_batch)
        # Trainer.training_step's preamble (its compute_loss call is followed by its own single backward)
        model.train()
        if hasattr(self.optimizer, "train") and callable(self.optimizer.train):
            self.optimizer.train()
        inputs = self._prepare_inputs(inputs)
        if STEP_ITEMS not in entries:  # this micro-batch is the whole step: called outside Trainer's loop
            if self.is_in_train:
                raise RuntimeError("MaskSub: a training micro-batch came without its step's item counts: Trainer's "
                                   "loop no longer passes its batches through get_batch_samples (see "
                                   "docs/architecture.md, private names).")
            entries = {**inputs, **entries}
            prepare_step([entries], self.masksub_objective, self.masking, self.accelerator, None, False)
        items, trainer_share = entries[STEP_ITEMS]

        def main_branch(model, main_inputs):  # Trainer's loss, as a sum over this micro-batch's items
            return main_loss_sum(self, model, main_inputs, self.masksub_objective, num_items_in_batch, items.main,
                                 trainer_share)

        marks = [self._flat_gradients(model)] if self.args.masksub_log_grad_norm else None
        single = one_backward(self.args, self.accelerator)

        def step_backward(loss):
            backward(self.accelerator, loss)
            if marks is not None:
                marks.append(self._flat_gradients(self.model_wrapped))

        main_loss, sub_loss = masksub_step(
            model, inputs, self.masking, self.masksub_objective, entries.get(self.masking.key), items=items,
            main_branch=main_branch, main_weight=self.args.masksub_main_weight, sub_weight=self.args.masksub_sub_weight,
            backward=step_backward, main_no_sync=lambda: main_branch_without_sync(self, model),
            forward_context=lambda: forward_context(self), one_backward=single)
        # What DDP did not average: owned parameters, and the whole model when its sub branch's backward, apart,
        # ran outside DDP's wrapper.
        bypassed = [*model.parameters()] if self.masksub_objective.sub_bypasses_wrapper and not single else []
        average_gradients_by_hand(self.accelerator, [*bypassed, *self._owned_parameters()])
        self._log_branches(main_loss, sub_loss, marks)
        empty_cache_steps = self.args.torch_empty_cache_steps
        if empty_cache_steps is not None and self.state.global_step % empty_cache_steps == 0:  # as Trainer's step
            clear_device_cache()
        return self.args.masksub_main_weight * main_loss + self.args.masksub_sub_weight * sub_loss

    def _flat_gradients(self, model):
        return flat_gradients([*model.parameters(), *self._owned_parameters()])

    def _log_branches(self, main_loss, sub_loss, marks):
        values = {"main_loss": main_loss, "sub_loss": sub_loss}
        if marks is not None:  # each branch's (weighted) gradient, summed over micro-batches
            before, after_main, after_sub = marks
            values.update(main_grad_norm=(after_main - before).norm(), sub_grad_norm=(after_sub - after_main).norm())
        self.branch_logs.add(self.current_gradient_accumulation_steps, **values)

    def log(self, logs, start_time=None):
        # Training logs carry "loss"; add the branches' values, averaged like it (window, processes).
        if "loss" in logs:
            logs.update(self.branch_logs.pop_means(self.accelerator))
        super().log(logs, start_time)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        # Evaluation never runs a sub branch; an eval batch from a MaskSub collator just loses its mask.
        inputs, _ = split_masksub_entries(inputs)
        return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)

    def create_model_card(self, *args, **kwargs):
        """The model card with the ``masksub`` tag, the MaskSub settings and the paper (``masksub_card``); a class
        with a card of its own (TRL's) writes its card, with the tag."""
        base = super().create_model_card
        if getattr(base, "__func__", None) is not Trainer.create_model_card:
            tags = kwargs.pop("tags", None)
            tags = [tags] if isinstance(tags, str) else list(tags or [])
            return base(*args, tags=[*tags, self.method_card.tag], **kwargs)
        return self.masksub_card(*args, **kwargs)

    def masksub_card(self, language=None, license=None, tags=None, model_name=None, finetuned_from=None, tasks=None,
                     dataset_tags=None, dataset=None, dataset_args=None, local_data=None, config_name=None):
        """Trainer's model card from a template, with the ``masksub`` tag, the MaskSub settings and the paper.

        ``finetuned_from`` may name several bases by role (``{"vision tower": ..., "text tower": ...}``); a local
        folder among them stays out of the metadata and the text names it. ``local_data``: the names of local files
        or folders trained on (no Hub dataset); the metadata results name them by their loader. ``config_name``: the
        config a model trained from scratch was built from, which the text names with the model's class."""
        if not self.is_world_process_zero():
            return
        settings = card_settings(self.args, self.masking, self.masksub_objective) if self.masking is not None else None
        write_model_card(self, settings, language=language, license=license, tags=tags, model_name=model_name,
                         finetuned_from=finetuned_from, tasks=tasks, dataset_tags=dataset_tags, dataset=dataset,
                         dataset_args=dataset_args, local_data=local_data, config_name=config_name)


def check_step_not_overridden(trainer_class):
    """MaskSub's step replaces ``Trainer.training_step``: a class after the mixin that overrides it would be
    skipped silently. A class before the mixin (a user's subclass of ``MaskSubTrainer``) wraps MaskSub's step."""
    after = trainer_class.__mro__[trainer_class.__mro__.index(MaskSubMixin) + 1:]
    for cls in after:
        if cls is Trainer:
            return
        if "training_step" in vars(cls) and cls not in trainer_class.steps_wrapped:
            raise TypeError(f"{cls.__name__} overrides training_step, which MaskSub's step replaces: MaskSub cannot "
                            f"run inside it; override training_step in a subclass of {trainer_class.__name__} instead.")


class MaskSubTrainer(MaskSubMixin, Trainer):
    """A ``Trainer`` that adds MaskSub's sub branch when ``args.masksub_ratio > 0``.

    Takes the same arguments as ``Trainer``; ``args`` must be :class:`MaskSubTrainingArguments`. With
    ``masksub_ratio=0`` every step is ``Trainer.training_step``.
    """

    default_arguments = MaskSubTrainingArguments


class MaskSubSeq2SeqTrainer(MaskSubMixin, Seq2SeqTrainer):
    """A ``Seq2SeqTrainer`` with MaskSub's sub branch (its evaluation and ``predict_with_generate`` its own); ``args``
    must be :class:`MaskSubSeq2SeqTrainingArguments`."""

    default_arguments = MaskSubSeq2SeqTrainingArguments
