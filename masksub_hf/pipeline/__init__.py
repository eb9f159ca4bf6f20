"""The data pipeline: batches that carry what the sub branch needs, drawn so that a run resumes exactly
(from ``masksub_hf.counter_rng``: random numbers that are a pure function of seed and position).

- ``seeding``: one seed a sample, travelling beside the batch; masks and mixing are drawn from it.
- ``collators``: ``MaskSubImageCollator`` / ``MaskSubTextCollator``, the masks drawn in the loader's workers.
- ``loaders``: Trainer's loaders with MaskSub's changes (the seeded training set, the collator passing seeds,
  evaluation never mixed), ``trainer.data_collator`` left the user's object.
- ``samplers``: repeated augmentation (DeiT's ``--repeated_aug``), exact across processes and resumes.
"""
