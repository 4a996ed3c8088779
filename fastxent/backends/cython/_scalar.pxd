# cython: language_level=3
"""Scalar formulas of every loss for the Cython backend: ``fastxent/_math.py`` mirrored by name.

``_math.py`` is the definition; each function here computes the same thing, line for line, as an
inline ``nogil`` C function over the fused type ``floating`` (float32 / float64):

* float64 uses libm (``exp``, ``log``, ``log1p``, ``expm1``), exactly as ``_math`` in Python;
* float32 uses the polynomial versions of ``_math`` (``exp_poly``, ``exp_nonpos_poly``, ``log_poly``,
  ``log1p_poly``, ``neg_expm1_poly``) with the same constants and the same operation order, so
  gcc/clang vectorise every loop that calls them (libm's ``expf`` would not vectorise without
  ``-ffast-math`` and glibc's libmvec).

Functions returning several values write them through pointers (``softplus_pair``, ``bce_term``,
``focal_term``, ``softmax_focal_term``): once inlined, the compiler keeps them in registers.
Constants are typed locals so that float32 math stays float32 (a bare ``0.5`` is a C double).
``tests/test_cython.py`` holds these functions, Numba's and ``_math``'s to the same values.
"""
from libc.math cimport exp as libm_exp, log as libm_log, log1p as libm_log1p, rintf as libm_rintf, \
    expm1 as libm_expm1, INFINITY, NAN
from libc.stdint cimport int32_t, int64_t, uint32_t
from cython cimport floating

cdef extern from "_fxt_support.h" nogil:
    float f32_from_bits "fxt_f32_from_bits"(int32_t bits)
    int32_t bits_from_f32 "fxt_bits_from_f32"(float x)
    float fence_f32 "FXT_FENCE"(float x)
    double fence_f64 "FXT_FENCE"(double x)
    int FXT_HAVE_OPENMP
    int FXT_HAVE_FENCE



# ---------------------------------------------------------------------------------------------
# Primitives
# ---------------------------------------------------------------------------------------------

cdef inline floating fence(floating x) noexcept nogil:
    """``x``; no reassociation across it."""
    if floating is float:
        return fence_f32(x)
    else:
        return fence_f64(x)


cdef inline float rint_f32(float t) noexcept nogil:
    """A nearest integer to ``t`` (ties to even; ``rintf`` in the default rounding mode: one
    round instruction, vectorised, with -fno-math-errno -fno-trapping-math), as Numba's."""
    return libm_rintf(t)


cdef inline float exp2i_f32(float k) noexcept nogil:
    """``2**k`` for an integral ``k`` in [-126, 127]: the biased exponent moved into place."""
    cdef float bias = 127.0
    cdef float shift = 8388608.0
    return f32_from_bits(<int32_t>((k + bias) * shift))


cdef inline float exp_poly(float x) noexcept nogil:
    """``_math.exp_poly``: max relative error 4e-7; x < -86.64 -> 0, x > 88.72 -> inf."""
    cdef float lo = -86.64315
    cdef float hi = 88.72283
    cdef float one = 1.0
    cdef float xc, kf, r, p, res
    xc = x if x > lo else lo
    xc = xc if xc < hi else hi
    kf = rint_f32(xc * <float>1.4426950408889634)
    r = fence_f32(xc - kf * <float>0.693359375) - kf * <float>-2.12194440e-4   # Cody-Waite
    p = <float>0.0013814519625157118                      # _math.EXP_C6 ... EXP_C2
    p = p * r + <float>0.00836874358355999
    p = p * r + <float>0.04166839271783829
    p = p * r + <float>0.1666652113199234
    p = p * r + <float>0.4999999403953552
    p = p * r + one
    p = p * r + one
    res = p * exp2i_f32(kf - one) * <float>2.0
    res = res if x >= lo else <float>0.0
    res = res if x <= hi else <float>INFINITY
    return res if x == x else x


cdef inline void rint_exp2_f32(float t, float* k, float* half_scale) noexcept nogil:
    """``_math.rint_exp2``: ``k`` a nearest integer to ``t`` (a tie takes the even one) and
    ``2**(k-1)`` (0 for k = -126), from one addition: ``j = t + B`` (``B = 1.5 * 2**23 + 126``)
    leaves ``k + 126`` in j's low mantissa bits; ``k = j - B``, and those bits shifted left by
    23 are 2**(k-1) (Numba's)."""
    cdef float bias = 12583038.0
    cdef float j = fence_f32(t + bias)               # fenced: no (t + B) - B -> t
    k[0] = fence_f32(j - bias)
    half_scale[0] = f32_from_bits(<int32_t>(<uint32_t>bits_from_f32(j) << 23))


cdef inline float exp_nonpos_poly(float x) noexcept nogil:
    """``_math.exp_nonpos_poly``: exp(x) for x <= 0 or NaN (a NaN stays NaN through every
    step) as ``2 exp(r) * 2**(k-1)``, the coefficients doubled; x < -86.99 -> 0 (k = -126)."""
    cdef float lo = -87.33654475                      # -126 ln2
    cdef float two = 2.0
    cdef float xc, kf, half_scale, r, p
    xc = lo if x < lo else x
    rint_exp2_f32(xc * <float>1.4426950408889634, &kf, &half_scale)
    r = fence_f32(xc - kf * <float>0.693359375) - kf * <float>-2.12194440e-4   # Cody-Waite
    p = <float>(2.0 * 0.008312510326504707)               # 2 * _math.EXPN_C5 ... EXPN_C2
    p = p * r + <float>(2.0 * 0.041890110820531845)
    p = p * r + <float>(2.0 * 0.16667114198207855)
    p = p * r + <float>(2.0 * 0.499992311000824)
    p = p * r + two
    p = p * r + two
    return p * half_scale


cdef inline float atanh_series(float s) noexcept nogil:
    """``_math._atanh_series``: ``2 atanh(s)`` for ``|s| <= 1/3``."""
    cdef float s2 = s * s
    cdef float p = <float>(1.0 / 15.0)
    p = p * s2 + <float>(1.0 / 13.0)
    p = p * s2 + <float>(1.0 / 11.0)
    p = p * s2 + <float>(1.0 / 9.0)
    p = p * s2 + <float>(1.0 / 7.0)
    p = p * s2 + <float>(1.0 / 5.0)
    p = p * s2 + <float>(1.0 / 3.0)
    p = p * s2 + <float>1.0
    return <float>2.0 * s * p


cdef inline float log1p_poly(float e) noexcept nogil:
    """``_math.log1p_poly``: log1p(e) for e in [0, 1], ``e q(e)`` (no division)."""
    cdef float p = <float>-0.008539239875972271
    p = p * e + <float>0.04408978298306465
    p = p * e + <float>-0.10768195986747742
    p = p * e + <float>0.17745262384414673
    p = p * e + <float>-0.24495473504066467
    p = p * e + <float>0.33275482058525085
    p = p * e + <float>-0.4999740719795227
    p = p * e + <float>0.9999998211860657
    return e * p


cdef inline float log_poly(float x) noexcept nogil:
    """``_math.log_poly``: 0 -> -inf, x < 0 -> NaN, inf -> inf, NaN -> NaN."""
    cdef float tiny = 1.1754943508222875e-38
    cdef float one = 1.0
    cdef float zero = 0.0
    cdef bint sub = x < tiny
    cdef float xs, m, e, res
    cdef int32_t bits
    cdef bint big
    xs = x * <float>16777216.0 if sub else x
    xs = xs if xs > zero else one                       # keep the bit path defined
    xs = xs if xs < <float>INFINITY else one
    # split_exponent: xs = m 2**e, m in [sqrt(1/2), sqrt(2))
    bits = bits_from_f32(xs)                            # xs > 0: int32 arithmetic suffices
    e = <float>((bits >> 23) - 127)                     # (int64 -> float has no SSE2/AVX2
    m = f32_from_bits((bits & 0x007FFFFF) | 0x3F800000)  # vector conversion)
    big = m > <float>1.4142135623730951
    m = m * <float>0.5 if big else m
    e = e + one if big else e
    e = e - <float>24.0 if sub else e
    res = fence_f32(e * <float>0.693359375) + fence_f32(
        atanh_series((m - one) / (m + one)) + e * <float>-2.12194440e-4)
    res = res if x > zero else (<float>-INFINITY if x == zero else <float>NAN)
    res = res if x < <float>INFINITY else x
    return res if x == x else x


cdef inline float neg_expm1_poly(float t) noexcept nogil:
    """``_math.neg_expm1_poly``: 1 - exp(-t) for t >= 0."""
    cdef float u = -t
    cdef float p = <float>(1.0 / 5040.0)
    cdef float small
    p = p * u + <float>(1.0 / 720.0)
    p = p * u + <float>(1.0 / 120.0)
    p = p * u + <float>(1.0 / 24.0)
    p = p * u + <float>(1.0 / 6.0)
    p = p * u + <float>0.5
    p = p * u + <float>1.0
    small = -(p * u)
    return small if t < <float>0.34657359 else <float>1.0 - exp_nonpos_poly(u)


cdef inline floating exp(floating x) noexcept nogil:
    if floating is float:
        return exp_poly(x)
    else:
        return libm_exp(x)


cdef inline floating exp_nonpos(floating x) noexcept nogil:
    """``exp(x)`` for ``x <= 0`` (or NaN)."""
    if floating is float:
        return exp_nonpos_poly(x)
    else:
        return libm_exp(x)


cdef inline floating log(floating x) noexcept nogil:
    if floating is float:
        return log_poly(x)
    else:
        return libm_log(x)


cdef inline floating log1p_unit(floating e) noexcept nogil:
    """``log(1 + e)`` for ``e`` in [0, 1]."""
    if floating is float:
        return log1p_poly(e)
    else:
        return libm_log1p(e)


cdef inline floating neg_expm1(floating t) noexcept nogil:
    """``1 - exp(-t)`` for ``t >= 0``."""
    if floating is float:
        return neg_expm1_poly(t)
    else:
        return -libm_expm1(-t)


cdef inline floating recip_unit(floating d) noexcept nogil:
    """``1 / d`` for ``d`` in [1, 2] (exact here: GCC has no per-operation reciprocal
    estimate, and its ``-mrecip`` needs whole-file fast-math)."""
    return 1 / d


# ---------------------------------------------------------------------------------------------
# Formulas
# ---------------------------------------------------------------------------------------------

cdef inline void softplus_pair(floating x, floating* sp_pos, floating* sp_neg,
                               floating* sig_pos, floating* sig_neg) noexcept nogil:
    """``(softplus(x), softplus(-x), sigmoid(x), sigmoid(-x))`` from one exp and one log1p."""
    cdef floating zero = 0.0
    cdef floating one = 1.0
    cdef floating e = exp_nonpos(-x if x >= zero else x)       # exp(-|x|), in (0, 1]
    cdef floating l1p = log1p_unit(e)
    cdef floating inv = recip_unit(one + e)
    cdef floating big = inv                                    # sigmoid(|x|)
    cdef floating small = e * inv                              # sigmoid(-|x|)
    cdef bint pos = x >= zero
    sp_pos[0] = (x if pos else zero) + l1p
    sp_neg[0] = (zero if pos else -x) + l1p
    sig_pos[0] = big if pos else small
    sig_neg[0] = small if pos else big


cdef inline void bce_term(floating x, floating y, floating pos_weight,
                          floating* loss, floating* grad) noexcept nogil:
    """``l = pos_weight y softplus(-x) + (1 - y) softplus(x)``,
    ``dl/dx = (1 - y) sigmoid(x) - pos_weight y sigmoid(-x)``."""
    cdef floating sp_pos, sp_neg, sig_pos, sig_neg
    cdef floating one = 1.0
    cdef floating wy = pos_weight * y
    softplus_pair(x, &sp_pos, &sp_neg, &sig_pos, &sig_neg)
    loss[0] = wy * sp_neg + (one - y) * sp_pos
    grad[0] = (one - y) * sig_pos - wy * sig_neg


cdef inline void bce_negative_term(floating x, floating* loss, floating* grad) noexcept nogil:
    """``bce_term(x, 0, w)``: a negative's loss ``softplus(x)`` and derivative ``sigmoid(x)``
    (the background of sparse targets: every logit but the few positives)."""
    cdef floating sp_pos, sp_neg, sig_pos, sig_neg
    softplus_pair(x, &sp_pos, &sp_neg, &sig_pos, &sig_neg)
    loss[0] = sp_pos
    grad[0] = sig_pos


cdef inline floating focal_negative_weight(floating alpha) noexcept nogil:
    """``_math.focal_negative_weight``: ``a = 1 - alpha`` (1 if alpha < 0); the two closed forms
    below are ``a`` times their value at ``alpha = -1``."""
    cdef floating one = 1.0
    return one - alpha if alpha >= <floating>0.0 else one


cdef inline void focal_negative_term(floating x, floating gamma_neg, floating alpha,
                                     floating* loss, floating* grad) noexcept nogil:
    """``focal_term(x, 0, ., gamma_neg, 0, alpha)`` in closed form (``_math.focal_negative_term``):
    ``l = a p**g softplus(x)``, ``dl/dx = a p**g (g (1 - p) softplus(x) + p)``, ``a = 1 - alpha``
    (1 if alpha < 0), ``p**g = exp(-g softplus(-x))``: no branch and no division."""
    cdef floating sp_pos, sp_neg, p, p_neg, f
    softplus_pair(x, &sp_pos, &sp_neg, &p, &p_neg)
    f = focal_negative_weight(alpha) * exp_nonpos(-gamma_neg * sp_neg)   # a p**g (0**0 = 1)
    loss[0] = f * sp_pos
    grad[0] = f * (gamma_neg * p_neg * sp_pos + p)


cdef inline void focal_negative_term_sq(floating x, floating alpha, floating* loss,
                                        floating* grad) noexcept nogil:
    """``_math.focal_negative_term_sq``: ``focal_negative_term(x, 2, alpha)``, ``p**2 = p p``."""
    cdef floating two = 2.0
    cdef floating sp_pos, sp_neg, p, p_neg, f
    softplus_pair(x, &sp_pos, &sp_neg, &p, &p_neg)
    f = focal_negative_weight(alpha) * (p * p)
    loss[0] = f * sp_pos
    grad[0] = f * (two * p_neg * sp_pos + p)


cdef inline floating focal_pow(floating q, floating g) noexcept nogil:
    """``q ** g`` for ``q >= 0``, ``0 ** 0 = 1``; exact for g = 1 and 2."""
    cdef floating zero = 0.0
    cdef floating one = 1.0
    cdef floating two = 2.0
    # selects instead of branches (the same values): compilers vectorise loops calling this
    cdef floating general = exp_nonpos(g * log(q if q > zero else one))     # q <= 1
    cdef floating at_zero = one if g == zero else zero
    general = general if q > zero else at_zero
    general = q if g == one else general
    return q * q if g == two else general


cdef inline void focal_term(floating x, floating y, floating gamma, floating gamma_neg,
                            floating clip, floating alpha, floating clip_hi, floating clip_lo,
                            floating* loss, floating* grad) noexcept nogil:
    """Sigmoid focal / asymmetric loss of one logit and its derivative (``_math.focal_term``;
    ``(clip_hi, clip_lo) = _math.clip_logit(clip, .)``)."""
    cdef floating zero = 0.0
    cdef floating one = 1.0
    cdef floating sp_pos, sp_neg, p, p_neg, ny, dp, p_m, keep, ce_neg, dp_m, dce_neg, d
    cdef floating q, g, ce, dq, dce, a, f, ratio
    cdef bint shifted
    softplus_pair(x, &sp_pos, &sp_neg, &p, &p_neg)
    ny = one - y
    dp = p * p_neg                                             # dp/dx = p (1 - p)
    if clip > zero:
        d = (x - clip_hi) - clip_lo                            # x - logit(clip), exact near 0
        shifted = d > zero
        d = d if shifted else zero
        # below ln 2 (_math.LN2; p < 2 clip / (1 + clip)) p - clip cancels
        p_m = p * (one - clip) * neg_expm1(d) if d < <floating>0.6931471805599453 else p - clip
        p_m = p_m if shifted else zero
        keep = p_neg + clip                                    # 1 - p_m
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
    ratio = g * dq / q if q > zero else zero                   # q**(g-1) dq/dx = q**g dq/dx / q
    loss[0] = a * f * ce
    grad[0] = a * f * (ratio * ce + dce)


cdef inline void softmax_focal_term(floating gap, floating gamma,
                                    floating* f, floating* h) noexcept nogil:
    """From ``gap = lse - x_c = -log p_c >= 0``: ``f = (1-p)**gamma gap`` and
    ``h = (1-p)**gamma (gamma p gap / (1-p) + 1)`` (``d f / d x_j = h (p_j - [j == c])``)."""
    cdef floating zero = 0.0
    cdef floating q = neg_expm1(gap)                           # 1 - p, accurate when p -> 1
    cdef floating p = exp_nonpos(-gap)
    cdef floating t = focal_pow(q, gamma)
    cdef floating ratio = gamma * p * gap / q if q > zero else zero
    f[0] = t * gap
    h[0] = t * (ratio + <floating>1.0)
