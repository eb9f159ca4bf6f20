"""Paired comparisons: MaskSub minus baseline per seed (same initialisation, data order, augmentations),
summarised by the mean and its 95% t-interval. Pairing removes most of the seed-to-seed variance that two
independent means would carry."""

import numpy as np
from scipy import stats


def paired_summary(gains):
    """Mean paired gain and the half-width of its 95% t-interval (None with one seed)."""
    mean = float(np.mean(gains))
    if len(gains) < 2:
        return mean, None
    return mean, float(stats.t.ppf(0.975, len(gains) - 1) * np.std(gains, ddof=1) / np.sqrt(len(gains)))
