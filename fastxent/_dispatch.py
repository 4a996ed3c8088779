"""Backend registry and selection.

Every compiled backend is a module with ``run(job)`` (``job`` is a validated
``fastxent._checks.Canonical``; ``run`` fills ``job.grad`` when it is set and returns the float64
row losses). ``_BACKENDS`` maps a backend name to that module and a description; importing the
module is the availability probe (an ``ImportError`` says what is missing). The NumPy reference is
the backend "numpy" and is always available.

``backend="auto"`` takes the first available backend of ``_config.AUTO_ORDER`` for host arrays:
Numba when numba is importable and ``FASTXENT_DISABLE_NUMBA`` is unset, else the Cython kernels
when they were built, else the NumPy reference (with a warning).
An explicit backend that is not available raises ``RuntimeError`` saying what to install.
"""
from __future__ import annotations

import importlib
import warnings

from . import _config

#: name -> (module with ``run(job)`` or None for the reference, description, how to get it)
_BACKENDS = {
    "numba": ("fastxent.backends.numba_cpu.kernels",
              "Numba CPU kernels (fastxent.backends.numba_cpu)",
              "install numba with `pip install numba`"),
    "cython": ("fastxent.backends.cython.kernels",
               "Cython OpenMP CPU kernels, compiled at install time (fastxent.backends.cython)",
               "reinstall fastxent with a C compiler (`pip install -e .`; Cython >= 3 is a build "
               "requirement)"),
    "cuda": ("fastxent.backends.numba_cuda.kernels",
             "Numba CUDA kernels on an NVIDIA GPU (fastxent.backends.numba_cuda); "
             "chosen by backend='auto' for CUDA device arrays",
             "install numba-cuda with `pip install \"fastxent[cuda]\"`"),
    "numpy": (None, "the float64 NumPy reference (fastxent.reference): exact but slow", ""),
}
_DESCRIPTIONS = {name: entry[1] for name, entry in _BACKENDS.items()}
_status: dict[str, tuple[bool, str]] = {}


def _disabled(name: str) -> str:
    """Why the environment disables ``name`` ("" if it does not)."""
    if name == "numba" and _config.DISABLE_NUMBA:
        return "FASTXENT_DISABLE_NUMBA is set in the environment"
    return ""


def _probe(name: str) -> tuple[bool, str]:
    if name == "numba":
        from . import _threads

        problem = _threads.numba_fork_problem()          # in a forked child: not cached
        if problem:
            return (False, problem)
    if name in _status:
        return _status[name]
    if name not in _BACKENDS:
        result = (False, "unknown backend")
    elif _BACKENDS[name][0] is None:
        result = (True, "")
    elif _disabled(name):
        result = (False, _disabled(name))
    else:
        module, _, fix = _BACKENDS[name]
        try:
            importlib.import_module(module)
            result = (True, "")
        except ImportError as exc:  # depends on the installation
            result = (False, f"{module} could not be imported ({exc}); {fix}")
    _status[name] = result
    return result


def kernels(name: str):
    """The module whose ``run(job)`` computes on backend ``name`` (already selected)."""
    return importlib.import_module(_BACKENDS[name][0])


def run(name: str, job):
    """``kernels(name).run(job)`` on ``fastxent.get_num_threads()`` threads (CPU backends): the
    count goes to the Cython kernels as an argument, and to Numba through
    ``numba.set_num_threads`` in the calling thread only, restored after the kernel."""
    from . import _threads

    n_threads = _threads.get_num_threads()
    job.extra["n_threads"] = n_threads
    module = kernels(name)
    if name == "numba":
        return call_numba(module.run, job)
    if name == "cython" and n_threads > 1:
        _threads.note_pool_started()
    return module.run(job)


def call_numba(function, *args):
    """``function(*args)``, a call of Numba parallel kernels, on ``fastxent.get_num_threads()``
    threads, serialised where Numba's threading layer needs it; records the layer's start (a
    process forked after it cannot run them: ``_threads.numba_fork_problem``)."""
    from . import _threads

    with _threads.numba_layer_guard(), _threads.numba_threads(_threads.get_num_threads()):
        result = function(*args)
    if not _threads._started["numba_omp"]:
        import numba

        _threads.note_pool_started(numba.threading_layer())
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
                    why = "; ".join(f"{other}: {_probe(other)[1]}" for other in _config.AUTO_ORDER
                                    if other != "numpy")
                    warnings.warn("fastxent: no compiled backend is available "
                                  f"({why}); using the slow NumPy reference",
                                  RuntimeWarning, stacklevel=3)
                return name
    ok, why = _probe(backend)
    if not ok:
        raise RuntimeError(f"backend {backend!r} is not available: {why}")
    return backend
