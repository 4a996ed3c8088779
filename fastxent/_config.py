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
AUTO_ORDER = ("numba", "cython", "numpy")

#: Elements per block of the online row statistics (see backends/numba_cpu/_rows.py, BLOCK).
ROW_BLOCK = 2048

REDUCTIONS = ("none", "sum", "mean", "batchmean")

# CUDA backend (fastxent/backends/numba_cuda). Read by the launcher at each call, passed to the
# kernels as launch configuration and arguments (never read inside a kernel).
#: Threads per block; a multiple of 32 (whole warps) on a GPU. 256 keeps 8 blocks resident per
#: SM, so a long row's second read (the gradient pass) still finds it in L2.
CUDA_THREADS_PER_BLOCK = int(os.environ.get("FASTXENT_CUDA_THREADS_PER_BLOCK", "256"))
#: Threads per row = the smallest power of two >= C / this (at most a block): short rows share a
#: block (rows per block = threads per block / threads per row), long rows get a whole block.
CUDA_ELEMENTS_PER_THREAD = int(os.environ.get("FASTXENT_CUDA_ELEMENTS_PER_THREAD", "8"))
#: At most this many blocks per launch; the kernels' grid-stride loops cover the other rows.
CUDA_MAX_BLOCKS = int(os.environ.get("FASTXENT_CUDA_MAX_BLOCKS", "65536"))
#: Threads of the one-block kernel that sums the row losses (fixed order: deterministic).
CUDA_SUM_THREADS = 256
