"""Bad input to the public API: every mistake raises ValueError or TypeError whose message names
the argument, before any kernel runs, and leaves the caller's arrays untouched.

Each rejection goes through :func:`rejects`, which

* replaces the kernels' entry points (``backends.numba_cpu.kernels.run``, and
  ``backends.numba_cuda.kernels.run`` where the CUDA backend is available, e.g. under the
  simulator) and the NumPy reference functions (the ``"numpy"`` backend) by sentinels that raise ``KernelRan``: a missing check lets a
  kernel run and the test fails with ``KernelRan`` instead of the expected error;
* checks the exception type and ``match=`` on the argument's name;
* compares every array handed in (logits, targets, weights, grad_out, the arrays inside
  MultiLabel / scipy.sparse targets) bit for bit, and its writeable flag, against a copy taken
  before the call.

``backend`` is the fixture of tests/conftest.py (every backend the dispatcher knows; the unusable
ones are skipped). The last section checks what must keep working: ``grad_out=logits`` (in
place), read-only logits, C = 1, N = 0, alpha=None or negative, sparse values above 1 for the
softmax family, boundary values of every option.

Checks the API lacks or messages that do not name the argument are ``xfail(strict=True)`` with
the reason starting "missing check:" or "unclear message:".
"""
import math

import numpy as np
import pytest
import scipy.sparse as sp

import fastxent
from fastxent import MultiLabel
from fastxent import reference as _reference

from conftest import assert_grad_close, assert_loss_close  # noqa: E402  (tests/conftest.py)

N, C = 4, 5
FUNCS = {
    "softmax_cross_entropy": fastxent.softmax_cross_entropy,
    "softmax_focal_loss": fastxent.softmax_focal_loss,
    "sigmoid_binary_cross_entropy": fastxent.sigmoid_binary_cross_entropy,
    "sigmoid_focal_loss": fastxent.sigmoid_focal_loss,
}
SOFTMAX = ("softmax_cross_entropy", "softmax_focal_loss")
SIGMOID = ("sigmoid_binary_cross_entropy", "sigmoid_focal_loss")
#: keyword arguments each function accepts beyond the common ones
ACCEPTS = {
    "softmax_cross_entropy": {"z_loss", "ignore_index"},
    "softmax_focal_loss": {"gamma", "alpha", "ignore_index"},
    "sigmoid_binary_cross_entropy": {"pos_weight"},
    "sigmoid_focal_loss": {"gamma", "gamma_neg", "clip", "alpha"},
}
COMMON = {"class_weight", "sample_weight", "label_smoothing", "reduction", "return_grad",
          "grad_out", "backend"}
BACKENDS = sorted(fastxent.available_backends())


def accepts(name, arg):
    return arg in COMMON or arg in ACCEPTS[name]


def takes_array(name, arg):
    """``arg`` may be an array here (alpha: only softmax_focal_loss)."""
    return accepts(name, arg) and (arg != "alpha" or name == "softmax_focal_loss")


def name_arg(args, array=False):
    """(function name, argument) for every function that takes the argument."""
    test = takes_array if array else accepts
    return [pytest.param(n, a, id=f"{n}-{a}") for a in args for n in FUNCS
            if test(n, a.split()[0])]


@pytest.fixture(params=list(FUNCS))
def name(request):
    return request.param


# ============================================================================================
# helpers
# ============================================================================================

class KernelRan(Exception):
    """Raised by the sentinels: a kernel (or the NumPy reference) was reached."""


@pytest.fixture
def no_kernel(monkeypatch):
    """Make reaching any backend raise KernelRan; returns the list of what was reached."""
    reached = []

    def sentinel(label):
        def fail(*args, **kwargs):
            reached.append(label)
            raise KernelRan(f"{label} ran although the input is invalid")
        return fail

    if "numba" in BACKENDS:
        from fastxent.backends.numba_cpu import kernels
        monkeypatch.setattr(kernels, "run", sentinel("numba kernels.run"))
    if "cuda" in BACKENDS:
        from fastxent.backends.numba_cuda import kernels as cuda_kernels
        monkeypatch.setattr(cuda_kernels, "run", sentinel("cuda kernels.run"))
    for fname in FUNCS:
        monkeypatch.setattr(_reference, fname, sentinel(f"reference.{fname}"))
    return reached


def _arrays_in(obj):
    """Every NumPy array the caller handed in through ``obj``."""
    if isinstance(obj, np.ndarray):
        return [obj]
    if isinstance(obj, MultiLabel):
        return [a for a in (obj.indptr, obj.indices, obj.values) if a is not None]
    if sp.issparse(obj):
        out = [obj.data]
        for attr in ("indptr", "indices", "row", "col"):
            if hasattr(obj, attr):
                out.append(getattr(obj, attr))
        return out
    if isinstance(obj, (list, tuple)):
        return [a for item in obj for a in _arrays_in(item)]
    if isinstance(obj, dict):
        return [a for item in obj.values() for a in _arrays_in(item)]
    return []


def _snapshot(arrays):
    return [(a, a.copy(), a.flags.writeable) for a in arrays]


def _assert_untouched(snap):
    for arr, copy, writeable in snap:
        assert arr.dtype == copy.dtype and arr.shape == copy.shape
        assert arr.flags.writeable == writeable, "the writeable flag of an input changed"
        if arr.dtype == object:
            assert arr.tolist() == copy.tolist(), "an object input array was modified"
        else:
            # bit for bit: NaN stays NaN, -0.0 stays -0.0
            assert np.ascontiguousarray(arr).tobytes() == np.ascontiguousarray(copy).tobytes(), \
                "an input array was modified"


def rejects(reached, fn, logits, targets, exc, match, **kwargs):
    """``fn(logits, targets, **kwargs)`` raises ``exc`` matching ``match``, runs no kernel and
    leaves every array handed in unchanged. Returns the exception info."""
    snap = _snapshot(_arrays_in([logits, targets, kwargs]))
    with pytest.raises(exc, match=match) as info:
        fn(logits, targets, **kwargs)
    assert not reached, f"reached {reached} before raising"
    _assert_untouched(snap)
    return info


def make_logits(dtype=np.float64, n=N, c=C, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, c)) * 2).astype(dtype)


def default_targets(name, n=N, c=C, dtype=np.float64):
    """Valid default targets: class indices for softmax, probabilities for sigmoid."""
    if name in SOFTMAX:
        return np.arange(n, dtype=np.int64) % c
    rng = np.random.default_rng(1)
    return rng.uniform(0, 1, size=(n, c)).astype(dtype)


def valid_dense(n=N, c=C, dtype=np.float64):
    rng = np.random.default_rng(2)
    y = rng.uniform(0, 1, size=(n, c)).astype(dtype)
    return y


def valid_multilabel(n=N, c=C, values=None):
    rows = [[i % c, (i + 2) % c] if c > 2 else [i % c] for i in range(n)]
    ml = MultiLabel.from_lists(rows, n_classes=c)
    if values is not None:
        ml = MultiLabel(ml.indptr, ml.indices, c, values=np.full(ml.nnz, values))
    return ml


def xfail(reason):
    return pytest.mark.xfail(strict=True, reason=reason)


# ============================================================================================
# logits
# ============================================================================================

@pytest.mark.parametrize("shape", [(C,), (2, N, C), (), (N, C, 1)],
                         ids=["1-D", "3-D", "0-D", "3-D trailing 1"])
def test_logits_wrong_ndim(no_kernel, name, backend, shape):
    logits = np.zeros(shape)
    info = rejects(no_kernel, FUNCS[name], logits, default_targets(name), ValueError, "logits",
                   backend=backend)
    assert "2-D" in str(info.value) or "[N, C]" in str(info.value)


def test_logits_zero_classes(no_kernel, name, backend):
    rejects(no_kernel, FUNCS[name], np.zeros((N, 0)), default_targets(name, c=1)[:, :0]
            if name in SIGMOID else np.zeros(N, np.int64), ValueError, "logits", backend=backend)


_NON_FLOAT = [
    pytest.param(np.int32, id="int32"),
    pytest.param(np.int64, id="int64"),
    pytest.param(np.uint8, id="uint8"),
    pytest.param(np.bool_, id="bool"),
    pytest.param(np.float16, id="float16"),
    pytest.param(np.complex128, id="complex128"),
    pytest.param(np.complex64, id="complex64"),
    pytest.param(object, id="object"),
]
if np.dtype(np.longdouble) != np.dtype(np.float64):
    _NON_FLOAT.append(pytest.param(np.longdouble, id="longdouble"))


@pytest.mark.parametrize("dtype", _NON_FLOAT)
def test_logits_not_float32_or_64(no_kernel, name, backend, dtype):
    logits = make_logits().astype(dtype)
    info = rejects(no_kernel, FUNCS[name], logits, default_targets(name), TypeError, "logits",
                   backend=backend)
    msg = str(info.value)
    assert "astype" in msg or "cast" in msg, msg


def test_logits_swapped_with_multilabel(no_kernel, name, backend):
    rejects(no_kernel, FUNCS[name], valid_multilabel(), make_logits(), TypeError, "logits",
            backend=backend)


# ============================================================================================
# targets
# ============================================================================================

def _bad_shape_targets(name):
    out = {
        "dense rows N+1": np.full((N + 1, C), 0.5),
        "dense rows N-1": np.full((N - 1, C), 0.5),
        "dense classes C+1": np.full((N, C + 1), 0.5),
        "dense classes C-1": np.full((N, C - 1), 0.5),
        "dense transposed": np.full((C, N), 0.5),
        "MultiLabel rows N+1": valid_multilabel(n=N + 1),
        "MultiLabel classes C+1": valid_multilabel(c=C + 1),
        "scipy rows N+1": sp.csr_matrix(np.eye(N + 1, C)),
        "scipy classes C+1": sp.csr_matrix(np.eye(N, C + 1)),
        "scipy classes C-1": sp.csr_matrix(np.eye(N, C - 1)),
    }
    if name in SOFTMAX:
        out["labels N+1"] = np.zeros(N + 1, np.int64)
        out["labels N-1"] = np.zeros(N - 1, np.int64)
        out["labels [N, 1]"] = np.zeros((N, 1), np.int64)
        out["labels empty"] = np.zeros(0, np.int64)
    return out


@pytest.mark.parametrize("name, case", [pytest.param(n, c, id=f"{n}-{c}") for n in FUNCS
                                        for c in sorted(_bad_shape_targets(n))])
def test_targets_shape_mismatch(no_kernel, name, backend, case):
    cases = _bad_shape_targets(name)
    rejects(no_kernel, FUNCS[name], make_logits(), cases[case], ValueError, "targets",
            backend=backend)


@pytest.mark.parametrize("kind", ["int [N]", "float [N*C]", "float [N, C, 1]", "str", "object"])
def test_targets_wrong_kind_sigmoid(no_kernel, backend, kind):
    targets = {"int [N]": np.zeros(N, np.int64), "float [N*C]": np.zeros(N * C),
               "float [N, C, 1]": np.zeros((N, C, 1)), "str": "labels",
               "object": np.full((N, C), None)}[kind]
    for name in SIGMOID:
        rejects(no_kernel, FUNCS[name], make_logits(), targets, TypeError, "targets",
                backend=backend)


@pytest.mark.parametrize("name", SOFTMAX)
def test_float_1d_targets_to_softmax(no_kernel, name, backend):
    info = rejects(no_kernel, FUNCS[name], make_logits(), np.array([0.0, 1.0, 2.0, 3.0]),
                   TypeError, "targets", backend=backend)
    assert "astype" in str(info.value) or "int" in str(info.value)


@pytest.mark.parametrize("name", SOFTMAX)
@pytest.mark.parametrize("kind", ["bool [N]", "str", "None", "complex [N, C]"])
def test_targets_wrong_kind_softmax(no_kernel, name, backend, kind):
    targets = {"bool [N]": np.zeros(N, bool), "str": "labels", "None": None,
               "complex [N, C]": np.zeros((N, C), complex)}[kind]
    rejects(no_kernel, FUNCS[name], make_logits(), targets, TypeError, "targets",
            backend=backend)


@pytest.mark.parametrize("name", SOFTMAX)
@pytest.mark.parametrize("label, ignore_index, dtype", [
    pytest.param(label, ii, dt, id=f"{i}-{np.dtype(dt).name}")
    for label, ii, i in [(-1, -100, "-1"), (C, -100, "C"), (C + 7, -100, "C+7"),
                         (-101, -100, "-101"), (-100, -1, "-100 with ignore_index=-1"),
                         (-1, C, "-1 with ignore_index=C")]
    for dt in (np.int64, np.int32)
] + [pytest.param(np.iinfo(np.int64).min, -100, np.int64, id="int64 min")])
def test_labels_out_of_range(no_kernel, name, backend, label, ignore_index, dtype):
    labels = np.array([0, 1, label, 2], dtype=dtype)
    info = rejects(no_kernel, FUNCS[name], make_logits(), labels, ValueError, "targets",
                   ignore_index=ignore_index, backend=backend)
    assert "row 2" in str(info.value)


@pytest.mark.parametrize("name", SOFTMAX)
@pytest.mark.parametrize("label", [2**63 + 1, 2**64 - 100])
def test_labels_uint64_above_int64(no_kernel, name, backend, label):
    """A uint64 label above int64's range is out of range, named with its own value (2**64 -
    100 used to wrap to -100, the default ignore_index: a silently ignored row)."""
    labels = np.array([0, 1, label, 2], dtype=np.uint64)
    info = rejects(no_kernel, FUNCS[name], make_logits(), labels, ValueError, "targets",
                   backend=backend)
    assert f"row 2 has class index {label}," in str(info.value)


@pytest.mark.parametrize("name", SOFTMAX)
@pytest.mark.parametrize("ignore_index", [1.5, "x", None, True])
def test_ignore_index_not_int(no_kernel, name, backend, ignore_index):
    rejects(no_kernel, FUNCS[name], make_logits(), default_targets(name), TypeError,
            "ignore_index", ignore_index=ignore_index, backend=backend)


@pytest.mark.parametrize("name", SOFTMAX)
@pytest.mark.parametrize("form", ["probability", "sparse"])
@pytest.mark.parametrize("ignore_index", [0, 3, np.int64(1)])
def test_ignore_index_with_soft_targets(no_kernel, name, backend, form, ignore_index):
    """ignore_index applies to class indices only; a value that could be a class is refused
    with probability and sparse targets (PyTorch refuses it for probability targets) instead of
    being ignored silently, which counted the rows the caller meant to leave out."""
    targets = valid_dense() if form == "probability" else MultiLabel.from_lists(
        [[0], [1, 2], [], [3]], C)
    info = rejects(no_kernel, FUNCS[name], make_logits(), targets, ValueError, "ignore_index",
                   ignore_index=ignore_index, backend=backend)
    assert f"{form} targets" in str(info.value) and "sample_weight=0" in str(info.value)


@pytest.mark.parametrize("name", SOFTMAX)
@pytest.mark.parametrize("ignore_index", [-100, -1])
def test_negative_ignore_index_with_soft_targets(name, backend, ignore_index):
    """A negative ignore_index (the default included) can match no class: accepted with every
    target form and without effect, as in PyTorch."""
    x = make_logits()
    for targets in (valid_dense(), MultiLabel.from_lists([[0], [1, 2], [], [3]], C)):
        got = FUNCS[name](x, targets, ignore_index=ignore_index, reduction="none",
                          backend=backend)
        np.testing.assert_array_equal(got, FUNCS[name](x, targets, reduction="none",
                                                       backend=backend))


# ---- malformed CSR --------------------------------------------------------------------------

_BAD_CSR = {
    # indptr, indices, message names
    "indptr does not start at 0": ([1, 1, 2, 3, 3], [0, 1, 2], "indptr"),
    "indptr decreasing": ([0, 2, 1, 3, 3], [0, 1, 2], "indptr"),
    "indptr ends before nnz": ([0, 1, 2, 2, 2], [0, 1, 2], "indptr"),
    "indptr ends after nnz": ([0, 1, 2, 3, 4], [0, 1, 2], "indptr"),
    "index negative": ([0, 1, 2, 3, 3], [0, -1, 2], "indices"),
    "index == C": ([0, 1, 2, 3, 3], [0, C, 2], "indices"),
    "duplicate in a row": ([0, 2, 2, 3, 3], [1, 1, 2], "indices"),
    "duplicate in an unsorted row": ([0, 3, 3, 3, 3], [3, 1, 3], "indices"),
}


@pytest.mark.parametrize("change", ["index >= C", "index negative", "row unsorted",
                                    "indptr decreasing"])
def test_multilabel_arrays_changed_after_construction(no_kernel, name, backend, change):
    """MultiLabel borrows a caller's canonical arrays without a copy; if the caller changes
    them afterwards (documented as not to be done), every call re-checks the O(N + nnz) CSR
    and refuses it, instead of the kernels writing outside the row."""
    indptr = np.array([0, 2, 3, 5, 5], dtype=np.int64)
    indices = np.array([1, 3, 0, 2, 4], dtype=np.int64)
    y = MultiLabel(indptr, indices, C)
    assert np.shares_memory(y.indices, indices)
    if change == "index >= C":
        indices[1] = C + 3
    elif change == "index negative":
        indices[2] = -1
    elif change == "row unsorted":
        indices[0], indices[1] = 3, 1
    else:
        indptr[1], indptr[2] = 3, 2
    rejects(no_kernel, FUNCS[name], make_logits(), y, ValueError, "targets.*MultiLabel",
            return_grad=True, backend=backend)


@pytest.mark.parametrize("case", sorted(_BAD_CSR))
def test_multilabel_malformed_csr(no_kernel, name, backend, case):
    """The malformed CSR is refused by MultiLabel itself (naming indptr/indices), so no loss
    function can receive it; the caller's arrays are left alone."""
    indptr, indices, match = _BAD_CSR[case]
    indptr, indices = np.array(indptr), np.array(indices)
    values = np.linspace(0.1, 0.9, indices.size)
    snap = _snapshot([indptr, indices, values])
    with pytest.raises(ValueError, match=match):
        FUNCS[name](make_logits(), MultiLabel(indptr, indices, C, values=values),
                    backend=backend)
    with pytest.raises(ValueError, match=match):
        MultiLabel(indptr, indices, C)
    assert not no_kernel
    _assert_untouched(snap)


_SCIPY_CASES = [
    pytest.param([0, 1, 2, 3, 3], [0, -1, 2], id="index negative"),
    pytest.param([0, 1, 2, 3, 3], [0, C, 2], id="index == C"),
]


@pytest.mark.parametrize("indptr, indices", _SCIPY_CASES)
def test_scipy_malformed_csr(no_kernel, name, backend, indptr, indices):
    m = sp.csr_matrix((np.ones(len(indices)), np.array(indices), np.array(indptr)),
                      shape=(N, C))
    rejects(no_kernel, FUNCS[name], make_logits(), m, ValueError, "targets|indices|indptr",
            backend=backend)


_DECREASING_SCIPY = """
import numpy as np, scipy.sparse as sp, fastxent
m = sp.csr_matrix((np.ones(3), np.array([0, 1, 2]), np.array([0, 2, 1, 3, 3])), shape=(4, 5))
try:
    fastxent.{name}(np.zeros((4, 5)), m, backend="numpy")
except (ValueError, TypeError) as exc:
    print("RAISED", type(exc).__name__, exc)
"""


@pytest.mark.parametrize("name", ["softmax_cross_entropy", "sigmoid_focal_loss"])
def test_scipy_decreasing_indptr(name):
    """Run in a subprocess: the unchecked input can abort the interpreter."""
    import os
    import subprocess
    import sys
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(os.path.dirname(fastxent.__file__)), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", _DECREASING_SCIPY.format(name=name)],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, f"interpreter died: {proc.returncode} {proc.stderr[-300:]}"
    assert "RAISED ValueError" in proc.stdout and ("indptr" in proc.stdout
                                                   or "targets" in proc.stdout), proc.stdout


# ---- target values --------------------------------------------------------------------------

_BAD_UNIT = [(1.5, "1.5"), (1.0 + 1e-12, "1+1e-12"), (-0.25, "-0.25"), (-1e-300, "-tiny"),
             (np.nan, "nan"), (np.inf, "inf"), (-np.inf, "-inf"), (1.0 + 2 ** -23, "1+2**-23"),
             (-1e-45, "-1e-45")]


@pytest.mark.parametrize("bad, dtype", [
    pytest.param(v, dt, id=f"{i}-{np.dtype(dt).name}") for v, i in _BAD_UNIT
    for dt in (np.float64, np.float32) if not 0 <= dt(v) <= 1 or np.isnan(v)])
def test_dense_targets_outside_unit_interval(no_kernel, name, backend, bad, dtype):
    y = valid_dense(dtype=dtype)
    y[2, 3] = bad
    rejects(no_kernel, FUNCS[name], make_logits(dtype), y, ValueError, "targets",
            backend=backend)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("where", ["first", "middle", "last"])
@pytest.mark.parametrize("bad, shown", [(np.nan, "NaN"), (-1e-45, "-1"),
                                        (1.0 + 2 ** -23, "1.0000001"), (np.inf, "inf"),
                                        (-np.inf, "-inf")])
def test_large_dense_targets_outside_unit_interval(no_kernel, bad, shown, where, dtype):
    """Dense targets above ``_checks.PARALLEL_CHECK_SIZE`` are checked by one parallel pass
    (Numba) instead of NumPy's min and max: one bad entry anywhere (0 and 1 exactly are fine
    around it) gives the same message with the offending value."""
    from fastxent import _checks
    n = 64
    c = _checks.PARALLEL_CHECK_SIZE // n + 3
    y = np.zeros((n, c), dtype=dtype)
    y[:, ::7] = 1.0
    i, j = {"first": (0, 0), "middle": (n // 2, c // 2), "last": (n - 1, c - 1)}[where]
    y[i, j] = bad
    rejects(no_kernel, fastxent.sigmoid_binary_cross_entropy, make_logits(dtype, n, c), y,
            ValueError, f"targets must hold probabilities in \\[0, 1\\], found {shown}")


def test_parallel_unit_check_counts_exactly():
    """The parallel pass's count: 0 and 1 and everything between are in, -0.0 too; NaN, the
    neighbours of 0 and 1 outside, and infinities are out."""
    from fastxent.backends.numba_cpu.checks import count_in_unit
    for dtype in (np.float32, np.float64):
        one_up = np.nextafter(dtype(1), dtype(2))
        row = np.array([0.0, -0.0, 1.0, 0.5, 1e-45, np.nan, -1e-45, one_up, np.inf, -np.inf],
                       dtype=dtype)
        arr = np.tile(row, (37, 1000))
        assert count_in_unit(arr) == 37 * 1000 * 5


@pytest.mark.parametrize("name", SIGMOID)
@pytest.mark.parametrize("dtype", [np.int64, np.uint8, np.int8])
def test_integer_dense_targets_outside_unit_interval_sigmoid(no_kernel, name, backend, dtype):
    y = np.zeros((N, C), dtype=dtype)
    y[1, 1] = 2
    rejects(no_kernel, FUNCS[name], make_logits(), y, ValueError, "targets", backend=backend)


@pytest.mark.parametrize("name", SIGMOID)
@pytest.mark.parametrize("form", ["MultiLabel", "scipy"])
def test_sparse_values_above_one_sigmoid(no_kernel, name, backend, form):
    if form == "MultiLabel":
        y = MultiLabel([0, 1, 2, 2, 3], [0, 3, 1], C, values=[0.5, 1.25, 1.0])
    else:
        y = sp.csr_matrix((np.array([0.5, 1.25, 1.0]), np.array([0, 3, 1]),
                           np.array([0, 1, 2, 2, 3])), shape=(N, C))
    rejects(no_kernel, FUNCS[name], make_logits(), y, ValueError, "targets", backend=backend)


@pytest.mark.parametrize("bad", [-0.5, np.nan, np.inf])
def test_multilabel_values_negative_or_not_finite(bad):
    values = np.array([0.5, bad, 1.0])
    snap = _snapshot([values])
    with pytest.raises(ValueError, match="values"):
        MultiLabel([0, 1, 2, 2, 3], [0, 3, 1], C, values=values)
    _assert_untouched(snap)


@pytest.mark.parametrize("bad", [-0.5, np.nan, np.inf])
def test_scipy_values_negative_or_not_finite(no_kernel, name, backend, bad):
    y = sp.csr_matrix((np.array([0.5, bad, 1.0]), np.array([0, 3, 1]),
                       np.array([0, 1, 2, 2, 3])), shape=(N, C))
    rejects(no_kernel, FUNCS[name], make_logits(), y, ValueError, "matrix data|targets|values",
            backend=backend)


# ============================================================================================
# weights
# ============================================================================================

_WEIGHT_SHAPES = {
    "class_weight": [(C + 1,), (C - 1,), (1, C), (C, 1), ()],
    "sample_weight": [(N + 1,), (N - 1,), (N, 1), (1, N), ()],
    "pos_weight": [(C + 1,), (C - 1,), (1, C), (N, C)],
    "alpha": [(C + 1,), (C - 1,)],
}


@pytest.mark.parametrize("name, arg, shape", [
    pytest.param(n, a, s, id=f"{n}-{a}{s}") for a, shapes in _WEIGHT_SHAPES.items()
    for s in shapes for n in FUNCS if takes_array(n, a)])
def test_weight_shape_mismatch(no_kernel, name, backend, arg, shape):
    rejects(no_kernel, FUNCS[name], make_logits(), default_targets(name), ValueError, arg,
            **{arg: np.full(shape, 0.5)}, backend=backend)


def test_sigmoid_focal_alpha_array(no_kernel, backend):
    """sigmoid_focal_loss takes a scalar alpha only."""
    rejects(no_kernel, fastxent.sigmoid_focal_loss, make_logits(), valid_dense(), TypeError,
            "alpha", alpha=np.full(C, 0.25), backend=backend)


@pytest.mark.parametrize("name, arg", name_arg(["class_weight", "sample_weight", "pos_weight",
                                                 "alpha"], array=True))
@pytest.mark.parametrize("dtype", [bool, complex, object, str])
def test_weight_wrong_dtype(no_kernel, name, backend, arg, dtype):
    length = N if arg == "sample_weight" else C
    w = np.ones(length).astype(dtype)
    rejects(no_kernel, FUNCS[name], make_logits(), default_targets(name), (TypeError, ValueError),
            arg, **{arg: w}, backend=backend)


@pytest.mark.parametrize("name, arg", name_arg(["class_weight", "sample_weight", "pos_weight",
                                                 "pos_weight scalar", "alpha"], array=True))
@pytest.mark.parametrize("bad", [-1.0, -1e-300, np.nan, np.inf, -np.inf],
                         ids=["-1", "-tiny", "nan", "inf", "-inf"])
def test_weight_negative_or_not_finite(no_kernel, name, backend, arg, bad):
    kw = arg.split()[0]
    if arg == "pos_weight scalar":
        value = bad
    else:
        value = np.full(N if arg == "sample_weight" else C, 0.5)
        value[1] = bad
    rejects(no_kernel, FUNCS[name], make_logits(), default_targets(name), ValueError, kw,
            **{kw: value}, backend=backend)


@pytest.mark.parametrize("bad", [-1.0, np.nan, np.inf])
def test_pos_weight_zero_d_array(no_kernel, backend, bad):
    rejects(no_kernel, fastxent.sigmoid_binary_cross_entropy, make_logits(), valid_dense(),
            ValueError, "pos_weight", pos_weight=np.array(bad), backend=backend)


# ============================================================================================
# scalar options
# ============================================================================================

_BAD_NONNEG = [-0.5, -1e-300, np.nan, np.inf, -np.inf]
_BAD_NONNEG_IDS = ["-0.5", "-tiny", "nan", "inf", "-inf"]


@pytest.mark.parametrize("name, arg", name_arg(["gamma", "gamma_neg"]))
@pytest.mark.parametrize("bad", _BAD_NONNEG, ids=_BAD_NONNEG_IDS)
def test_gamma_negative_or_not_finite(no_kernel, name, backend, arg, bad):
    match = "gamma_neg" if arg == "gamma_neg" else r"gamma(?!_neg)"
    rejects(no_kernel, FUNCS[name], make_logits(), default_targets(name), ValueError, match,
            **{arg: bad}, backend=backend)


@pytest.mark.parametrize("name, arg", name_arg(["gamma", "gamma_neg", "z_loss", "label_smoothing",
                                                 "clip"]))
@pytest.mark.parametrize("bad", ["0.1", [0.1], np.array([0.1, 0.2]), True, 1j],
                         ids=["str", "list", "array", "bool", "complex"])
def test_scalar_option_wrong_type(no_kernel, name, backend, arg, bad):
    rejects(no_kernel, FUNCS[name], make_logits(), default_targets(name), TypeError, arg,
            **{arg: bad}, backend=backend)


@pytest.mark.parametrize("name", ["softmax_focal_loss", "sigmoid_focal_loss"])
@pytest.mark.parametrize("bad", [1.5, 1.0 + 1e-15, np.inf, np.nan],
                         ids=["1.5", "1+eps", "inf", "nan"])
def test_alpha_scalar_above_one_or_nan(no_kernel, name, backend, bad):
    rejects(no_kernel, FUNCS[name], make_logits(), default_targets(name), ValueError, "alpha",
            alpha=bad, backend=backend)


@pytest.mark.parametrize("name", ["softmax_focal_loss", "sigmoid_focal_loss"])
@pytest.mark.parametrize("bad", [True, "0.25", 1j])
def test_alpha_wrong_type(no_kernel, name, backend, bad):
    rejects(no_kernel, FUNCS[name], make_logits(), default_targets(name), TypeError, "alpha",
            alpha=bad, backend=backend)


@pytest.mark.parametrize("bad", [1.5, np.nan])
def test_alpha_array_above_one_or_nan(no_kernel, backend, bad):
    alpha = np.full(C, 0.25)
    alpha[3] = bad
    rejects(no_kernel, fastxent.softmax_focal_loss, make_logits(), default_targets(SOFTMAX[1]),
            ValueError, "alpha", alpha=alpha, backend=backend)


@pytest.mark.parametrize("name, arg", name_arg(["label_smoothing", "clip"]))
@pytest.mark.parametrize("bad", [-0.1, -1e-300, 1.0, 1.5, np.nan, np.inf, -np.inf],
                         ids=["-0.1", "-tiny", "1.0", "1.5", "nan", "inf", "-inf"])
def test_unit_interval_options(no_kernel, name, backend, arg, bad):
    rejects(no_kernel, FUNCS[name], make_logits(), default_targets(name), ValueError, arg,
            **{arg: bad}, backend=backend)


@pytest.mark.parametrize("bad", [-1e-4, -1e-300, np.nan, np.inf, -np.inf],
                         ids=["-1e-4", "-tiny", "nan", "inf", "-inf"])
def test_z_loss_negative_or_not_finite(no_kernel, backend, bad):
    rejects(no_kernel, fastxent.softmax_cross_entropy, make_logits(),
            default_targets(SOFTMAX[0]), ValueError, "z_loss", z_loss=bad, backend=backend)


@pytest.mark.parametrize("bad", ["avg", "MEAN", "", "elementwise_mean", None, ["mean"]])
def test_unknown_reduction(no_kernel, name, backend, bad):
    rejects(no_kernel, FUNCS[name], make_logits(), default_targets(name), ValueError,
            "reduction", reduction=bad, backend=backend)


@pytest.mark.parametrize("bad", ["gpu", "NUMBA", "", "torch", None, 0])
def test_unknown_backend(no_kernel, name, bad):
    rejects(no_kernel, FUNCS[name], make_logits(), default_targets(name), ValueError, "backend",
            backend=bad)


# ============================================================================================
# grad_out
# ============================================================================================

@pytest.mark.parametrize("case", ["shape (N, C+1)", "shape (C, N)", "shape (N*C,)",
                                  "shape (1, N, C)", "dtype other float", "dtype int64",
                                  "Fortran order", "strided view", "read-only", "misaligned",
                                  "list",
                                  "no return_grad", "return_grad=False"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_grad_out_bad(no_kernel, name, backend, case, dtype):
    logits = make_logits(dtype)
    other = np.float32 if dtype == np.float64 else np.float64
    kwargs = {"return_grad": True}
    exc = ValueError
    if case.startswith("shape"):
        shape = {"shape (N, C+1)": (N, C + 1), "shape (C, N)": (C, N), "shape (N*C,)": (N * C,),
                 "shape (1, N, C)": (1, N, C)}[case]
        g = np.zeros(shape, dtype)
    elif case == "dtype other float":
        g = np.zeros((N, C), other)
    elif case == "dtype int64":
        g = np.zeros((N, C), np.int64)
    elif case == "Fortran order":
        g = np.zeros((N, C), dtype, order="F")
    elif case == "strided view":
        g = np.zeros((N, 2 * C), dtype)[:, ::2]
    elif case == "read-only":
        g = np.zeros((N, C), dtype)
        g.flags.writeable = False
    elif case == "misaligned":                   # one byte past an aligned buffer's start
        raw = np.zeros(N * C * np.dtype(dtype).itemsize + 1, np.uint8)
        g = np.frombuffer(raw.data, dtype, N * C, offset=1).reshape(N, C)
        assert not g.flags.aligned and g.flags.c_contiguous and g.flags.writeable
    elif case == "list":
        g = np.zeros((N, C), dtype).tolist()
        exc = TypeError
    elif case == "no return_grad":
        g = np.zeros((N, C), dtype)
        kwargs = {}
    else:
        g = np.zeros((N, C), dtype)
        kwargs = {"return_grad": False}
    rejects(no_kernel, FUNCS[name], logits, default_targets(name), (exc, TypeError)
            if exc is ValueError else exc, "grad_out", grad_out=g, **kwargs, backend=backend)


def test_grad_out_partially_overlapping_logits(no_kernel, name, backend):
    buf = make_logits(n=N + 1)
    rejects(no_kernel, FUNCS[name], buf[:N], default_targets(name), ValueError, "grad_out",
            return_grad=True, grad_out=buf[1:], backend=backend)


def test_grad_out_shifted_by_half_a_row(no_kernel, name, backend):
    """grad_out has the logits' shape and strides but starts C // 2 elements later."""
    buf = make_logits(n=N + 1)
    flat = buf.reshape(-1)
    logits = flat[:N * C].reshape(N, C)
    g = flat[C // 2:C // 2 + N * C].reshape(N, C)
    assert g.flags.c_contiguous and np.shares_memory(logits, g)
    rejects(no_kernel, FUNCS[name], logits, default_targets(name), ValueError, "grad_out",
            return_grad=True, grad_out=g, backend=backend)


def test_grad_out_overlapping_non_contiguous_logits(no_kernel, name, backend):
    buf = make_logits(n=N, c=2 * C)
    logits = buf[:, :C]                                 # rows strided: copied by the API
    g = buf.reshape(-1)[:N * C].reshape(N, C)
    rejects(no_kernel, FUNCS[name], logits, default_targets(name), ValueError, "grad_out",
            return_grad=True, grad_out=g, backend=backend)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_grad_out_is_dense_targets(no_kernel, name, backend, dtype):
    g = valid_dense(dtype=dtype)
    rejects(no_kernel, FUNCS[name], make_logits(dtype), g, ValueError, "grad_out.*targets",
            return_grad=True, grad_out=g, backend=backend)


def test_grad_out_overlapping_dense_targets_view(no_kernel, name, backend):
    buf = np.zeros((N + 1, C))
    y = buf[1:]
    y[:] = valid_dense()
    rejects(no_kernel, FUNCS[name], make_logits(), y, ValueError, "grad_out.*targets",
            return_grad=True, grad_out=buf[:N], backend=backend)


def test_grad_out_overlapping_multilabel_indices(no_kernel, name, backend):
    g = np.zeros((N, C))
    idx = g.view(np.int64).reshape(-1)[:N]          # class ids stored in grad_out's memory
    idx[:] = np.arange(N) % C
    y = MultiLabel(np.arange(N + 1), idx, C)
    assert np.shares_memory(y.indices, g)
    rejects(no_kernel, FUNCS[name], make_logits(), y, ValueError, "grad_out.*targets",
            return_grad=True, grad_out=g, backend=backend)


@pytest.mark.parametrize("name", SOFTMAX)
def test_grad_out_overlapping_class_index_targets(no_kernel, name, backend):
    g = np.zeros((N, C))
    labels = g.view(np.int64).reshape(-1)[:N]       # class ids stored in grad_out's memory
    labels[:] = np.arange(N) % C
    rejects(no_kernel, FUNCS[name], make_logits(), labels, ValueError, "grad_out.*targets",
            return_grad=True, grad_out=g, backend=backend)


_OVERLAP_WEIGHT_CASES = [
    pytest.param("class_weight", "row", np.float64, id="class_weight row f64"),
    pytest.param("class_weight", "row", np.float32, id="class_weight row f32"),
    pytest.param("sample_weight", "flat", np.float64, id="sample_weight flat f64"),
    pytest.param("sample_weight", "column", np.float64, id="sample_weight column f64"),
    pytest.param("sample_weight", "flat", np.float32, id="sample_weight flat f32"),
    pytest.param("pos_weight", "row", np.float64, id="pos_weight row f64"),
    pytest.param("pos_weight", "row", np.float32, id="pos_weight row f32"),
]


@pytest.mark.parametrize("name, arg, how, dtype", [
    pytest.param(n, *case.values, marks=case.marks, id=f"{n}-{case.id}")
    for case in _OVERLAP_WEIGHT_CASES for n in FUNCS if accepts(n, case.values[0])])
def test_grad_out_overlapping_weight(no_kernel, name, backend, arg, how, dtype):
    g = np.zeros((N, C), dtype)
    w = {"row": g[0], "flat": g.reshape(-1)[:N], "column": g[:, 0]}[how]
    w[:] = 0.5
    rejects(no_kernel, FUNCS[name], make_logits(dtype), default_targets(name, dtype=dtype),
            ValueError, f"grad_out.*{arg}", **{arg: w}, return_grad=True, grad_out=g,
            backend=backend)


@pytest.mark.parametrize("with_class_weight", [False, True])
def test_grad_out_overlapping_alpha_array(no_kernel, backend, with_class_weight):
    g = np.zeros((N, C))
    g[0] = 0.25
    extra = {"class_weight": np.ones(C)} if with_class_weight else {}
    rejects(no_kernel, fastxent.softmax_focal_loss, make_logits(),
            default_targets("softmax_focal_loss"), ValueError, "grad_out.*alpha", alpha=g[0],
            return_grad=True, grad_out=g, backend=backend, **extra)


# ============================================================================================
# what must keep working
# ============================================================================================

OPTIONS = {
    "softmax_cross_entropy": dict(label_smoothing=0.1, z_loss=1e-3),
    "softmax_focal_loss": dict(gamma=1.5, alpha=0.3, label_smoothing=0.1),
    "sigmoid_binary_cross_entropy": dict(pos_weight=np.linspace(0.5, 2.0, C),
                                         label_smoothing=0.1),
    "sigmoid_focal_loss": dict(gamma=2.0, gamma_neg=4.0, clip=0.05, alpha=0.25,
                               label_smoothing=0.1),
}


def _target_forms(name, n=N, c=C, dtype=np.float64):
    forms = {"dense": valid_dense(n, c, dtype), "MultiLabel": valid_multilabel(n, c)}
    if name in SOFTMAX:
        forms["labels"] = np.arange(n, dtype=np.int64) % c
    return forms


def _call(name, logits, targets, **kwargs):
    kw = dict(OPTIONS[name])
    kw.update(class_weight=np.linspace(0.5, 1.5, logits.shape[1]),
              sample_weight=np.linspace(1.0, 2.0, logits.shape[0]))
    kw.update(kwargs)
    return FUNCS[name](logits, targets, **kw)


@pytest.mark.parametrize("name, form", [
    pytest.param(n, f, id=f"{n}-{f}") for n in FUNCS for f in ("dense", "MultiLabel", "labels")
    if f != "labels" or n in SOFTMAX])
@pytest.mark.parametrize("reduction", ["none", "mean"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_grad_out_is_logits_in_place(name, backend, form, reduction, dtype):
    y = _target_forms(name, dtype=dtype)[form]
    x = make_logits(dtype)
    loss_ref, grad_ref = _call(name, x.copy(), y, reduction=reduction, return_grad=True,
                               backend=backend)
    assert not np.array_equal(grad_ref, x)
    loss, grad = _call(name, x, y, reduction=reduction, return_grad=True, grad_out=x,
                       backend=backend)
    assert grad is x
    # not bit-identical in float32: with grad aliasing logits, LLVM's runtime alias check takes
    # the scalar (not the reassociated vector) loop; the contract's tolerances apply
    assert_grad_close(grad, grad_ref, dtype)
    assert_loss_close(loss, loss_ref, dtype)


@pytest.mark.parametrize("return_grad", [False, True])
@pytest.mark.parametrize("contiguous", [True, False])
def test_read_only_logits(name, backend, return_grad, contiguous):
    base = make_logits(n=N, c=2 * C)
    x = base[:, :C] if not contiguous else np.ascontiguousarray(base[:, :C])
    expected = _call(name, x.copy(), default_targets(name), reduction="none",
                     return_grad=return_grad, backend=backend)
    x.flags.writeable = False
    snap = _snapshot([x])
    got = _call(name, x, default_targets(name), reduction="none", return_grad=return_grad,
                backend=backend)
    _assert_untouched(snap)
    if return_grad:
        assert got[1].flags.writeable and not np.shares_memory(got[1], base)
        np.testing.assert_array_equal(got[1], expected[1])
        got, expected = got[0], expected[0]
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_misaligned_logits(name, backend, dtype):
    """Logits at an odd byte offset of a buffer (NumPy's ALIGNED flag False) are read as they
    are: the same loss and gradient as an aligned copy (only grad_out must be aligned)."""
    x = make_logits(dtype)
    raw = np.zeros(x.nbytes + 1, np.uint8)
    xu = np.frombuffer(raw.data, dtype, x.size, offset=1).reshape(x.shape)
    xu[...] = x
    assert not xu.flags.aligned
    expected = _call(name, x, default_targets(name), reduction="none", return_grad=True,
                     backend=backend)
    got = _call(name, xu, default_targets(name), reduction="none", return_grad=True,
                backend=backend)
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])


@pytest.mark.parametrize("name, form", [
    pytest.param(n, f, id=f"{n}-{f}") for n in FUNCS for f in ("dense", "MultiLabel", "labels")
    if f != "labels" or n in SOFTMAX])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_byte_swapped_inputs(name, backend, form, dtype):
    """Big-endian logits, targets and weights (a file written on another machine, a
    ``dtype=">f4"`` buffer) give the native arrays' loss and gradient; the gradient comes in
    native byte order."""
    x = make_logits(dtype)
    y = _target_forms(name, dtype=dtype)[form]

    def swapped(a):
        return a.astype(a.dtype.newbyteorder(">" if a.dtype.isnative else "<"))

    weights = dict(class_weight=np.linspace(0.5, 1.5, C), sample_weight=np.linspace(1.0, 2.0, N))
    expected = _call(name, x, y, reduction="none", return_grad=True, backend=backend, **weights)
    y_swapped = y if form == "MultiLabel" else swapped(y)
    got = _call(name, swapped(x), y_swapped, reduction="none", return_grad=True,
                backend=backend, **{k: swapped(v) for k, v in weights.items()})
    assert got[1].dtype == np.dtype(dtype) and got[1].dtype.isnative
    # (to the contract's tolerances, not bit for bit: the converted copies may sit at another
    # offset in a cache line, which moves where the float32 vector sums split)
    assert_loss_close(got[0], expected[0], dtype)
    assert_grad_close(got[1], expected[1], dtype)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean", "batchmean"])
def test_single_class(name, backend, reduction):
    """C = 1 is allowed: every target form, against the NumPy reference (float64)."""
    x = make_logits(c=1) * 3
    for form, y in _target_forms(name, c=1).items():
        if form == "MultiLabel":
            y = MultiLabel.from_lists([[0], [], [0], []], n_classes=1)
        kw = dict(OPTIONS[name])
        if "pos_weight" in kw:
            kw["pos_weight"] = 2.0                       # a [C] pos_weight would not fit C = 1
        snap = _snapshot(_arrays_in([x, y]))
        loss, grad = FUNCS[name](x, y, **kw, reduction=reduction, return_grad=True,
                                 backend=backend)
        ref_loss, ref_grad = getattr(_reference, name)(x, y, **kw, reduction=reduction,
                                                       return_grad=True)
        _assert_untouched(snap)
        assert grad.shape == (N, 1)
        np.testing.assert_allclose(loss, ref_loss, rtol=1e-12, atol=1e-300, err_msg=form)
        np.testing.assert_allclose(grad, ref_grad, rtol=1e-12, atol=1e-15, err_msg=form)
        assert np.all(np.isfinite(grad))


@pytest.mark.parametrize("reduction", ["none", "sum", "mean", "batchmean"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_zero_rows(name, backend, reduction, dtype):
    """N = 0 is allowed for every target form: 0.0 for scalar reductions, empty arrays."""
    x = np.zeros((0, C), dtype)
    forms = _target_forms(name, n=0, dtype=dtype)
    forms["MultiLabel"] = MultiLabel([0], [], C)
    for form, y in forms.items():
        out = FUNCS[name](x, y, sample_weight=np.zeros(0), reduction=reduction,
                          backend=backend)
        loss, grad = FUNCS[name](x, y, reduction=reduction, return_grad=True, backend=backend)
        for value in (out, loss):
            if reduction == "none":
                assert isinstance(value, np.ndarray) and value.shape == (0,)
                assert value.dtype == dtype
            else:
                assert type(value) is float and value == 0.0, (form, value)
        assert grad.shape == (0, C) and grad.dtype == dtype


@pytest.mark.parametrize("name", ["softmax_focal_loss", "sigmoid_focal_loss"])
@pytest.mark.parametrize("alpha", [-1.0, -0.25, -1e-300, -np.inf, -1, np.float32(-0.5)],
                         ids=["-1.0", "-0.25", "-tiny", "-inf", "int -1", "float32 -0.5"])
def test_alpha_none_or_negative_disables(name, backend, alpha):
    x = make_logits()
    y = default_targets(name)
    base = FUNCS[name](x, y, gamma=1.5, alpha=None, reduction="none", return_grad=True,
                       backend=backend)
    got = FUNCS[name](x, y, gamma=1.5, alpha=alpha, reduction="none", return_grad=True,
                      backend=backend)
    np.testing.assert_array_equal(got[0], base[0])
    np.testing.assert_array_equal(got[1], base[1])
    # and alpha does matter when it is in [0, 1]
    other = FUNCS[name](x, y, gamma=1.5, alpha=0.25, reduction="none", backend=backend)
    assert not np.allclose(other, base[0])


@pytest.mark.parametrize("name", SOFTMAX)
def test_softmax_sparse_values_above_one_are_normalised(name, backend):
    x = make_logits()
    big = MultiLabel([0, 2, 3, 3, 4], [1, 3, 0, 4], C, values=[2.0, 6.0, 5.0, 1.0])
    unit = MultiLabel([0, 2, 3, 3, 4], [1, 3, 0, 4], C, values=[0.25, 0.75, 1.0, 1.0])
    a = FUNCS[name](x, big, reduction="none", backend=backend)
    b = FUNCS[name](x, unit, reduction="none", backend=backend)
    np.testing.assert_allclose(a, b, rtol=1e-12)
    assert a[2] == 0.0                                    # the empty row is not counted


@pytest.mark.parametrize("name", SOFTMAX)
def test_ignore_index_rows_accepted(name, backend):
    x = make_logits()
    a = FUNCS[name](x, np.array([0, -100, 3, -100]), reduction="none", backend=backend)
    b = FUNCS[name](x, np.array([0, -1, 3, -1]), ignore_index=-1, reduction="none",
                    backend=backend)
    c = FUNCS[name](x, np.array([0, 7, 3, 7]), ignore_index=7, reduction="none",
                    backend=backend)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    assert a[1] == 0.0 and a[3] == 0.0 and a[0] > 0


_BOUNDARY = [
    dict(label_smoothing=0.999), dict(label_smoothing=0), dict(label_smoothing=np.float32(0.1)),
    dict(clip=0.999), dict(clip=0), dict(gamma=0), dict(gamma=np.int64(3)), dict(gamma_neg=0.0),
    dict(alpha=0.0), dict(alpha=1.0), dict(alpha=1), dict(z_loss=0), dict(z_loss=1e30),
    dict(pos_weight=0.0), dict(pos_weight=np.zeros(C)), dict(pos_weight=np.array(2.0)),
    dict(class_weight=np.zeros(C)), dict(sample_weight=np.zeros(N)),
    dict(class_weight=[1, 2, 3, 4, 5]), dict(sample_weight=np.arange(N, dtype=np.int32)),
    dict(alpha=np.zeros(C)), dict(alpha=np.ones(C)), dict(ignore_index=np.int32(-100)),
]


@pytest.mark.parametrize("name, kwargs", [
    pytest.param(n, kw, id=f"{n}-" + "-".join(f"{k}={v!r}".replace(" ", "")
                                              for k, v in kw.items())[:40])
    for kw in _BOUNDARY for n in FUNCS
    for arg in [next(iter(kw))]
    if (takes_array(n, arg) if np.ndim(kw[arg]) == 1 else accepts(n, arg))])
def test_boundary_values_accepted(name, backend, kwargs):
    loss, grad = FUNCS[name](make_logits(), default_targets(name), **kwargs, reduction="sum",
                             return_grad=True, backend=backend)
    assert math.isfinite(loss) and np.all(np.isfinite(grad))


@pytest.mark.parametrize("dtype", [np.int32, np.uint8, np.int16, np.uint64])
@pytest.mark.parametrize("name", SOFTMAX)
def test_label_dtypes_accepted(name, backend, dtype):
    x = make_logits()
    a = FUNCS[name](x, np.array([0, 1, 4, 2], dtype=dtype), reduction="none", backend=backend)
    b = FUNCS[name](x, np.array([0, 1, 4, 2], dtype=np.int64), reduction="none",
                    backend=backend)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", SIGMOID)
def test_bool_and_int_dense_targets_accepted(name, backend):
    x = make_logits()
    y = np.zeros((N, C), bool)
    y[[0, 1, 3], [2, 0, 4]] = True
    a = FUNCS[name](x, y, reduction="none", backend=backend)
    b = FUNCS[name](x, y.astype(np.float64), reduction="none", backend=backend)
    c = FUNCS[name](x, y.astype(np.int8), reduction="none", backend=backend)
    np.testing.assert_allclose(a, b, rtol=1e-12)
    np.testing.assert_allclose(c, b, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float16, np.longdouble])
def test_float16_and_long_double_dense_targets_accepted(name, backend, dtype):
    """Dense targets of another float type are read as float32 (float16: exactly) or float64
    (long double: rounded); they crashed the Numba kernels before."""
    y = valid_dense(N, C, np.float64).astype(dtype)
    got = FUNCS[name](make_logits(), y, reduction="none", backend=backend)
    want = FUNCS[name](make_logits(), y.astype(np.float64), reduction="none", backend=backend)
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_inputs_untouched_by_valid_calls(name, backend):
    """A valid call (with grad_out a separate buffer) changes no input array."""
    x = make_logits(np.float32)
    x[0, 0] = -0.0
    for y in _target_forms(name, dtype=np.float32).values():
        kw = dict(OPTIONS[name], class_weight=np.linspace(0.5, 1.5, C),
                  sample_weight=np.linspace(1.0, 2.0, N))
        snap = _snapshot(_arrays_in([x, y, kw]))
        g = np.full((N, C), np.nan, np.float32)
        loss, grad = FUNCS[name](x, y, **kw, return_grad=True, grad_out=g, backend=backend)
        _assert_untouched(snap)
        assert grad is g and np.all(np.isfinite(g))


# ============================================================================================
# flags, 0-d arrays, masked arrays
# ============================================================================================

@pytest.mark.parametrize("bad", ["no", "False", 1, 0, None, np.array(True)],
                         ids=["str-no", "str-False", "int-1", "int-0", "None", "0-d array"])
def test_return_grad_not_a_bool(no_kernel, name, backend, bad):
    """A truthy string like "no" returned a gradient; only True/False (or NumPy bools) pass."""
    rejects(no_kernel, FUNCS[name], make_logits(), default_targets(name), TypeError,
            "return_grad", return_grad=bad, backend=backend)


@pytest.mark.parametrize("name, arg", name_arg(["gamma", "gamma_neg", "z_loss", "label_smoothing",
                                                 "clip", "alpha"]))
def test_zero_d_array_options_work_like_numbers(name, backend, arg):
    value = {"gamma": 1.5, "gamma_neg": 3.0, "z_loss": 1e-3, "label_smoothing": 0.1,
             "clip": 0.05, "alpha": 0.3}[arg]
    f = FUNCS[name]
    x, y = make_logits(), default_targets(name)
    want = f(x, y, **{arg: value}, return_grad=True, backend=backend)
    got = f(x, y, **{arg: np.array(value)}, return_grad=True, backend=backend)
    assert got[0] == want[0]
    np.testing.assert_array_equal(got[1], want[1])
    rejects([], f, x, y, ValueError, arg,
            **{arg: np.array(np.nan)}, backend=backend)


@pytest.mark.parametrize("what", ["logits", "targets", "class_weight", "sample_weight"])
def test_masked_entries_are_refused(no_kernel, name, backend, what):
    """A masked array's masked entries are ordinary numbers underneath: computing with them
    silently was wrong; refused, naming the argument and the fix."""
    x, y = make_logits(), default_targets(name)
    kwargs = {}
    if what == "logits":
        x = np.ma.masked_array(x, mask=x > 1)
    elif what == "targets":
        y = np.ma.masked_array(y, mask=np.zeros(y.shape, bool))
        y.mask.flat[0] = True
    else:
        n = N if what == "sample_weight" else C
        kwargs[what] = np.ma.masked_array(np.ones(n), mask=[True] + [False] * (n - 1))
    rejects(no_kernel, FUNCS[name], x, y, TypeError, f"{what} is a masked array.*filled",
            **kwargs, backend=backend)


def test_masked_arrays_without_masked_entries_work(name, backend):
    x, y = make_logits(), default_targets(name)
    want = FUNCS[name](x, y, backend=backend)
    assert FUNCS[name](np.ma.masked_array(x), np.ma.masked_array(y), backend=backend) == want


@pytest.mark.parametrize("case", ["requires grad", "bfloat16"])
def test_torch_logits_numpy_cannot_view_say_what_to_do(no_kernel, name, case):
    """A CPU torch tensor works as logits; one that requires grad or is bfloat16 raises a
    TypeError naming logits and the way out (torch's own errors were a RuntimeError about
    numpy() and 'unsupported ScalarType BFloat16')."""
    torch = pytest.importorskip("torch", reason="PyTorch not installed")
    x = torch.randn(N, C, dtype=torch.float64)
    x = x.requires_grad_(True) if case == "requires grad" else x.bfloat16()
    match = "fastxent.torch" if case == "requires grad" else "logits.float()"
    with pytest.raises(TypeError, match=match):
        FUNCS[name](x, default_targets(name))
    assert not no_kernel
