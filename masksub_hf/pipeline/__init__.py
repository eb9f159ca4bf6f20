"""The data pipeline: batches that carry what the sub branch needs, drawn so that a run resumes exactly
(from ``masksub_hf.counter_rng``: random numbers that are a pure function of seed and position).

- ``seeding``: one seed a sample, travelling beside the batch; masks and mixing are drawn from it.
- ``collators``: ``MaskSubImageCollator`` / ``MaskSubTextCollator``, the masks drawn in the loader's workers.
- ``samplers``: repeated augmentation (DeiT's ``--repeated_aug``), exact across processes and resumes.
"""
