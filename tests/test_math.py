"""Tests of ``fastxent._math`` as the Numba CPU backend compiles it.

(a) The float32 polynomial primitives (``exp``, ``log``, ``log1p_unit``, ``neg_expm1`` on float32
    arguments compile to ``exp_poly``, ``log_poly``, ``log1p_poly``, ``neg_expm1_poly``) meet
    the error bounds stated in the table of ``fastxent/_math.py`` over their whole input range,
    special values included, against float64 NumPy. Each is compiled twice: with
    ``error_model="numpy"`` only, and with the kernels' flags (``_primitives.FASTMATH``).
(b) The formulas (``softplus_pair``, ``bce_term``, ``focal_term``, ``softmax_focal_term``,
    ``focal_pow``): pure Python (the definition, float64) == Numba float64 (rtol 1e-14), and
    Numba float32 within float32 accuracy of the float64 definition, on grids crossing every
    cutoff; the float32 compilation returns float32 (``cast_like`` never promotes).

Compile time: a float32 compilation of these functions takes Numba 10 to 60 s each (the
``inline="always"`` overloads re-run type inference at every inlined call), so the jitted test
functions live in a generated module with ``cache=True``, in a temporary directory whose name is
a hash of this module's template and of the sources of ``_math.py`` and ``_primitives.py``: a
change to either compiles afresh, an unchanged tree loads the cached machine code.
"""
import hashlib
import importlib.util
import itertools
import math
import os
import re
import sys
import tempfile

import numpy as np
import pytest

numba = pytest.importorskip("numba")

import fastxent._math as M  # noqa: E402
import fastxent.backends.numba_cpu._primitives as P  # noqa: E402

F32 = np.float32
TINY32 = float(np.finfo(np.float32).tiny)        # 2**-126, smallest normal float32

EXP_LO = F32(-86.64315)        # the clamp points of exp_poly, as float32
EXP_HI = F32(88.72283)
#: exp_poly returns 0 for x < EXP_LO, whose exact exp is below exp(EXP_LO) = 1.00024 * 2**-125
#: (the docstring's "below 2**-125": a few float32 x in [-125 ln2, EXP_LO) are flushed too)
FLUSH = float(np.exp(np.float64(EXP_LO)))
#: exp_nonpos_poly flushes where x log2(e) rounds to -126 (its 2**(k-1) is 0 there): every x
#: below -125.5 ln2 = -86.9902, whose exact exp is below 2**-125.5; above, it is in its bound
NONPOS_FLUSH_X = -125.5 * math.log(2.0)
NONPOS_FLUSH = 2.0 ** -125.5

# ============================================================================================
# the jitted test functions (generated module, cached on disk; see the module docstring)
# ============================================================================================

#: the float32-specialised primitives of the table (``exp_nonpos`` is newer: tested when present)
PRIMITIVES = tuple(p for p in ("exp", "exp_nonpos", "log", "log1p_unit", "neg_expm1",
                               "recip_unit")
                   if hasattr(M, p))
MODES = ("plain", "kernel")

_HEADER = '''
import numba
import fastxent.backends.numba_cpu._primitives as _P
from fastxent import _math

plain = dict(error_model="numpy", cache=True)
kernel = dict(error_model="numpy", fastmath=_P.FASTMATH, cache=True)
'''
_PRIM_TEMPLATE = '''

@numba.njit(**{mode})
def {prim}_{mode}(x, out):
    for i in range(x.size):
        out[i] = _math.{prim}(x[i])
'''
_FORMULAS = '''

@numba.njit(**kernel)
def softplus_pair(x):
    return _math.softplus_pair(x)


@numba.njit(**kernel)
def bce_term(x, y, w):
    return _math.bce_term(x, y, w)


@numba.njit(**kernel)
def focal_term(x, y, gamma, gamma_neg, clip, alpha, clip_hi, clip_lo):
    return _math.focal_term(x, y, gamma, gamma_neg, clip, alpha, clip_hi, clip_lo)


@numba.njit(**kernel)
def softmax_focal_term(gap, gamma):
    return _math.softmax_focal_term(gap, gamma)


@numba.njit(**kernel)
def focal_pow(q, g):
    return _math.focal_pow(q, g)


@numba.njit(**kernel)
def bce_negative_term(x):
    return _math.bce_negative_term(x)


@numba.njit(**kernel)
def focal_negative_term(x, gamma_neg, alpha):
    return _math.focal_negative_term(x, gamma_neg, alpha)


@numba.njit(**kernel)
def focal_negative_term_sq(x, alpha):
    return _math.focal_negative_term_sq(x, alpha)


@numba.njit(**kernel)
def rint_exp2(t, k, scale):
    for i in range(t.size):
        k[i], scale[i] = _math.rint_exp2(t[i])
'''
SOURCE = _HEADER + "".join(_PRIM_TEMPLATE.format(prim=p, mode=m)
                           for p in PRIMITIVES for m in MODES) + _FORMULAS


def _prune(base, keep, age=86400.0):
    """Remove cache directories of other trees unused for a day (best effort)."""
    import shutil
    import time
    try:
        entries = os.listdir(base)
    except OSError:
        return
    for entry in entries:
        d = os.path.join(base, entry)
        try:
            if entry != keep and time.time() - os.path.getmtime(d) > age:
                shutil.rmtree(d, ignore_errors=True)
        except OSError:
            pass


def _load_jitted():
    h = hashlib.sha256(SOURCE.encode())
    for mod in (M, P):
        with open(mod.__file__, "rb") as f:
            h.update(f.read())
    h.update(f"{sys.version} {numba.__version__} {np.__version__}".encode())
    key = h.hexdigest()[:20]
    base = os.path.join(tempfile.gettempdir(), f"fastxent-test-math-{os.getuid()}")
    path = os.path.join(base, key, f"fx_test_math_{key}.py")
    if not os.path.exists(path):
        _prune(base, keep=key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write(SOURCE)
        os.replace(tmp, path)
    name = f"fx_test_math_{key}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


J = _load_jitted()


def run_primitive(prim, mode, x):
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = np.full(x.shape, np.nan, dtype=np.float32)
    getattr(J, f"{prim}_{mode}")(x, out)
    return out


# ============================================================================================
# (a) float32 primitives: stated error bounds over the whole input range
# ============================================================================================

def _stated_bounds():
    """The bounds of the docstring table of ``fastxent._math``, so that the tests check what the
    docstring claims (editing the claim re-targets the tests)."""
    doc = M.__doc__
    num = r"([0-9.]+e-[0-9]+)"
    found = {}
    for key, pattern in {
        "exp": r"``exp_poly``: max relative error " + num,
        "exp_nonpos": r"``exp_nonpos_poly``: max relative error " + num,
        "log_abs": r"``log_poly``: max absolute error " + num + r" for",
        "log_rel": r"``log_poly``: max absolute error [^\n]*\n[^`]*?relative " + num,
        "log1p_unit": r"``log1p_poly``: max relative error " + num,
        "neg_expm1": r"``neg_expm1_poly``: max relative error " + num,
        "recip_unit": r"``fdiv arcp ninf``: max relative error " + num,
    }.items():
        m = re.search(pattern, doc)
        found[key] = float(m.group(1)) if m else None
    return found


STATED = _stated_bounds()
#: The bounds the tests hold the primitives to: the ones the table states.
BOUND = dict(STATED)


def test_docstring_states_every_bound():
    """Every primitive's bound is found in the table (the tests below use them)."""
    wanted = {k: v for k, v in STATED.items() if k != "exp_nonpos" or "exp_nonpos" in PRIMITIVES}
    assert all(v is not None and 0 < v < 1e-5 for v in wanted.values()), STATED

def f32_bits(lo, hi, step=1):
    """Every ``step``-th float32 whose bit pattern is in [lo, hi) (positive floats: monotone)."""
    return np.arange(lo, hi, step, dtype=np.int64).astype(np.uint32).view(np.float32)


def around(v, ulps):
    """The float32 values within ``ulps`` units in the last place of ``v`` (v > 0 or v < 0)."""
    b = int(np.float32(abs(v)).view(np.uint32))
    out = f32_bits(max(b - ulps, 0), b + ulps + 1)
    return out if v > 0 else -out


def rel_err(got, exact):
    got = got.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(got == exact, 0.0, np.abs(got - exact) / np.abs(exact))


def assert_rel(got, exact, bound, x, what):
    err = rel_err(got, exact)
    i = int(np.argmax(err))
    assert err[i] <= bound, (f"{what}: relative error {err[i]:.3g} > {bound:g} at "
                             f"x = {x[i]!r} (got {got[i]!r}, exact {exact[i]!r})")
    return float(err[i])


def assert_abs(got, exact, bound, x, what):
    err = np.abs(got.astype(np.float64) - exact)
    i = int(np.argmax(err))
    assert err[i] <= bound, (f"{what}: absolute error {err[i]:.3g} > {bound:g} at "
                             f"x = {x[i]!r} (got {got[i]!r}, exact {exact[i]!r})")
    return float(err[i])




def exp_grid():
    ln2 = math.log(2.0)
    parts = [np.linspace(-87.5, 88.8, 1 << 21).astype(np.float32),
             np.linspace(-1.0, 1.0, 1 << 18).astype(np.float32)]
    # the reduction x = k ln2 + r switches k at x = (k + 1/2) ln2: every switch point, +-64 ulps
    for k in range(-126, 128):
        v = (k + 0.5) * ln2
        if -87.5 < v < 88.8 and v != 0:
            parts.append(around(v, 64))
    for v in (EXP_LO, EXP_HI, -87.33654, 1e-30, -1e-30, 1e-7, -1e-7):   # -87.34: log(FLT_MIN)
        parts.append(around(v, 2048))
    return np.concatenate(parts)


@pytest.mark.parametrize("mode", MODES)
def test_exp_poly_bound(mode):
    """exp: max relative error 4e-7 wherever the result is not flushed (x >= -86.64315);
    below, 0 (the exact value is < exp(-86.64315) ~ 2**-125 there); above 88.72283, inf."""
    x = exp_grid()
    got = run_primitive("exp", mode, x)
    exact = np.exp(x.astype(np.float64))
    normal = (x >= EXP_LO) & (x <= EXP_HI)
    assert_rel(got[normal], exact[normal], BOUND["exp"], x[normal], f"exp ({mode})")
    low, high = x < EXP_LO, x > EXP_HI
    assert low.sum() > 1000 and high.sum() > 100
    assert np.all(got[low] == 0.0), x[low][got[low] != 0][:5]
    assert np.all(exact[low] < FLUSH)
    assert np.all(np.isposinf(got[high]))
    assert np.all(got[normal] >= FLUSH / 2) and np.all(np.isfinite(got[normal]))


@pytest.mark.parametrize("mode", MODES)
def test_exp_poly_special_values(mode):
    x = np.array([np.nan, np.inf, -np.inf, -87.4, -87.5, -100.0, -1e4, -3e38, 88.73, 89.0,
                  1e4, 3e38, 0.0, -0.0, EXP_LO, EXP_HI,
                  np.nextafter(EXP_LO, F32(-np.inf)), np.nextafter(EXP_HI, F32(np.inf))],
                 dtype=np.float32)
    got = run_primitive("exp", mode, x)
    assert np.isnan(got[0])
    assert got[1] == np.inf and got[2] == 0.0
    assert np.all(got[3:8] == 0.0)                     # x < -87.4 (and every x < -86.64315)
    assert np.all(np.isposinf(got[8:12]))              # x > 88.73
    assert got[12] == 1.0 and got[13] == 1.0
    assert 0 < got[14] < 2.0 ** -124 and rel_err(got[14:15], np.exp(np.float64(x[14:15])))[0] \
        <= BOUND["exp"]
    assert np.isfinite(got[15]) and got[15] > 3.4e38
    assert got[16] == 0.0 and got[17] == np.inf


needs_exp_nonpos = pytest.mark.skipif("exp_nonpos" not in PRIMITIVES,
                                     reason="this _math has no exp_nonpos")


@needs_exp_nonpos
@pytest.mark.parametrize("mode", MODES)
def test_exp_nonpos_poly_bound(mode):
    """exp_nonpos (x <= 0): the stated relative error wherever the result is not flushed, that
    is for every x above -125.5 ln2 (float32 x within 1e-5 of it may go either way: the
    rounding of x log2(e) decides); below, 0 (the exact value is < 2**-125.5); never a
    subnormal."""
    x = exp_grid()
    x = x[x <= 0]
    got = run_primitive("exp_nonpos", mode, x)
    exact = np.exp(x.astype(np.float64))
    x64 = x.astype(np.float64)
    above = x64 > NONPOS_FLUSH_X + 1e-5
    below = x64 < NONPOS_FLUSH_X - 1e-5
    edge = ~above & ~below
    assert_rel(got[above], exact[above], BOUND["exp_nonpos"], x[above],
               f"exp_nonpos ({mode})")
    assert below.sum() > 1000 and np.all(got[below] == 0.0) and np.all(exact[below] < NONPOS_FLUSH)
    kept = edge & (got != 0)
    assert_rel(got[kept], exact[kept], BOUND["exp_nonpos"], x[kept], f"exp_nonpos ({mode})")
    assert np.all((got == 0) | (got >= TINY32)), "a subnormal result"
    # the range exp_poly flushes and exp_nonpos no longer does
    assert np.all(got[(x < EXP_LO) & above] > 0) and ((x < EXP_LO) & above).sum() > 10


def test_rint_exp2_rounds_to_nearest_even_and_scales_exactly():
    """rint_exp2 (float32, in a vectorised loop with the kernels' flags): k is a nearest integer
    to t (NumPy's rint: the even neighbour at a tie, as stated) and 2**(k-1) is exact, 0 for
    k = -126, for every t of a fine grid of [-126.5, 127] and every float32 within 32 ulps of
    each half-integer; NaN gives k = NaN. The definition in Python agrees."""
    parts = [np.arange(-126.5, 127.0 + 1e-9, 1.0 / 64).astype(np.float32)]
    for k in range(-127, 127):
        if k + 0.5 != 0:
            parts.append(around(k + 0.5, 32))
    t = np.concatenate(parts + [np.array([np.nan, -0.0, 0.0], np.float32)])
    t = t[np.isnan(t) | ((t >= -126.5) & (t <= 127))]
    k = np.empty_like(t)
    scale = np.empty_like(t)
    J.rint_exp2(t, k, scale)
    num = ~np.isnan(t)
    t64 = t.astype(np.float64)
    tie = num & (t64 - np.floor(t64) == 0.5)
    assert tie.sum() > 250
    np.testing.assert_array_equal(k[num], np.rint(t[num]))
    assert k[num].min() == -126 and (k == -126).sum() > 32
    want = np.where(k[num] == -126, np.float32(0),
                    np.ldexp(np.float32(1), np.maximum(k[num], -125).astype(np.int32) - 1))
    np.testing.assert_array_equal(scale[num], want)
    assert np.isnan(k[~num]).all()
    for v in np.concatenate([t[num][::997], t[tie][::17]]):
        kv = float(np.rint(v))
        assert M.rint_exp2(float(v)) == (kv, 0.0 if kv == -126 else math.ldexp(1.0, int(kv) - 1))
    assert math.isnan(M.rint_exp2(math.nan)[0])


@needs_exp_nonpos
@pytest.mark.parametrize("mode", MODES)
def test_exp_nonpos_poly_special_values(mode):
    x = np.array([np.nan, -np.inf, 0.0, -0.0, -87.4, -1e4, -3e38, -86.98, -87.0, -1e-45,
                  EXP_LO, np.nextafter(EXP_LO, F32(-np.inf)), -87.33654475], dtype=np.float32)
    got = run_primitive("exp_nonpos", mode, x)
    assert np.isnan(got[0]) and got[1] == 0.0
    assert got[2] == 1.0 and got[3] == 1.0
    assert np.all(got[4:7] == 0.0)
    assert TINY32 < got[7] < 2.0 ** -124 and got[8] == 0.0
    assert got[9] == 1.0
    exact = np.exp(x[[7, 10, 11]].astype(np.float64))
    assert np.all(rel_err(got[[7, 10, 11]], exact) <= BOUND["exp_nonpos"])
    assert got[12] == 0.0


def log_grid():
    return np.concatenate([
        f32_bits(1, 0x7F800000, 509),                     # every binade, subnormals included
        f32_bits(0x3F000000, 0x40000001, 7),              # [0.5, 2]
        around(1.0, 1 << 14), around(math.sqrt(2.0), 4096), around(math.sqrt(0.5), 4096),
        around(0.5, 4096), around(2.0, 4096), around(TINY32, 4096),
        f32_bits(1, 1 << 12),                             # the smallest subnormals
        f32_bits(0x7F7FF000, 0x7F800000),                 # up to FLT_MAX
    ])


@pytest.mark.parametrize("mode", MODES)
def test_log_poly_bound(mode):
    """log: max absolute error 3e-7 for x in [0.5, 2], relative 2e-7 elsewhere, over every
    positive finite float32 (subnormals included)."""
    x = log_grid()
    got = run_primitive("log", mode, x)
    exact = np.log(x.astype(np.float64))
    mid = (x >= 0.5) & (x <= 2.0)
    assert mid.sum() > 100000 and (~mid).sum() > 100000
    assert_abs(got[mid], exact[mid], BOUND["log_abs"], x[mid], f"log on [0.5, 2] ({mode})")
    assert_rel(got[~mid], exact[~mid], BOUND["log_rel"], x[~mid], f"log outside [0.5, 2] ({mode})")
    sub = x < TINY32
    assert sub.sum() > 1000
    assert_rel(got[sub], exact[sub], BOUND["log_rel"], x[sub], f"log of subnormals ({mode})")


@pytest.mark.parametrize("mode", MODES)
def test_log_poly_special_values(mode):
    x = np.array([0.0, -0.0, -1.0, -1e-45, -np.inf, -3e38, np.inf, np.nan, 1.0, 1e-45,
                  3.4028235e38], dtype=np.float32)
    got = run_primitive("log", mode, x)
    assert got[0] == -np.inf and got[1] == -np.inf
    assert np.all(np.isnan(got[2:6]))
    assert got[6] == np.inf and np.isnan(got[7])
    assert got[8] == 0.0
    np.testing.assert_allclose(got[9:], np.log(x[9:].astype(np.float64)), rtol=BOUND["log_rel"])


def unit_grid():
    return np.concatenate([
        f32_bits(0x00800000, 0x3F800001, 251),           # every normal float32 in [2**-126, 1]
        np.linspace(0.0, 1.0, 1 << 20).astype(np.float32),
        around(1.0, 4096)[:4097], around(TINY32, 64)[64:],
        np.array([0.0, 1.0], np.float32),
    ])


@pytest.mark.parametrize("mode", MODES)
def test_log1p_poly_bound(mode):
    """log1p_unit on [0, 1], float32 arguments (every 251st normal, a fine linear grid, 0, 1):
    max relative error 3.5e-7, the bound _math states (measured exhaustively over [0.5, 1]:
    3.45e-7 at e = 0.9625 without FMA contraction, 3.09e-7 at e = 0.8547 with it)."""
    e = unit_grid()
    got = run_primitive("log1p_unit", mode, e)
    exact = np.log1p(e.astype(np.float64))
    assert got[e == 0.0][0] == 0.0
    assert_rel(got, exact, BOUND["log1p_unit"], e, f"log1p_unit on [2**-126, 1] ({mode})")


@pytest.mark.parametrize("mode", MODES)
def test_log1p_poly_every_float32_of_the_worst_binade(mode):
    """Exhaustive over [0.5, 1], where the maximum error lies."""
    e = f32_bits(0x3F000000, 0x3F800001)
    got = run_primitive("log1p_unit", mode, e)
    assert_rel(got, np.log1p(e.astype(np.float64)), BOUND["log1p_unit"], e,
               f"log1p_unit on [0.5, 1] ({mode})")


@pytest.mark.parametrize("mode", MODES)
def test_log1p_poly_subnormal_arguments(mode):
    """Subnormal arguments (< 2**-126): ``e q(e)`` with q ~ 1 rounds to e itself or within one
    unit of 2**-149 (the library never passes one: exp_poly flushes results below 2**-125)."""
    e = f32_bits(1, 0x00800000, 3)
    got = run_primitive("log1p_unit", mode, e)
    exact = np.log1p(e.astype(np.float64))
    assert_abs(got, exact, 2.0 ** -149, e, f"log1p_unit on subnormals ({mode})")


@pytest.mark.parametrize("mode", MODES)
def test_recip_unit_every_float32_of_its_domain(mode):
    """recip_unit: every float32 in [1, 2] (in a loop that vectorises: the reciprocal
    estimate and its Newton step; the scalar remainder divides exactly), within the
    stated bound; NaN propagates."""
    d = f32_bits(0x3F800000, 0x40000001)
    got = run_primitive("recip_unit", mode, d)
    assert_rel(got, 1.0 / d.astype(np.float64), BOUND["recip_unit"], d,
               f"recip_unit on [1, 2] ({mode})")
    nan = run_primitive("recip_unit", mode, np.full(64, np.nan, np.float32))
    assert np.all(np.isnan(nan))


def nexpm1_grid():
    return np.concatenate([
        np.linspace(0.0, 100.0, 1 << 21).astype(np.float32),
        np.logspace(-30, -3, 1 << 18).astype(np.float32),
        f32_bits(1, int(F32(100.0).view(np.uint32)) + 1, 307),   # every binade of [0, 100]
        around(0.34657359, 4096),                               # the switch of formulas
        np.array([0.0, 100.0], np.float32),
    ])


@pytest.mark.parametrize("mode", MODES)
def test_neg_expm1_poly_bound(mode):
    """neg_expm1: max relative error 4.2e-7 on [0, 100], tiny arguments included (the worst
    just above the switch of formulas, t = 0.3466, where ``1 - exp(-t)`` has lost 1.3 bits:
    4.14e-7 without FMA contraction, 3.9e-7 with it)."""
    t = nexpm1_grid()
    got = run_primitive("neg_expm1", mode, t)
    exact = -np.expm1(-t.astype(np.float64))
    assert got[t == 0.0][0] == 0.0
    tiny = (t > 0) & (t <= 1e-3)
    assert tiny.sum() > 100000 and np.any(t < 1e-29)
    assert_rel(got[tiny], exact[tiny], BOUND["neg_expm1"], t[tiny],
               f"neg_expm1 on (0, 1e-3] ({mode})")
    assert_rel(got, exact, BOUND["neg_expm1"], t, f"neg_expm1 on [0, 100] ({mode})")


@pytest.mark.parametrize("mode", MODES)
def test_neg_expm1_poly_special_values(mode):
    t = np.array([np.inf, np.nan, 1e4, 3e38, 1e-45], dtype=np.float32)
    got = run_primitive("neg_expm1", mode, t)
    assert got[0] == 1.0 and np.isnan(got[1]) and got[2] == 1.0 and got[3] == 1.0
    assert got[4] == F32(1e-45)


# ============================================================================================
# (b) the formulas: definition (pure Python float64) == Numba float64 ~ Numba float32
# ============================================================================================

def _x_grid():
    """float32-representable logits crossing every cutoff: 0, +-ln2/2 (neg_expm1's switch and
    the exp reduction), the exp clamp points -86.64315 / 88.72283, +-30, +-1e4, +-1e-30."""
    cuts = [0.0, 0.34657359, 86.64315, 88.72283, 1e4, 30.0, 1e-30, 1e-7, 0.7, 1.0, 2.5, 10.0,
            17.0, 87.33654, 103.0]
    xs = set()
    for c in cuts:
        c = F32(c)
        for v in (c, np.nextafter(c, F32(np.inf)), np.nextafter(c, F32(0.0))):
            xs.update((float(v), -float(v)))
    return sorted(xs)


X_GRID = _x_grid()
Y_GRID = [0.0, float(F32(0.3)), 1.0]
GAMMAS = [0.0, 1.0, 2.0, 1.5]
CLIPS = [0.0, float(F32(0.05))]
ALPHAS = [-1.0, 0.25]
Q_GRID = [0.0, 1e-45, 1e-30, 1e-7, float(F32(0.3)), 0.5, float(F32(0.999)), 1.0]


def _cases():
    cases = {"softplus_pair": [(x,) for x in X_GRID],
             "bce_term": [(x, y, w) for x in X_GRID for y in Y_GRID for w in (1.0, 0.5, 3.0)],
             "focal_term": [], "softmax_focal_term": [], "focal_pow": [],
             "bce_negative_term": [(x,) for x in X_GRID],
             "focal_negative_term": [(x, g, a) for x in X_GRID for g in GAMMAS + [4.0, 0.5]
                                     for a in ALPHAS],
             "focal_negative_term_sq": [(x, a) for x in X_GRID for a in ALPHAS]}
    for x, y, g, gn, c, a in itertools.product(X_GRID, Y_GRID, GAMMAS, [None, 0.0, 4.0],
                                                CLIPS, ALPHAS):
        cases["focal_term"].append((x, y, g, g if gn is None else gn, c, a))
    for gap, g in itertools.product(sorted({abs(x) for x in X_GRID}), GAMMAS + [4.0, 0.5]):
        cases["softmax_focal_term"].append((gap, g))
    for q, g in itertools.product(Q_GRID, GAMMAS + [4.0, 0.5]):
        cases["focal_pow"].append((q, g))
    return cases


CASES = _cases()
FORMULAS = list(CASES)


def _as_rows(values):
    return np.array([v if isinstance(v, tuple) else (v,) for v in values], dtype=np.float64)


def _full_case(formula, case, single):
    """The arguments of ``formula``: focal_term's case + ``clip_logit(clip)`` in the dtype."""
    return case + M.clip_logit(case[4], single) if formula == "focal_term" else case


def evaluate(formula, cases, dtype=None):
    """Rows of outputs: the pure-Python definition (dtype None) or the Numba compilation."""
    cases = [_full_case(formula, c, dtype is np.float32) for c in cases]
    if dtype is None:
        fn = getattr(M, formula)
        return _as_rows([fn(*c) for c in cases])
    fn = getattr(J, formula)
    return _as_rows([fn(*(dtype(v) for v in c)) for c in cases])


def _group_scale(formula, cases, ref):
    """Per output, the largest |value| among the cases sharing every parameter but the logit
    (``gap``/``q``): the magnitude an error is judged against when the value itself comes
    from a cancellation (derivatives), as the contract judges gradients by max |grad|."""
    keys = [c[1:] for c in cases]
    scale = np.empty_like(ref)
    groups = {}
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    for idx in groups.values():
        scale[idx] = np.max(np.abs(ref[idx]), axis=0)
    return scale


@pytest.mark.parametrize("formula", FORMULAS)
def test_numba_float64_equals_definition(formula):
    cases = CASES[formula]
    ref = evaluate(formula, cases)
    got = evaluate(formula, cases, np.float64)
    assert got.shape == ref.shape
    assert np.array_equal(np.isnan(got), np.isnan(ref))
    scale = _group_scale(formula, cases, ref)
    # rtol 1e-14; a derivative coming out of a cancellation is judged against its group's
    # magnitude (1e-14 of it), e.g. d/dx focal at the minimum of the loss
    bound = 1e-14 * np.maximum(np.abs(ref), 1e-2 * scale)
    err = np.abs(got - ref)
    bad = ~(err <= bound) & ~(got == ref)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise AssertionError(f"{formula} output {j} at {cases[i]}: numba {got[i, j]!r} vs "
                             f"python {ref[i, j]!r} (error {err[i, j]:.3g}, bound "
                             f"{bound[i, j]:.3g}); {int(bad.sum())} entries off")


#: float32 accuracy of each formula's outputs against the float64 definition at the same
#: (float32) inputs: ``|f32 - f64| <= rel * |f64| + grp * group magnitude + FLUSH``.
#: ``rel``: the primitives' bounds (exp 4e-7, log1p 3.5e-7, log 2e-7 / 3e-7 abs, neg_expm1 4.2e-7)
#: plus a few float32 roundings (6e-8 each); focal_pow with a non-integer exponent has the
#: condition number |g log q| of exp(g log q), so its error is judged against the group too.
F32_TOL = {
    "softplus_pair": (1e-6, 0.0),
    "bce_term": (1e-6, 1e-6),
    "focal_term": (2e-6, 2e-6),
    "softmax_focal_term": (2e-6, 2e-6),
    "focal_pow": (2e-6, 2e-6),
    "bce_negative_term": (1e-6, 1e-6),
    "focal_negative_term": (2e-6, 2e-6),
    "focal_negative_term_sq": (2e-6, 2e-6),
}


@pytest.mark.parametrize("x", X_GRID)
def test_negative_terms_are_the_general_terms_at_y0(x):
    """The closed forms of a negative (y = 0, no clip) equal the general formulas in float64
    (to rounding: the closed form takes p**g as exp(-g softplus(-x)))."""
    for w in (1.0, 3.0):
        assert M.bce_negative_term(x) == pytest.approx(M.bce_term(x, 0.0, w), rel=1e-15, abs=0)
    for g, a in itertools.product(GAMMAS + [4.0, 0.5], ALPHAS):
        got = M.focal_negative_term(x, g, a)
        want = M.focal_term(x, 0.0, 7.0, g, 0.0, a, 0.0, 0.0)
        assert got == pytest.approx(want, rel=1e-13, abs=1e-300), (x, g, a)
    for a in ALPHAS:                 # gamma_neg = 2 with p * p for p**2
        got = M.focal_negative_term_sq(x, a)
        assert got == pytest.approx(M.focal_term(x, 0.0, 7.0, 2.0, 0.0, a, 0.0, 0.0), rel=1e-13,
                                    abs=1e-300), (x, a)
        assert got == pytest.approx(M.focal_negative_term(x, 2.0, a), rel=1e-13, abs=1e-300)


@pytest.mark.parametrize("x", X_GRID)
def test_negative_terms_scale_by_their_weight(x):
    """What the kernels rely on to multiply once per block: each closed form of a focal negative
    is ``focal_negative_weight(alpha)`` (``1 - alpha``; 1 when alpha < 0 disables balancing)
    times its value at ``alpha = -1``, to rounding."""
    assert [M.focal_negative_weight(x, a) for a in (0.25, 0.0, 1.0, -1.0, -0.5)] == \
        [0.75, 1.0, 0.0, 1.0, 1.0]
    for a in ALPHAS + [1.0]:
        wa = M.focal_negative_weight(x, a)
        for g in GAMMAS + [4.0, 0.5]:
            got = M.focal_negative_term(x, g, a)
            unit = M.focal_negative_term(x, g, -1.0)
            assert got == pytest.approx((wa * unit[0], wa * unit[1]), rel=1e-15, abs=1e-300)
        got = M.focal_negative_term_sq(x, a)
        unit = M.focal_negative_term_sq(x, -1.0)
        assert got == pytest.approx((wa * unit[0], wa * unit[1]), rel=1e-15, abs=1e-300)


@pytest.mark.parametrize("formula", FORMULAS)
def test_numba_float32_close_to_definition(formula):
    cases = [tuple(float(F32(v)) for v in c) for c in CASES[formula]]
    ref = evaluate(formula, cases)
    got = evaluate(formula, cases, np.float32)
    assert np.array_equal(np.isnan(got), np.isnan(ref))
    scale = _group_scale(formula, cases, ref)
    rel, grp = F32_TOL[formula]
    bound = rel * np.abs(ref) + grp * scale + FLUSH
    err = np.abs(got - ref)
    bad = ~(err <= bound) & ~(got == ref)
    if bad.any():
        worst = np.unravel_index(np.argmax(np.where(bad, err / bound, 0)), bad.shape)
        i, j = worst
        raise AssertionError(f"{formula} output {j} at {cases[i]}: float32 {got[i, j]!r} vs "
                             f"float64 {ref[i, j]!r} (error {err[i, j]:.3g}, bound "
                             f"{bound[i, j]:.3g}); {int(bad.sum())} entries off")


@pytest.mark.parametrize("clip", [0.05, 0.3, 1e-6])
def test_focal_term_float32_just_past_the_clip(clip):
    """Negatives whose logit lies 1 to 3000 ulps (and a few wider steps) above the threshold
    ``logit(clip)``: ``p - clip`` would keep only those few ulps of p (relative errors up to
    1), the ``x - logit(clip)`` form keeps float32 accuracy. Bounds: the primitives' (a few
    4e-7) for gamma_neg 1 and 2; ``q**4`` goes through exp(4 log q), whose condition number
    4 |log q| reaches ~70 here (see F32_TOL). Values below float32's range are skipped."""
    c32 = float(F32(clip))
    t = math.log(c32) - math.log1p(-c32)
    xs = [F32(t)]
    for _ in range(3000):
        xs.append(np.nextafter(xs[-1], F32(np.inf)))
    xs = xs[1:] + [F32(t + d) for d in (1e-3, 1e-2, 0.1, 1.0, 5.0)]
    assert all(float(x) > t for x in xs)
    for gamma_neg, bound in ((1.0, 1.5e-6), (2.0, 1.5e-6), (4.0, 2e-5)):
        args = (0.0, 2.0, gamma_neg, c32, 0.25)
        got = evaluate("focal_term", [(float(x),) + args for x in xs], np.float32)
        ref = evaluate("focal_term", [(float(x),) + args for x in xs])
        seen = np.abs(ref) > 1e-30
        assert seen[:, 0].sum() > (100 if gamma_neg <= 2 else 0)
        rel = np.abs(got - ref)[seen] / np.abs(ref)[seen]
        assert rel.max() <= bound, (clip, gamma_neg, rel.max())


@pytest.mark.parametrize("formula", FORMULAS)
def test_float32_stays_float32(formula):
    """The float32 compilation returns float32 only: ``cast_like`` keeps every constant in the
    argument's type, so no float64 promotion sneaks into the kernels' float32 math."""
    fn = getattr(J, formula)
    args = tuple(F32(v) for v in _full_case(formula, CASES[formula][0], True))
    fn(*args)
    sigs = [s for s in fn.nopython_signatures if all(a == numba.float32 for a in s.args)]
    assert sigs, fn.nopython_signatures
    ret = sigs[0].return_type
    outs = list(ret) if isinstance(ret, numba.core.types.BaseTuple) else [ret]
    assert outs and all(t == numba.float32 for t in outs), ret
    # the float64 compilation, for contrast, is float64
    fn(*(float(a) for a in args))
    sig64 = [s for s in fn.nopython_signatures if all(a == numba.float64 for a in s.args)][0]
    ret64 = sig64.return_type
    outs64 = list(ret64) if isinstance(ret64, numba.core.types.BaseTuple) else [ret64]
    assert all(t == numba.float64 for t in outs64), ret64


def test_grids_cross_every_cutoff():
    """The x grid holds both sides of each cutoff the brief names."""
    xs = np.array(X_GRID)
    for c in (0.0, math.log(2) / 2, 86.64315, 88.72283, 1e4, 30.0, 1e-30):
        for s in (1.0, -1.0):
            v = s * c
            assert np.any(xs < v) and np.any(xs > v) and np.any(np.isclose(xs, v, rtol=1e-6,
                                                                            atol=0))
