"""What only the ``run_*.py`` scripts, the examples and the benchmarks use; the library does not import it.

- ``arguments``: the argument dataclasses the scripts share, each naming its flags a rerun may change (``RESUMABLE``).
- ``cli``: a script's start (``script_main``: parsing, recipe files, launch check, logging, seed) and finish (train /
  evaluate / model card / push); ``errors``: user errors as one line naming the flag.
- ``resume``: the resume guard: the last complete checkpoint of the same run, another run's refused, a finished run
  left alone.
- ``loading``: datasets from files and folders for the scripts.
- ``image_processing``: the image processor a run saves and the evaluation geometry read from it, kept one.
- ``metrics/``: ``evaluate`` modules shipped offline (accuracy, GLUE, seqeval).
- ``demo_data``: the real offline data the demo and the benchmarks train on (MNIST digits, Rotten Tomatoes).
- ``paired``: paired-seed statistics (mean gain, 95% t-interval); ``plot``: training curves of a run.
"""
