"""Accuracy at size: long rows (the kernels' blocked online max/sum over 2**20 classes) and a
batch of more than 2**31 elements (64-bit indexing).

The float64 reference is slow and densifies everything, so it runs on a few selected rows only:
with ``reduction="none"`` row n's loss and gradient depend on row n alone, so the reference on
``logits[rows]`` is exactly the reference of those rows of the full batch.

The compiled backends only: the "numpy" backend *is* the reference (and would need float64
copies of the whole batch).
"""
from __future__ import annotations

import os

import numpy as np
import pytest

import fastxent
from fastxent import MultiLabel
from fastxent import reference as R

from conftest import assert_grad_close, assert_loss_close, compiled_backend_params

FAMILIES = ("softmax_cross_entropy", "softmax_focal_loss", "sigmoid_binary_cross_entropy",
            "sigmoid_focal_loss")
SOFTMAX = FAMILIES[:2]

COMPILED = compiled_backend_params()
if not COMPILED:   # keep a visible skip rather than silently collecting nothing
    COMPILED = [pytest.param("none", marks=pytest.mark.skip(
        reason="no compiled backend is available (fastxent.available_backends())"))]


def sparse_rows(ml: MultiLabel, rows) -> MultiLabel:
    """The selected rows of a MultiLabel, as a new MultiLabel."""
    ip = ml.indptr
    take = [np.arange(ip[r], ip[r + 1]) for r in rows]
    flat = np.concatenate(take + [np.zeros(0, dtype=np.int64)]).astype(np.int64)
    indptr = np.concatenate([[0], np.cumsum([t.size for t in take])]).astype(np.int64)
    return MultiLabel(indptr, ml.indices[flat], ml.n_classes,
                      values=None if ml.values is None else ml.values[flat])


def select_rows(targets, rows):
    if isinstance(targets, MultiLabel):
        return sparse_rows(targets, rows)
    return targets[rows]


def random_multilabel(rng, n, c, per_row, with_values):
    idx = np.empty((n, per_row), dtype=np.int64)
    for i in range(n):
        idx[i] = np.sort(rng.choice(c, size=per_row, replace=False))
    indptr = np.arange(0, n * per_row + 1, per_row, dtype=np.int64)
    values = rng.random(n * per_row) if with_values else None
    return MultiLabel(indptr, idx.ravel(), c, values=values)


def options(family, full, c, rng):
    if not full:
        return {"gamma": 2.0} if "focal" in family else {}
    kw = {"label_smoothing": 0.1, "class_weight": rng.uniform(0.5, 2.0, c).astype(np.float64)}
    if family == "softmax_cross_entropy":
        kw["z_loss"] = 1e-3
    elif family == "softmax_focal_loss":
        kw.update(gamma=1.5, alpha=rng.uniform(0.1, 1.0, c))
    elif family == "sigmoid_binary_cross_entropy":
        kw["pos_weight"] = 3.0
    else:
        kw.update(gamma=2.0, alpha=0.25, gamma_neg=4.0, clip=0.05)
    return kw


@pytest.mark.parametrize("backend", COMPILED)
@pytest.mark.parametrize("full", [False, True], ids=["plain", "options"])
@pytest.mark.parametrize("shape", [(4, 2**20), (64, 32768)], ids=["4x2^20", "64x2^15"])
@pytest.mark.parametrize("family", FAMILIES)
def test_long_rows_match_reference(backend, family, shape, full):
    n, c = shape
    rng = np.random.default_rng([n, c, FAMILIES.index(family), int(full)])
    logits = rng.standard_normal((n, c), dtype=np.float32)
    logits *= 3.0
    logits[0] = np.linspace(-30, 30, c, dtype=np.float32)   # the max moves in every block
    logits[1, c - 1] += 40.0                                 # a spike in the very last block
    if n > 2:
        logits[2, 2048] += 25.0                              # first element of block 2
    if family in SOFTMAX:
        targets = rng.integers(0, c, n)
        targets[1] = c - 1
        if n > 3:
            targets[3] = -100
    else:
        targets = random_multilabel(rng, n, c, per_row=5, with_values=full)
    kwargs = options(family, full, c, rng)
    fn = getattr(fastxent, family)
    loss, grad = fn(logits, targets, **kwargs, reduction="none", return_grad=True,
                    backend=backend)
    assert loss.dtype == np.float32 and loss.shape == (n,)
    assert grad.dtype == np.float32 and grad.shape == (n, c)
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))

    rows = [0, 1, n - 1] if n == 4 else [0, 1, 2, n // 2, n - 1]
    e_loss, e_grad = getattr(R, family)(logits[rows], select_rows(targets, rows), **kwargs,
                                        reduction="none", return_grad=True)
    assert_loss_close(loss[rows], e_loss, np.float32)
    assert_grad_close(grad[rows], e_grad, np.float32)

    # the scalar reductions are the float64 sums of the same rows
    total = fn(logits, targets, **kwargs, reduction="sum", backend=backend)
    assert type(total) is float
    np.testing.assert_allclose(total, np.sum(loss, dtype=np.float64), rtol=1e-5)


# ============================================================================================
# more than 2**31 elements
# ============================================================================================

BIG_N, BIG_C = 2**16 + 1, 2**15          # 2**31 + 2**15 float32 elements = 8.6 GB
MIN_AVAILABLE = 20 * 10**9               # the logits (gradient in place) + headroom for others


def mem_available() -> int:
    """MemAvailable from /proc/meminfo in bytes (sysconf's free pages as a fallback)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


@pytest.mark.slow
@pytest.mark.parametrize("backend", COMPILED)
def test_more_than_2_31_elements(backend):
    n, c = BIG_N, BIG_C
    assert n * c > 2**31
    avail = mem_available()
    if avail < MIN_AVAILABLE:
        pytest.skip(f"needs ~{n * c * 4 / 1e9:.1f} GB of float32 logits (gradient in place) "
                    f"and {MIN_AVAILABLE / 1e9:.0f} GB available; MemAvailable is "
                    f"{avail / 1e9:.1f} GB")
    rng = np.random.default_rng(2**31)
    logits = np.empty((n, c), dtype=np.float32)
    tile = rng.standard_normal((61, c), dtype=np.float32) * 3.0     # 61: not a power of two
    for r0 in range(0, n, tile.shape[0]):
        r1 = min(r0 + tile.shape[0], n)
        logits[r0:r1] = tile[:r1 - r0]
    # the checked rows get their own values: rows whose element offset is above 2**31 - 1
    # (the last row starts exactly at 2**31) and, for comparison, the first rows
    rows = [0, 1, n - 4, n - 3, n - 2, n - 1]
    assert (n - 1) * c == 2**31
    fresh = rng.standard_normal((len(rows), c)).astype(np.float32) * 3.0
    fresh[-1, c - 1] += 30.0                                       # max at the very end
    fresh[-2, 0] += 30.0
    logits[rows] = fresh
    saved = logits[rows].copy()

    t_idx = rng.integers(0, c, n)
    t_idx[n - 1] = 7          # not the spike at c - 1: a row with large gradient entries
    t_ml = random_multilabel(rng, n, c, per_row=3, with_values=False)

    def check(family, targets, kwargs, in_place):
        fn = getattr(fastxent, family)
        if in_place:
            loss, grad = fn(logits, targets, **kwargs, reduction="none", return_grad=True,
                            grad_out=logits, backend=backend)
            assert np.shares_memory(grad, logits)
        else:
            loss = fn(logits, targets, **kwargs, reduction="none", backend=backend)
        assert loss.shape == (n,) and loss.dtype == np.float32
        assert np.all(np.isfinite(loss))
        e_loss, e_grad = getattr(R, family)(saved, select_rows(targets, rows), **kwargs,
                                            reduction="none", return_grad=True)
        assert_loss_close(loss[rows], e_loss, np.float32)
        if in_place:
            assert_grad_close(logits[rows], e_grad, np.float32)
            assert_grad_close(logits[n - 1], e_grad[-1], np.float32)    # the row at 2**31
            logits[rows] = saved          # only the checked rows matter for "none"

    # one pass over the 8.6 GB per kernel (the sigmoid kernel serves BCE and focal alike)
    check("softmax_cross_entropy", t_idx, {"label_smoothing": 0.1}, True)
    check("softmax_focal_loss", t_idx, {"gamma": 2.0}, True)
    check("sigmoid_focal_loss", t_ml, {"gamma": 2.0, "alpha": 0.25}, True)
    check("sigmoid_binary_cross_entropy", t_ml, {}, False)
