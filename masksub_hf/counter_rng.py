"""Counter-based random numbers: values that are a pure function of (seed, position), drawn for a whole
batch in a few array operations, where one ``torch.Generator`` per sample costs microseconds a sample."""

import numpy as np
import torch

_GOLDEN, _M1, _M2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S40 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(40)


def splitmix64(z: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer, element-wise on uint64 arrays (arithmetic wraps modulo 2^64)."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


def hash_seeds(*parts) -> np.ndarray:
    """Chain ``parts`` (non-negative ints or integer arrays, broadcast) through splitmix64: a well-mixed
    uint64 per element."""
    state = np.zeros(1, dtype=np.uint64)  # arrays, not scalars: numpy wraps array arithmetic silently
    for part in parts:
        state = splitmix64((state + _GOLDEN) ^ np.asarray(part, dtype=np.uint64))
    return state


def seeded_uniform(seeds, num: int) -> torch.Tensor:
    """``(len(seeds), num)`` uniform floats in [0, 1) on a 2^-24 grid, row ``i`` a function of ``seeds[i]`` only."""
    bits = hash_seeds(np.asarray(seeds, dtype=np.uint64)[:, None], np.arange(num, dtype=np.uint64))
    return torch.from_numpy((bits >> _S40).astype(np.float32) / np.float32(1 << 24))
