# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Sigmoid binary cross-entropy and sigmoid focal loss, forward and gradient (Cython; mirror of
numba_cpu/sigmoid.py).

One row function per target form serves both losses; the fused parameter type selects the element
formula at compile time: ``BCEParams`` -> ``bce_term``, ``FocalParams`` -> ``focal_term``
(docs/losses.md)::

    loss = sw * sum_c w_c l(x_c, y'_c)       grad = sw * scale * w_c dl/dx(x_c, y'_c)

Sparse targets cost O(nnz) on top of one pass over the logits: phase 2 computes the positives'
own terms (their loss, and their final gradient, kept in ``pos_buf``); phase 3 treats every logit
as a background element ``y'_0 = eps / 2``, writes the gradient once and sums the loss of every
logit but the positives (their terms are set to 0 in the block buffer before its sum: subtracting
them afterwards would cancel), and puts the positives' gradients in place in their block before
it is written; out of place, each block goes out through non-temporal stores (whole vectors, not
read first: ``_rows.stream_block``). Without
smoothing (``y'_0 = 0``) and without probability shifting (focal ``clip = 0``) the background
uses the closed forms
``bce_negative_term`` / ``focal_negative_term`` (no exponent branch, no division: 4x faster for
focal; ``focal_negative_term_sq`` when ``gamma_neg = 2``, without the second exp), as the Numba
backend does. Block sums go through ``_rows.lane_sum`` (vectorised).
Phases: 1. (no row statistics), 2. loss, 3. gradient.
"""
from cython.parallel cimport prange
from cython cimport floating
from libc.stdint cimport int64_t

from ._scalar cimport bce_negative_term, bce_term, focal_negative_term, focal_negative_term_sq, \
    focal_negative_weight, focal_term
from ._rows cimport BLOCK, PREFETCH_BYTES, fxt_store_fence, fxt_stream_pre, lane_sum, \
    prefetch_ahead, prefetch_at, stream_block

ctypedef fused target_t:
    float
    double


cdef struct BCEParams:
    double pos_weight            # the scalar pos_weight (used when there is no [C] vector)


cdef struct FocalParams:
    double gamma
    double gamma_neg
    double clip
    double alpha
    double clip_hi               # _math.clip_logit(clip, .): logit(clip) as hi + lo
    double clip_lo


ctypedef fused params_t:
    BCEParams
    FocalParams


cdef inline void element(floating x, floating y, floating pw, const params_t* prm,
                         bint clipped, floating* loss, floating* grad) noexcept nogil:
    """Loss and derivative of one logit: BCE or focal, by the parameter type. ``clipped``
    False passes focal a literal ``clip = 0`` (see ``general_elements``)."""
    if params_t is FocalParams:
        focal_term(x, y, <floating>prm.gamma, <floating>prm.gamma_neg,
                   <floating>prm.clip if clipped else <floating>0.0, <floating>prm.alpha,
                   <floating>prm.clip_hi, <floating>prm.clip_lo, loss, grad)
    else:
        bce_term(x, y, pw, loss, grad)


cdef inline void negative_element(floating x, const params_t* prm, floating* loss,
                                  floating* grad) noexcept nogil:
    """``element(x, 0, ., prm)`` of a negative without probability shifting (closed forms), at
    weight 1: ``negative_weight(prm)`` times it is the term (focal at ``alpha = -1``)."""
    if params_t is FocalParams:
        focal_negative_term(x, <floating>prm.gamma_neg, <floating>-1.0, loss, grad)
    else:
        bce_negative_term(x, loss, grad)


cdef inline void negative_element_sq(floating x, const params_t* prm, floating* loss,
                                     floating* grad) noexcept nogil:
    """``negative_element`` when ``squares_negatives(prm)``: focal with ``gamma_neg = 2``."""
    if params_t is FocalParams:
        focal_negative_term_sq(x, <floating>-1.0, loss, grad)
    else:
        bce_negative_term(x, loss, grad)


cdef inline floating negative_weight(const params_t* prm, floating like) noexcept nogil:
    """The factor ``negative_element`` leaves out: focal's ``focal_negative_weight``
    (``1 - alpha``), 1 for BCE; ``weighted_pass`` multiplies each block's sum and the
    gradient's scale by it once, not every element. Where it is 0 (alpha = 1) ``sparse_row``
    does not take the closed forms (a block's sum may overflow to inf: times 0, NaN)."""
    if params_t is FocalParams:
        return focal_negative_weight(<floating>prm.alpha)
    else:
        return 1.0


cdef inline bint squares_negatives(const params_t* prm) noexcept nogil:
    """Whether negatives are focused with ``p**2`` (focal ``gamma_neg == 2``: no second exp)."""
    if params_t is FocalParams:
        return prm.gamma_neg == 2.0
    else:
        return False


cdef inline bint shifts_negatives(const params_t* prm) noexcept nogil:
    """Whether the loss shifts negatives' probabilities (focal ``clip > 0``)."""
    if params_t is FocalParams:
        return prm.clip > 0.0
    else:
        return False


cdef inline double pos_weight_of(const params_t* prm) noexcept nogil:
    """The scalar pos_weight of BCE (1 for focal, which has none)."""
    if params_t is BCEParams:
        return prm.pos_weight
    else:
        return 1.0


cdef void block_elements(const floating* xb, Py_ssize_t size, const target_t* yb, floating keep,
                         floating y0, const double* pw, floating pw0, const params_t* prm,
                         bint closed, floating* lbuf, floating* gbuf) noexcept nogil:
    """``lbuf[j], gbuf[j] = element(x_j, y_j, pw_j)`` over one block, with ``y_j = keep yb[j] + y0``
    (``yb`` NULL: ``y_j = y0``) and ``pw_j = pw[j]`` (``pw`` NULL: ``pw0``). One loop per case,
    so that no load is conditional and every loop vectorises. ``closed``: every element is a
    negative without probability shifting (``y_j = 0``; ``negative_element``)."""
    cdef Py_ssize_t j
    cdef params_t local = prm[0]      # a private copy: stores to lbuf/gbuf cannot alias it
    prm = &local
    cdef Py_ssize_t h = size // 2, j2
    if closed:
        # two independent halves per trip (j and j + h; the odd last element after): gcc does
        # not interleave vector iterations, and a negative's dependency chain (an exp, a log1p,
        # a division; a second exp for focal) leaves the out-of-order window idle on one chain.
        # Sigmoid focal CSR at 1024 x 32768, 1 thread: 75 -> 57 ms. (The loops below, with a
        # target load, measured slower split this way: BCE dense 62 -> 66 ms.)
        # two loops, not one choosing per element: a per-element choice would be if-converted
        # (both element functions computed), which is the second exp this loop saves
        if squares_negatives(prm):
            for j in range(h):
                j2 = j + h
                negative_element_sq(xb[j], prm, &lbuf[j], &gbuf[j])
                negative_element_sq(xb[j2], prm, &lbuf[j2], &gbuf[j2])
            if size % 2:
                negative_element_sq(xb[size - 1], prm, &lbuf[size - 1], &gbuf[size - 1])
        else:
            for j in range(h):
                j2 = j + h
                negative_element(xb[j], prm, &lbuf[j], &gbuf[j])
                negative_element(xb[j2], prm, &lbuf[j2], &gbuf[j2])
            if size % 2:
                negative_element(xb[size - 1], prm, &lbuf[size - 1], &gbuf[size - 1])
    elif shifts_negatives(prm):
        general_elements(xb, size, yb, keep, y0, pw, pw0, prm, True, lbuf, gbuf)
    else:
        general_elements(xb, size, yb, keep, y0, pw, pw0, prm, False, lbuf, gbuf)


cdef inline void general_elements(const floating* xb, Py_ssize_t size, const target_t* yb,
                                  floating keep, floating y0, const double* pw, floating pw0,
                                  const params_t* prm, bint clipped, floating* lbuf,
                                  floating* gbuf) noexcept nogil:
    """``block_elements`` with targets or smoothing (``element`` per logit). Called with a
    literal ``clipped``, so that in its copy for ``False`` the focal formula's branch on
    ``clip > 0`` folds away: gcc does not unswitch a loop body this large, and a branch left
    in it kept every loop scalar (float32 sigmoid focal with dense targets, smoothing or clip:
    10x slower than Numba); setup.py also raises gcc's inlining limits for this module, which
    kept ``focal_term`` a call."""
    cdef Py_ssize_t j
    if yb == NULL and pw == NULL:
        for j in range(size):
            element(xb[j], y0, pw0, prm, clipped, &lbuf[j], &gbuf[j])
    elif yb == NULL:
        for j in range(size):
            element(xb[j], y0, <floating>pw[j], prm, clipped, &lbuf[j], &gbuf[j])
    elif pw == NULL:
        for j in range(size):
            element(xb[j], keep * <floating>yb[j] + y0, pw0, prm, clipped, &lbuf[j], &gbuf[j])
    else:
        for j in range(size):
            element(xb[j], keep * <floating>yb[j] + y0, <floating>pw[j], prm, clipped,
                    &lbuf[j], &gbuf[j])


cdef double weighted_pass(const floating* xr, floating* gr, Py_ssize_t n, bint want_grad,
                          const target_t* yr, floating keep, floating y0,
                          const double* class_weight, const double* pos_weight,
                          const params_t* prm, floating scale, bint closed,
                          const int64_t* cols, Py_ssize_t n_pos,
                          const double* pos_grad, bint stream_ok,
                          Py_ssize_t ahead) noexcept nogil:
    """``sum_j w_j l(x_j, y_j)`` over every logit but the ``n_pos`` positives ``cols`` (sorted;
    their terms are left out of the block sums: subtracting a confident positive's background
    term afterwards would cancel), float64 from block partial sums, and, if wanted,
    ``gr[j] = scale w_j dl/dx(x_j, y_j)``, the positives' entries ``pos_grad`` (when not NULL)
    put in place within their block; gr may alias xr (each block is computed into
    ``lbuf``/``gbuf`` before it is written). ``y_j = keep yr[j] + y0``, or ``y0`` when ``yr`` is
    NULL (sparse targets: then, out of place, each block's gradient goes out through
    non-temporal stores, ``stream_block``, if ``stream_ok``); ``pos_weight``: [C] or NULL (then
    the scalar of ``prm``); ``closed``: see ``block_elements``; ``ahead``: how many bytes ahead
    the logits are prefetched (0: not at all)."""
    cdef floating lbuf[BLOCK]
    cdef floating gbuf[BLOCK + 16]               # + the carried elements of stream_block
    cdef floating pw0 = <floating>pos_weight_of(prm)
    cdef floating acc, w
    cdef floating weight_n = negative_weight(prm, pw0) if closed else <floating>1.0
    cdef double total = 0.0
    cdef Py_ssize_t b0 = 0, j, size, kp = 0, k0
    cdef const double* wb = NULL
    cdef floating* gb
    cdef bint stream = stream_ok and want_grad and yr == NULL and <const floating*>gr != xr
    cdef Py_ssize_t pre = fxt_stream_pre(gr, sizeof(floating)) if stream else 0
    scale = scale * weight_n                     # (the closed forms' factor, out of the loops)
    while b0 < n:
        size = n - b0 if n - b0 < BLOCK else BLOCK
        # sparse targets' background; dense targets without a gradient (1024 x 32768 float32:
        # 32 -> 17-18 ms; with a gradient no faster; in Numba's dense_row the same prefetches
        # made the loss-only pass 4x slower, so there it has none)
        if ahead > 0 and (yr == NULL or not want_grad):
            prefetch_at(xr + b0, size * sizeof(floating), ahead)
            if yr != NULL:
                prefetch_ahead(yr + b0, size * sizeof(target_t))
        block_elements(xr + b0, size, yr + b0 if yr != NULL else yr, keep, y0,
                       pos_weight + b0 if pos_weight != NULL else pos_weight, pw0, prm,
                       closed, lbuf, gbuf + pre)
        if class_weight != NULL:
            wb = class_weight + b0
            for j in range(size):
                lbuf[j] = <floating>wb[j] * lbuf[j]
        k0 = kp
        while kp < n_pos and cols[kp] < b0 + size:
            if cols[kp] >= b0:                   # (always, for sorted rows)
                lbuf[cols[kp] - b0] = 0
            kp += 1
        acc = lane_sum(lbuf, size) * weight_n
        total += <double>acc
        if want_grad:
            if stream:
                gb = &gbuf[pre]
            else:
                gb = gr + b0
            if class_weight != NULL:
                for j in range(size):
                    gb[j] = scale * <floating>wb[j] * gbuf[pre + j]
            else:
                for j in range(size):
                    gb[j] = scale * gbuf[pre + j]
            if pos_grad != NULL:
                for j in range(k0, kp):
                    if cols[j] >= b0:
                        gb[cols[j] - b0] = <floating>pos_grad[j]
            if stream:
                stream_block(gr, b0, b0 + size, n, gbuf, pre)
        b0 += BLOCK
    if stream:
        fxt_store_fence()
    return total


cdef double sparse_row(const floating* xr, floating* gr, bint want_grad, Py_ssize_t n_classes,
                       const int64_t* cols, const double* vals, Py_ssize_t n_pos,
                       const double* class_weight, const double* pos_weight, double sw,
                       double eps, double grad_scale, const params_t* prm,
                       double* pos_buf, bint stream_ok, Py_ssize_t ahead) noexcept nogil:
    cdef floating pw0 = <floating>pos_weight_of(prm)
    cdef floating y0 = <floating>(0.5 * eps)
    cdef floating keep = <floating>(1.0 - eps)
    cdef double scale = sw * grad_scale, loss = 0.0, w
    cdef floating x, y, pw, l_pos, g_pos
    cdef Py_ssize_t k, c
    # 2. loss: the positives' own terms (before any write: logits may alias grad)
    for k in range(n_pos):
        c = cols[k]
        x = xr[c]
        y = keep * <floating>(vals[k] if vals != NULL else 1.0) + y0
        pw = <floating>pos_weight[c] if pos_weight != NULL else pw0
        element(x, y, pw, prm, True, &l_pos, &g_pos)
        w = class_weight[c] if class_weight != NULL else 1.0
        loss += w * <double>l_pos
        pos_buf[k] = scale * w * <double>g_pos
    # 2./3. the background pass: every other logit as y'_0, gradient written once (the
    # positives' put in place block by block)
    loss += weighted_pass(xr, gr, n_classes, want_grad, <const floating*>NULL, keep, y0,
                          class_weight, pos_weight if eps > 0.0 else <const double*>NULL, prm,
                          <floating>scale, eps == 0.0 and not shifts_negatives(prm)
                          and negative_weight(prm, pw0) != 0, cols,
                          n_pos, pos_buf, stream_ok, ahead)
    return sw * loss


cdef double dense_row(const floating* xr, floating* gr, bint want_grad, Py_ssize_t n_classes,
                      const target_t* yr, const double* class_weight, const double* pos_weight,
                      double sw, double eps, double grad_scale,
                      const params_t* prm) noexcept nogil:
    # 2. loss and 3. gradient in one pass (float32 block partial sums, then float64)
    return sw * weighted_pass(xr, gr, n_classes, want_grad, yr, <floating>(1.0 - eps),
                              <floating>(0.5 * eps), class_weight, pos_weight, prm,
                              <floating>(sw * grad_scale), False, <const int64_t*>NULL, 0,
                              <const double*>NULL, False, PREFETCH_BYTES)


cdef void _sparse(const floating[:, ::1] logits, const int64_t[::1] indptr,
                  const int64_t[::1] indices, const double[::1] values,
                  const double[::1] class_weight, const double[::1] pos_weight,
                  const double[::1] sample_weight, double eps, double grad_scale,
                  const params_t* prm, double[::1] row_loss, floating[:, ::1] grad,
                  bint want_grad, double[::1] pos_buf, int n_threads, bint stream_ok,
                  Py_ssize_t ahead):
    cdef Py_ssize_t n_rows = logits.shape[0], n_classes = logits.shape[1], i, k0
    cdef const floating* x0 = &logits[0, 0]
    cdef floating* g0 = &grad[0, 0] if want_grad else NULL
    cdef const int64_t* cols = &indices[0] if indices.shape[0] > 0 else NULL
    cdef const double* vals = &values[0] if values.shape[0] > 0 else NULL
    cdef const double* cw = &class_weight[0] if class_weight.shape[0] > 0 else NULL
    cdef const double* pw = &pos_weight[0] if pos_weight.shape[0] > 0 else NULL
    cdef double* buf = &pos_buf[0] if pos_buf.shape[0] > 0 else NULL
    cdef bint has_sw = sample_weight.shape[0] > 0
    for i in prange(n_rows, nogil=True, num_threads=n_threads, schedule="guided"):
        k0 = indptr[i]
        row_loss[i] = sparse_row(x0 + i * n_classes,
                                 g0 + i * n_classes if want_grad else g0, want_grad, n_classes,
                                 cols + k0 if cols != NULL else cols,
                                 vals + k0 if vals != NULL else vals, indptr[i + 1] - k0, cw, pw,
                                 sample_weight[i] if has_sw else 1.0, eps, grad_scale, prm,
                                 buf + k0 if buf != NULL else buf, stream_ok, ahead)


cdef void _dense(const floating[:, ::1] logits, const target_t[:, ::1] targets,
                 const double[::1] class_weight, const double[::1] pos_weight,
                 const double[::1] sample_weight, double eps, double grad_scale,
                 const params_t* prm, double[::1] row_loss, floating[:, ::1] grad,
                 bint want_grad, int n_threads):
    cdef Py_ssize_t n_rows = logits.shape[0], n_classes = logits.shape[1], i
    cdef const floating* x0 = &logits[0, 0]
    cdef const target_t* y0 = &targets[0, 0]
    cdef floating* g0 = &grad[0, 0] if want_grad else NULL
    cdef const double* cw = &class_weight[0] if class_weight.shape[0] > 0 else NULL
    cdef const double* pw = &pos_weight[0] if pos_weight.shape[0] > 0 else NULL
    cdef bint has_sw = sample_weight.shape[0] > 0
    for i in prange(n_rows, nogil=True, num_threads=n_threads, schedule="guided"):
        row_loss[i] = dense_row(x0 + i * n_classes,
                                g0 + i * n_classes if want_grad else g0, want_grad, n_classes,
                                y0 + i * n_classes, cw, pw, sample_weight[i] if has_sw else 1.0,
                                eps, grad_scale, prm)


cdef int _params(tuple params, BCEParams* bce, FocalParams* focal) except -1:
    """Fills ``focal`` from a 6-tuple (returns 1) or ``bce`` from a 1-tuple (returns 0); any
    other length raises (the kernels tell the two families apart by it)."""
    if len(params) == 6:
        (focal.gamma, focal.gamma_neg, focal.alpha, focal.clip, focal.clip_hi,
         focal.clip_lo) = params
        return 1
    if len(params) == 1:
        bce.pos_weight = params[0]
        return 0
    raise ValueError(f"params must be (pos_weight,) for BCE or (gamma, gamma_neg, alpha, clip, "
                     f"clip_hi, clip_lo) for focal loss, not {len(params)} values")


def sigmoid_sparse(const floating[:, ::1] logits, const int64_t[::1] indptr,
                   const int64_t[::1] indices, const double[::1] values,
                   const double[::1] class_weight, const double[::1] pos_weight,
                   const double[::1] sample_weight, tuple options, tuple params,
                   double[::1] row_loss, floating[:, ::1] grad, bint want_grad,
                   double[::1] pos_buf, int n_threads, tuple stores):
    """options = (label_smoothing, grad_scale); params = (pos_weight,) for BCE or
    (gamma, gamma_neg, alpha, clip, clip_hi, clip_lo) for focal (``_math.clip_logit``);
    pos_weight: [C] or empty (then params[0]); stores = (stream, ahead): whether the gradient
    may go out through non-temporal stores (only out of place), how many bytes ahead the
    logits are prefetched (``_config.SPARSE_SIGMOID_STORES``)."""
    cdef BCEParams bce
    cdef FocalParams focal
    cdef double eps = options[0], grad_scale = options[1]
    cdef bint stream_ok = stores[0]
    cdef Py_ssize_t ahead = stores[1]
    if _params(params, &bce, &focal):
        _sparse(logits, indptr, indices, values, class_weight, pos_weight, sample_weight, eps,
                grad_scale, &focal, row_loss, grad, want_grad, pos_buf, n_threads, stream_ok,
                ahead)
    else:
        _sparse(logits, indptr, indices, values, class_weight, pos_weight, sample_weight, eps,
                grad_scale, &bce, row_loss, grad, want_grad, pos_buf, n_threads, stream_ok,
                ahead)


def sigmoid_dense(const floating[:, ::1] logits, const target_t[:, ::1] targets,
                  const double[::1] class_weight, const double[::1] pos_weight,
                  const double[::1] sample_weight, tuple options, tuple params,
                  double[::1] row_loss, floating[:, ::1] grad, bint want_grad, int n_threads):
    """options = (label_smoothing, grad_scale); params as for ``sigmoid_sparse``."""
    cdef BCEParams bce
    cdef FocalParams focal
    cdef double eps = options[0], grad_scale = options[1]
    if _params(params, &bce, &focal):
        _dense(logits, targets, class_weight, pos_weight, sample_weight, eps, grad_scale,
               &focal, row_loss, grad, want_grad, n_threads)
    else:
        _dense(logits, targets, class_weight, pos_weight, sample_weight, eps, grad_scale,
               &bce, row_loss, grad, want_grad, n_threads)
