"""The CUDA backend as the dispatcher sees it: ``run(job)`` and the device helpers of
``launch.py``, importable only where they can run.

Importing this module is the dispatcher's availability probe: it raises ImportError without a
GPU (unless the simulator, ``NUMBA_ENABLE_CUDASIM=1``, is on), so ``backend="cuda"`` says why.
"""
try:
    from numba import cuda

    from ._primitives import SIMULATOR
except ImportError:
    raise
except Exception as exc:  # pragma: no cover - a broken numba-cuda install must not break probes
    raise ImportError(f"numba.cuda failed to import ({type(exc).__name__}: {exc})") from exc


def gpu_missing_reason() -> str:
    """Why the CUDA backend cannot run here ("" if it can)."""
    if SIMULATOR:
        return ""
    try:
        if cuda.is_available():
            return ""
    except Exception as exc:  # pragma: no cover - driver trouble
        return f"no usable CUDA GPU ({type(exc).__name__}: {exc})"
    return ("no CUDA GPU is visible (numba.cuda.is_available() is False); run on a machine "
            "with an NVIDIA GPU and driver, or set NUMBA_ENABLE_CUDASIM=1 for the (slow) "
            "simulator")


_WHY = gpu_missing_reason()
if _WHY:
    raise ImportError(_WHY)

from .launch import device_cast, device_sum, layout, plan, run, signatures  # noqa: E402,F401
