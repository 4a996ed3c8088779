"""Scalar formulas of every loss, written once.

Every function here is plain Python on scalars using only ``math``: that is the definition, and it
runs as-is (float64) in Python. Backends compile the same functions: the Numba CPU backend registers
each one as jitable (``backends/numba_cpu/_primitives.py``), so kernels call them by these names.

A handful of *primitives* have a per-dtype implementation in a backend while keeping the definition
here as their exact meaning:

=====================  ===============================  ===============================================
primitive              meaning (float64: exactly this)  float32 in the Numba CPU backend
=====================  ===============================  ===============================================
``cast_like(x, c)``    the constant ``c`` in x's type   ``float32(c)`` (keeps float32 math in float32)
``exp(x)``             ``math.exp``                     ``exp_poly``: max relative error 4e-7
``exp_nonpos(x)``      ``math.exp`` for x <= 0          ``exp_nonpos_poly``: max relative error 4e-7
``log(x)``             ``math.log``                     ``log_poly``: max absolute error 3e-7 for
                                                        x in [0.5, 2], relative 2e-7 elsewhere
``log1p_unit(e)``      ``math.log1p`` on [0, 1]         ``log1p_poly``: max relative error 3.5e-7
``neg_expm1(t)``       ``-math.expm1(-t)``, t >= 0      ``neg_expm1_poly``: max relative error 4.2e-7
``recip_unit(d)``      ``1 / d`` for d in [1, 2]        ``fdiv arcp ninf``: max relative error 2e-7
                                                        (vector loops: ``vrcp14ps`` and one
                                                        Newton step, two FMAs, not ``vdivps``)
``fence(x)``           ``x``                            ``llvm.arithmetic.fence``
``sub_exact(a, b)``    ``a - b``                        ``fsub`` without ``reassoc``
``rint(t)``            a nearest integer, as a float    ``llvm.rint`` (one round instruction)
``rint_exp2(t)``       ``(k, 2.0 ** (k - 1))``, k a     ``j = t + B``, ``B = 1.5 * 2**23 + 126``,
                       nearest integer to t in          leaves k + 126 in j's low bits: ``k = j - B``
                       [-126, 127]; 0 for k = -126      and 2**(k-1) is j's bits shifted left by 23
``exp2i(k, like)``     ``2.0 ** k`` (k integral)        bit construction of the exponent field
``split_exponent(x)``  ``x = m * 2**e``, m in            bit extraction
                       [sqrt(1/2), sqrt(2))
=====================  ===============================  ===============================================

The polynomial versions are defined here too (``exp_poly`` ...) so that their error bounds are
tested over the whole input range (``tests/test_math.py``). float64 never uses them.

Notation: ``softplus(t) = max(t, 0) + log1p(exp(-|t|))``; ``sigmoid(t) = 1 / (1 + exp(-t))``.
All formulas work on raw logits (never on probabilities), so logits of +-1e4 are exact.
"""
import math

LN2 = 0.6931471805599453
LOG2E = 1.4426950408889634
SQRT_HALF = 0.7071067811865476
#: Coefficients of ``exp_poly``'s polynomial (float32 values): a minimax fit of
#: ``(exp(r) - 1 - r) / r**2`` weighted for the relative error of exp on ``|r| <= ln2 / 2``.
EXP_C2 = 0.4999999403953552
EXP_C3 = 0.1666652113199234
EXP_C4 = 0.04166839271783829
EXP_C5 = 0.00836874358355999
EXP_C6 = 0.0013814519625157118
#: ``exp_nonpos_poly``'s (one degree fewer): the same fit of degree 5, ``EXPN_C2 + ... + EXPN_C5
#: r**3`` (relative error 1.05e-7 on ``|r| <= ln2 / 2`` before float32 rounding).
EXPN_C2 = 0.499992311000824
EXPN_C3 = 0.16667114198207855
EXPN_C4 = 0.041890110820531845
EXPN_C5 = 0.008312510326504707


# --------------------------------------------------------------------------------------------
# Primitives (their meaning; a backend may substitute a per-dtype implementation)
# --------------------------------------------------------------------------------------------

def cast_like(x, c):
    """The constant ``c`` in the floating type of ``x``."""
    return float(c)


def exp(x):
    return math.exp(x)


def exp_nonpos(x):
    """``exp(x)`` for ``x <= 0`` (or NaN): every exponential the losses take has such an
    argument (``x - max``, ``-|x|``, ``g log q`` with q <= 1), which makes the float32 version
    cheaper than a general exp."""
    return math.exp(x)


def log(x):
    return math.log(x)


def log1p_unit(e):
    """``log(1 + e)`` for ``e`` in [0, 1]."""
    return math.log1p(e)


def neg_expm1(t):
    """``1 - exp(-t)`` for ``t >= 0``, without cancellation near 0."""
    return -math.expm1(-t)


def recip_unit(d):
    """``1 / d`` for ``d`` in [1, 2] or NaN (the sigmoid's ``1 + exp(-|x|)``): never 0 nor
    inf, so a float32 version may use a reciprocal estimate and a Newton step."""
    return cast_like(d, 1.0) / d


def fence(x):
    """``x`` itself; compiled code may not reassociate arithmetic across it (fast-math
    reassociation would otherwise turn ``(m - x) + log_s`` into ``(m + log_s) - x``)."""
    return x


def sub_exact(a, b):
    """``a - b``, an operation compiled code may not reassociate with those around it
    (fast-math reassociation would turn ``(x - hi) - lo`` into ``x - (hi + lo)``, where
    ``hi + lo`` rounds back to ``hi``)."""
    return a - b


def rint(t):
    """A nearest integer to ``t`` (``|t| < 2**31``), as a float of t's type."""
    return float(round(t))


def rint_exp2(t):
    """``(k, 2.0 ** (k - 1))`` with ``k`` a nearest integer to ``t`` (a float of t's type; at a
    tie either neighbour: the even one here and in the float32 version), for ``t`` in
    [-126.5, 127]; ``k = -126`` gives 0 for ``2**(k-1)`` (the float32 version's biased exponent
    field is 0 there: the one value of k below the normal range that it takes, which lets
    ``exp_nonpos_poly`` flush with no test of its own). A NaN ``t`` gives a NaN ``k`` (and an
    unspecified ``2**(k-1)``: a NaN times it is NaN, all ``exp_nonpos_poly`` needs)."""
    if t != t:
        return t, t
    k = float(round(t))
    return k, (0.0 if k <= -126.0 else math.ldexp(1.0, int(k) - 1))


def exp2i(k, like):
    """``2.0 ** k`` for an integral ``k`` in [-126, 127], in the type of ``like``."""
    return math.ldexp(1.0, int(k))


def split_exponent(x):
    """``(m, e)`` with ``x = m * 2**e``, ``m`` in [sqrt(1/2), sqrt(2)), for finite ``x > 0``."""
    m, e = math.frexp(x)
    m *= 2.0
    e -= 1
    if m > 2.0 * SQRT_HALF:
        m *= 0.5
        e += 1
    return m, float(e)


# --------------------------------------------------------------------------------------------
# Polynomial float32 versions of the primitives (vectorise; see the table above for bounds)
# --------------------------------------------------------------------------------------------

def exp_poly(x):
    """exp(x) by range reduction ``x = k ln2 + r``, ``|r| <= ln2/2``, and the degree-6
    polynomial ``1 + r + r**2 (EXP_C2 + ... + EXP_C6 r**4)`` fitted for relative error (3.1e-9
    before float32 rounding; the degree-7 Taylor polynomial it replaced: 6e-9, one more
    multiply-add per exp). Results below 2**-125 (x < -86.64) are flushed to 0;
    x > 88.72 gives inf; NaN propagates."""
    lo = cast_like(x, -86.64315)      # -125 ln2: keeps 2**(k-1) a normal number
    hi = cast_like(x, 88.72283)       # log(FLT_MAX)
    xc = x if x > lo else lo
    xc = xc if xc < hi else hi
    t = xc * cast_like(x, LOG2E)
    kf = rint(t)
    r = (xc - kf * cast_like(x, 0.693359375)) - kf * cast_like(x, -2.12194440e-4)  # Cody-Waite
    p = cast_like(x, EXP_C6)
    p = p * r + cast_like(x, EXP_C5)
    p = p * r + cast_like(x, EXP_C4)
    p = p * r + cast_like(x, EXP_C3)
    p = p * r + cast_like(x, EXP_C2)
    p = p * r + cast_like(x, 1.0)
    p = p * r + cast_like(x, 1.0)
    res = p * exp2i(kf - cast_like(x, 1.0), x) * cast_like(x, 2.0)
    res = res if x >= lo else cast_like(x, 0.0)
    res = res if x <= hi else cast_like(x, math.inf)
    return res if x == x else x


def exp_nonpos_poly(x):
    """exp(x) for x <= 0 or NaN: ``exp_poly`` without the overflow side, without a test and with
    a polynomial one degree lower: ``x = k ln2 + r`` gives ``exp(x) = 2 exp(r) * 2**(k-1)``, the
    polynomial's coefficients doubled (exact: a power of 2 scales every rounding alike) and
    ``2**(k-1)`` from ``rint_exp2``, which is 0 for k = -126. The clamp at -126 ln2 keeps
    k >= -126, so x < -125.5 ln2 = -86.99 gives 0 (the exact value is below 2**-125.5 there) and
    no result is subnormal; a NaN passes the clamp (``lo if x < lo else x``) and every later
    step. One ``max`` where a clamp and a test of x took three vector operations: BCE and
    sigmoid focal element loops 10% faster. Degree 5 (``EXPN_C*``, 1.05e-7 before rounding)
    keeps the stated bound, whose maximum lies at large ``|x|`` (the reduction's ``k ln2``):
    one multiply-add fewer per element, sigmoid loops 3% faster on AMD Zen 4. (Compiled with
    reassociation, as the Numba kernels are, the reduction's two steps merge into one
    multiply-add by ``ln2`` rounded to float32; the bound is measured, and holds, both ways.)"""
    lo = cast_like(x, -87.33654475)   # -126 ln2
    xc = lo if x < lo else x
    kf, half_scale = rint_exp2(xc * cast_like(x, LOG2E))
    r = (xc - kf * cast_like(x, 0.693359375)) - kf * cast_like(x, -2.12194440e-4)  # Cody-Waite
    p = cast_like(x, 2.0 * EXPN_C5)
    p = p * r + cast_like(x, 2.0 * EXPN_C4)
    p = p * r + cast_like(x, 2.0 * EXPN_C3)
    p = p * r + cast_like(x, 2.0 * EXPN_C2)
    p = p * r + cast_like(x, 2.0)
    p = p * r + cast_like(x, 2.0)
    return p * half_scale


def _atanh_series(s):
    """``2 * atanh(s) = log((1 + s) / (1 - s))`` for ``|s| <= 1/3`` (relative error < 2e-9)."""
    s2 = s * s
    p = cast_like(s, 1.0 / 15.0)
    p = p * s2 + cast_like(s, 1.0 / 13.0)
    p = p * s2 + cast_like(s, 1.0 / 11.0)
    p = p * s2 + cast_like(s, 1.0 / 9.0)
    p = p * s2 + cast_like(s, 1.0 / 7.0)
    p = p * s2 + cast_like(s, 1.0 / 5.0)
    p = p * s2 + cast_like(s, 1.0 / 3.0)
    p = p * s2 + cast_like(s, 1.0)
    return cast_like(s, 2.0) * s * p


def log1p_poly(e):
    """log1p(e) for e in [0, 1] as ``e q(e)``, ``q`` a degree-7 polynomial: the minimax fit of
    ``log1p(e) / e`` on [0, 1] for relative error (1.9e-7 before float32 rounding), its float32
    coefficients then moved by a few ulps to lower the error after rounding (searched over every
    float32 of [0.5, 1], the worst binade). No division (the ``2 atanh(e / (2 + e))`` series it
    replaced divided once per element, which cost BCE and focal kernels more than the extra
    multiply-adds); degree 7, not the 8 that reaches 3e-8, because one multiply-add per element
    fewer measured 3% faster sigmoid loops, arithmetic-bound on AMD Zen 4. Subnormal ``e``
    keeps its relative accuracy (``e * q(e)``, q ~ 1)."""
    p = cast_like(e, -0.008539239875972271)
    p = p * e + cast_like(e, 0.04408978298306465)
    p = p * e + cast_like(e, -0.10768195986747742)
    p = p * e + cast_like(e, 0.17745262384414673)
    p = p * e + cast_like(e, -0.24495473504066467)
    p = p * e + cast_like(e, 0.33275482058525085)
    p = p * e + cast_like(e, -0.4999740719795227)
    p = p * e + cast_like(e, 0.9999998211860657)
    return e * p


def log_poly(x):
    """log(x): ``x = m 2**e``, ``log x = e ln2 + 2 atanh((m-1)/(m+1))``. 0 -> -inf, x < 0 -> NaN,
    inf -> inf, NaN -> NaN; subnormal inputs are rescaled first."""
    tiny = cast_like(x, 1.1754943508222875e-38)
    sub = x < tiny
    xs = x * cast_like(x, 16777216.0) if sub else x
    xs = xs if xs > cast_like(x, 0.0) else cast_like(x, 1.0)        # keep the bit path defined
    xs = xs if xs < cast_like(x, math.inf) else cast_like(x, 1.0)
    m, e = split_exponent(xs)
    e = e - cast_like(x, 24.0) if sub else e
    one = cast_like(x, 1.0)
    res = e * cast_like(x, 0.693359375) + (_atanh_series((m - one) / (m + one))
                                            + e * cast_like(x, -2.12194440e-4))
    res = res if x > cast_like(x, 0.0) else (cast_like(x, -math.inf) if x == cast_like(x, 0.0)
                                             else cast_like(x, math.nan))
    res = res if x < cast_like(x, math.inf) else x
    return res if x == x else x


def neg_expm1_poly(t):
    """1 - exp(-t) for t >= 0: Taylor series below ln2/2, ``1 - exp_nonpos(-t)`` above."""
    u = -t
    p = cast_like(t, 1.0 / 5040.0)
    p = p * u + cast_like(t, 1.0 / 720.0)
    p = p * u + cast_like(t, 1.0 / 120.0)
    p = p * u + cast_like(t, 1.0 / 24.0)
    p = p * u + cast_like(t, 1.0 / 6.0)
    p = p * u + cast_like(t, 0.5)
    p = p * u + cast_like(t, 1.0)
    small = -(p * u)
    return small if t < cast_like(t, 0.34657359) else cast_like(t, 1.0) - exp_nonpos(u)


# --------------------------------------------------------------------------------------------
# Formulas
# --------------------------------------------------------------------------------------------

def softplus_pair(x):
    """``(softplus(x), softplus(-x), sigmoid(x), sigmoid(-x))`` from one exp and one log1p."""
    zero = cast_like(x, 0.0)
    one = cast_like(x, 1.0)
    e = exp_nonpos(-abs(x))              # in (0, 1]
    l1p = log1p_unit(e)
    inv = recip_unit(one + e)
    big = inv                            # sigmoid(|x|)
    small = e * inv                      # sigmoid(-|x|)
    pos = x >= zero
    sp_pos = (x if pos else zero) + l1p
    sp_neg = (zero if pos else -x) + l1p
    sig_pos = big if pos else small
    sig_neg = small if pos else big
    return sp_pos, sp_neg, sig_pos, sig_neg


def bce_term(x, y, pos_weight):
    """Binary cross-entropy with logits and its derivative in x:
    ``l = pos_weight * y * softplus(-x) + (1 - y) * softplus(x)``,
    ``dl/dx = (1 - y) * sigmoid(x) - pos_weight * y * sigmoid(-x)``."""
    sp_pos, sp_neg, sig_pos, sig_neg = softplus_pair(x)
    one = cast_like(x, 1.0)
    wy = pos_weight * y
    return wy * sp_neg + (one - y) * sp_pos, (one - y) * sig_pos - wy * sig_neg


def bce_negative_term(x):
    """``bce_term(x, 0, w)``: a negative's loss ``softplus(x)`` and derivative ``sigmoid(x)``
    (the background of sparse targets: every logit but the few positives)."""
    sp_pos, sp_neg, sig_pos, sig_neg = softplus_pair(x)
    return sp_pos, sig_pos


def focal_negative_weight(x, alpha):
    """``a``, the weight of a negative's focal term: ``1 - alpha``, or 1 if ``alpha < 0``
    (balancing disabled), in x's type. ``focal_negative_term`` and ``focal_negative_term_sq``
    are ``a`` times their value at ``alpha = -1``: kernels sum the terms of ``alpha = -1`` and
    scale the sum and the gradient's factor by ``a`` once (one multiply fewer per element)."""
    one = cast_like(x, 1.0)
    return one - alpha if alpha >= cast_like(x, 0.0) else one


def focal_negative_term(x, gamma_neg, alpha):
    """``focal_term(x, 0, ., gamma_neg, 0, alpha, 0, 0)``, a negative without probability
    shifting, in closed form: ``log p = -softplus(-x)`` gives ``p**g = exp(-g softplus(-x))`` and
    ``q**(g-1) dq/dx = p**g (1 - p) g``, so
    ``l = a p**g softplus(x)``, ``dl/dx = a p**g (g (1 - p) softplus(x) + p)``, ``a = 1 - alpha``
    (1 if alpha < 0): no branch on the exponent and no division, which lets the background
    pass of sparse targets vectorise."""
    sp_pos, sp_neg, p, p_neg = softplus_pair(x)
    f = focal_negative_weight(x, alpha) * exp_nonpos(-gamma_neg * sp_neg)  # a p**g (0**0 = 1)
    return f * sp_pos, f * (gamma_neg * p_neg * sp_pos + p)


def focal_negative_term_sq(x, alpha):
    """``focal_negative_term(x, 2, alpha)`` with ``p**2`` as ``p * p``: the default focusing
    (gamma = 2, torchvision's and the paper's) without the second ``exp``. Kernels take it for
    the background of sparse targets when ``gamma_neg == 2``."""
    two = cast_like(x, 2.0)
    sp_pos, sp_neg, p, p_neg = softplus_pair(x)
    f = focal_negative_weight(x, alpha) * (p * p)
    return f * sp_pos, f * (two * p_neg * sp_pos + p)


def focal_pow(q, g):
    """``q ** g`` for ``q >= 0``, with ``0 ** 0 = 1``; exact for g = 1 and 2."""
    zero = cast_like(q, 0.0)
    one = cast_like(q, 1.0)
    if g == cast_like(q, 2.0):
        res = q * q
    elif g == one:
        res = q
    elif q > zero:
        res = exp_nonpos(g * log(q))     # q <= 1
    else:
        res = one if g == zero else zero
    return res


def clip_logit(clip, single):
    """``(hi, lo)``: ``logit(clip) = log(clip / (1 - clip))`` as an unevaluated sum, ``hi``
    rounded to float32 if ``single`` (and ``lo`` the float32 of the rest), else ``hi`` the
    float64 value and ``lo = 0``. ``focal_term`` takes it to measure how far a logit lies past
    the clip threshold (``(x - hi) - lo``: exact for x near it, where ``sigmoid(x) - clip``
    cancelled). Plain Python (parameters are set up once per call); (0, 0) for ``clip = 0``."""
    if not clip > 0.0:
        return 0.0, 0.0
    t = math.log(clip) - math.log1p(-clip)
    if not single:
        return t, 0.0
    hi = _round_to_float32(t)
    return hi, _round_to_float32(t - hi)


def _round_to_float32(v):
    import struct

    return struct.unpack("f", struct.pack("f", v))[0]


def focal_term(x, y, gamma, gamma_neg, clip, alpha, clip_hi, clip_lo):
    """Sigmoid focal / asymmetric loss of one logit and its derivative (see docs/losses.md):
    ``p_m = max(p - clip, 0)``, ``q = y (1-p) + (1-y) p_m``, ``g = gamma y + gamma_neg (1-y)``,
    ``ce = y softplus(-x) - (1-y) log(1 - p_m)``, ``a = alpha y + (1-alpha)(1-y)`` (1 if alpha < 0),
    ``l = a q**g ce``. The derivative keeps the focal factor (it is not detached).
    ``(clip_hi, clip_lo) = clip_logit(clip, .)``: with ``d = x - logit(clip)``,
    ``p_m = p (1 - clip) (1 - exp(-d))`` for 0 < d < ln 2 (``p - clip`` lost the digits of a logit
    near the threshold: 2e-3 relative error in float32 rows sitting within 1e-4 of it; above,
    ``p - clip`` keeps at least half of p and has fewer roundings), and
    ``-log(1 - p_m) = log1p(p_m / (1 - p_m))`` while that ratio is at most 1."""
    zero = cast_like(x, 0.0)
    one = cast_like(x, 1.0)
    sp_pos, sp_neg, p, p_neg = softplus_pair(x)
    ny = one - y
    dp = p * p_neg                                   # dp/dx = p (1 - p)
    if clip > zero:
        d = sub_exact(x - clip_hi, clip_lo)          # x - logit(clip), exact near 0
        shifted = d > zero
        d = d if shifted else zero
        # below ln 2 (p < 2 clip / (1 + clip)) p - clip cancels
        p_m = p * (one - clip) * neg_expm1(d) if d < cast_like(x, LN2) else p - clip
        p_m = p_m if shifted else zero
        keep = p_neg + clip                          # 1 - p_m
        keep = keep if keep < one else one
        ce_neg = log1p_unit(p_m / keep) if p_m <= keep else -log(keep)
        dp_m = dp if shifted else zero
        dce_neg = dp / keep if shifted else zero
    else:
        p_m = p
        ce_neg = sp_pos
        dp_m = dp
        dce_neg = p
    q = y * p_neg + ny * p_m
    g = gamma * y + gamma_neg * ny
    ce = y * sp_neg + ny * ce_neg
    dq = ny * dp_m - y * dp
    dce = ny * dce_neg - y * p_neg
    a = (alpha * y + (one - alpha) * ny) if alpha >= zero else one
    f = focal_pow(q, g)
    ratio = g * dq / q if q > zero else zero         # q**(g-1) dq/dx = q**g * (dq/dx) / q
    return a * f * ce, a * f * (ratio * ce + dce)


def softmax_focal_term(gap, gamma):
    """Softmax focal factor of one class from ``gap = lse - x_c = -log p_c >= 0``:
    returns ``(f, h)`` with ``f = (1-p)**gamma * gap`` (the loss per unit weight) and
    ``h = (1-p)**gamma * (gamma p gap / (1-p) + 1)``, so that
    ``d f / d x_j = h * (p_j - [j == c])``."""
    zero = cast_like(gap, 0.0)
    q = neg_expm1(gap)                                 # 1 - p, accurate when p -> 1
    p = exp_nonpos(-gap)
    t = focal_pow(q, gamma)
    ratio = gamma * p * gap / q if q > zero else zero
    return t * gap, t * (ratio + cast_like(gap, 1.0))
