"""The Trainer integration: ``MaskSubTrainer`` and ``MaskSubTrainingArguments``, and what they need to behave as
``Trainer`` does for everything MaskSub does not change.

- ``trainer`` / ``arguments``: the two-branch step and its flags.
- ``owned``: parameters MaskSub adds to a model (a mask token), kept in the optimizer and averaged across processes.
- ``checkpoint``: saving and restoring those parameters; a checkpoint is taken only when complete.
- ``branch_logs``: per-branch losses and gradient norms in the logs.
- ``process_group``: ending at exit a process group MaskSub's set-up started (never the user's own).
- ``model_card``: the ``masksub`` tag and the card section that names the method and cites the paper.
"""
