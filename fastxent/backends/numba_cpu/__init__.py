"""Numba CPU backend: ``@njit(parallel=True, nogil=True, cache=True)`` kernels, one loop per row."""
