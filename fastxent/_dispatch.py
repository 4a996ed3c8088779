"""Backend registry and selection.

``backend="auto"`` takes the first available backend of ``_config.AUTO_ORDER`` for host arrays.
An explicit backend that is not available raises ``RuntimeError`` saying what to install.
"""
from __future__ import annotations

import importlib
import warnings

from . import _config

_DESCRIPTIONS = {
    "numba": "Numba CPU kernels (fastxent.backends.numba_cpu)",
    "numpy": "the float64 NumPy reference (fastxent.reference): exact but slow",
}
_status: dict[str, tuple[bool, str]] = {}


def _probe(name: str) -> tuple[bool, str]:
    if name in _status:
        return _status[name]
    if name == "numpy":
        result = (True, "")
    elif name == "numba":
        if _config.DISABLE_NUMBA:
            result = (False, "FASTXENT_DISABLE_NUMBA is set in the environment")
        else:
            try:
                importlib.import_module("fastxent.backends.numba_cpu.kernels")
                result = (True, "")
            except ImportError as exc:  # pragma: no cover - depends on the installation
                result = (False, f"numba could not be imported ({exc}); "
                                 f"install it with `pip install numba`")
    else:
        result = (False, "unknown backend")
    _status[name] = result
    return result


def available_backends() -> dict[str, str]:
    """``{name: description}`` of the backends usable in this process."""
    return {name: _DESCRIPTIONS[name] for name in _DESCRIPTIONS if _probe(name)[0]}


def select(backend: str) -> str:
    """Resolve ``backend`` ("auto" or a name) to an available backend name, or raise."""
    if not isinstance(backend, str) or (backend != "auto" and backend not in _DESCRIPTIONS):
        raise ValueError(f"backend must be one of {('auto',) + tuple(_DESCRIPTIONS)}, "
                         f"got {backend!r}")
    if backend == "auto":
        for name in _config.AUTO_ORDER:
            if _probe(name)[0]:
                if name == "numpy":
                    warnings.warn("fastxent: no compiled backend is available "
                                  f"({_probe('numba')[1]}); using the slow NumPy reference",
                                  RuntimeWarning, stacklevel=3)
                return name
    ok, why = _probe(backend)
    if not ok:
        raise RuntimeError(f"backend {backend!r} is not available: {why}")
    return backend
