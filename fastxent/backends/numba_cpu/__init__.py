"""Numba CPU backend: ``@njit(parallel=True, nogil=True, cache=True)`` kernels, one loop per row."""

from ._cache import refresh as _refresh

_refresh()      # before any kernel loads from Numba's on-disk cache (see _cache.py)
