"""The run's sub branch: its masking and objective, (re)built for the model and the arguments that train now.

Built at construction (an unsupported model or setting fails there, before any data is loaded) and again at the
start of every training run: ``model_init`` (a trial, a second ``train()``) builds a new model, and a trial or
the user may have changed the MaskSub arguments. Nothing is rebuilt while model and settings stay the same (an
owned mask token keeps training).
"""

import logging

from ..masking import masking_for
from ..objectives import objective_for
from ..recipes.layer_decay import param_groups_layer_decay
from .engine import check_two_pass_features, is_sharded, one_backward
from .model_card import card_settings
from .owned import ClearOwnedGradients

logger = logging.getLogger("masksub_hf")


def tokenizer_of(trainer):
    """The tokenizer where ``Trainer`` finds one to save: ``processing_class``, else the collator's."""
    if trainer.processing_class is not None:
        return trainer.processing_class
    return getattr(trainer.data_collator, "tokenizer", None)


def sub_loss_asked(trainer):
    """``masksub_loss``; under ``auto``, the sub loss a recipe's main loss names (sigmoid under BCE)."""
    if trainer.args.masksub_loss != "auto":
        return trainer.args.masksub_loss
    return getattr(trainer.compute_loss_func, "masksub_sub_loss", "auto")


def configure_sub_branch(trainer):
    """(Re)build ``trainer.masking`` and ``trainer.masksub_objective`` for the model and arguments of now."""
    args = trainer.args
    args.validate_masksub()
    unwrapped = trainer.accelerator.unwrap_model(trainer.model)
    settings = (args.masksub_ratio, args.masksub_mode, args.masksub_block_size, args.masksub_loss,
                id(tokenizer_of(trainer)), id(trainer.compute_loss_func))
    built_for = trainer._masking_built_for
    if built_for is not None and built_for[0] is unwrapped and built_for[1] == settings:
        return
    if trainer.masking is not None:
        trainer.masking.remove_hooks()  # never left on a model that no longer trains
    trainer.masking = trainer.masksub_objective = None
    if trainer._owned_gradient_callback is not None:
        trainer.remove_callback(trainer._owned_gradient_callback)
        trainer._owned_gradient_callback = None
    if args.masksub_ratio > 0:
        check_two_pass_features(args, trainer.accelerator)
        trainer.check_settings()
        # The head's objective first: a head MaskSub has none for fails here, in every masksub_mode.
        objective = objective_for(unwrapped, sub_loss_asked(trainer))
        if objective.sub_bypasses_wrapper and is_sharded(trainer.accelerator) and not one_backward(args, trainer.accelerator):
            raise ValueError(f"MaskSub's sub branch for {type(unwrapped).__name__} runs only the image tower, so a "
                             "sharded engine must reduce both branches' gradients in one backward: use "
                             "--masksub_backward one (what auto picks), not two.")
        trainer.masksub_objective = objective
        trainer.masking = masking_for(unwrapped, args.masksub_mode, args.masksub_ratio, tokenizer_of(trainer),
                                      args.masksub_block_size)
        if hasattr(unwrapped, "add_model_tags"):
            unwrapped.add_model_tags([trainer.method_card.tag])
        if trainer.masking.parameters():
            trainer._owned_gradient_callback = ClearOwnedGradients(trainer.masking.parameters())
            trainer.add_callback(trainer._owned_gradient_callback)
    if args.layer_decay is not None:  # an unsupported model fails here
        param_groups_layer_decay(unwrapped, args.learning_rate, args.weight_decay, args.layer_decay)
    trainer._masking_built_for = (unwrapped, settings)
    log_settings(args, unwrapped, trainer.masking, trainer.masksub_objective)


def log_settings(args, model, masking, objective):
    """Say what trains, ``auto`` resolved: the line a user checks before a long run."""
    if masking is None:
        logger.info(f"MaskSub: ratio {args.masksub_ratio}: off, every step is Trainer.training_step")
        return
    settings = card_settings(args, masking, objective)
    logger.info(f"MaskSub for {type(model).__name__}: "
                + ", ".join(f"{name.removeprefix('masksub_')} {value}" for name, value in settings.items()))


def check_collator_masks(collator, masking):
    """A MaskSub collator draws masks at its own ratio: it must be the one this run trains with."""
    drawn_by = getattr(collator, "masking", None)
    if drawn_by is None or masking is None or drawn_by.key is None or drawn_by.key != masking.key:
        return  # masks under another key are not this run's: the trainer draws its own
    ours, theirs = ((type(m).__name__, getattr(m, "ratio", None), getattr(m, "block_size", None))
                    for m in (masking, drawn_by))
    if ours != theirs:
        raise ValueError(
            f"The data collator draws masks as {theirs[0]} at ratio {theirs[1]} (block size {theirs[2]}), but "
            f"this run trains with {ours[0]} at masksub_ratio {ours[1]} (block size {ours[2]}): build the "
            "collator with the run's values, or pass a collator without masks (e.g. when a hyperparameter "
            "search changes masksub_ratio) and MaskSubTrainer draws them from each sample's seed.")
