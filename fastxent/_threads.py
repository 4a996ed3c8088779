"""Thread count of the CPU backends: one setting for Numba and Cython.

``set_num_threads(n)`` / ``get_num_threads()``; the default is the number of cores this process
may run on (``os.sched_getaffinity``), or ``FASTXENT_NUM_THREADS`` from the environment.
The count reaches the kernels as an argument: the Cython kernels take it directly (OpenMP
``num_threads``); for Numba, :func:`numba_threads` sets ``numba.set_num_threads`` in the calling
thread only, right before the kernel, and restores the previous value after it. Nothing here
changes Numba's global state, and this module never imports numba by itself.

Forked processes: GNU OpenMP (the runtime of the Cython kernels and of Numba's ``omp`` threading
layer) is not fork-safe. A process forked after an OpenMP thread pool started (a
``multiprocessing`` pool or a PyTorch ``DataLoader`` worker started with "fork" after a call
here) hangs in its next parallel region of more than one thread, and Numba's ``omp`` layer
terminates such a process at its first parallel kernel. So this module records when fastxent
starts a pool, and in a process forked after that (``os.register_at_fork``) the CPU kernels run
on one thread (:func:`forked_after_openmp`) and the Numba backend is unavailable if its ``omp``
layer had started (:func:`numba_fork_problem`): ``backend="auto"`` then takes the Cython
kernels. Processes started with "spawn" or "forkserver" are not affected.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading

_num_threads: int | None = None
_local = threading.local()        # per-thread override set by ``num_threads(n)``

#: OpenMP thread pools this process (or an ancestor it was forked from) started: "openmp" (any
#: pool of more than one thread: Cython's or Numba's ``omp`` layer), "numba_omp" (Numba's).
_started = {"openmp": False, "numba_omp": False}
#: the same, as it stood when this process was forked (all False if it was not forked)
_before_fork = {"openmp": False, "numba_omp": False}


def _after_fork_in_child() -> None:
    _before_fork.update(_started)
    # Numba's omp layer may have been started by anything in the parent (user prange code,
    # another library, numba.get_num_threads()), not only by fastxent's kernels: ask Numba,
    # which reads a flag (it starts nothing)
    numba = sys.modules.get("numba")
    if numba is not None and not _before_fork["numba_omp"]:
        try:
            layer = numba.threading_layer()
        except Exception:                    # ValueError: no layer started yet
            layer = None
        if layer == "omp":
            _before_fork["openmp"] = _before_fork["numba_omp"] = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def note_pool_started(numba_layer: str | None = None) -> None:
    """Record that a kernel ran on an OpenMP pool of more than one thread (Cython), or that a
    Numba parallel kernel ran on the threading layer ``numba_layer``."""
    if numba_layer is None:
        _started["openmp"] = True
    elif numba_layer == "omp":
        _started["openmp"] = _started["numba_omp"] = True


def forked_after_openmp() -> bool:
    """Whether this process was forked from one whose OpenMP pool had started (then the CPU
    kernels run on one thread: more would hang)."""
    return _before_fork["openmp"]


def numba_fork_problem() -> str:
    """Why the Numba backend cannot run in this process ("" if it can)."""
    if not _before_fork["numba_omp"]:
        return ""
    return ("this process was forked from one that had already run Numba's OpenMP threads, and "
            "GNU OpenMP is not fork-safe (Numba would terminate this process); use "
            "backend='auto' or 'cython' here, or start worker processes with the 'spawn' or "
            "'forkserver' method, or set NUMBA_THREADING_LAYER=workqueue (or tbb) before the "
            "first call")


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def _from_env() -> int | None:
    raw = os.environ.get("FASTXENT_NUM_THREADS", "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if value >= 1 else None


def _checked(n_threads) -> int:
    if isinstance(n_threads, bool) or not isinstance(n_threads, int) and not hasattr(
            n_threads, "__index__"):
        raise TypeError(f"n_threads must be a positive int, got {n_threads!r}")
    value = int(n_threads.__index__())
    if value < 1:
        raise ValueError(f"n_threads must be >= 1, got {value}")
    return value


def set_num_threads(n_threads: int) -> None:
    """Use ``n_threads`` threads in the CPU kernels (Numba and Cython) from now on.

    ``None`` restores the default (``FASTXENT_NUM_THREADS``, else the machine's cores)."""
    global _num_threads
    if n_threads is None:
        _num_threads = None
        return
    _num_threads = _checked(n_threads)


def get_num_threads() -> int:
    """The number of threads the CPU kernels use in the calling thread: a ``num_threads(n)``
    block of this thread, else :func:`set_num_threads`, else the default; always 1 in a process
    forked after an OpenMP pool had started (see the module's docstring)."""
    if forked_after_openmp():
        return 1
    local = getattr(_local, "n_threads", None)
    if local is not None:
        return local
    if _num_threads is not None:
        return _num_threads
    return _from_env() or _cores()


@contextlib.contextmanager
def num_threads(n_threads: int):
    """Calls inside this block, in this Python thread only, run on ``n_threads`` threads::

        with fastxent.num_threads(1):        # e.g. one kernel thread per data-loader worker
            loss = fastxent.softmax_cross_entropy(logits, labels)

    Other Python threads keep their own setting; blocks nest."""
    value = _checked(n_threads)
    previous = getattr(_local, "n_threads", None)
    _local.n_threads = value
    try:
        yield
    finally:
        _local.n_threads = previous


@contextlib.contextmanager
def numba_threads(n_threads: int):
    """Run a Numba kernel on ``n_threads`` threads (at most Numba's pool size), in the calling
    thread only; the previous setting of this thread is restored afterwards."""
    import numba

    limit = int(numba.config.NUMBA_NUM_THREADS)
    wanted = max(1, min(int(n_threads), limit))
    previous = numba.get_num_threads()
    if wanted == previous:
        yield
        return
    numba.set_num_threads(wanted)
    try:
        yield
    finally:
        numba.set_num_threads(previous)


_serial_layer_lock = threading.Lock()


def numba_layer_guard():
    """A lock for Numba kernels when Numba's threading layer cannot take concurrent launches
    (``workqueue``: it aborts the process when two Python threads launch parallel kernels at
    once); a no-op context for ``omp`` and ``tbb``. Before the first parallel launch the layer is
    not chosen yet, so that first launch is serialised too."""
    import numba

    try:
        layer = numba.threading_layer()
    except ValueError:                        # no parallel kernel has run yet
        return _serial_layer_lock
    return _serial_layer_lock if layer == "workqueue" else contextlib.nullcontext()
