"""The Trainer integration: ``MaskSubTrainer`` and ``MaskSubTrainingArguments``, and what they need to behave as
``Trainer`` does for everything MaskSub does not change.

- ``trainer`` / ``arguments``: the Trainer overrides (each a few lines over the modules below) and the flags.
- ``sub_branch``: the masking and objective for the model and arguments that train now, rebuilt when they change.
- ``micro_batches``: each micro-batch's mask and the step's item counts, carried in the batch to the step.
- ``main_loss``: Trainer's main loss as a sum over its items, by the rules of Trainer's contract.
- ``engine``: gradient sync held back for the main branch (DDP, DeepSpeed, FSDP), backward, the engine's log line.
- ``owned``: parameters MaskSub adds to a model (a mask token), kept in the optimizer and averaged across processes.
- ``checkpoint``: saving and restoring those parameters; a checkpoint is taken only when complete.
- ``branch_logs``: per-branch losses and gradient norms in the logs.
- ``process_group``: ending at exit a process group MaskSub's set-up started (never the user's own).
- ``sft``: ``MaskSubSFTTrainer`` / ``MaskSubSFTConfig``, TRL's ``SFTTrainer`` (imported only when asked for: needs trl).
- ``model_card``: the card from ``templates/model_card.md``: Trainer's summary, the ``masksub`` tag, the settings, the
  paper (the trainer's ``method_card``).
"""
