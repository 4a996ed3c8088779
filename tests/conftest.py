"""Shared fixtures and tolerance helpers of the fastxent test suite.

* ``backend``: every public backend name of ``fastxent.available_backends()`` (today "numba"
  and "numpy"), plus every backend the dispatcher knows but cannot use in this process, which
  shows up as a *skip* carrying the dispatcher's own reason (e.g. ``FASTXENT_DISABLE_NUMBA=1``).
  No backend name is hard-coded here: new backends (Cython, CUDA) join automatically.
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


def _simulated(name: str):
    """The reason to skip ``name`` in the shared suite when it would only run in the CUDA
    simulator (about 2,000 elements per second: far too slow for these shapes)."""
    if name != "cuda":
        return None
    try:
        from numba.core import config
    except ImportError:  # pragma: no cover - numba missing
        return None
    if config.ENABLE_CUDASIM:
        return ("NUMBA_ENABLE_CUDASIM=1: the simulator is too slow for the shared suite; "
                "tests/test_cuda.py covers the CUDA backend on tiny cases")
    return None


def _backend_params():
    params = []
    for name in _known_backend_names():
        why = _unavailable_reason(name) or _simulated(name)
        marks = [pytest.mark.skip(reason=why)] if why else []
        params.append(pytest.param(name, id=name, marks=marks))
    return params


BACKEND_PARAMS = _backend_params()


@pytest.fixture(params=BACKEND_PARAMS)
def backend(request) -> str:
    """A public backend name, to pass as ``backend=`` to the four losses."""
    return request.param


def compiled_backend_params():
    """BACKEND_PARAMS without "numpy" (the float64 reference itself), for size tests."""
    return [p for p in BACKEND_PARAMS if p.values[0] != "numpy"]


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


# ============================================================================================
# markers
# ============================================================================================

def pytest_configure(config):
    registered = " ".join(config.getini("markers"))
    if "slow:" not in registered and "slow " not in registered:
        config.addinivalue_line("markers",
                                "slow: takes more than a few seconds (deselect with -m 'not slow')")
