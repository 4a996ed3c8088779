"""Every public backend against the float64 oracle ``fastxent.reference``.

Coverage (docs/losses.md is the contract):

* sampled cases: every family x every target form x both dtypes, 8 seeded cases each; inside a
  group every option value (weights, smoothing, z_loss, pos_weight, gamma, alpha, gamma_neg,
  clip) and every reduction appears at least twice; every case runs with and without
  ``return_grad``; outputs' types, dtypes and shapes are checked and no input is modified;
* ``grad_out`` (written, shared memory), in place (``grad_out=logits``), non-contiguous,
  read-only and memory-mapped inputs;
* edge cases: N = 0, C = 1, every row ignored, logits of +-1e4, NaN / inf confined to a row,
  rows longer than the kernels' 2048-element block, shift invariance, identities between losses;
* Hypothesis properties: finiteness, non-negativity, row-permutation equivariance.

No timing assertions. Shapes are small (N <= 9, C <= 40) except the block tests (C = 2049, 5000).

Under the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``, where ``backend`` is "cuda" only) every test
runs unchanged except the block tests, shrunk to what the simulator runs in CI's time: C = 37
and 70 (see there).
"""
from __future__ import annotations

import copy
import math
import sys
import zlib

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastxent
from fastxent import MultiLabel
from fastxent import reference as R

from conftest import assert_grad_close, assert_loss_close, sim_shrink

FAMILIES = ("softmax_cross_entropy", "softmax_focal_loss", "sigmoid_binary_cross_entropy",
            "sigmoid_focal_loss")
SOFTMAX = FAMILIES[:2]
SIGMOID = FAMILIES[2:]
SOFTMAX_FORMS = ("index", "dense", "multilabel", "csr", "coo")
SIGMOID_FORMS = ("dense", "multilabel", "csr", "coo")
SPARSE_FORMS = ("multilabel", "csr", "coo")
REDUCTIONS = ("none", "sum", "mean", "batchmean")
DTYPES = (np.float32, np.float64)
DTYPE_IDS = {np.float32: "f32", np.float64: "f64"}


def forms_of(family):
    return SOFTMAX_FORMS if family in SOFTMAX else SIGMOID_FORMS


def family_forms():
    return [(f, t) for f in FAMILIES for t in forms_of(f)]


# Option values each family must see (with every target form and dtype). "vec" = a random
# per-class (or per-row) array drawn for the case.
_COMMON = {"class_weight": [None, "vec"], "sample_weight": [None, "vec"],
           "label_smoothing": [0.0, 0.1]}
OPTION_VALUES = {
    "softmax_cross_entropy": dict(_COMMON, z_loss=[0.0, 0.01]),
    "softmax_focal_loss": dict(_COMMON, gamma=[0.0, 1.0, 2.0, 1.5], alpha=[None, 0.25, "vec"]),
    "sigmoid_binary_cross_entropy": dict(_COMMON, pos_weight=[None, 2.5, "vec"]),
    "sigmoid_focal_loss": dict(_COMMON, gamma=[0.0, 1.0, 2.0, 1.5], alpha=[None, 0.25],
                               gamma_neg=[None, 0.0, 1.0, 4.0], clip=[0.0, 0.05]),
}
CASES_PER_GROUP = 8


# --------------------------------------------------------------------------------------------
# Known kernel bugs. Tests that expose them are marked xfail(strict=True) for the backend they
# were found in, so CI stays green until the fix; once fixed, the strict xfail turns into a
# failure (XPASS): then delete the entry. Found against the committed Numba kernels (b027b42).
# --------------------------------------------------------------------------------------------
KNOWN_BUGS: dict = {
    # none open: add "test_name[backend-...]": REASON entries here when a bug is found
}


@pytest.fixture(autouse=True)
def _known_bugs(request):
    reason = KNOWN_BUGS.get(request.node.name)
    if reason:
        request.node.add_marker(pytest.mark.xfail(strict=True, reason=reason))


def seed_of(*parts) -> int:
    return zlib.crc32(repr(parts).encode())


def api(family):
    return getattr(fastxent, family)


def ref(family):
    return getattr(R, family)


# ============================================================================================
# case construction
# ============================================================================================

def make_targets(rng, family, form, n, c, dense_dtype=np.float64):
    """Targets of ``form`` for n rows x c classes, with the awkward rows every form has:
    ignored rows (class indices), all-zero rows (dense), empty rows and zero values (sparse)."""
    softmax = family in SOFTMAX
    if form == "index":
        t = rng.integers(0, c, size=n)
        t[rng.random(n) < 0.25] = -100
        return t.astype(rng.choice([np.int64, np.int32]))
    if form == "dense":
        if softmax:
            y = np.zeros((n, c))
            for i in range(n):
                kind = rng.integers(0, 3)
                if kind == 0:
                    y[i] = rng.dirichlet(np.ones(c))
                elif kind == 1:                       # need not sum to 1 (PyTorch semantics)
                    y[i] = rng.random(c) * (rng.random(c) < 0.5)
                # kind 2: an all-zero row (still counted for dense targets)
        else:
            y = rng.random((n, c))
            y[rng.random((n, c)) < 0.3] = 0.0
            y[rng.random((n, c)) < 0.2] = 1.0
            if n:
                y[rng.integers(0, n)] = 0.0           # one all-zero row
        return y.astype(dense_dtype)
    # sparse: lists of positives per row, some rows empty, optional values
    rows = []
    for i in range(n):
        k = int(rng.integers(0, min(c, 4) + 1)) if rng.random() > 0.2 else 0
        rows.append(np.sort(rng.choice(c, size=k, replace=False)))
    with_values = bool(rng.random() < 0.6)
    indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
    indices = np.concatenate(rows + [np.zeros(0, dtype=np.int64)]).astype(np.int64)
    values = None
    if with_values:
        values = rng.random(indices.size) * (2.0 if softmax else 1.0)
        values[rng.random(indices.size) < 0.15] = 0.0     # explicit zero values
        if softmax and n >= 2 and len(rows[1]):           # a row whose values sum to 0
            values[indptr[1]:indptr[2]] = 0.0
    if form == "multilabel":
        return MultiLabel(indptr, indices, c, values=values)
    data = np.ones(indices.size) if values is None else values
    if form == "csr":
        m = sp.csr_matrix((data, indices, indptr), shape=(n, c))
        return m if rng.random() < 0.5 else sp.csr_array(m)
    if form == "coo":
        r = np.repeat(np.arange(n), np.diff(indptr))
        cc = indices.copy()
        if indices.size:                       # a duplicate entry: split one value in two parts
            j = int(rng.integers(0, indices.size))
            half = data[j] / 2.0
            data = np.concatenate([data, [half]])
            data[j] = half
            r = np.concatenate([r, [r[j]]])
            cc = np.concatenate([cc, [cc[j]]])
        return sp.coo_matrix((data, (r, cc)), shape=(n, c))
    raise AssertionError(form)


def materialise(rng, name, value, n, c):
    if value != "vec":
        return value
    if name == "sample_weight":
        w = rng.uniform(0.0, 2.0, n)
        if n > 2:
            w[1] = 0.0
        return w
    if name == "class_weight":
        return rng.uniform(0.2, 2.0, c)
    if name == "alpha":
        return rng.uniform(0.0, 1.0, c)
    if name == "pos_weight":
        return rng.uniform(0.5, 3.0, c)
    raise AssertionError(name)


def build_case(family, form, dtype, index, n=None, c=None, scale=3.0):
    """The ``index``-th case of the (family, form, dtype) group: options cycle through their
    values (shuffled per group) so every value appears in every group."""
    grp = np.random.default_rng(seed_of(family, form, DTYPE_IDS[dtype]))
    rng = np.random.default_rng(seed_of(family, form, DTYPE_IDS[dtype], index))
    n = int(rng.integers(1, 10)) if n is None else n
    c = int(rng.integers(2, 41)) if c is None else c
    kwargs = {}
    for name, vals in OPTION_VALUES[family].items():
        order = grp.permutation(np.resize(np.arange(len(vals)), CASES_PER_GROUP))
        kwargs[name] = materialise(rng, name, vals[order[index % CASES_PER_GROUP]], n, c)
    red_order = grp.permutation(np.resize(np.arange(4), CASES_PER_GROUP))
    reduction = REDUCTIONS[red_order[index % CASES_PER_GROUP]]
    if form == "index" and rng.random() < 0.5:
        kwargs["ignore_index"] = -1
    targets = make_targets(rng, family, form, n, c, dense_dtype=dtype)
    if "ignore_index" in kwargs:
        targets = np.where(targets == -100, -1, targets).astype(targets.dtype)
    logits = (rng.standard_normal((n, c)) * scale).astype(dtype)
    return logits, targets, kwargs, reduction


def snapshot(obj):
    """A deep copy of an input, for the 'never modified' checks."""
    if sp.issparse(obj):
        return obj.copy()
    if isinstance(obj, MultiLabel):
        return (obj.indptr.copy(), obj.indices.copy(),
                None if obj.values is None else obj.values.copy())
    if isinstance(obj, np.ndarray):
        return obj.copy()
    return copy.deepcopy(obj)


def assert_unchanged(before, after, what):
    if sp.issparse(after):
        assert before.format == after.format, what
        assert (before != after).nnz == 0, f"{what} was modified"
        for attr in ("data", "indices", "indptr", "row", "col"):
            if hasattr(after, attr):
                assert np.array_equal(getattr(before, attr), getattr(after, attr)), \
                    f"{what}.{attr} was modified"
    elif isinstance(after, MultiLabel):
        assert np.array_equal(before[0], after.indptr) and np.array_equal(before[1],
                                                                          after.indices)
        assert (before[2] is None) == (after.values is None)
        if before[2] is not None:
            assert np.array_equal(before[2], after.values), f"{what} values were modified"
    elif isinstance(after, np.ndarray):
        assert before.dtype == after.dtype and before.shape == after.shape
        assert np.array_equal(before, after, equal_nan=True), f"{what} was modified"
    else:
        assert before == after or (before is None and after is None), what


def expected(family, logits, targets, kwargs, reduction):
    return ref(family)(logits, targets, **kwargs, reduction=reduction, return_grad=True)


def check_types(loss, grad, logits, reduction):
    n, c = logits.shape
    if reduction == "none":
        assert isinstance(loss, np.ndarray), type(loss)
        assert loss.dtype == logits.dtype, (loss.dtype, logits.dtype)
        assert loss.shape == (n,), loss.shape
    else:
        assert type(loss) is float, type(loss)
    if grad is not None:
        assert isinstance(grad, np.ndarray)
        assert grad.dtype == logits.dtype and grad.shape == (n, c), (grad.dtype, grad.shape)


def run_and_check(family, backend, logits, targets, kwargs, reduction, grad_kw=None):
    """Call the API with and without return_grad; check types and values against the
    reference; return (loss, grad)."""
    dtype = logits.dtype
    fn = api(family)
    e_loss, e_grad = expected(family, logits, targets, kwargs, reduction)
    loss = fn(logits, targets, **kwargs, reduction=reduction, backend=backend)
    check_types(loss, None, logits, reduction)
    assert_loss_close(loss, e_loss, dtype)
    loss2, grad = fn(logits, targets, **kwargs, reduction=reduction, return_grad=True,
                     backend=backend, **(grad_kw or {}))
    check_types(loss2, grad, logits, reduction)
    assert_loss_close(loss2, e_loss, dtype)
    assert_grad_close(grad, e_grad, dtype)
    return loss2, grad


# ============================================================================================
# 1. sampled cases: every family x form x dtype, every option value, every reduction
# ============================================================================================

SAMPLED = [pytest.param(f, t, d, i, id=f"{f}-{t}-{DTYPE_IDS[d]}-{i}")
           for f, t in family_forms() for d in DTYPES for i in range(CASES_PER_GROUP)]


@pytest.mark.parametrize("family,form,dtype,index", SAMPLED)
def test_matches_reference(backend, family, form, dtype, index):
    logits, targets, kwargs, reduction = build_case(family, form, dtype, index)
    before = {"logits": logits.copy(), "targets": snapshot(targets),
              **{k: snapshot(v) for k, v in kwargs.items()}}
    run_and_check(family, backend, logits, targets, kwargs, reduction)
    assert_unchanged(before["logits"], logits, "logits")
    assert_unchanged(before["targets"], targets, "targets")
    for k, v in kwargs.items():
        assert_unchanged(before[k], v, k)


def test_sampled_cases_cover_every_option_value():
    """The sampler itself: each option value and reduction appears in every group."""
    for family, form in family_forms():
        for dtype in DTYPES:
            seen = {name: set() for name in OPTION_VALUES[family]}
            reductions = set()
            for i in range(CASES_PER_GROUP):
                _, _, kwargs, red = build_case(family, form, dtype, i)
                reductions.add(red)
                for name in seen:
                    v = kwargs[name]
                    seen[name].add("vec" if isinstance(v, np.ndarray) else v)
            assert reductions == set(REDUCTIONS)
            for name, vals in OPTION_VALUES[family].items():
                assert seen[name] == set(vals), (family, form, dtype, name, seen[name])


@pytest.mark.parametrize("family", FAMILIES)
def test_every_option_on_at_once(backend, family):
    """All options at their non-default values at once; every form and dtype; the reductions
    cycle."""
    k = 0
    for dtype in DTYPES:
        for form in forms_of(family):
            reduction = REDUCTIONS[k % 4]
            k += 1
            rng = np.random.default_rng(seed_of("all-on", family, form, reduction))
            n, c = 7, 13
            kwargs = {"class_weight": rng.uniform(0.2, 2, c), "sample_weight": rng.uniform(0, 2, n),
                      "label_smoothing": 0.15}
            if family == "softmax_cross_entropy":
                kwargs["z_loss"] = 0.02
            elif family == "softmax_focal_loss":
                kwargs.update(gamma=1.5, alpha=rng.uniform(0, 1, c))
            elif family == "sigmoid_binary_cross_entropy":
                kwargs["pos_weight"] = rng.uniform(0.5, 3, c)
            else:
                kwargs.update(gamma=1.5, alpha=0.3, gamma_neg=3.0, clip=0.05)
            targets = make_targets(rng, family, form, n, c, dense_dtype=dtype)
            logits = (rng.standard_normal((n, c)) * 3).astype(dtype)
            run_and_check(family, backend, logits, targets, kwargs, reduction)


# ============================================================================================
# 2. grad_out, in place, memory layouts, read-only and memory-mapped inputs
# ============================================================================================

LAYOUT_CASES = [pytest.param(f, t, d, id=f"{f}-{t}-{DTYPE_IDS[d]}")
                for f in FAMILIES for t in (("index", "multilabel", "dense") if f in SOFTMAX
                                            else ("csr", "dense"))
                for d in DTYPES]


@pytest.mark.parametrize("family,form,dtype", LAYOUT_CASES)
def test_grad_out_is_written(backend, family, form, dtype):
    for i in range(2):
        logits, targets, kwargs, _ = build_case(family, form, dtype, i)
        reduction = REDUCTIONS[i + 2 * (dtype == np.float64)]
        e_loss, e_grad = expected(family, logits, targets, kwargs, reduction)
        buf = np.full_like(logits, np.nan)
        loss, grad = api(family)(logits, targets, **kwargs, reduction=reduction,
                                 return_grad=True, grad_out=buf, backend=backend)
        assert np.shares_memory(grad, buf)
        assert grad.shape == buf.shape and grad.dtype == buf.dtype
        assert_loss_close(loss, e_loss, dtype)
        assert_grad_close(buf, e_grad, dtype)


@pytest.mark.parametrize("family,form,dtype", LAYOUT_CASES)
def test_in_place_gradient(backend, family, form, dtype):
    """grad_out=logits: the gradient overwrites the logits and equals the out-of-place one."""
    for i in range(2):
        logits, targets, kwargs, _ = build_case(family, form, dtype, i)
        reduction = REDUCTIONS[i + 2 * (dtype == np.float64)]
        fn = api(family)
        loss_oop, grad_oop = fn(logits, targets, **kwargs, reduction=reduction,
                                return_grad=True, backend=backend)
        x = logits.copy()
        loss, grad = fn(x, targets, **kwargs, reduction=reduction, return_grad=True,
                        grad_out=x, backend=backend)
        assert np.shares_memory(grad, x)
        e_loss, e_grad = expected(family, logits, targets, kwargs, reduction)
        assert_loss_close(loss, e_loss, dtype)
        assert_grad_close(x, e_grad, dtype)
        # equal to the out-of-place results (to rounding: aliasing may change the generated
        # code, e.g. vectorised vs scalar loops, by an ulp)
        assert_loss_close(loss, loss_oop, dtype)
        assert_grad_close(x, grad_oop, dtype)


def _strided_views(logits):
    n, c = logits.shape
    transposed = np.ascontiguousarray(logits.T).T            # F-ordered
    wide = np.zeros((n, 2 * c), dtype=logits.dtype)
    wide[:, ::2] = logits
    strided = wide[:, ::2]                                   # column stride 2
    tall = np.zeros((2 * n, c), dtype=logits.dtype)
    tall[::2] = logits
    rows = tall[::2]                                         # row stride 2
    rev = np.ascontiguousarray(logits[::-1, ::-1])[::-1, ::-1]   # negative strides
    return {"transposed": transposed, "col_stride": strided, "row_stride": rows,
            "reversed": rev}


@pytest.mark.parametrize("family,form,dtype", LAYOUT_CASES)
def test_non_contiguous_logits(backend, family, form, dtype):
    logits, targets, kwargs, reduction = build_case(family, form, dtype, 0, n=5, c=9)
    fn = api(family)
    base = fn(logits, targets, **kwargs, reduction="none", return_grad=True, backend=backend)
    e_loss, e_grad = expected(family, logits, targets, kwargs, "none")
    for name, view in _strided_views(logits).items():
        assert np.array_equal(view, logits)
        if name != "row_stride":
            assert not view.flags.c_contiguous, name
        keep = view.copy()
        loss, grad = fn(view, targets, **kwargs, reduction="none", return_grad=True,
                        backend=backend)
        check_types(loss, grad, logits, "none")
        assert_loss_close(loss, e_loss, dtype)
        assert_grad_close(grad, e_grad, dtype)
        assert_loss_close(loss, base[0], dtype)
        assert_grad_close(grad, base[1], dtype)
        assert np.array_equal(view, keep), f"{name} view modified"
        if name != "transposed":
            continue
        # a separate grad_out with non-contiguous logits
        out = np.empty_like(logits)
        loss, grad = fn(view, targets, **kwargs, reduction="sum", return_grad=True,
                        grad_out=out, backend=backend)
        assert np.shares_memory(grad, out)
        e_sum, e_gsum = expected(family, logits, targets, kwargs, "sum")
        assert_loss_close(loss, e_sum, dtype)
        assert_grad_close(out, e_gsum, dtype)


def _read_only(obj):
    if isinstance(obj, np.ndarray):
        obj = obj.copy()
        obj.setflags(write=False)
    elif sp.issparse(obj):
        obj = obj.copy()
        for attr in ("data", "indices", "indptr", "row", "col", "coords"):
            a = getattr(obj, attr, None)
            if isinstance(a, np.ndarray):
                a.setflags(write=False)
    return obj


@pytest.mark.parametrize("family,form,dtype", LAYOUT_CASES)
def test_read_only_inputs(backend, family, form, dtype):
    logits, targets, kwargs, reduction = build_case(family, form, dtype, 1, n=6, c=11)
    e_loss, e_grad = expected(family, logits, targets, kwargs, reduction)
    ro_logits = _read_only(logits)
    ro_targets = _read_only(targets)
    ro_kwargs = {k: _read_only(v) for k, v in kwargs.items()}
    assert not ro_logits.flags.writeable
    loss, grad = api(family)(ro_logits, ro_targets, **ro_kwargs, reduction=reduction,
                             return_grad=True, backend=backend)
    check_types(loss, grad, logits, reduction)
    assert_loss_close(loss, e_loss, dtype)
    assert_grad_close(grad, e_grad, dtype)
    loss = api(family)(ro_logits, ro_targets, **ro_kwargs, reduction=reduction, backend=backend)
    assert_loss_close(loss, e_loss, dtype)


@pytest.mark.parametrize("family,form,dtype", LAYOUT_CASES)
def test_memmapped_read_only_inputs(backend, family, form, dtype, tmp_path):
    logits, targets, kwargs, reduction = build_case(family, form, dtype, 2, n=6, c=11)
    e_loss, e_grad = expected(family, logits, targets, kwargs, reduction)
    np.save(tmp_path / "logits.npy", logits)
    mm = np.load(tmp_path / "logits.npy", mmap_mode="r")
    assert isinstance(mm, np.memmap) and not mm.flags.writeable
    if isinstance(targets, np.ndarray):
        np.save(tmp_path / "targets.npy", targets)
        targets = np.load(tmp_path / "targets.npy", mmap_mode="r")
    loss, grad = api(family)(mm, targets, **kwargs, reduction=reduction, return_grad=True,
                             backend=backend)
    check_types(loss, grad, logits, reduction)
    assert not isinstance(grad, np.memmap) or not np.shares_memory(grad, mm)
    assert_loss_close(loss, e_loss, dtype)
    assert_grad_close(grad, e_grad, dtype)
    assert np.array_equal(np.asarray(mm), logits)


# ============================================================================================
# 3. edge cases
# ============================================================================================

def _empty_targets(family, form, c):
    rng = np.random.default_rng(0)
    return make_targets(rng, family, form, 0, c)


@pytest.mark.parametrize("family,form", [pytest.param(f, t, id=f"{f}-{t}")
                                         for f, t in family_forms()])
def test_zero_rows(backend, family, form):
    c = 5
    for dtype in DTYPES:
        logits = np.zeros((0, c), dtype=dtype)
        targets = _empty_targets(family, form, c)
        for reduction in REDUCTIONS:
            for kw in ({}, {"sample_weight": np.zeros(0), "class_weight": np.ones(c)}):
                loss = api(family)(logits, targets, **kw, reduction=reduction, backend=backend)
                loss2, grad = api(family)(logits, targets, **kw, reduction=reduction,
                                          return_grad=True, backend=backend)
                check_types(loss, grad, logits, reduction)
                check_types(loss2, grad, logits, reduction)
                if reduction == "none":
                    assert loss.shape == (0,) and loss2.shape == (0,)
                else:
                    assert loss == 0.0 and loss2 == 0.0
                assert grad.shape == (0, c)


@pytest.mark.parametrize("family,form", [pytest.param(f, t, id=f"{f}-{t}")
                                         for f, t in family_forms()])
def test_one_class(backend, family, form):
    for dtype in DTYPES:
        for i in range(2):
            logits, targets, kwargs, _ = build_case(family, form, dtype, i, n=5, c=1)
            reduction = REDUCTIONS[i + 2 * (dtype == np.float64)]
            run_and_check(family, backend, logits, targets, kwargs, reduction)


def _all_skipped_cases(family, n, c):
    """Softmax targets whose every row is skipped (mean denominator D = 0)."""
    ml_empty = MultiLabel(np.zeros(n + 1, dtype=np.int64), np.zeros(0, dtype=np.int64), c)
    zero_vals = MultiLabel(np.arange(n + 1), np.zeros(n, dtype=np.int64), c, values=np.zeros(n))
    return {
        "ignored": (np.full(n, -100), {}),
        "ignored_custom": (np.full(n, 3), {"ignore_index": 3}),
        "empty_rows": (ml_empty, {}),
        "zero_values": (zero_vals, {}),
        "csr_empty": (sp.csr_matrix((n, c)), {}),
        "zero_sample_weight": (np.arange(n) % c, {"sample_weight": np.zeros(n)}),
        "zero_class_weight": (np.zeros(n, dtype=np.int64),
                              {"class_weight": np.r_[0.0, np.ones(c - 1)]}),
    }


@pytest.mark.parametrize("family", SOFTMAX)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS.get)
def test_every_row_ignored(backend, family, dtype):
    n, c = 4, 6
    logits = np.random.default_rng(1).standard_normal((n, c)).astype(dtype)
    for name, (targets, kw) in _all_skipped_cases(family, n, c).items():
        for smoothing, reduction in ((0.0, "none"), (0.2, "sum"), (0.0, "mean"), (0.2, "mean"),
                                     (0.2, "batchmean")):
            if True:
                loss, grad = api(family)(logits, targets, **kw, label_smoothing=smoothing,
                                         reduction=reduction, return_grad=True,
                                         backend=backend)
                check_types(loss, grad, logits, reduction)
                if reduction == "mean" or name not in ("zero_sample_weight",
                                                       "zero_class_weight"):
                    assert np.all(np.asarray(loss) == 0.0), (name, reduction, loss)
                    assert np.all(grad == 0.0), (name, reduction)
                e_loss, e_grad = expected(family, logits, targets,
                                          dict(kw, label_smoothing=smoothing), reduction)
                assert_loss_close(loss, e_loss, dtype)
                assert_grad_close(grad, e_grad, dtype)


def _extreme_logits(rng, n, c, dtype, mixed):
    x = rng.choice([-1e4, 1e4], size=(n, c))
    if mixed:
        ordinary = rng.standard_normal((n, c)) * 3
        x = np.where(rng.random((n, c)) < 0.5, x, ordinary)
    x[0, :] = 1e4                       # a row of ties at +1e4
    if n > 1:
        x[1, :] = -1e4                  # a row of ties at -1e4
    return x.astype(dtype)


@pytest.mark.parametrize("family,form", [pytest.param(f, t, id=f"{f}-{t}")
                                         for f, t in family_forms()])
@pytest.mark.parametrize("mixed", [False, True], ids=["pm1e4", "mixed"])
def test_extreme_logits(backend, family, form, mixed):
    for dtype in DTYPES:
        for i in range(2):
            logits, targets, kwargs, _ = build_case(family, form, dtype, i, n=6, c=9)
            rng = np.random.default_rng(seed_of("extreme", family, form, mixed, i))
            logits = _extreme_logits(rng, 6, 9, dtype, mixed)
            reduction = REDUCTIONS[i + 2 * (dtype == np.float64)]
            loss, grad = run_and_check(family, backend, logits, targets, kwargs, reduction)
            assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))


@pytest.mark.parametrize("family,form", [pytest.param(f, t, id=f"{f}-{t}")
                                         for f, t in family_forms()])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_non_finite_logits_confined_to_their_row(backend, family, form, bad):
    for dtype in DTYPES:
        logits, targets, kwargs, _ = build_case(family, form, dtype, 3, n=6, c=7)
        e_loss, e_grad = expected(family, logits, targets, kwargs, "none")
        x = logits.copy()
        x[2, 4] = bad
        if np.isnan(bad):
            x[4, :] = np.nan                         # a row of NaN only
        loss, grad = api(family)(x, targets, **kwargs, reduction="none", return_grad=True,
                                 backend=backend)
        check_types(loss, grad, logits, "none")
        good = np.ones(6, dtype=bool)
        good[2] = good[4] = False
        if not np.isnan(bad):
            good[4] = True
        assert np.all(np.isfinite(loss[good])) and np.all(np.isfinite(grad[good]))
        assert_loss_close(loss[good], e_loss[good], dtype)
        assert_grad_close(grad[good], e_grad[good], dtype)
        # a scalar reduction neither crashes nor raises
        out = api(family)(x, targets, **kwargs, reduction="mean", return_grad=True,
                          backend=backend)
        assert type(out[0]) is float and out[1].shape == x.shape


@pytest.mark.parametrize("family", SOFTMAX)
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_softmax_nan_anywhere_in_a_long_row(backend, family):
    """The row max is a vector reduction: a NaN at the start, inside the vector body or in the
    scalar tail of a long row makes that row's loss and gradient NaN (never a finite wrong
    value), and leaves the other rows exact."""
    c = sim_shrink([1001], [37])[0]
    rng = np.random.default_rng(seed_of("nan-long", c))
    for dtype in DTYPES:
        logits = (rng.standard_normal((5, c)) * 3).astype(dtype)
        labels = rng.integers(0, c, 5)
        e_loss, e_grad = expected(family, logits, labels, {}, "none")
        x = logits.copy()
        spots = {1: 0, 2: 37 % c, 3: c - 1}
        for row, col in spots.items():
            x[row, col] = np.nan
        loss, grad = api(family)(x, labels, reduction="none", return_grad=True,
                                 backend=backend)
        for row in spots:
            assert np.isnan(loss[row]) and np.all(np.isnan(grad[row])), (row, loss[row])
        good = [0, 4]
        assert_loss_close(loss[good], e_loss[good], dtype)
        assert_grad_close(grad[good], e_grad[good], dtype)


def _long_rows(rng, c, dtype):
    """Rows whose maximum sits in different blocks (the CPU kernels' blocks are 256 elements,
    512 and 2048 in earlier versions; every one of these boundaries is hit)."""
    n = 6
    x = rng.standard_normal((n, c)) * 2
    x[0] = np.linspace(-20, 20, c)              # increasing: the max moves in every block
    x[1] = np.linspace(20, -20, c)              # decreasing: max in the first block
    x[2, 2048 % c] += 30                        # spike at the first element of block 2
    x[3, c - 1] += 40                           # spike at the very last element
    x[4, 2047 % c] += 25                        # spike at the last element of block 1
    x[5, c - 2] += 100                          # far above the rest, late: the blocks before it
    #                                             are rescaled by exp(-100) (float32: subnormal)
    return x.astype(dtype)


# CUDA simulator run: 37 and 70 classes instead of 2049 and 5000 (5 rows x 5000 x 24 calls is
# about 600,000 elements, minutes at the simulator's 2,000-3,300 elements/s). The 2048-element block is the
# CPU kernels'; the simulated CUDA launch (8 threads per block) strides a 37 / 70-class row in
# 5 / 9 trips per thread, with the maximum moving between trips and threads as in the CPU case.
@pytest.mark.parametrize("c", sim_shrink([2049, 5000], [37, 70]))
@pytest.mark.parametrize("family", FAMILIES)
def test_rows_longer_than_a_block(backend, family, c):
    for dtype in DTYPES:
        for form in (("index", "dense", "multilabel") if family in SOFTMAX
                     else ("dense", "multilabel")):
            rng = np.random.default_rng(seed_of("long", family, c, form))
            logits = _long_rows(rng, c, dtype)
            targets = make_targets(rng, family, form, len(logits), c, dense_dtype=dtype)
            if form == "index":
                targets = np.array([c - 1, 0, 2048 % c, 5, -100, 3])
            for smoothing, reduction in ((0.0, "none"), (0.1, "sum")):
                kwargs = {"label_smoothing": smoothing}
                if family in ("softmax_focal_loss", "sigmoid_focal_loss"):
                    kwargs["gamma"] = 1.5
                run_and_check(family, backend, logits, targets, kwargs, reduction)


@pytest.mark.parametrize("cached_row_bytes", [0, 1 << 40], ids=["online", "cached"])
@pytest.mark.parametrize("family", SOFTMAX)
def test_softmax_masked_classes(backend, family, cached_row_bytes, monkeypatch):
    """Classes masked with -inf logits (a common way to leave classes out) add exp(-inf) = 0:
    finite losses and gradients equal to the reference, wherever the masked run lies. A row
    whose first block (256 logits on the CPU) was all -inf came back NaN: the online max was
    still -inf there and exp(-inf - (-inf)) is NaN. Index and sparse targets (dense targets
    give 0 * inf = NaN on a masked class, as in PyTorch)."""
    from fastxent import _config
    monkeypatch.setattr(_config, "CACHED_ROW_BYTES", cached_row_bytes)
    c = sim_shrink([1200], [40])[0]
    lead = sim_shrink([256, 257, 600], [8, 9, 20])
    for dtype in DTYPES:
        rng = np.random.default_rng(seed_of("masked", family, c, cached_row_bytes))
        x = (rng.standard_normal((6, c)) * 2).astype(dtype)
        x[0, :lead[0]] = -np.inf                 # exactly the first block
        x[1, :lead[1]] = -np.inf                 # one past it
        x[2, :lead[2]] = -np.inf                 # several blocks
        x[3, lead[0]:] = -np.inf                 # masked tail
        x[4, ::3] = -np.inf                      # interleaved
        x[5, :c - 1] = -np.inf                   # one class left
        labels = np.array([c - 1, c - 2, c - 3, 0, 1, c - 1])
        sparse = fastxent.MultiLabel.from_lists(
            [[c - 2, c - 1], [c - 1], [lead[2], c - 3], [0, 5], [1, 2], [c - 1]], c)
        for targets in (labels, sparse):
            for kwargs, reduction in (({}, "none"), ({"class_weight": np.linspace(0.5, 2, c)},
                                                     "sum")):
                if family == "softmax_focal_loss":
                    kwargs = dict(kwargs, gamma=1.5)
                loss, grad = api(family)(x, targets, reduction=reduction, return_grad=True,
                                         backend=backend, **kwargs)
                assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
                assert not grad[np.isneginf(x)].any()
                run_and_check(family, backend, x, targets, kwargs, reduction)


@pytest.mark.parametrize("alpha", [0.25, -1.0, -0.5, 0.0, 0.7, 1.0])
def test_sigmoid_focal_squared_negatives(backend, alpha):
    """gamma_neg = 2 without smoothing or clipping: the background of CSR targets takes
    ``_math.focal_negative_term_sq`` (p * p, no second exp) in the CPU kernels. Rows of odd
    length longer than a block (the Cython loop's two halves and its odd last element), with
    class weights, against the reference; gamma_neg = 2 given explicitly and by default, and
    gamma_neg = 4 (the closed form with its second exp). The kernels apply the negatives'
    weight ``1 - alpha`` once per block: alpha disabled (negative), 0, 1 (weight 0: the
    general element instead) and between."""
    c = sim_shrink([5001], [71])[0]
    for dtype in DTYPES:
        rng = np.random.default_rng(seed_of("focal-sq", c, alpha))
        logits = _long_rows(rng, c, dtype)
        targets = make_targets(rng, "sigmoid_focal_loss", "multilabel", len(logits), c,
                               dense_dtype=dtype)
        weights = rng.uniform(0.2, 2.0, c)
        for extra in ({}, {"gamma_neg": 2.0}, {"gamma_neg": 4.0}):
            run_and_check("sigmoid_focal_loss", backend, logits, targets,
                          {"gamma": 2.0, "alpha": alpha, "class_weight": weights, **extra}, "sum")


def test_sigmoid_focal_alpha_one_with_logits_near_the_maximum(backend):
    """alpha = 1 gives every negative the weight 0: with logits a quarter of the float maximum
    (softplus(x) = x, so a block's sum of negatives overflows) the negatives' loss is 0 and the
    gradient finite, not NaN (the CPU kernels would otherwise multiply that inf sum by the weight),
    against the reference; CSR targets, rows longer than a block."""
    c = sim_shrink([600], [40])[0]
    targets = fastxent.MultiLabel.from_lists([[], [1], [0, c - 1]], c)
    for dtype in DTYPES:
        x = np.full((3, c), np.finfo(dtype).max / 4, dtype)
        x[2, ::2] = -x[2, ::2]
        loss, grad = fastxent.sigmoid_focal_loss(x, targets, alpha=1.0, reduction="none",
                                                 return_grad=True, backend=backend)
        # rows 0 and 1: negatives and a confident positive, 0; row 2's positive at -max / 4
        assert np.all(loss[:2] == 0.0) and np.isfinite(loss[2]), (dtype, loss)
        assert np.all(np.isfinite(grad)), dtype
        run_and_check("sigmoid_focal_loss", backend, x, targets, {"alpha": 1.0}, "none")


@pytest.mark.parametrize("clip", [0.05, 0.3])
def test_sigmoid_focal_logits_just_past_the_clip(backend, clip):
    """Every logit of a row within ``span`` above the clip threshold ``logit(clip)``: the
    shifted probability ``p - clip`` is then a few ulps of p, and computing it as a difference
    gave float32 row losses 2e-3 off (span 1e-4) and gradients 1e-2 of max |grad|. The kernels
    take it from ``x - logit(clip)`` (``_math.focal_term``); rows must meet the contract
    (float32: loss rtol 1e-5, gradient 1e-6 of max |grad|), CSR and dense targets, with and
    without smoothing, gamma_neg 4 (loss ~ p_m**5) and 1."""
    c = sim_shrink([3000], [40])[0]
    t = math.log(clip) - math.log1p(-clip)
    rng = np.random.default_rng(seed_of("clip-edge", c, clip))
    for dtype in DTYPES:
        rows = [t + span * np.sort(rng.random(c)) for span in (1e-4, 1e-3, 1e-2, 1.0)]
        logits = np.array(rows).astype(dtype)
        logits[:, 0] = np.nextafter(dtype(t), dtype(np.inf))      # the first logit past it
        targets = fastxent.MultiLabel.from_lists([[], [3], [], [1, c - 1]], c)
        dense = targets.to_dense().astype(dtype)
        for y, extra in ((targets, {}), (dense, {}), (targets, {"label_smoothing": 0.1})):
            for gamma_neg in (4.0, 1.0):
                run_and_check("sigmoid_focal_loss", backend, logits, y,
                              {"gamma": 2.0, "gamma_neg": gamma_neg, "clip": clip,
                               "alpha": 0.25, **extra}, "none")


@pytest.mark.skipif(not sys.platform.startswith("linux"),
                    reason="the guard page is made with libc's mprotect through ctypes (Linux)")
@pytest.mark.parametrize("dtype", DTYPES, ids=[DTYPE_IDS[d] for d in DTYPES])
def test_logits_ending_at_an_inaccessible_page(backend, dtype):
    """The sigmoid family's background pass prefetches the logits a fixed distance past the
    block it computes (``_rows.PREFETCH_BYTES``), beyond the array on the last row: logits
    whose last element is followed by a page that cannot be read still give the reference's
    loss and gradient (a prefetch never faults; nothing else reads past the end)."""
    import ctypes
    import mmap
    n, c = 3, 1000
    nbytes = n * c * np.dtype(dtype).itemsize
    page = mmap.PAGESIZE
    size = -(-nbytes // page) * page + page
    mem = mmap.mmap(-1, size, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    base = ctypes.addressof(ctypes.c_char.from_buffer(mem))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    assert libc.mprotect(base + size - page, page, 0) == 0, ctypes.get_errno()    # PROT_NONE
    logits = np.frombuffer(mem, dtype=dtype, count=n * c,
                           offset=size - page - nbytes).reshape(n, c)
    rng = np.random.default_rng(seed_of("guard", c))
    logits[...] = rng.standard_normal((n, c)) * 3
    targets = fastxent.MultiLabel.from_lists([[0, c - 1], [5], []], c)
    for family in ("sigmoid_binary_cross_entropy", "sigmoid_focal_loss"):
        run_and_check(family, backend, logits, targets, {}, "sum")


@pytest.mark.parametrize("cached_row_bytes", [0, 1 << 40], ids=["online", "cached"])
def test_softmax_ce_both_gradient_paths(backend, cached_row_bytes, monkeypatch):
    """Softmax CE with a gradient takes the cached form (online statistics with the exp stored
    in a row buffer, gradient streamed from it) for rows of at most ``_config.CACHED_ROW_BYTES`` (half the
    machine's L2; sparse targets without smoothing, dense targets with any options) and the
    online form above: both are checked here whatever the machine (the kernels receive the
    cutoff as an argument)."""
    from fastxent import _config
    monkeypatch.setattr(_config, "CACHED_ROW_BYTES", cached_row_bytes)
    c = sim_shrink([5000], [70])[0]
    for dtype in DTYPES:
        for form in ("index", "multilabel", "dense"):
            rng = np.random.default_rng(seed_of("paths", form, c, cached_row_bytes))
            logits = _long_rows(rng, c, dtype)
            targets = make_targets(rng, "softmax_cross_entropy", form, len(logits), c,
                                   dense_dtype=dtype)
            if form == "index":
                targets = np.array([c - 1, 0, 2048 % c, 5, -100, 3])
            run_and_check("softmax_cross_entropy", backend, logits, targets, {"z_loss": 0.01},
                          "mean")
            if form == "dense":
                run_and_check("softmax_cross_entropy", backend, logits, targets,
                              {"label_smoothing": 0.1, "z_loss": 0.01,
                               "class_weight": rng.uniform(0.2, 2.0, c)}, "sum")


@pytest.mark.parametrize("family", SIGMOID)
@pytest.mark.parametrize("options", [{}, {"label_smoothing": 0.1}, {"gamma_neg": 4.0},
                                     {"clip": 0.05}, {"class_weight": "ramp"}])
def test_sparse_sigmoid_rows_with_confident_positives(backend, family, options):
    """Rows whose positives are predicted confidently (logit +20) and negatives likewise
    (-10): each row's loss is tiny (down to 1e-11 for focal) next to a positive's background
    term (~20). The sparse kernels leave the positives out of the background sums (no
    subtraction that would cancel): every row keeps the contract's *relative* accuracy
    (float64 1e-12, float32 1e-5), positives at block edges, several in one block, in every
    block. Also: an infinite logit at a positive gives an infinite loss, not NaN."""
    kwargs = dict(options)
    if family == "sigmoid_binary_cross_entropy" and set(kwargs) & {"gamma_neg", "clip"}:
        kwargs = {"pos_weight": 3.0}
    for dtype in DTYPES:
        c = sim_shrink(1000, 300)
        rows = [[5], [255, 256], [0, c - 1], list(range(3, c, 97)), [100, 101, 102, 103],
                list(range(0, c, 2))]
        logits = np.full((len(rows), c), -10.0, dtype=dtype)
        for i, r in enumerate(rows):
            logits[i, r] = 20.0
        if "class_weight" in options:
            kwargs["class_weight"] = np.linspace(0.5, 2.0, c)
        targets = MultiLabel.from_lists(rows, c)
        e_loss, e_grad = expected(family, logits, targets, kwargs, "none")
        loss, grad = api(family)(logits, targets, **kwargs, reduction="none", return_grad=True,
                                 backend=backend)
        rtol = 1e-12 if dtype == np.float64 else 1e-5
        assert np.all(e_loss > 0)
        np.testing.assert_allclose(np.asarray(loss, np.float64), e_loss, rtol=rtol, atol=0)
        if dtype == np.float64 or "gamma_neg" not in kwargs:
            # (float32 with gamma_neg = 4: every gradient entry is ~1e-21, p**4 taken as
            # exp(-4 softplus(-x)), whose float32 argument near -40 is rounded to 2e-6)
            assert_grad_close(grad, e_grad, dtype)
        logits[0, 5] = -np.inf                      # the positive at -inf: loss +inf
        logits[1, 255] = np.inf
        loss = api(family)(logits, targets, **kwargs, reduction="none", backend=backend)
        e_loss, _ = expected(family, logits, targets, kwargs, "none")
        assert np.isposinf(e_loss[0]) and np.isposinf(loss[0])
        np.testing.assert_array_equal(np.isposinf(loss), np.isposinf(e_loss))
        np.testing.assert_array_equal(np.isnan(loss), np.isnan(e_loss))


@pytest.mark.parametrize("offset", [0, 1, 5])
def test_softmax_ce_gradient_at_any_alignment(backend, offset):
    """The cached softmax CE gradient goes out in whole cache lines (non-temporal stores on the
    CPU) with plain stores for the partial lines at a row's ends: rows of any length starting
    at any address (a buffer ``offset`` elements past an aligned one), into a caller's buffer
    and in place, give the reference's gradient, and nothing outside the rows is written."""
    for dtype in DTYPES:
        for c in sim_shrink([1, 3, 16, 17, 40, 1001], [1, 3, 17]):
            rng = np.random.default_rng(seed_of("align", c, offset))
            logits = (rng.standard_normal((3, c)) * 3).astype(dtype)
            dense = rng.uniform(0.0, 1.0, size=(3, c)).astype(dtype)
            dense /= dense.sum(axis=1, keepdims=True)
            for targets in (rng.integers(0, c, size=3),
                            fastxent.MultiLabel.from_lists([[0], [c - 1, 0][:c], []], c),
                            np.clip(dense, 0.0, 1.0)):
                e_loss, e_grad = expected("softmax_cross_entropy", logits, targets, {}, "sum")
                store = np.full(logits.size + offset + 1, 7.0, dtype=dtype)
                out = store[offset:offset + logits.size].reshape(logits.shape)
                loss, grad = fastxent.softmax_cross_entropy(
                    logits, targets, reduction="sum", return_grad=True, grad_out=out,
                    backend=backend)
                assert np.shares_memory(grad, out)
                assert_loss_close(loss, e_loss, dtype)
                assert_grad_close(out, e_grad, dtype)
                assert np.all(store[:offset] == 7.0) and store[-1] == 7.0
                store[offset:offset + logits.size] = logits.ravel()
                loss, grad = fastxent.softmax_cross_entropy(
                    out, targets, reduction="sum", return_grad=True, grad_out=out,
                    backend=backend)
                assert_loss_close(loss, e_loss, dtype)
                assert_grad_close(out, e_grad, dtype)
                assert np.all(store[:offset] == 7.0) and store[-1] == 7.0


@pytest.mark.parametrize("family", SOFTMAX)
@pytest.mark.parametrize("form", SOFTMAX_FORMS)
def test_softmax_shift_invariance(backend, family, form):
    dtype = np.float64
    for i in range(2):
        logits, targets, kwargs, _ = build_case(family, form, dtype, i, n=6, c=12)
        kwargs.pop("z_loss", None)            # z_loss * lse**2 is not shift invariant
        shift = np.linspace(1000.0, 1005.0, 6)[:, None]
        shifted = logits + shift
        fn = api(family)
        base_loss, base_grad = fn(logits, targets, **kwargs, reduction="none",
                                  return_grad=True, backend=backend)
        loss, grad = run_and_check(family, backend, shifted, targets, kwargs, "none")
        # shifting by ~1000 rounds the logits by ~1e-13: compare with that slack
        np.testing.assert_allclose(loss, base_loss, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(grad, base_grad, rtol=0, atol=1e-9)


@pytest.mark.parametrize("form", SIGMOID_FORMS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS.get)
def test_sigmoid_focal_gamma0_is_bce(backend, form, dtype):
    for i in range(2):
        logits, targets, kwargs, _ = build_case("sigmoid_binary_cross_entropy", form, dtype, i)
        kwargs.pop("pos_weight")
        reduction = REDUCTIONS[i + 2 * (dtype == np.float64)]
        bce = fastxent.sigmoid_binary_cross_entropy(logits, targets, **kwargs,
                                                    reduction=reduction, return_grad=True,
                                                    backend=backend)
        foc = fastxent.sigmoid_focal_loss(logits, targets, **kwargs, gamma=0.0, alpha=None,
                                          reduction=reduction, return_grad=True,
                                          backend=backend)
        assert_loss_close(foc[0], bce[0], dtype)
        assert_grad_close(foc[1], bce[1], dtype)


@pytest.mark.parametrize("form", SOFTMAX_FORMS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS.get)
def test_softmax_focal_gamma0_is_cross_entropy(backend, form, dtype):
    for i in range(2):
        logits, targets, kwargs, _ = build_case("softmax_cross_entropy", form, dtype, i)
        kwargs.pop("z_loss")
        reduction = REDUCTIONS[i + 2 * (dtype == np.float64)]
        ce = fastxent.softmax_cross_entropy(logits, targets, **kwargs, reduction=reduction,
                                            return_grad=True, backend=backend)
        foc = fastxent.softmax_focal_loss(logits, targets, **kwargs, gamma=0.0, alpha=None,
                                          reduction=reduction, return_grad=True,
                                          backend=backend)
        assert_loss_close(foc[0], ce[0], dtype)
        assert_grad_close(foc[1], ce[1], dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS.get)
@pytest.mark.parametrize("soft", [False, True], ids=["index", "soft"])
def test_two_class_softmax_is_bce_on_the_difference(backend, dtype, soft):
    rng = np.random.default_rng(seed_of("2class", soft))
    n = 9
    x = rng.standard_normal((n, 2)) * 4
    if dtype == np.float32:
        x[:, 0] = 0.0                      # keeps x1 - x0 exact in float32
    x = x.astype(dtype)
    d = (x[:, 1:] - x[:, :1]).astype(dtype)
    if soft:
        p1 = rng.random(n)
        p1[:3] = [0.0, 1.0, 0.5]
        t_soft = np.stack([1 - p1, p1], axis=1).astype(dtype)
        t_bce = p1[:, None].astype(dtype)
        t_ce = t_soft
    else:
        t_ce = rng.integers(0, 2, n)
        t_bce = t_ce[:, None].astype(dtype)
    for smoothing in (0.0, 0.2):
        for reduction in REDUCTIONS:
            ce, gce = fastxent.softmax_cross_entropy(x, t_ce, label_smoothing=smoothing,
                                                     reduction=reduction, return_grad=True,
                                                     backend=backend)
            bce, gb = fastxent.sigmoid_binary_cross_entropy(d, t_bce, label_smoothing=smoothing,
                                                            reduction=reduction,
                                                            return_grad=True, backend=backend)
            assert_loss_close(ce, bce, dtype)
            assert_grad_close(gce[:, 1:], gb, dtype)
            assert_grad_close(gce[:, :1], -gb, dtype)


@pytest.mark.parametrize("family", FAMILIES)
def test_dense_targets_of_another_dtype(backend, family):
    """Dense targets need not have the logits' dtype (float32 <-> float64; 0/1 integers and
    booleans for the sigmoid family)."""
    rng = np.random.default_rng(seed_of("tdtype", family))
    n, c = 6, 10
    for dtype in DTYPES:
        logits = (rng.standard_normal((n, c)) * 3).astype(dtype)
        y = make_targets(rng, family, "dense", n, c)
        other = np.float64 if dtype == np.float32 else np.float32
        variants = [y.astype(other)]
        if family in SIGMOID:
            hard = rng.random((n, c)) < 0.3
            variants += [hard, hard.astype(np.uint8), hard.astype(np.int64)]
        for targets in variants:
            for reduction in ("none", "mean"):
                run_and_check(family, backend, logits, targets, {"label_smoothing": 0.1},
                              reduction)


# ============================================================================================
# minimal reproducers of the known bugs (xfail for the backend they were found in, see
# KNOWN_BUGS; they pass on the reference backend)
# ============================================================================================

@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS.get)
@pytest.mark.parametrize("family", SOFTMAX)
def test_bug_softmax_gradient_near_p1(backend, family, dtype):
    """A confident row: p_0 = 1 - 4e-9 (float64) / 1 - 7e-4 (float32). The gradient
    p - onehot is ~(1 - p_0) everywhere; it must keep full relative accuracy."""
    big = 20.0 if dtype == np.float64 else 8.0
    x = np.array([[big, 0.0, 0.0]], dtype=dtype)
    kw = {"gamma": 0.0} if family == "softmax_focal_loss" else {}
    loss, grad = api(family)(x, np.array([0]), **kw, reduction="sum", return_grad=True,
                             backend=backend)
    e_loss, e_grad = ref(family)(x, np.array([0]), **kw, reduction="sum", return_grad=True)
    assert_loss_close(loss, e_loss, dtype)
    assert_grad_close(grad, e_grad, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS.get)
@pytest.mark.parametrize("family", SOFTMAX)
def test_bug_one_class_softmax_gradient_is_zero(backend, family, dtype):
    """C = 1: p = 1 and y' = 1 on every counted row (whatever the smoothing), so the loss and
    its gradient are exactly 0 (whatever the weights)."""
    x = np.array([[3.0], [-2.0], [0.5], [40.0]], dtype=dtype)
    kw = {"label_smoothing": 0.1, "sample_weight": np.array([0.3, 1.7, 1.0, 0.9]),
          "class_weight": np.array([0.7])}
    if family == "softmax_focal_loss":
        kw["gamma"] = 0.0
    loss, grad = api(family)(x, np.array([0, 0, -100, 0]), **kw, reduction="sum",
                             return_grad=True, backend=backend)
    assert loss == 0.0
    assert np.all(grad == 0.0), grad.ravel()


def test_bug_focal_gap_reassociated(backend):
    """Two tied logits at 1e4 (p = 1/2 each): the loss must not depend on the shift."""
    x = np.array([[1e4, 1e4, -1e4]], dtype=np.float32)
    y = np.array([[0.0, 1.0, 0.0]], dtype=np.float32)
    loss = fastxent.softmax_focal_loss(x, y, gamma=1.0, reduction="sum", backend=backend)
    e_loss = R.softmax_focal_loss(x, y, gamma=1.0, reduction="sum")    # = log(2) / 2
    assert_loss_close(loss, e_loss, np.float32)


def test_bug_float32_focal_confident_row(backend):
    """p_0 = 1 - 9.1e-5: the focal gradient's non-target entries p_j * H depend on
    1 - p_0 and -log p_0 to full relative accuracy."""
    x = np.array([[0.0, -10.0, -10.0]], dtype=np.float32)
    loss, grad = fastxent.softmax_focal_loss(x, np.array([0]), gamma=2.0, reduction="sum",
                                             return_grad=True, backend=backend)
    e_loss, e_grad = R.softmax_focal_loss(x, np.array([0]), gamma=2.0, reduction="sum",
                                          return_grad=True)
    assert_grad_close(grad, e_grad, np.float32)


def test_softmax_ce_sparse_gradient_without_cancellation(backend):
    """Float64, element by element (rtol 1e-12): (a) with smoothing, the row's max class holds
    the target mass without being a positive (class weight 0 on the label): its gradient
    a p - b w cancelled (off by 3.5e-8, or lost entirely: 0 for -1.06e-18); (b) a positive
    holding nearly all of the mass (values 1 and 1e-10): the others' mass as wy_sum - wy
    cancelled (off by 8e-8). Class indices, sparse and dense targets agree with the
    reference. The CUDA kernel keeps the plain forms: the exact ones spilled its registers to
    local memory (tests/test_cuda.py's budget for this main-path kernel), so there the bound
    is the plain forms': 1e-7 relative, or 1e-15 absolute (float64 rounding of the O(1) terms
    that cancel; a documented limitation, docs/losses.md)."""
    x = np.array([[0.0, 20.0], [0.0, 40.0]])
    kw = dict(class_weight=np.array([0.0, 1.0]), label_smoothing=0.5, z_loss=0.0)
    cases = [(x, np.array([0, 0]), kw),
             (x, fastxent.MultiLabel.from_lists([[0], [0]], 2), kw),
             (np.array([[30.0, 0.0, 0.0], [0.0, 25.0, -3.0]]),
              fastxent.MultiLabel([0, 2, 4], [0, 1, 1, 2], 3, values=[1.0, 1e-10, 1.0, 1e-9]),
              {}),
             (np.array([[30.0, 0.0, 0.0]]),
              fastxent.MultiLabel([0, 2], [0, 1], 3, values=[1.0, 1e-10]),
              {"z_loss": 1e-3})]
    for logits, targets, kwargs in cases:
        for reduction in ("sum", "none"):
            _, grad = fastxent.softmax_cross_entropy(logits, targets, reduction=reduction,
                                                     return_grad=True, backend=backend,
                                                     **kwargs)
            _, e_grad = R.softmax_cross_entropy(logits, targets, reduction=reduction,
                                                return_grad=True, **kwargs)
            if backend == "cuda":
                np.testing.assert_allclose(grad, e_grad, rtol=1e-7, atol=1e-15)
            else:
                np.testing.assert_allclose(grad, e_grad, rtol=1e-12, atol=0)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS.get)
def test_softmax_focal_dense_targets_confident_top_class(backend, dtype):
    """Dense targets whose top class is predicted confidently (p up to 1 - 3e-7): the top
    class's gradient (H - U) p - U (1 - p) needs H - U, which cancelled when U held most of H
    and the block sums came from float32 terms (float32 gradient off by up to 60% of max |grad|
    while class indices were exact). Rows per row scaled, every gamma, one-hot and soft targets,
    ties at the max, smoothing and class weights; per-row gradient tolerance."""
    x = np.array([[6.0, 0.0, 0.0], [10.0, 0.0, 0.0], [16.0, 0.0, 0.0], [16.0, 0.0, 0.0],
                  [6.0, 0.0, -1.0], [2.0, 2.0, 0.0]], dtype=dtype)
    y = np.array([[1.0, 0, 0], [1.0, 0, 0], [1.0, 0, 0], [0.999, 0.001, 0],
                  [0.999, 0.001, 0], [0.5, 0.3, 0.2]], dtype=dtype)
    for gamma in (0.5, 2.0):
        for kwargs in ({}, {"label_smoothing": 0.05, "class_weight": [2.0, 0.5, 1.0]}):
            _, grad = fastxent.softmax_focal_loss(x, y, gamma=gamma, reduction="none",
                                                  return_grad=True, backend=backend, **kwargs)
            _, e_grad = R.softmax_focal_loss(x.astype(np.float64), y, gamma=gamma,
                                             reduction="none", return_grad=True, **kwargs)
            for row in range(len(x)):                # each row against its own scale
                assert_grad_close(grad[row:row + 1], e_grad[row:row + 1], dtype)


@pytest.mark.parametrize("family", FAMILIES)
def test_auto_backend_matches_reference(family):
    """backend='auto' (the default) is one of the available backends and agrees with them."""
    logits, targets, kwargs, reduction = build_case(family, "dense", np.float64, 0)
    run_and_check(family, "auto", logits, targets, kwargs, reduction)


# ============================================================================================
# 4. Hypothesis properties
# ============================================================================================

def _family_kwargs(family, draw_opts, c):
    kwargs = {"label_smoothing": draw_opts["eps"]}
    if family == "softmax_cross_entropy":
        kwargs["z_loss"] = draw_opts["z"]
    elif family == "softmax_focal_loss":
        kwargs.update(gamma=draw_opts["gamma"], alpha=draw_opts["alpha"])
    elif family == "sigmoid_binary_cross_entropy":
        kwargs["pos_weight"] = draw_opts["pw"]
    else:
        kwargs.update(gamma=draw_opts["gamma"], alpha=draw_opts["alpha"],
                      gamma_neg=draw_opts["gneg"], clip=draw_opts["clip"])
    return kwargs


@st.composite
def property_cases(draw, family):
    dtype = draw(st.sampled_from(DTYPES))
    n = draw(st.integers(1, 6))
    c = draw(st.integers(1, 10))
    width = 32 if dtype == np.float32 else 64
    element = st.one_of(st.floats(-30, 30, width=width),
                        st.sampled_from([-1e4, 1e4, 0.0, -0.0, 88.0, -88.0, 700.0]))
    flat = draw(st.lists(element, min_size=n * c, max_size=n * c))
    logits = np.array(flat, dtype=dtype).reshape(n, c)
    form = draw(st.sampled_from(forms_of(family)))
    seed = draw(st.integers(0, 2**32 - 1))
    opts = {"eps": draw(st.sampled_from([0.0, 0.1])), "z": draw(st.sampled_from([0.0, 1e-3])),
            "gamma": draw(st.sampled_from([0.0, 1.0, 2.0, 1.5])),
            "alpha": draw(st.sampled_from([None, 0.25])),
            "pw": draw(st.sampled_from([None, 3.0])),
            "gneg": draw(st.sampled_from([None, 0.0, 4.0])),
            "clip": draw(st.sampled_from([0.0, 0.05]))}
    rng = np.random.default_rng(seed)
    targets = make_targets(rng, family, form, n, c, dense_dtype=dtype)
    kwargs = _family_kwargs(family, opts, c)
    if draw(st.booleans()):
        kwargs["sample_weight"] = rng.uniform(0, 2, n)
    if draw(st.booleans()):
        kwargs["class_weight"] = rng.uniform(0.1, 2, c)
    return logits, targets, kwargs, rng.permutation(n)


PROPERTY_SETTINGS = settings(max_examples=50, deadline=None, derandomize=True,
                             suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                    HealthCheck.too_slow])


def _permute_targets(targets, perm):
    if isinstance(targets, MultiLabel):
        ip, ind, val = targets.indptr, targets.indices, targets.values
        rows = [np.arange(ip[i], ip[i + 1]) for i in perm]
        take = np.concatenate(rows + [np.zeros(0, dtype=np.int64)]).astype(np.int64)
        indptr = np.concatenate([[0], np.cumsum([r.size for r in rows])]).astype(np.int64)
        return MultiLabel(indptr, ind[take], targets.n_classes,
                          values=None if val is None else val[take])
    if sp.issparse(targets):
        return sp.csr_matrix(targets)[perm]
    return targets[perm]


def _stack_targets(a, b):
    """Targets of the batch [rows of a; rows of b]."""
    if isinstance(a, MultiLabel):
        values = None
        if a.values is not None or b.values is not None:
            va = a.values if a.values is not None else np.ones(a.nnz)
            vb = b.values if b.values is not None else np.ones(b.nnz)
            values = np.concatenate([va, vb])
        return MultiLabel(np.concatenate([a.indptr, b.indptr[1:] + a.nnz]),
                          np.concatenate([a.indices, b.indices]), a.n_classes, values=values)
    if sp.issparse(a):
        return sp.vstack([sp.csr_matrix(a), sp.csr_matrix(b)], format="csr")
    return np.concatenate([a, b])


@pytest.mark.parametrize("family", FAMILIES)
def test_properties(backend, family):
    """Finite logits (|x| <= 1e4) give finite losses and gradients; losses are >= 0 (to
    rounding); permuting the rows permutes the "none" losses and the gradient rows and leaves
    "sum" unchanged.

    Two calls per example: "none" on the batch [x; x[perm]] (rows are independent, so its
    second half must be its first half permuted), and "sum" on x[perm] alone, against the
    sum of the unpermuted rows."""
    @PROPERTY_SETTINGS
    @given(case=property_cases(family))
    def check(case):
        logits, targets, kwargs, perm = case
        dtype = logits.dtype
        n = logits.shape[0]
        tiny = 1e-6 if dtype == np.float32 else 1e-13
        fn = api(family)
        pk = dict(kwargs)
        sk = dict(kwargs)
        if "sample_weight" in pk:
            pk["sample_weight"] = kwargs["sample_weight"][perm]
            sk["sample_weight"] = np.concatenate([kwargs["sample_weight"], pk["sample_weight"]])
        p_targets = _permute_targets(targets, perm)
        both = np.concatenate([logits, logits[perm]])
        loss, grad = fn(both, _stack_targets(targets, p_targets), **sk, reduction="none",
                        return_grad=True, backend=backend)
        assert np.all(np.isfinite(loss)), loss
        assert np.all(np.isfinite(grad))
        assert np.all(loss >= -tiny * np.maximum(1.0, np.abs(loss).max())), loss
        assert_loss_close(loss[n:], loss[:n][perm], dtype)
        assert_grad_close(grad[n:], grad[:n][perm], dtype)
        # "sum" of the permuted batch = sum of the unpermuted rows; its gradient is the
        # permuted per-row gradients (sum: scale 1)
        total, g_sum = fn(logits[perm], p_targets, **pk, reduction="sum", return_grad=True,
                          backend=backend)
        assert type(total) is float and np.isfinite(total)
        assert total >= -tiny * max(1.0, abs(total))
        assert_loss_close(total, np.sum(loss[:n], dtype=np.float64), dtype)
        assert_grad_close(g_sum, grad[:n][perm], dtype)
    check()
