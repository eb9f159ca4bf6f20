"""What only the ``run_*.py`` scripts, the examples and the benchmarks use; the library does not import it.

- ``cli``: argument dataclasses and parsing (recipe files too), one-line user errors (the set-up's log held until
  the trainer is built), the last complete checkpoint, a finished run left alone, the train / evaluate / model card
  tail.
- ``loading``: datasets from files and folders for the scripts.
- ``image_processing``: the image processor a run saves and the evaluation geometry read from it, kept one.
- ``metrics/``: ``evaluate`` modules shipped offline (accuracy, GLUE, seqeval).
- ``demo_data``: the real offline data the demo and the benchmarks train on (MNIST digits, Rotten Tomatoes).
- ``paired``: paired-seed statistics (mean gain, 95% t-interval); ``plot``: training curves of a run.
"""
