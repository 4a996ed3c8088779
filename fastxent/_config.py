"""Every tunable of fastxent in one place, with its environment override.

Kernels never read these globals (cached Numba functions freeze globals): the API passes what a
kernel needs as arguments.
"""
import os


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


#: ``FASTXENT_DISABLE_NUMBA=1``: never import numba; ``backend="auto"`` falls back.
DISABLE_NUMBA = _env_flag("FASTXENT_DISABLE_NUMBA")

#: Backends the API knows, in the order ``"auto"`` tries them for host (CPU) arrays.
AUTO_ORDER = ("numba", "numpy")

#: Elements per block of the online row statistics (see backends/numba_cpu/_rows.py, BLOCK).
ROW_BLOCK = 2048

REDUCTIONS = ("none", "sum", "mean", "batchmean")
