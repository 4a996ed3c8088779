"""The Cython backend: its scalar formulas against ``fastxent._math`` and Numba's build of them,
the fallback when numba cannot be imported, and the dispatcher's message when it is not built.

(Every loss, option and reduction of the Cython kernels is tested through the ``backend``
fixture in the other test modules.)
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastxent
from fastxent import _dispatch, _math

from conftest import PIPELINED_SHAPES, check_pipelined_softmax_ce  # (tests/conftest.py)

pytestmark = pytest.mark.cython

try:
    from fastxent.backends.cython import _support
except ImportError as exc:  # not built: the dispatcher tests below still run
    _support = None
    _WHY = str(exc)

needs_build = pytest.mark.skipif(_support is None, reason="the Cython extension is not built")

# --------------------------------------------------------------------------------------------
# grids crossing every cutoff of _math (exp range ends, the neg_expm1 switch at ln2/2, log's
# subnormal rescale and sqrt(2) split, softplus's sign switch, focal_pow's special exponents)
# --------------------------------------------------------------------------------------------

_CUTS = [-87.5, -86.64315, -86.6, -40.0, -20.0, -1.0, -0.5, -1e-3, -1e-8, 0.0, 1e-8, 1e-3,
         0.34657359, 0.5, 0.7071067811865476, 1.0, 1.4142135623730951, 2.0, 20.0, 88.72283,
         89.0]


def _grid(lo, hi, n=401):
    pts = [c for c in _CUTS if lo <= c <= hi]
    pts += [np.nextafter(np.float32(c), np.float32(np.inf)) for c in pts]
    pts += [np.nextafter(np.float32(c), np.float32(-np.inf)) for c in pts]
    dense = np.linspace(lo, hi, n)
    return np.unique(np.concatenate([dense, np.asarray(pts, dtype=np.float64)]))


# function -> (argument grid builder, numba-jitted name)
def _unary_grid(name):
    if name == "exp":
        return _grid(-90.0, 90.0)
    if name == "exp_nonpos":
        return _grid(-90.0, 0.0)
    if name == "log":
        x = np.concatenate([_grid(1e-6, 3.0), np.geomspace(1e-44, 1e30, 300)])
        return np.concatenate([x, [0.0, np.inf]])
    if name == "log1p_unit":
        return _grid(0.0, 1.0)
    if name == "neg_expm1":
        return _grid(0.0, 90.0)
    raise KeyError(name)


UNARY = ["exp", "exp_nonpos", "log", "log1p_unit", "neg_expm1"]
RTOL = {np.float64: 4e-16, np.float32: 1e-6}     # float32: within the polynomials' stated bounds


def _python(name, *args, dtype):
    """``_math.<name>`` in float64 (the definition); float32 through its polynomial version."""
    fn = getattr(_math, name)
    if dtype == np.float32:
        poly = {"exp": _math.exp_poly, "exp_nonpos": _math.exp_nonpos_poly,
                "log": _math.log_poly, "log1p_unit": _math.log1p_poly,
                "neg_expm1": _math.neg_expm1_poly}
        fn = poly.get(name, fn)
    try:
        return fn(*[float(a) for a in args])
    except (ValueError, OverflowError):     # math.log(0), math.exp(1000): IEEE values instead
        return float(getattr(np, name if name in ("exp", "log") else "exp")(float(args[0])))


_NUMBA_CACHE: dict = {}


def _numba(name, *arrays, dtype):
    """The Numba build of ``_math.<name>``, elementwise (None when numba is not importable)."""
    try:
        import numba
        from fastxent.backends.numba_cpu import _primitives  # noqa: F401 (registers _math)
    except ImportError:
        return None
    n_out = {"softplus_pair": 4, "bce_term": 2, "bce_negative_term": 2,
             "focal_negative_term": 2, "focal_negative_term_sq": 2, "focal_term": 2,
             "softmax_focal_term": 2}.get(name, 1)
    key = (name, len(arrays))
    if key not in _NUMBA_CACHE:
        n_args = len(arrays)
        call = f"fn({', '.join(f'a{i}[i]' for i in range(n_args))})"
        store = ("out[0, i] = r" if n_out == 1
                 else "\n        ".join(f"out[{k}, i] = r[{k}]" for k in range(n_out)))
        src = (f"def loop(out, {', '.join(f'a{i}' for i in range(n_args))}):\n"
               f"    for i in range(out.shape[1]):\n"
               f"        r = {call}\n"
               f"        {store}\n")
        scope = {"fn": getattr(_math, name)}
        exec(src, scope)
        _NUMBA_CACHE[key] = numba.njit(scope["loop"])
    out = np.empty((n_out, arrays[0].size), dtype=dtype)
    _NUMBA_CACHE[key](out, *[np.ascontiguousarray(a, dtype=dtype).ravel() for a in arrays])
    return tuple(out) if n_out > 1 else out[0]


def _close(actual, expected, rtol, what, atol=0.0):
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert np.array_equal(np.isnan(actual), np.isnan(expected)), f"{what}: NaN positions differ"
    inf = np.isinf(expected)
    assert np.array_equal(actual[inf], expected[inf]), f"{what}: infinities differ"
    fin = np.isfinite(expected)
    err = np.abs(actual[fin] - expected[fin])
    bound = rtol * np.abs(expected[fin]) + atol
    bad = err > bound
    assert not bad.any(), (f"{what}: {int(bad.sum())} values off; worst at "
                           f"{int(np.argmax(err - bound))}: {actual[fin][bad][:3]} vs "
                           f"{expected[fin][bad][:3]}")


@needs_build
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("name", UNARY)
def test_unary_primitives_match_python_and_numba(name, dtype):
    x = _unary_grid(name).astype(dtype)
    got = _support.apply(name, x, dtype=dtype)
    assert got.dtype == dtype
    if dtype == np.float32:   # the cutoffs are float32 constants there, float64 in _math
        x = x[~np.any(np.abs(x[:, None] - np.float32(_CUTS)[None, :])
                      <= 1e-5 * np.maximum(1.0, np.abs(_CUTS)), axis=1)]
        got = got if got.size == x.size else _support.apply(name, x, dtype=dtype)
    py = np.array([_python(name, v, dtype=dtype) for v in x], dtype=np.float64)
    # float32 vs _math evaluated in float64: the cutoffs are float32 constants there, so
    # results near 2**-125 (where exp flushes to 0) may differ by that much
    _close(got, py, RTOL[dtype], f"cython {name} vs _math",
           atol=1e-300 if dtype == np.float64 else 2.4e-38)
    x = _unary_grid(name).astype(dtype)
    got = _support.apply(name, x, dtype=dtype)
    nb = _numba(name, x, dtype=dtype)
    if nb is not None:
        _close(got, nb, RTOL[dtype], f"cython {name} vs numba", atol=1e-45)
    nan = _support.apply(name, np.array([np.nan], dtype=dtype), dtype=dtype)
    assert np.isnan(nan).all()


def _formula_cases(name):
    rng = np.random.default_rng(7)
    xs = np.concatenate([_grid(-30.0, 30.0, 61), [-1e4, -100.0, 100.0, 1e4]])
    if name == "softplus_pair":
        return [xs]
    if name == "bce_term":
        x, y = np.meshgrid(xs, [0.0, 0.05, 0.5, 0.95, 1.0])
        return [x.ravel(), y.ravel(), np.full(x.size, 2.5)]
    if name == "bce_negative_term":
        return [xs]
    if name == "focal_negative_term":
        x, g, a = np.meshgrid(xs, [0.0, 1.0, 2.0, 4.0], [0.25, -1.0])
        return [x.ravel(), g.ravel(), a.ravel()]
    if name == "focal_negative_term_sq":
        x, a = np.meshgrid(xs, [0.25, -1.0])
        return [x.ravel(), a.ravel()]
    if name == "focal_pow":
        q, g = np.meshgrid(np.concatenate([[0.0, 1e-30, 1e-6], _grid(0.0, 1.0, 41)]),
                           [0.0, 0.5, 1.0, 1.5, 2.0, 4.0])
        return [q.ravel(), g.ravel()]
    if name == "focal_term":
        rows = []
        for gamma, gamma_neg, clip, alpha in [(2.0, 2.0, 0.0, 0.25), (0.0, 0.0, 0.0, -1.0),
                                              (1.5, 4.0, 0.05, -1.0), (1.0, 0.0, 0.05, 0.5)]:
            x, y = np.meshgrid(xs, [0.0, 0.3, 1.0])
            n = x.size
            rows.append([x.ravel(), y.ravel(), np.full(n, gamma), np.full(n, gamma_neg),
                         np.full(n, clip), np.full(n, alpha)])
        return [np.concatenate(col) for col in zip(*rows)]
    if name == "softmax_focal_term":
        gap, gamma = np.meshgrid(np.concatenate([[0.0, 1e-9, 1e-4], _grid(0.0, 40.0, 81),
                                                 rng.random(10)]), [0.0, 1.0, 1.5, 2.0])
        return [gap.ravel(), gamma.ravel()]
    raise KeyError(name)


FORMULAS = ["softplus_pair", "bce_term", "bce_negative_term", "focal_negative_term",
            "focal_negative_term_sq", "focal_pow", "focal_term", "softmax_focal_term"]


@needs_build
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("name", FORMULAS)
def test_formulas_match_python_and_numba(name, dtype):
    cases = _formula_cases(name)
    if name == "focal_term":         # + (clip_hi, clip_lo) = clip_logit(clip) in the dtype
        hi_lo = np.array([_math.clip_logit(float(dtype(c)), dtype == np.float32)
                          for c in cases[4]]).reshape(-1, 2)
        cases = cases + [hi_lo[:, 0], hi_lo[:, 1]]
    args = [np.asarray(a, dtype=dtype) for a in cases]
    got = _support.apply(name, *args, dtype=dtype)
    got = got if isinstance(got, tuple) else (got,)
    py = [getattr(_math, name)(*[float(a[i]) for a in args]) for i in range(args[0].size)]
    py = np.array([p if isinstance(p, tuple) else (p,) for p in py], dtype=np.float64).T
    # float32: the formulas compose a few polynomial primitives (each within 4.2e-7)
    rtol, atol = (1e-14, 1e-300) if dtype == np.float64 else (2e-5, 1e-6)
    for k, out in enumerate(got):
        assert out.dtype == dtype
        if dtype == np.float64:
            _close(out, py[k], rtol, f"cython {name}[{k}] vs _math", atol=atol)
        else:   # _math in float64 is the exact meaning; float32 is held to it with a scale
            scale = np.maximum(np.abs(py[k]), 1.0)
            _close(out / scale, py[k] / scale, 0.0, f"cython {name}[{k}] vs _math",
                   atol=atol * 10)
    nb = _numba(name, *args, dtype=dtype)
    if nb is not None:
        nb = nb if isinstance(nb, tuple) else (nb,)
        for k, out in enumerate(got):
            scale = np.maximum(np.abs(np.asarray(nb[k], dtype=np.float64)), 1.0)
            _close(out / scale, np.asarray(nb[k], dtype=np.float64) / scale, 0.0,
                   f"cython {name}[{k}] vs numba", atol=8 * float(np.finfo(dtype).eps))


# --------------------------------------------------------------------------------------------
# dispatch
# --------------------------------------------------------------------------------------------

def test_unavailable_backend_raises_and_says_why(monkeypatch):
    monkeypatch.setitem(_dispatch._BACKENDS, "cython",
                        ("fastxent.backends.cython._no_such_module",) +
                        _dispatch._BACKENDS["cython"][1:])
    monkeypatch.setattr(_dispatch, "_status", {})
    with pytest.raises(RuntimeError, match=r"backend 'cython' is not available: .*"
                                           r"could not be imported.*C compiler"):
        fastxent.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 1]), backend="cython")
    assert "cython" not in fastxent.available_backends()


@needs_build
def test_prefetch_distance_matches_numba():
    """The background pass of sparse sigmoid targets prefetches the logits the same distance
    ahead in both CPU backends (a C macro and a Python constant)."""
    from fastxent.backends.numba_cpu import _rows
    assert _support.prefetch_bytes() == _rows.PREFETCH_BYTES == 2048


@needs_build
def test_build_facts():
    assert isinstance(_support.openmp_enabled(), bool)
    assert _support.openmp_max_threads() >= 1
    assert _support.cpu_level() in (0, 1, 3, 4)


@needs_build
@pytest.mark.parametrize("isa", ["baseline", "x86-64-v3"])
def test_capped_cpu_variant_computes_the_same(isa):
    """The baseline and AVX2 builds (FASTXENT_CYTHON_ISA caps the variant) give the losses and
    gradients of the build in use, within float32 rounding."""
    code = textwrap.dedent("""
        import json, numpy as np, fastxent
        from fastxent.backends.cython import kernels
        from fastxent.targets import MultiLabel
        rng = np.random.default_rng(3)
        x = rng.normal(size=(7, 1100)).astype(np.float32) * 4
        ml = MultiLabel.from_lists([[1, 5], [0], [1099], [], [3, 4, 5], [7], [2]], 1100)
        out = {"isa": kernels.ISA}
        for name, fn in [("ce", lambda **k: fastxent.softmax_cross_entropy(x, ml, **k)),
                         ("sf", lambda **k: fastxent.softmax_focal_loss(x, ml, **k)),
                         ("bce", lambda **k: fastxent.sigmoid_binary_cross_entropy(x, ml, **k)),
                         ("focal", lambda **k: fastxent.sigmoid_focal_loss(x, ml, **k))]:
            loss, grad = fn(return_grad=True, reduction="sum", backend="cython")
            out[name] = [float(loss), grad.astype(float).ravel()[::37].tolist()]
        print(json.dumps(out))
        """)
    runs = {}
    for cap in (isa, ""):
        env = dict(os.environ, FASTXENT_CYTHON_ISA=cap)
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        runs[cap] = json.loads(done.stdout)
    if isa == "baseline":
        assert runs[isa]["isa"] == "baseline"
    for name in ("ce", "sf", "bce", "focal"):
        np.testing.assert_allclose(runs[isa][name][0], runs[""][name][0], rtol=1e-5)
        np.testing.assert_allclose(runs[isa][name][1], runs[""][name][1], rtol=1e-4, atol=1e-6)


def test_thread_count_setting():
    default = fastxent.get_num_threads()
    assert default >= 1
    try:
        fastxent.set_num_threads(1)
        assert fastxent.get_num_threads() == 1
        with pytest.raises(ValueError):
            fastxent.set_num_threads(0)
        with pytest.raises(TypeError):
            fastxent.set_num_threads(1.5)
    finally:
        fastxent.set_num_threads(None)
    assert fastxent.get_num_threads() == default


_NO_NUMBA = textwrap.dedent("""
    import json, sys, warnings
    sys.modules["numba"] = None          # `import numba` raises ImportError
    import numpy as np
    import fastxent
    from fastxent import reference as R
    assert "numba" not in fastxent.available_backends()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 9)).astype(np.float32)
    labels = np.array([1, 0, -100, 8, 3, 3])
    dense = rng.random((6, 9))
    ml = fastxent.MultiLabel.from_lists([[1, 4], [0], [], [2, 3, 8], [5], [0, 8]], n_classes=9)
    cases = [
        ("softmax_cross_entropy", labels, dict(label_smoothing=0.1)),
        ("softmax_cross_entropy", ml, {}),
        ("softmax_focal_loss", labels, dict(gamma=2.0)),
        ("softmax_focal_loss", dense / dense.sum(1, keepdims=True), dict(gamma=1.5)),
        ("sigmoid_binary_cross_entropy", ml, dict(pos_weight=2.0)),
        ("sigmoid_binary_cross_entropy", dense, {}),
        ("sigmoid_focal_loss", ml, dict(gamma=2.0, alpha=0.25)),
        ("sigmoid_focal_loss", dense, dict(gamma_neg=4.0, clip=0.05)),
    ]
    errors = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # no "using the slow NumPy reference" warning
        for name, targets, kw in cases:
            loss, grad = getattr(fastxent, name)(x, targets, **kw, reduction="sum",
                                                 return_grad=True)
            e_loss, e_grad = getattr(R, name)(x, targets, **kw, reduction="sum",
                                               return_grad=True)
            errors.append([name, abs(loss - e_loss) / max(1.0, abs(e_loss)),
                           float(np.max(np.abs(grad - e_grad)) / np.max(np.abs(e_grad)))])
    print(json.dumps({"errors": errors, "numba_loaded": sys.modules.get("numba") is not None}))
""")


@needs_build
def test_every_loss_without_numba_uses_cython():
    env = dict(os.environ)
    env.pop("FASTXENT_DISABLE_NUMBA", None)
    proc = subprocess.run([sys.executable, "-c", _NO_NUMBA], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not result["numba_loaded"]
    assert len(result["errors"]) == 8
    for name, loss_err, grad_err in result["errors"]:
        assert loss_err <= 1e-5 and grad_err <= 1e-6, (name, loss_err, grad_err)


@needs_build
def test_auto_is_cython_when_numba_is_disabled():
    code = ("import fastxent, fastxent._dispatch as d; import sys; "
            "print(d.select('auto'), 'numba' in sys.modules)")
    env = dict(os.environ, FASTXENT_DISABLE_NUMBA="1")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["cython", "False"]


def test_math_constants_are_floats():
    # the .pxd mirrors _math by name: every formula it defines exists in _math
    for name in UNARY + FORMULAS:
        assert callable(getattr(_math, name)), name
    assert math.isclose(_math.LOG2E, 1 / math.log(2))


@needs_build
@pytest.mark.parametrize("form", ["sparse", "dense"])
@pytest.mark.parametrize("n_params", [0, 2, 3, 7])
def test_sigmoid_kernels_reject_params_of_another_length(form, n_params):
    """The sigmoid kernels tell BCE (1 value) from focal loss (6 values) by the length of
    ``params``: any other length raises instead of running one of them with the wrong
    arguments, and writes nothing."""
    from fastxent.backends.cython import kernels
    n, c = 2, 8
    logits = np.zeros((n, c), dtype=np.float32)
    grad = np.full_like(logits, 7.0)
    row_loss = np.full(n, 7.0)
    empty = np.empty(0)
    params = (0.5,) * n_params
    with pytest.raises(ValueError, match="params must be"):
        if form == "sparse":
            kernels.sigmoid_sparse(logits, np.zeros(n + 1, dtype=np.int64),
                                   np.zeros(0, dtype=np.int64), empty, empty, empty, empty,
                                   (0.0, 1.0), params, row_loss, grad, True, np.zeros(0), 1,
                                   (True, 2048))
        else:
            kernels.sigmoid_dense(logits, np.zeros((n, c), dtype=np.float32), empty, empty,
                                  empty, (0.0, 1.0), params, row_loss, grad, True, 1)
    assert (grad == 7.0).all() and (row_loss == 7.0).all()


@needs_build
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", PIPELINED_SHAPES)
@pytest.mark.parametrize("form", ["int", "multilabel"])
@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "weighted"])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_pipelined_softmax_ce_keeps_the_bits_of_the_row_by_row_form(dtype, shape, form,
                                                                    weighted, threads):
    """Cython's ``softmax_xent_sparse_pipelined`` (``conftest.check_pipelined_softmax_ce``):
    the bits of the row-by-row form at every offset of ``grad_out``, nothing outside it
    written, with 1-3 threads (runs of one row and of none included)."""
    from fastxent.backends.cython import kernels
    with fastxent.num_threads(threads):
        check_pipelined_softmax_ce("cython", kernels._pipelines, dtype, shape, form,
                                   weighted)


@needs_build
@pytest.mark.parametrize("bad", ["smoothing", "short buffers", "grad shape"])
def test_pipelined_softmax_ce_kernel_rejects_what_it_cannot_compute(bad):
    """``softmax_xent_sparse_pipelined`` takes no label smoothing, two row buffers of
    ``cached_row_width(C)`` per run and a gradient shaped like the logits; anything else
    raises before it writes."""
    from fastxent.backends.cython import kernels
    n, c = 3, 40
    logits = np.linspace(-2, 2, n * c, dtype=np.float32).reshape(n, c)
    indptr = np.arange(n + 1, dtype=np.int64)
    indices = np.array([0, 7, 39], dtype=np.int64)
    empty = np.empty(0)
    width = kernels.cached_row_width(c)
    options = (0.1 if bad == "smoothing" else 0.0, 0.0, 1.0 / n, float(c), 1e6)
    row_bufs = np.zeros((2, 2 * width - (1 if bad == "short buffers" else 0)), np.float32)
    grad = np.full((n, c + 1) if bad == "grad shape" else (n, c), 7.0, np.float32)
    row_loss = np.full(n, 7.0)
    with pytest.raises(ValueError, match="softmax_xent_sparse_pipelined"):
        kernels.softmax_xent_sparse_pipelined(logits, indptr, indices, empty, empty, empty,
                                              options, row_loss, grad, np.zeros(n), row_bufs,
                                              2)
    assert (grad == 7.0).all() and (row_loss == 7.0).all()
