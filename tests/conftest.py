"""Shared fixtures and tolerance helpers of the fastxent test suite.

* ``backend``: every public backend name of ``fastxent.available_backends()`` (today "numba"
  and "numpy"), plus every backend the dispatcher knows but cannot use in this process, which
  shows up as a *skip* carrying the dispatcher's own reason (e.g. ``FASTXENT_DISABLE_NUMBA=1``).
  No backend name is hard-coded here: new backends (Cython, CUDA) join automatically.
  Under Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``, the CI run of the CUDA backend) the
  fixture yields "cuda" only: the main run already covers the CPU backends, and the simulated
  CUDA backend takes host inputs (copied to the simulated device and back), so the shared tests
  run unchanged on it. ``SIMULATOR`` says whether this is that run; ``sim_shrink`` /
  ``sim_too_large`` let a test use a smaller shape (or skip) there, saying why.
* the simulator run collects only the tests that exercise the CUDA backend (``backend`` =
  "cuda", tests/test_cuda.py): ``NUMBA_ENABLE_CUDASIM=1 pytest tests/`` is the CUDA backend's CI
  run; everything else does not depend on the simulator and runs in the main run.
* ``_small_cuda_launch`` (autouse, simulator only): 8 threads per block, 4 classes per thread,
  at most 4 blocks, so the tests' tiny rows span several threads, several rows share a block,
  and the grid-stride loops take several trips. ``_fast_simulator_barriers``: see there.
* ``assert_loss_close`` / ``assert_grad_close``: the tolerances of the contract (docs/losses.md)
  against the float64 reference ``fastxent.reference``.
* the ``slow`` marker (registered here only if setup.cfg does not already register it).

Import the helpers in a test module with ``from conftest import assert_loss_close``.
"""
from __future__ import annotations

import numpy as np
import pytest

import fastxent


# ============================================================================================
# backends
# ============================================================================================

def _known_backend_names() -> list[str]:
    """Available backends first (in the library's order), then the known-but-unavailable ones.

    "Known" = what the dispatcher can describe or try (its registry and its ``auto`` order);
    read from the library, never hard-coded.
    """
    names = list(fastxent.available_backends())
    try:
        from fastxent import _config, _dispatch
        extra = list(getattr(_dispatch, "_DESCRIPTIONS", {})) + list(
            getattr(_config, "AUTO_ORDER", ()))
    except ImportError:  # pragma: no cover - private modules renamed
        extra = []
    for name in extra:
        if name not in names:
            names.append(name)
    return names


def _unavailable_reason(name: str):
    """None when ``name`` is usable, else the dispatcher's explanation."""
    if name in fastxent.available_backends():
        return None
    try:
        from fastxent import _dispatch
        _dispatch.select(name)
    except (RuntimeError, ValueError) as exc:
        return str(exc)
    return f"backend {name!r} is not listed by fastxent.available_backends()"


def _simulator_on() -> bool:
    """True under ``NUMBA_ENABLE_CUDASIM=1`` (numba reads it once, at import)."""
    try:
        from numba.core import config
    except ImportError:  # pragma: no cover - numba missing
        return False
    return bool(config.ENABLE_CUDASIM)


#: This is the CUDA simulator run: the shared suite runs on the "cuda" backend only.
SIMULATOR = _simulator_on()
#: Elements per second of the CUDA simulator here (/work/shared/reference/measured-here.md).
SIM_RATE = "2,000-3,300 elements/s"


def sim_too_large(elements) -> str:
    """The skip reason of a shape the simulator cannot run within CI's time."""
    return (f"{elements} elements are too large for the CUDA simulator ({SIM_RATE}); "
            f"the CUDA backend runs the shared suite's small shapes and tests/test_cuda.py here, "
            f"and full sizes in the normal run on a machine with a GPU")


def sim_shrink(full, small):
    """``small`` in the CUDA simulator run, ``full`` otherwise (shapes, repeat counts)."""
    return small if SIMULATOR else full


def _backend_params():
    params = []
    names = _known_backend_names()
    if SIMULATOR:
        # the main run covers the CPU backends; this run is the CUDA backend's
        names = [name for name in names if name == "cuda"] or ["cuda"]
    for name in names:
        why = _unavailable_reason(name)
        marks = [pytest.mark.skip(reason=why)] if why else []
        params.append(pytest.param(name, id=name, marks=marks))
    return params


BACKEND_PARAMS = _backend_params()


@pytest.fixture(params=BACKEND_PARAMS)
def backend(request) -> str:
    """A public backend name, to pass as ``backend=`` to the four losses."""
    return request.param


@pytest.fixture(scope="session", autouse=True)
def _fast_simulator_barriers():
    """Simulator run: Python's thread switch interval down from 5 ms to 10 us. The simulator runs
    a block's threads as Python threads and its block manager busy-polls them; at 5 ms a
    ``syncthreads`` costs about 5 ms (the poller holds the GIL for a whole interval), which made
    the kernels' barriers, not their arithmetic, about 15x the run time. Restored at the end."""
    if not SIMULATOR:
        yield
        return
    import sys
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


@pytest.fixture(autouse=True)
def _small_cuda_launch(monkeypatch):
    """Simulator run: launch tunables patched small (8 threads per block, 4 classes per thread,
    at most 4 blocks), so tiny rows span several threads and blocks and the grid-stride loops
    take several trips. tests/test_cuda.py patches its own values over these."""
    if SIMULATOR:
        from fastxent import _config
        monkeypatch.setattr(_config, "CUDA_THREADS_PER_BLOCK", 8)
        monkeypatch.setattr(_config, "CUDA_ELEMENTS_PER_THREAD", 4)
        monkeypatch.setattr(_config, "CUDA_MAX_BLOCKS", 4)


def compiled_backend_params():
    """BACKEND_PARAMS without "numpy" (the float64 reference itself), for size tests.

    In the CUDA simulator run "cuda" is there as a skip: the size tests' millions of elements
    (2**21 to 2**31 + 2**12 per call) would take hours at the simulator's speed."""
    params = [p for p in BACKEND_PARAMS if p.values[0] != "numpy"]
    if SIMULATOR:
        params = [pytest.param(*p.values, id=p.id, marks=[*p.marks, pytest.mark.skip(
            reason=sim_too_large("size tests' millions of"))]) for p in params]
    return params


# ============================================================================================
# tolerances (docs/losses.md: float64 rtol 1e-12; float32 per-row rtol 1e-5, gradient within
# 1e-6 of max |grad|)
# ============================================================================================

_LOSS_TOL = {np.dtype(np.float64): (1e-12, 1e-14), np.dtype(np.float32): (1e-5, 1e-6)}
_GRAD_TOL = {np.dtype(np.float64): (1e-12, 1e-300),
             np.dtype(np.float32): (1e-6, float(np.finfo(np.float32).tiny))}


def _as_f64(value) -> np.ndarray:
    return np.asarray(value, dtype=np.float64)


def _check_nonfinite(a: np.ndarray, e: np.ndarray, what: str) -> np.ndarray:
    """Same shape, NaN exactly where expected, infinities equal; returns the finite mask."""
    assert a.shape == e.shape, f"{what}: shape {a.shape} != expected {e.shape}"
    nan_a, nan_e = np.isnan(a), np.isnan(e)
    assert np.array_equal(nan_a, nan_e), (
        f"{what}: NaN at {np.argwhere(nan_a).tolist()[:10]} but expected at "
        f"{np.argwhere(nan_e).tolist()[:10]}")
    inf_e = np.isinf(e)
    assert np.array_equal(np.isinf(a), inf_e) and np.array_equal(a[inf_e], e[inf_e]), (
        f"{what}: infinities differ")
    return np.isfinite(e)


def _report(a, e, bound, what):
    err = np.abs(a - e)
    bad = ~(err <= bound)
    if bad.any():
        bound = np.broadcast_to(bound, a.shape)
        first = tuple(int(i) for i in np.argwhere(bad)[0]) if a.ndim else ()
        ratio = float(np.max(np.where(bad, err / np.maximum(bound, 1e-300), 0.0)))
        raise AssertionError(
            f"{what}: {int(np.count_nonzero(bad))} of {a.size} entries out of tolerance "
            f"(worst error / bound = {ratio:.3g}); first at {first}: actual {a[first]!r}, "
            f"expected {e[first]!r}, |diff| {err[first]:.3g} > bound {bound[first]:.3g}")


def assert_loss_close(actual, expected, dtype) -> None:
    """Losses (a scalar or per-row [N]) against the float64 reference.

    float64: ``|a - e| <= 1e-12 |e| + 1e-14 max(1, max|e|)``;
    float32: ``|a - e| <= 1e-5 |e| + 1e-6 max(1, max|e|)``.
    NaN must be exactly where the reference has NaN, infinities must match.
    """
    rtol, atol = _LOSS_TOL[np.dtype(dtype)]
    a, e = _as_f64(actual), _as_f64(expected)
    finite = _check_nonfinite(a, e, "loss")
    scale = max(1.0, float(np.max(np.abs(e[finite])))) if finite.any() else 1.0
    bound = rtol * np.abs(e) + atol * scale
    _report(np.where(finite, a, 0.0), np.where(finite, e, 0.0), bound, "loss")


def assert_grad_close(actual, expected, dtype) -> None:
    """Gradients against the float64 reference: every entry within ``tol * max|expected|``
    (+ a tiny absolute floor); tol = 1e-12 for float64, 1e-6 for float32."""
    rtol, tiny = _GRAD_TOL[np.dtype(dtype)]
    a, e = _as_f64(actual), _as_f64(expected)
    finite = _check_nonfinite(a, e, "grad")
    scale = float(np.max(np.abs(e[finite]))) if finite.any() else 0.0
    bound = np.full(e.shape, rtol * scale + tiny)
    _report(np.where(finite, a, 0.0), np.where(finite, e, 0.0), bound, "grad")


#: Shapes for ``check_pipelined_softmax_ce``: rows of one class, rows shorter than a vector,
#: rows of whole vectors and not, rows over several blocks of 256.
PIPELINED_SHAPES = [(1, 7), (4, 1), (5, 3), (3, 16), (4, 17), (5, 48), (9, 1000), (33, 1024),
                    (7, 4096), (6, 2 * 256 + 5)]


def check_pipelined_softmax_ce(backend: str, pipelines, dtype, shape, form: str,
                               weighted: bool = False) -> None:
    """Softmax CE with class indices or CSR targets, out of place, writes row i's gradient
    while it reads row i + 1 (the backend's ``softmax_xent_sparse_pipelined``; ``pipelines``
    is its kernels module's ``_pipelines``); in place it goes row by row. Checks that both give
    the same bits (and the reference's values), at every offset of ``grad_out`` within a cache
    line, with rows that count nothing (ignored, no positives) anywhere, the others counted
    (every row from the second on, in turn), and that nothing outside ``grad_out`` is
    written. ``weighted``: with class and sample weights, z-loss and, for CSR, values."""
    from fastxent.targets import MultiLabel
    n, c = shape
    rng = np.random.default_rng(n * c)
    x = (3 * rng.standard_normal((n, c))).astype(dtype)
    skip = n > 1 and (lambda i: i % 3 == 1)         # rows 1, 4, ... count nothing
    if form == "int":
        targets = rng.integers(0, c, n)
        targets[[i for i in range(n) if skip and skip(i)]] = -100
    else:
        rows = [[] if skip and skip(i) else
                sorted(rng.choice(c, min(c, 3), replace=False).tolist()) for i in range(n)]
        values = ([rng.uniform(0.5, 2.0, len(r)).tolist() for r in rows] if weighted
                  else None)
        targets = MultiLabel.from_lists(rows, c)
        if values is not None:
            targets = MultiLabel(targets.indptr, targets.indices, c,
                                 values=np.concatenate([[]] + values))
    options = dict(class_weight=rng.uniform(0.5, 2.0, c), sample_weight=rng.uniform(0.5, 2.0, n),
                   z_loss=1e-3) if weighted else {}
    xi = x.copy()
    want_loss, want_grad = fastxent.softmax_cross_entropy(
        xi, targets, reduction="none", return_grad=True, grad_out=xi, backend=backend,
        **options)
    ref_loss, ref_grad = fastxent.softmax_cross_entropy(x, targets, reduction="none",
                                                        return_grad=True, backend="numpy",
                                                        **options)
    assert_loss_close(want_loss, ref_loss, dtype)
    assert_grad_close(want_grad, ref_grad, dtype)
    lanes = 64 // x.itemsize
    arena = np.empty(n * c + 3 * lanes, dtype=dtype)
    first = (-arena.ctypes.data % 64) // x.itemsize + lanes
    for offset in range(lanes):
        arena[...] = -7.0
        start = first + offset
        gv = arena[start:start + n * c].reshape(n, c)
        assert pipelines(x, gv)
        loss, grad = fastxent.softmax_cross_entropy(x, targets, reduction="none",
                                                    return_grad=True, grad_out=gv,
                                                    backend=backend, **options)
        assert (arena[:start] == -7.0).all() and (arena[start + n * c:] == -7.0).all()
        np.testing.assert_array_equal(loss, want_loss)
        np.testing.assert_array_equal(grad, want_grad)


# ============================================================================================
# markers
# ============================================================================================

def _runs_cuda(item) -> bool:
    """The item exercises the CUDA backend: a test of tests/test_cuda.py (marked ``cuda``) or a
    test parametrised with ``backend="cuda"`` (the ``backend`` fixture, the size tests)."""
    callspec = getattr(item, "callspec", None)
    return (item.get_closest_marker("cuda") is not None
            or (callspec is not None and callspec.params.get("backend") == "cuda"))


def pytest_collection_modifyitems(config, items):
    """CUDA simulator run: only the tests that exercise the CUDA backend. The others (the CPU
    backends, the reference, the frameworks, packaging, ...) do not depend on the simulator and
    ran in the main run; repeating them here would multiply CI's time for nothing."""
    if not SIMULATOR:
        return
    keep = [item for item in items if _runs_cuda(item)]
    dropped = [item for item in items if not _runs_cuda(item)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def pytest_report_header(config):
    if SIMULATOR:
        return ("NUMBA_ENABLE_CUDASIM=1: the CUDA simulator run; only the tests that exercise "
                "the CUDA backend are selected (backend = 'cuda', tests/test_cuda.py)")
    return None


def pytest_configure(config):
    registered = " ".join(config.getini("markers"))
    if "slow:" not in registered and "slow " not in registered:
        config.addinivalue_line("markers",
                                "slow: takes more than a few seconds (deselect with -m 'not slow')")
