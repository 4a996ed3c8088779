"""Validation passes over large arrays, in parallel (Numba CPU).

``_checks`` validates dense targets before any kernel runs; NumPy's ``min`` and ``max`` are two
single-threaded passes over an [N, C] array (about as long as a fused loss kernel on it). The
count here is one pass on every thread; ``_checks`` then finds the offending value with NumPy
only when there is one.
"""
import numpy as np
from numba import njit, prange

from ._primitives import wide_vectors


@njit(parallel=True, nogil=True, cache=True, error_model="numpy")
def count_in_unit(arr):
    """How many entries of a C-contiguous [N, C] float array lie in [0, 1] (NaN does not)."""
    wide_vectors()
    zero = arr.dtype.type(0.0)
    one = arr.dtype.type(1.0)
    counts = np.zeros(arr.shape[0], dtype=np.int64)
    for i in prange(arr.shape[0]):
        row = arr[i]
        good = 0
        for j in range(row.size):
            v = row[j]
            good += (v >= zero) & (v <= one)
        counts[i] = good
    return counts.sum()
