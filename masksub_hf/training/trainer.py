"""``MaskSubTrainer``: ``transformers.Trainer`` with a masked sub branch (Heo et al., CVPR'25).

One training step (one micro-batch):

1. pop the ``masksub_*`` mask from the batch (or draw one if the collator did not);
2. main forward + backward on the clean batch, with gradient sync held back;
3. sub forward on the masked batch (the masking acts only inside that block), loss against the
   detached main output, backward: gradients are synchronised here (once, except under ZeRO-2/3).

Clipping, the optimizer step and the scheduler stay Trainer's, once per optimizer step. Evaluation and
prediction are Trainer's too: no sub branch. The bookkeeping around the step lives beside this module:
``owned`` (a MaskSub-owned mask token), ``checkpoint`` (what checkpoints add, exact reloads),
``branch_logs`` (per-branch logs), ``model_card``.
"""

import contextlib
import logging
import os

import datasets
import torch
from accelerate.utils import DistributedType
from transformers import Trainer
from transformers.distributed.fsdp import is_fsdp_managed_module
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ..functional import StepItems, batch_items, masksub_step
from ..masking import MASK_KEY_PREFIX, masking_for
from ..masking.structure import is_dual_encoder
from ..objectives import objective_for
from ..pipeline.samplers import RepeatedAugSampler
from ..pipeline.seeding import SEED_KEY, SampleSeedEpochCallback, SeededDataset, SeedsBesideBatch
from ..recipes.layer_decay import param_groups_layer_decay
from ..recipes.optim import create_optimizer
from .arguments import MaskSubTrainingArguments
from .branch_logs import BranchLogs, flat_gradients
from .checkpoint import held_key_warnings, load_owned, reload_converted_weights, save_owned
from .main_loss import MainLossReading
from .model_card import (
    MASKSUB_TAG,
    add_local_results,
    append_masksub_section,
    card_settings,
    rewrite_card_text,
    with_masksub_tag,
)
from .owned import ClearOwnedGradients, add_owned_group, average_gradients_by_hand
from .process_group import noting_a_started_group, release_at_exit

logger = logging.getLogger("masksub_hf")


def split_masks(inputs):
    """Split a batch into the model's inputs and the ``masksub_*`` masks drawn for it."""
    model_inputs = {k: v for k, v in inputs.items() if not k.startswith(MASK_KEY_PREFIX)}
    masks = {k: v for k, v in inputs.items() if k.startswith(MASK_KEY_PREFIX)}
    return model_inputs, masks


def log_engine(args, accelerator):
    """Say which engine trains, and warn when FSDP was asked for but is not what runs."""
    engine, processes = accelerator.distributed_type, accelerator.num_processes
    fsdp_asked = args.fsdp or os.environ.get("ACCELERATE_USE_FSDP", "false").lower() in ("1", "true")
    if fsdp_asked and engine != DistributedType.FSDP:
        # Accelerate drops the FSDP plugin without a word on CPU and runs DDP (or one process).
        logger.warning(f"FSDP was asked for, but Accelerate runs {engine.value} with {processes} process(es): "
                       f"FSDP needs GPUs. Training goes on as {engine.value}, unsharded.")
    logger.info(f"MaskSub: engine {engine.value}, {processes} process(es)")


def log_settings(args, model, masking, objective):
    """Say what trains, ``auto`` resolved: the line a user checks before a long run."""
    if masking is None:
        logger.info(f"MaskSub: ratio {args.masksub_ratio}: off, every step is Trainer.training_step")
        return
    settings = card_settings(args, masking, objective)
    logger.info(f"MaskSub for {type(model).__name__}: "
                + ", ".join(f"{name.removeprefix('masksub_')} {value}" for name, value in settings.items()))


class MaskSubTrainer(Trainer):
    """A ``Trainer`` that adds MaskSub's sub branch when ``args.masksub_ratio > 0``.

    Takes the same arguments as ``Trainer``; ``args`` must be :class:`MaskSubTrainingArguments`. With
    ``masksub_ratio=0`` every step is ``Trainer.training_step``.
    """

    def __init__(self, model=None, args=None, *trainer_args, **trainer_kwargs):
        if args is None:
            args = MaskSubTrainingArguments(output_dir="trainer_output")
        if not isinstance(args, MaskSubTrainingArguments):
            raise TypeError(f"MaskSubTrainer needs MaskSubTrainingArguments, got {type(args).__name__}.")
        with noting_a_started_group():
            super().__init__(model, args, *trainer_args, **trainer_kwargs)
        release_at_exit(self)
        # masksub_objective: the head kind's objective (Trainer's own `objective` is a hyperparameter search's value)
        self.masking = self.masksub_objective = self._step_items = self._gradient_marks = None
        self._masking_built_for = None  # (the model, the settings) the masking was built for
        self._owned_gradient_callback = None
        self.branch_logs = BranchLogs()
        if args.masksub_log_grad_norm and args.world_size > 1:
            raise ValueError("masksub_log_grad_norm measures each branch's gradient on one process; "
                             "run it without distributed training.")
        if self.model is not None:  # an unsupported model or setting fails here, not after the data is loaded
            self._configure_masking()
        self._configure_sample_seeds()
        log_engine(args, self.accelerator)

    def _tokenizer(self):
        """The tokenizer where ``Trainer`` finds one to save: ``processing_class``, else the collator's."""
        if self.processing_class is not None:
            return self.processing_class
        return getattr(self.data_collator, "tokenizer", None)

    def _configure_masking(self):
        """(Re)build the masking for the model that trains now, from the arguments as they are now.

        Called at construction and at the start of every training run: ``model_init`` (a trial, a second
        ``train()``) builds a new model, and a trial or the user may have changed the MaskSub arguments.
        Nothing is rebuilt while model and settings stay the same (an owned mask token keeps training).
        """
        args = self.args
        args.validate_masksub()
        unwrapped = self.accelerator.unwrap_model(self.model)
        settings = (args.masksub_ratio, args.masksub_mode, args.masksub_block_size, args.masksub_loss,
                    id(self._tokenizer()), id(self.compute_loss_func))
        built_for = self._masking_built_for
        if built_for is not None and built_for[0] is unwrapped and built_for[1] == settings:
            return
        if self.masking is not None:
            self.masking.remove_hooks()  # never left on a model that no longer trains
        self.masking = self.masksub_objective = None
        if self._owned_gradient_callback is not None:
            self.remove_callback(self._owned_gradient_callback)
            self._owned_gradient_callback = None
        self.is_dual_encoder = is_dual_encoder(unwrapped)
        if args.masksub_ratio > 0:
            # The head's objective first: a head MaskSub has none for fails here, in every masksub_mode.
            sub_loss = getattr(self.compute_loss_func, "masksub_sub_loss", "auto") if args.masksub_loss == "auto" \
                else args.masksub_loss  # under auto, the sub loss a recipe's main loss names (sigmoid under BCE)
            self.masksub_objective = objective_for(unwrapped, sub_loss)
            self.main_loss = MainLossReading(self)
            if self.is_dual_encoder and self.accelerator.distributed_type in (DistributedType.DEEPSPEED,
                                                                                DistributedType.FSDP):
                raise ValueError("MaskSub for dual encoders runs on one process or DDP, not DeepSpeed or FSDP.")
            self.masking = masking_for(unwrapped, args.masksub_mode, args.masksub_ratio, self._tokenizer(),
                                       args.masksub_block_size)
            if hasattr(unwrapped, "add_model_tags"):
                unwrapped.add_model_tags([MASKSUB_TAG])
            if self.masking.parameters():
                self._owned_gradient_callback = ClearOwnedGradients(self.masking.parameters())
                self.add_callback(self._owned_gradient_callback)
        if args.layer_decay is not None:  # an unsupported model fails here
            param_groups_layer_decay(unwrapped, args.learning_rate, args.weight_decay, args.layer_decay)
        self._masking_built_for = (unwrapped, settings)
        log_settings(args, unwrapped, self.masking, self.masksub_objective)

    def _configure_sample_seeds(self):
        """The epoch callback of per-sample seeds, there exactly when ``masksub_sample_seeds`` is on."""
        present = any(isinstance(c, SampleSeedEpochCallback) for c in self.callback_handler.callbacks)
        if self.args.masksub_sample_seeds and not present:
            self.add_callback(SampleSeedEpochCallback())
        elif not self.args.masksub_sample_seeds and present:
            self.remove_callback(SampleSeedEpochCallback)

    def _check_collator_masks(self):
        """A MaskSub collator draws masks at its own ratio: it must be the one this run trains with."""
        drawn_by = getattr(self.data_collator, "masking", None)
        if drawn_by is None or self.masking is None or drawn_by.key is None or drawn_by.key != self.masking.key:
            return  # masks under another key are not this run's: the trainer draws its own
        ours, theirs = ((type(m).__name__, getattr(m, "ratio", None), getattr(m, "block_size", None))
                        for m in (self.masking, drawn_by))
        if ours != theirs:
            raise ValueError(
                f"The data collator draws masks as {theirs[0]} at ratio {theirs[1]} (block size {theirs[2]}), but "
                f"this run trains with {ours[0]} at masksub_ratio {ours[1]} (block size {ours[2]}): build the "
                "collator with the run's values, or pass a collator without masks (e.g. when a hyperparameter "
                "search changes masksub_ratio) and MaskSubTrainer draws them from each sample's seed.")

    def train(self, *args, **kwargs):
        # The masking is (re)built and its hooks go on in get_train_dataloader, the first thing a training
        # run does once model_init and a trial's arguments have made the model that trains; they come off
        # here: the trained model leaves with no MaskSub hook on it.
        try:
            return super().train(*args, **kwargs)
        finally:
            self._step_items = None
            if self.masking is not None:
                self.masking.remove_hooks()

    def _owned_parameters(self):
        return self.masking.parameters() if self.masking is not None else []

    def create_optimizer(self, model=None):
        if self.optimizer is None and (self.args.layer_decay is not None or self.args.timm_optimizer):
            model = self.model if model is None else model
            self.optimizer = create_optimizer(model, self.args, self.get_decay_parameter_names(model))
        return add_owned_group(super().create_optimizer(model), self._owned_parameters())

    def _clip_grad_norm(self, model):
        owned = self._owned_parameters()
        if not owned:
            return super()._clip_grad_norm(model)
        return self.accelerator.clip_grad_norm_([*model.parameters(), *owned], self.args.max_grad_norm)

    def _save_checkpoint(self, model, trial):
        # Before Trainer's files: its trainer_state.json, written last, marks a checkpoint as complete.
        owned = self._owned_parameters()
        if owned and self.args.should_save:
            step_folder = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            save_owned(os.path.join(self._get_output_dir(trial=trial), step_folder), owned)
        super()._save_checkpoint(model, trial)

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        # model_init may have built the model this run resumes: its masking (an owned mask token) first.
        self._configure_masking()
        with held_key_warnings() as held:
            super()._load_from_checkpoint(resume_from_checkpoint, model)
        self._restore_weights(resume_from_checkpoint, held, model)

    def _load_best_model(self):
        # load_best_model_at_end: Trainer's reload has the same non-strict gap as its resume.
        with held_key_warnings() as held:
            super()._load_best_model()
        self._restore_weights(self.state.best_model_checkpoint, held)

    def _restore_weights(self, checkpoint, held_warnings, model=None):
        """Every weight of ``checkpoint`` back in the model, and MaskSub's owned parameters (a mask token).

        Trainer's key-name warnings of its non-strict reload (``held_warnings``) are emitted only where no strict
        reload follows: sharded (FSDP, DeepSpeed), PEFT-adapter and other reloads stay Trainer's."""
        restored = not (self.is_fsdp_enabled or self.is_deepspeed_enabled) and reload_converted_weights(
            self.accelerator.unwrap_model(model if model is not None else self.model), checkpoint)
        if restored:
            logger.info(f"Every weight restored from {checkpoint} (read by key name and loaded strictly; Trainer's "
                        f"own reload {'reported keys under legacy names' if held_warnings else 'agreed'}).")
        else:
            for record in held_warnings:
                logging.getLogger("transformers.trainer").handle(record)
        load_owned(checkpoint, self._owned_parameters())

    def get_train_dataloader(self):
        """Trainer's training loader, over the training set wrapped in a ``SeededDataset`` (per-sample seeds).

        In a training run, first (re)build the masking for the model and arguments of this run and put its
        hooks on before the first forward (``eval_on_start`` and a compiled graph included)."""
        if self.is_in_train:
            self._configure_masking()
            self._check_collator_masks()
            if self.masking is not None:
                self.masking.install_hooks(self.model)
        self._configure_sample_seeds()
        dataset = self.train_dataset
        with self._collator_for_loader(is_training=True):
            if (not self.args.masksub_sample_seeds or dataset is None
                    or isinstance(dataset, torch.utils.data.IterableDataset)):
                return super().get_train_dataloader()
            if isinstance(dataset, datasets.Dataset):
                dataset = self._remove_unused_columns(dataset, description="training")
            # Trainer's own loader, over the seeded dataset (its public method reads self.train_dataset).
            return self._get_dataloader(
                dataset=SeededDataset(dataset, self.args.data_seed if self.args.data_seed is not None else self.args.seed),
                description="Training",
                batch_size=self._train_batch_size,
                sampler_fn=lambda _: self._get_train_sampler(dataset),  # e.g. group_by_length reads the columns
                is_training=True,
            )

    def get_eval_dataloader(self, *args, **kwargs):
        with self._collator_for_loader(is_training=False):
            return super().get_eval_dataloader(*args, **kwargs)

    def get_test_dataloader(self, *args, **kwargs):
        with self._collator_for_loader(is_training=False):
            return super().get_test_dataloader(*args, **kwargs)

    def _loader_collator(self, is_training):
        """The collator a loader uses: the user's, but for what MaskSub changes.

        Training under per-sample seeds: a collator that draws no masks is wrapped so that the samples' seeds
        reach the trainer beside the batch. Evaluation and prediction are never mixed: a ``MixupCollator``
        gives its inner collator. ``self.data_collator`` itself stays the user's object."""
        collator = self.data_collator
        if not is_training:
            return getattr(collator, "evaluation_collator", collator)
        if self.args.masksub_sample_seeds and collator is not None and not getattr(collator, "uses_sample_seeds", False):
            return SeedsBesideBatch(collator)
        return collator

    @contextlib.contextmanager
    def _collator_for_loader(self, is_training):
        """``self.data_collator`` is the loader's collator while a loader is built, the user's object again after."""
        collator = self._loader_collator(is_training)
        if collator is self.data_collator:
            yield
            return
        user_collator, self.data_collator = self.data_collator, collator
        try:
            yield
        finally:
            self.data_collator = user_collator

    def _get_train_sampler(self, train_dataset=None):
        if not self.args.repeated_aug:
            return super()._get_train_sampler(train_dataset)
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        # Under per-sample seeds, each copy is read with seeds of its own (SeededDataset reads index % len).
        return RepeatedAugSampler(len(dataset), self.args.repeated_aug_repeats, self.args.world_size,
                                  self._train_batch_size, seed, distinct_copies=self.args.masksub_sample_seeds)

    def _set_signature_columns_if_needed(self):
        # Keep what MaskSub adds to samples (a precomputed mask column, the mask seed): no model names them.
        super()._set_signature_columns_if_needed()
        for key in (self.masking.key if self.masking is not None else None,
                    SEED_KEY if self.args.masksub_sample_seeds else None):
            if key and key not in self._signature_columns:
                self._signature_columns.append(key)

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        # The micro-batches of one optimizer step: each gets its mask (when the collator drew none), and the step
        # counts both branches' items over all of them and all processes, which the step divides by.
        batch_samples, num_items_in_batch = super().get_batch_samples(epoch_iterator, num_batches, device)
        if self.masking is not None and batch_samples:
            for batch in batch_samples:
                self._add_mask(batch)
            self._step_items = self._count_items(batch_samples, num_items_in_batch)
        return batch_samples, num_items_in_batch

    def _add_mask(self, batch):
        """Draw the batch's mask into it, from its samples' seeds when they came along, unless the collator drew it."""
        if self.masking.key is not None and self.masking.key not in batch:
            inputs, masks = split_masks(batch)
            seeds = masks.get(SEED_KEY)
            batch[self.masking.key] = self.masking.draw(inputs, None if seeds is None else seeds.tolist())

    def _count_items(self, batches, num_items_in_batch):
        """``(StepItems, trainer_share)``: the items of ``batches`` on all processes (one all-reduce), and the part of
        the main items ``num_items_in_batch`` counts (1 unless Trainer counted this process's only)."""
        counted_here = (num_items_in_batch is not None and self.accelerator.num_processes > 1
                        and not self.args.average_tokens_across_devices)
        counts = [0.0, 0.0, float(num_items_in_batch) if counted_here else 0.0]
        for batch in batches:
            inputs, masks = split_masks(batch)
            main, sub = batch_items(self.masksub_objective, inputs, self.masking, masks.get(self.masking.key))
            counts[0], counts[1] = counts[0] + float(main), counts[1] + float(sub)
        counts = torch.tensor(counts, device=self.args.device)
        if self.accelerator.num_processes > 1:
            counts = self.accelerator.reduce(counts, reduction="sum")
        share = float(num_items_in_batch) / counts[2].item() if counted_here else 1.0
        return StepItems(counts[0], counts[1], self.accelerator.num_processes), share

    def training_step(self, model, inputs, num_items_in_batch=None):
        inputs, masks = split_masks(inputs)
        if self.masking is None:
            return super().training_step(model, inputs, num_items_in_batch)
        model.train()
        if hasattr(self.optimizer, "train") and callable(self.optimizer.train):
            self.optimizer.train()
        inputs = self._prepare_inputs(inputs)
        step_items = self._step_items
        if step_items is None:  # called outside Trainer's loop: this micro-batch alone is the step
            masks = {**inputs, **masks}
            self._add_mask(masks)
            step_items = self._count_items([masks], None)
        mask = masks.get(self.masking.key) if self.masking.key else None
        items, trainer_share = step_items
        labels = inputs.get("labels")
        local_items = self.masksub_objective.main_items(inputs, labels)

        def main_branch(model, main_inputs):  # Trainer's loss, as a sum over this micro-batch's items
            loss, outputs = self.compute_loss(model, main_inputs, return_outputs=True,
                                              num_items_in_batch=num_items_in_batch)
            loss = loss.mean() if self.args.n_gpu > 1 else loss  # DataParallel returns one loss per device
            return self.main_loss.as_sum(loss, outputs, labels, self.masksub_objective, local_items, num_items_in_batch,
                                         items.main, trainer_share), outputs

        self._gradient_marks = [self._flat_gradients(model)] if self.args.masksub_log_grad_norm else None
        main_loss, sub_loss = masksub_step(
            model, inputs, self.masking, self.masksub_objective, mask, items=items, main_branch=main_branch,
            main_weight=self.args.masksub_main_weight, sub_weight=self.args.masksub_sub_weight,
            backward=self._backward, main_no_sync=lambda: self._main_branch_without_sync(model),
            forward_context=self._forward_context)
        # What DDP did not average: the whole model when the sub forward bypassed it, else owned parameters.
        bypassed = [*model.parameters()] if self.masksub_objective.sub_bypasses_wrapper else []
        average_gradients_by_hand(self.accelerator, [*bypassed, *self._owned_parameters()])

        branch_values = {"main_loss": main_loss, "sub_loss": sub_loss}
        if self._gradient_marks is not None:  # each branch's (weighted) gradient, summed over micro-batches
            before, after_main, after_sub = self._gradient_marks
            branch_values.update(main_grad_norm=(after_main - before).norm(), sub_grad_norm=(after_sub - after_main).norm())
        self.branch_logs.add(self.current_gradient_accumulation_steps, **branch_values)
        return self.args.masksub_main_weight * main_loss + self.args.masksub_sub_weight * sub_loss

    @contextlib.contextmanager
    def _forward_context(self):
        """Each branch's forward under Trainer's loss context and Accelerate's autocast: Accelerate puts autocast
        on the prepared model's forward, which a dual encoder's sub branch (the bare image tower) bypasses."""
        with self.compute_loss_context_manager(), self.accelerator.autocast():
            yield

    @contextlib.contextmanager
    def _main_branch_without_sync(self, model):
        """Hold back gradient sync (DDP/FSDP all-reduce, DeepSpeed's step) for the main branch.

        The sub branch's backward then syncs the sum of both branches' gradients: one all-reduce per
        optimizer step (DeepSpeed ZeRO-2/3 still reduce every backward: docs/compatibility.md). On
        micro-batches that do not sync anyway, Trainer's own ``no_sync`` already holds.
        """
        state = self.accelerator.gradient_state
        if not state.sync_gradients:
            yield
            return
        state._set_sync_gradients(False)  # DeepSpeed's backward steps the engine when this is True
        try:
            if self.accelerator.distributed_type == DistributedType.DEEPSPEED:
                yield
            elif (self.is_distributed_loading_by_transformers and is_fsdp_managed_module(self.model)
                  and hasattr(self, "_defer_fsdp_gradient_reduction")):  # transformers >= 5.23, as its own loop
                with self._defer_fsdp_gradient_reduction():
                    yield
            else:
                with self.accelerator.no_sync(model):
                    yield
        finally:
            state._set_sync_gradients(True)

    def _flat_gradients(self, model):
        return flat_gradients([*model.parameters(), *self._owned_parameters()])

    def _backward(self, loss):
        kwargs = {"scale_wrt_gas": False} if self.accelerator.distributed_type == DistributedType.DEEPSPEED else {}
        self.accelerator.backward(loss, **kwargs)
        if self._gradient_marks is not None:
            self._gradient_marks.append(self._flat_gradients(self.model_wrapped))

    def log(self, logs, start_time=None):
        # Training logs carry "loss"; add the branches' values, averaged like it (window, processes).
        if "loss" in logs:
            logs.update(self.branch_logs.pop_means(self.accelerator))
        super().log(logs, start_time)

    def create_model_card(self, language=None, license=None, tags=None, model_name=None, finetuned_from=None,
                          tasks=None, dataset_tags=None, dataset=None, dataset_args=None, local_data=None,
                          config_name=None):
        """Trainer's model card, plus the ``masksub`` tag, the MaskSub settings and the paper (TRL style).

        ``finetuned_from`` may name several bases by role (``{"vision tower": ..., "text tower": ...}``); a local
        folder among them stays out of the card's metadata (the Hub refuses local paths as ``base_model``) and
        the text names it. ``local_data``: the names of local files or folders trained on (no Hub dataset); the card's
        metadata results name them by their loader. ``config_name``: the config a model trained from scratch was
        built from, which the text names with the model's class."""
        bases = dict(finetuned_from) if isinstance(finetuned_from, dict) else \
            ({"": finetuned_from} if finetuned_from else {})
        single = next(iter(bases.values())) if len(bases) == 1 else None
        hub_base = single if single and not os.path.exists(single) else None
        if self.masking is not None:
            tags = with_masksub_tag(tags)
        if local_data:  # nothing for Trainer to infer a Hub dataset from ("imagefolder" is none)
            dataset_tags, dataset, dataset_args = [], [], []
        config = getattr(self.model, "config", None)
        # Trainer names the config's _name_or_path when given no base: an empty one reads "[](https://huggingface.co/)",
        # and bases it is not told about are the text's to name. A folder name reads as "trained from scratch".
        hide_name = config is not None and hub_base is None and (bases or getattr(config, "_name_or_path", None) == "")
        saved_name = getattr(config, "_name_or_path", None)
        if hide_name:
            config._name_or_path = os.curdir
        try:
            super().create_model_card(language=language, license=license, tags=tags, model_name=model_name,
                                      finetuned_from=hub_base, tasks=tasks, dataset_tags=dataset_tags,
                                      dataset=dataset, dataset_args=dataset_args)
        finally:
            if hide_name:
                config._name_or_path = saved_name
        if not self.is_world_process_zero():
            return
        built_as = (type(self.accelerator.unwrap_model(self.model)).__name__, config_name) \
            if config_name and not bases else None
        rewrite_card_text(self.args.output_dir, bases if hub_base is None else None, local_data,
                          self.state.log_history, built_as)
        if local_data:
            add_local_results(self.args.output_dir, tasks if isinstance(tasks, str) else None, local_data,
                              self.state.log_history)
        if self.masking is not None:
            append_masksub_section(self.args.output_dir, card_settings(self.args, self.masking, self.masksub_objective))

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        # Evaluation never runs a sub branch; an eval batch from a MaskSub collator just loses its mask.
        inputs, _ = split_masks(inputs)
        return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)
