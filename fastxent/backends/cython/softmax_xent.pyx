# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Softmax cross-entropy, forward and gradient (Cython; mirror of numba_cpu/softmax_xent.py).

For a counted row (docs/losses.md), with target mass ``M = sum_c w_c y'_c``,
``y'_c = (1 - eps) y_c + eps / C``, ``lse = m + log s``::

    loss = sw * ( sum_c w_c y'_c (m - x_c) + M log s + z_loss lse**2 )
    grad = sw * scale * ( (M + 2 z_loss lse) p_j - w_j y'_j )

Where ``p_c`` is close to 1 (the positives, and the row's max with dense targets) the gradient is
written ``(M' - u_c) p_c - u_c (1 - p_c)`` with ``1 - p_c = -expm1(-gap_c)``, so it keeps full
relative accuracy instead of cancelling (``M' = M + 2 z_loss lse``, ``u_c = w_c y'_c``).

Phases per row: 1. row statistics (one read of the logits), 2. loss, 3. gradient (one write;
the logits may be the gradient buffer: every read of x_j happens before its write).
Targets: sparse (CSR; class indices arrive here as one positive per row) or dense [N, C].
A row function does the work; the kernel is an OpenMP ``prange`` over rows (out of place, with
class indices or CSR targets and rows that stay in cache, a ``prange`` over runs of rows that
writes each row's gradient while it reads the next: ``softmax_xent_sparse_pipelined``).
"""
from cython.parallel cimport prange, threadid
from cython cimport floating
from libc.math cimport exp as libm_exp, expm1 as libm_expm1, log1p as libm_log1p
from libc.stdint cimport int64_t

from ._scalar cimport exp_nonpos, fence
from ._rows cimport (BLOCK, argmax_of, fxt_store_fence, lane_sum, row_buf_width, row_stats,
                     row_stats_store, row_stats_store_streaming, row_sum_gap, stream_ends,
                     stream_scaled_row, write_softmax_grad)

ctypedef fused target_t:
    float
    double


cdef inline double exact_grad(double gap, double mass_rest, double u) noexcept nogil:
    """``(M' - u) p - u (1 - p)`` for a class with ``-log p = gap`` (no cancellation)."""
    return mass_rest * libm_exp(-gap) - u * (-libm_expm1(-gap))


cdef double others_mass(Py_ssize_t k, double wy, double wy_sum, const int64_t* cols,
                        const double* vals, Py_ssize_t n_pos, const double* class_weight,
                        double mass_pos) noexcept nogil:
    """``sum w y`` over the row's positives but ``k``: ``wy_sum - wy``, or for a positive that
    holds more than half of the mass (at most one does) the direct sum of the others, which
    the difference would cancel (values 1 and 1e-10: float64 gradient off by 8e-8)."""
    cdef double total = 0.0, wq
    cdef Py_ssize_t q
    if not wy > 0.5 * wy_sum:
        return wy_sum - wy
    for q in range(n_pos):
        if q != k:
            wq = (vals[q] if vals != NULL else 1.0) / mass_pos
            if class_weight != NULL:
                wq = wq * class_weight[cols[q]]
            total += wq
    return total


cdef double sparse_row(const floating* xr, floating* gr, bint want_grad, Py_ssize_t n_classes,
                       const int64_t* cols, const double* vals, Py_ssize_t n_pos,
                       const double* class_weight, double sw, double eps, double z_loss,
                       double grad_scale, double cw_sum, double cached_row_bytes,
                       double* pos_buf, floating* row_buf) noexcept nogil:
    cdef double mass_pos = row_mass(vals, n_pos), s1, s, log_s, lse, wy_sum, wy_gap, wy, mass
    cdef double gap, loss, scale, w, rest, u, top_grad
    cdef floating m, a, b
    cdef Py_ssize_t k, j, c, top
    if n_pos == 0 or not mass_pos > 0.0:                # no target distribution: not counted
        if want_grad:
            for j in range(n_classes):
                gr[j] = 0.0
        return 0.0
    if want_grad and eps == 0.0 and <double>(n_classes * <Py_ssize_t>sizeof(floating)) \
            <= cached_row_bytes and row_buf != NULL:
        return cached_sparse_row(xr, gr, n_classes, cols, vals, n_pos, class_weight, sw,
                                 z_loss, grad_scale, mass_pos, pos_buf, row_buf)
    # 1. row statistics
    s1 = row_stats(xr, n_classes, &m)
    s = 1.0 + s1
    log_s = libm_log1p(s1)
    lse = <double>m + log_s
    # 2. loss
    wy_sum = 0.0          # sum over positives of w_c y_c
    wy_gap = 0.0          # sum over positives of w_c y_c (m - x_c)
    for k in range(n_pos):
        c = cols[k]
        wy = (vals[k] if vals != NULL else 1.0) / mass_pos
        if class_weight != NULL:
            wy = wy * class_weight[c]
        wy_sum += wy
        wy_gap += wy * (<double>m - <double>xr[c])
    mass = (1.0 - eps) * wy_sum + eps / n_classes * cw_sum
    gap = (1.0 - eps) * wy_gap
    if eps > 0.0:
        gap += eps / n_classes * row_sum_gap(xr, n_classes, m, class_weight)
    loss = sw * (gap + mass * log_s + z_loss * lse * lse)
    # 3. gradient: the positives' exact values first (logits may alias grad), then one write
    if want_grad:
        scale = sw * grad_scale
        for k in range(n_pos):
            c = cols[k]
            w = class_weight[c] if class_weight != NULL else 1.0
            wy = (vals[k] if vals != NULL else 1.0) / mass_pos     # as in phase 2, bit for bit
            if class_weight != NULL:
                wy = wy * w
            rest = ((1.0 - eps) * others_mass(k, wy, wy_sum, cols, vals, n_pos, class_weight,
                                              mass_pos)
                    + eps / n_classes * (cw_sum - w) + 2.0 * z_loss * lse)
            u = (1.0 - eps) * wy + eps / n_classes * w
            pos_buf[k] = scale * exact_grad(fence(<double>m - <double>xr[c]) + log_s, rest, u)
        # with smoothing every class has u = eps w / C: the row's max (p may be close to 1),
        # when it is no positive, in the exact form too (a p - b w cancelled there)
        top = argmax_of(xr, n_classes, m) if eps > 0.0 else -1
        top_grad = 0.0
        if top >= 0:
            w = class_weight[top] if class_weight != NULL else 1.0
            top_grad = scale * exact_grad(log_s, (1.0 - eps) * wy_sum
                                          + eps / n_classes * (cw_sum - w) + 2.0 * z_loss * lse,
                                          eps / n_classes * w)
        a = <floating>(scale * (mass + 2.0 * z_loss * lse) / s)
        b = <floating>(scale * eps / n_classes)
        write_softmax_grad(xr, gr, n_classes, m, a, b, class_weight)
        if top >= 0:
            gr[top] = <floating>top_grad
        for k in range(n_pos):
            gr[cols[k]] = <floating>pos_buf[k]
    return loss


cdef inline double row_mass(const double* vals, Py_ssize_t n_pos) noexcept nogil:
    """The positives' total value (their count without values): 0 for a row that is not
    counted (no target distribution)."""
    cdef double mass_pos = 0.0
    cdef Py_ssize_t k
    for k in range(n_pos):
        mass_pos += vals[k] if vals != NULL else 1.0
    return mass_pos


cdef double cached_sparse_row(const floating* xr, floating* gr, Py_ssize_t n_classes,
                              const int64_t* cols, const double* vals, Py_ssize_t n_pos,
                              const double* class_weight, double sw, double z_loss,
                              double grad_scale, double mass_pos, double* pos_buf,
                              floating* row_buf) noexcept nogil:
    """``sparse_row`` with a gradient, no label smoothing, and a row that stays in L2: the
    online statistics with ``exp(x - m)`` stored in ``row_buf`` (``row_stats_store``: this
    thread's buffer, which stays in cache), then that scaled into the gradient with
    non-temporal stores (one exp per element and one read of the logits from memory; the
    gradient is written without being read; the same loss and gradient formulas).
    ``pos_buf`` holds ``m - x_c`` of the positives, then their gradients."""
    cdef floating a
    cdef double loss = cached_sparse_terms(xr, n_classes, cols, vals, n_pos, class_weight, sw,
                                           z_loss, grad_scale, mass_pos, pos_buf, row_buf,
                                           NULL, NULL, 0, &a)
    write_row(gr, row_buf, n_classes, a, cols, pos_buf, n_pos)
    return loss


cdef double cached_sparse_terms(const floating* xr, Py_ssize_t n_classes, const int64_t* cols,
                                const double* vals, Py_ssize_t n_pos,
                                const double* class_weight, double sw, double z_loss,
                                double grad_scale, double mass_pos, double* pos_buf,
                                floating* row_buf, floating* pg, const floating* psrc,
                                floating pa, floating* a_out) noexcept nogil:
    """The loss of ``cached_sparse_row``: its phases 1 and 2, ``exp(x - m)`` left in
    ``row_buf``, the positives' gradients in ``pos_buf`` and ``a_out`` set: the row's
    gradient is then ``a * row_buf`` with the positives' put in place (``put_positives``).
    While it reads the logits, the previous row's gradient ``pg = pa * psrc`` goes out (``pg``
    NULL: none; ``row_stats_store_streaming``)."""
    cdef double s1, s, log_s, lse, wy_sum, wy_gap, wy, loss, scale
    cdef floating m
    cdef Py_ssize_t k, c
    # 1. row statistics, exp(x - m) stored into row_buf
    s1 = row_stats_store_streaming(xr, row_buf, n_classes, &m, pg, psrc, pa)
    for k in range(n_pos):
        pos_buf[k] = fence(<double>m - <double>xr[cols[k]])
    s = 1.0 + s1
    log_s = libm_log1p(s1)
    lse = <double>m + log_s
    # 2. loss
    wy_sum = 0.0
    wy_gap = 0.0
    for k in range(n_pos):
        wy = (vals[k] if vals != NULL else 1.0) / mass_pos
        if class_weight != NULL:
            wy = wy * class_weight[cols[k]]
        wy_sum += wy
        wy_gap += wy * pos_buf[k]
    loss = sw * (wy_gap + wy_sum * log_s + z_loss * lse * lse)
    # 3. gradient: the positives' exact values (the rest is the stored exp, scaled by a)
    scale = sw * grad_scale
    for k in range(n_pos):
        c = cols[k]
        wy = (vals[k] if vals != NULL else 1.0) / mass_pos            # as in phase 2, bit for bit
        if class_weight != NULL:
            wy = wy * class_weight[c]
        pos_buf[k] = scale * exact_grad(pos_buf[k] + log_s,
                                        others_mass(k, wy, wy_sum, cols, vals, n_pos,
                                                    class_weight, mass_pos)
                                        + 2.0 * z_loss * lse, wy)
    a_out[0] = <floating>(scale * (wy_sum + 2.0 * z_loss * lse) / s)
    return loss


cdef inline void write_row(floating* gr, const floating* src, Py_ssize_t n_classes, floating a,
                           const int64_t* cols, const double* pos_buf,
                           Py_ssize_t n_pos) noexcept nogil:
    """A cached row's whole gradient: ``gr = a * src`` streamed (``stream_scaled_row``), then
    the positives' exact values put in place (``put_positives``)."""
    stream_scaled_row(gr, src, n_classes, a)
    put_positives(gr, cols, pos_buf, n_pos)


cdef inline void put_positives(floating* gr, const int64_t* cols, const double* pos_buf,
                               Py_ssize_t n_pos) noexcept nogil:
    """``gr[cols[k]] = pos_buf[k]``: the positives' exact gradients, after the row's stream."""
    cdef Py_ssize_t k
    for k in range(n_pos):
        gr[cols[k]] = <floating>pos_buf[k]


cdef void pipelined_run(const floating* x0, floating* g0, Py_ssize_t n_classes, Py_ssize_t r0,
                        Py_ssize_t r1, const int64_t* indptr, const int64_t* cols,
                        const double* vals, const double* class_weight,
                        const double* sample_weight, double z_loss, double grad_scale,
                        double* row_loss, double* pos_buf, floating* bufs,
                        Py_ssize_t width) noexcept nogil:
    """Rows ``r0 <= i < r1`` of ``softmax_xent_sparse_pipelined``: row i's statistics are read
    while row i - 1's gradient goes out (``cached_sparse_terms``), alternating between the two
    row buffers ``bufs`` and ``bufs + width``; a row that counts nothing gets zeros (after
    the pending row is written out)."""
    cdef Py_ssize_t i, j, k0, n_pos, pending = -1, pk0 = 0, pn = 0
    cdef double mass_pos
    cdef floating pa = 0, a
    cdef floating* cur
    cdef floating* prev
    cdef floating* pg
    for i in range(r0, r1):
        cur = bufs + (i % 2) * width
        prev = bufs + (1 - i % 2) * width
        k0 = indptr[i]
        n_pos = indptr[i + 1] - k0
        mass_pos = row_mass(vals + k0 if vals != NULL else vals, n_pos)
        pg = g0 + pending * n_classes if pending >= 0 else NULL
        if n_pos == 0 or not mass_pos > 0.0:            # not counted: zeros
            if pending >= 0:
                write_row(pg, prev, n_classes, pa, cols + pk0, pos_buf + pk0, pn)
                pending = -1
            for j in range(n_classes):
                g0[i * n_classes + j] = 0
            row_loss[i] = 0.0
            continue
        row_loss[i] = cached_sparse_terms(
            x0 + i * n_classes, n_classes, cols + k0, vals + k0 if vals != NULL else vals, n_pos,
            class_weight, sample_weight[i] if sample_weight != NULL else 1.0, z_loss,
            grad_scale, mass_pos, pos_buf + k0, cur, pg, prev, pa, &a)
        if pending >= 0:
            stream_ends(pg, prev, n_classes, pa)
            fxt_store_fence()
            put_positives(pg, cols + pk0, pos_buf + pk0, pn)
        pending = i
        pk0 = k0
        pn = n_pos
        pa = a
    if pending >= 0:
        write_row(g0 + pending * n_classes, bufs + (pending % 2) * width, n_classes, pa,
                  cols + pk0, pos_buf + pk0, pn)


cdef void dense_target_sums(const floating* xr, const target_t* yr, Py_ssize_t n, floating m,
                            Py_ssize_t top, const double* class_weight,
                            double* sums) noexcept nogil:
    """``sums = (sum w y, the same sum without the top class, sum w y (m - x))`` of a dense
    target row, float64 from block partial sums (lane sums over block buffers). The top class
    is left out of its block's sums and added back (``wy_sum - wy_top`` would cancel when it
    holds the row's mass)."""
    cdef floating wybuf[BLOCK]
    cdef floating gapbuf[BLOCK]
    cdef floating wy
    cdef double wy_rest = 0.0, wy_gap = 0.0, wy_top = 0.0
    cdef Py_ssize_t b0 = 0, j, size
    while b0 < n:
        size = n - b0 if n - b0 < BLOCK else BLOCK
        if class_weight != NULL:
            for j in range(size):
                wy = <floating>yr[b0 + j] * <floating>class_weight[b0 + j]
                wybuf[j] = wy
                gapbuf[j] = wy * (m - xr[b0 + j])
        else:
            for j in range(size):
                wy = <floating>yr[b0 + j]
                wybuf[j] = wy
                gapbuf[j] = wy * (m - xr[b0 + j])
        if b0 <= top < b0 + size:
            wybuf[top - b0] = 0.0
            gapbuf[top - b0] = 0.0
        wy_rest += <double>lane_sum(wybuf, size)
        wy_gap += <double>lane_sum(gapbuf, size)
        b0 += BLOCK
    if top >= 0:
        wy_top = <double>yr[top] * (class_weight[top] if class_weight != NULL else 1.0)
    sums[0] = wy_rest + wy_top
    sums[1] = wy_rest
    sums[2] = wy_gap


cdef void dense_terms(const floating* xr, const target_t* yr, Py_ssize_t n_classes, floating m,
                      Py_ssize_t top, double s1, const double* class_weight, double sw,
                      double eps, double z_loss, double grad_scale, double cw_sum,
                      double* terms) noexcept nogil:
    """``terms = (loss, a, b, c1, top_grad)`` of a dense target row from its statistics: the
    row's loss, the gradient's coefficients ``grad_j = a exp(x_j - m) - b w_j - c1 w_j y_j``
    and the exact gradient of the top class (``p_top`` may be close to 1)."""
    cdef double sums[3]
    cdef double log_s = libm_log1p(s1)
    cdef double lse = <double>m + log_s
    cdef double mass, gap, scale, w, wy, rest, top_grad = 0.0
    dense_target_sums(xr, yr, n_classes, m, top, class_weight, sums)
    mass = (1.0 - eps) * sums[0] + eps / n_classes * cw_sum
    gap = (1.0 - eps) * sums[2]
    if eps > 0.0:
        gap += eps / n_classes * row_sum_gap(xr, n_classes, m, class_weight)
    scale = sw * grad_scale
    if top >= 0:
        w = class_weight[top] if class_weight != NULL else 1.0
        wy = w * <double>yr[top]
        rest = (1.0 - eps) * sums[1] + eps / n_classes * (cw_sum - w) + 2.0 * z_loss * lse
        top_grad = scale * exact_grad(log_s, rest, (1.0 - eps) * wy + eps / n_classes * w)
    terms[0] = sw * (gap + mass * log_s + z_loss * lse * lse)
    terms[1] = scale * (mass + 2.0 * z_loss * lse) / (1.0 + s1)
    terms[2] = scale * eps / n_classes
    terms[3] = scale * (1.0 - eps)
    terms[4] = top_grad


cdef double dense_row(const floating* xr, floating* gr, bint want_grad, Py_ssize_t n_classes,
                      const target_t* yr, const double* class_weight, double sw, double eps,
                      double z_loss, double grad_scale, double cw_sum, double cached_row_bytes,
                      floating* row_buf) noexcept nogil:
    cdef double s1
    cdef double terms[5]
    cdef floating m, a, b, c1, wx
    cdef Py_ssize_t j, top
    if want_grad and n_classes * <Py_ssize_t>sizeof(floating) <= cached_row_bytes \
            and row_buf != NULL:
        return cached_dense_row(xr, gr, n_classes, yr, class_weight, sw, eps, z_loss,
                                grad_scale, cw_sum, row_buf)
    # 1. row statistics
    s1 = row_stats(xr, n_classes, &m)
    top = argmax_of(xr, n_classes, m)
    # 2. loss
    dense_terms(xr, yr, n_classes, m, top, s1, class_weight, sw, eps, z_loss, grad_scale,
                cw_sum, terms)
    # 3. gradient
    if want_grad:
        a = <floating>terms[1]
        b = <floating>terms[2]
        c1 = <floating>terms[3]
        if class_weight != NULL:
            for j in range(n_classes):
                wx = <floating>class_weight[j]
                gr[j] = (a * exp_nonpos(xr[j] - m) - b * wx - c1 * wx * <floating>yr[j])
        else:
            for j in range(n_classes):
                gr[j] = a * exp_nonpos(xr[j] - m) - b - c1 * <floating>yr[j]
        if top >= 0:
            gr[top] = <floating>terms[4]
    return terms[0]


cdef double cached_dense_row(const floating* xr, floating* gr, Py_ssize_t n_classes,
                             const target_t* yr, const double* class_weight, double sw,
                             double eps, double z_loss, double grad_scale, double cw_sum,
                             floating* row_buf) noexcept nogil:
    """``dense_row`` with a gradient and a row that stays in L2: the online statistics with
    ``exp(x - m)`` stored in ``row_buf`` (``row_stats_store``: this thread's buffer), the
    loss's target sums, then the gradient formed in ``row_buf`` and streamed out with
    non-temporal stores (one exp per element where the one-read path takes two; the same
    formulas). The logits are read before the gradient is written (they may be the gradient
    buffer)."""
    cdef double s1
    cdef double terms[5]
    cdef floating m, a, b, c1, wx
    cdef floating one = 1.0
    cdef Py_ssize_t j, top
    # 1. row statistics, exp(x - m) stored into row_buf
    s1 = row_stats_store(xr, row_buf, n_classes, &m)
    top = argmax_of(xr, n_classes, m)
    # 2. loss
    dense_terms(xr, yr, n_classes, m, top, s1, class_weight, sw, eps, z_loss, grad_scale,
                cw_sum, terms)
    # 3. gradient from the stored exp, formed in row_buf, then streamed out
    a = <floating>terms[1]
    b = <floating>terms[2]
    c1 = <floating>terms[3]
    if class_weight != NULL:
        for j in range(n_classes):
            wx = <floating>class_weight[j]
            row_buf[j] = a * row_buf[j] - b * wx - c1 * wx * <floating>yr[j]
    else:
        for j in range(n_classes):
            row_buf[j] = a * row_buf[j] - b - c1 * <floating>yr[j]
    if top >= 0:
        row_buf[top] = <floating>terms[4]
    stream_scaled_row(gr, row_buf, n_classes, one)
    return terms[0]


def softmax_xent_sparse(const floating[:, ::1] logits, const int64_t[::1] indptr,
                        const int64_t[::1] indices, const double[::1] values,
                        const double[::1] class_weight, const double[::1] sample_weight,
                        tuple options, double[::1] row_loss, floating[:, ::1] grad,
                        bint want_grad, double[::1] pos_buf, floating[:, ::1] row_bufs,
                        int n_threads):
    """options = (label_smoothing, z_loss, grad_scale, sum of class weights, the longest row in
    bytes for the cached two-pass gradient (``_config.CACHED_ROW_BYTES``)). Absent optional
    arrays are empty; without a gradient, ``grad`` is an empty [1, 0] array. ``row_bufs`` has a
    row per thread for the cached gradient ([n_threads, cached_row_width(C)]), or is empty
    ([1, 0]): then every row takes the one-read path."""
    cdef double eps = options[0], z_loss = options[1], grad_scale = options[2]
    cdef double cw_sum = options[3], cached_row_bytes = options[4]
    cdef Py_ssize_t n_rows = logits.shape[0], n_classes = logits.shape[1], i, k0
    cdef const floating* x0 = &logits[0, 0]
    cdef floating* g0 = &grad[0, 0] if want_grad else NULL
    cdef const int64_t* cols = &indices[0] if indices.shape[0] > 0 else NULL
    cdef const double* vals = &values[0] if values.shape[0] > 0 else NULL
    cdef const double* cw = &class_weight[0] if class_weight.shape[0] > 0 else NULL
    cdef double* buf = &pos_buf[0] if pos_buf.shape[0] > 0 else NULL
    cdef bint has_sw = sample_weight.shape[0] > 0
    cdef Py_ssize_t width = row_bufs.shape[1]
    cdef floating* rb0 = &row_bufs[0, 0] if width == row_buf_width(n_classes) else NULL
    cdef Py_ssize_t n_bufs = row_bufs.shape[0] if rb0 != NULL else 0
    for i in prange(n_rows, nogil=True, num_threads=n_threads, schedule="guided"):
        k0 = indptr[i]
        row_loss[i] = sparse_row(x0 + i * n_classes,
                                 g0 + i * n_classes if want_grad else g0, want_grad, n_classes,
                                 cols + k0 if cols != NULL else cols,
                                 vals + k0 if vals != NULL else vals, indptr[i + 1] - k0, cw,
                                 sample_weight[i] if has_sw else 1.0, eps, z_loss, grad_scale,
                                 cw_sum, cached_row_bytes, buf + k0 if buf != NULL else buf,
                                 rb0 + threadid() * width if threadid() < n_bufs else NULL)


def softmax_xent_sparse_pipelined(const floating[:, ::1] logits, const int64_t[::1] indptr,
                                  const int64_t[::1] indices, const double[::1] values,
                                  const double[::1] class_weight,
                                  const double[::1] sample_weight, tuple options,
                                  double[::1] row_loss, floating[:, ::1] grad,
                                  double[::1] pos_buf, floating[:, ::1] row_bufs, int n_threads):
    """``softmax_xent_sparse`` for calls that take ``cached_sparse_row`` on every counted row
    (a gradient, no label smoothing, rows of at most the cached row bytes) out of place: each
    of the ``row_bufs.shape[0]`` runs of rows writes row i's gradient while it reads row i + 1
    (``pipelined_run``), which keeps the memory busy during the arithmetic. ``row_bufs``:
    [runs, 2 * width], two row buffers of ``width >= cached_row_width(C)`` each. The same bits
    as the row by row form where that takes the cached rows (the caller checks that the rows
    fit ``options[4]``, the cached row bytes); mirror of Numba's
    ``softmax_xent_sparse_pipelined``."""
    cdef double z_loss = options[1], grad_scale = options[2]
    cdef Py_ssize_t n_rows = logits.shape[0], n_classes = logits.shape[1], t
    cdef Py_ssize_t n_runs = row_bufs.shape[0], width = row_bufs.shape[1] // 2
    cdef const floating* x0 = &logits[0, 0]
    cdef floating* g0 = &grad[0, 0]
    cdef const int64_t* ip = &indptr[0]
    cdef const int64_t* cols = &indices[0] if indices.shape[0] > 0 else NULL
    cdef const double* vals = &values[0] if values.shape[0] > 0 else NULL
    cdef const double* cw = &class_weight[0] if class_weight.shape[0] > 0 else NULL
    cdef const double* sw = &sample_weight[0] if sample_weight.shape[0] > 0 else NULL
    cdef double* buf = &pos_buf[0] if pos_buf.shape[0] > 0 else NULL
    cdef floating* rb0 = &row_bufs[0, 0]
    if n_rows == 0:
        return
    if options[0] != 0.0 or width < row_buf_width(n_classes) or grad.shape[0] != n_rows \
            or grad.shape[1] != n_classes:
        raise ValueError("softmax_xent_sparse_pipelined: takes no label smoothing, two row "
                         "buffers of cached_row_width(C) per run and a gradient like the logits")
    for t in prange(n_runs, nogil=True, num_threads=n_threads, schedule="static", chunksize=1):
        pipelined_run(x0, g0, n_classes, t * n_rows // n_runs, (t + 1) * n_rows // n_runs, ip,
                      cols, vals, cw, sw, z_loss, grad_scale, &row_loss[0], buf,
                      rb0 + t * row_bufs.shape[1], width)


def softmax_xent_dense(const floating[:, ::1] logits, const target_t[:, ::1] targets,
                       const double[::1] class_weight, const double[::1] sample_weight,
                       tuple options, double[::1] row_loss, floating[:, ::1] grad,
                       bint want_grad, floating[:, ::1] row_bufs, int n_threads):
    """options = (label_smoothing, z_loss, grad_scale, sum of class weights, cached row bytes);
    ``row_bufs``: see ``softmax_xent_sparse``."""
    cdef double eps = options[0], z_loss = options[1], grad_scale = options[2]
    cdef double cw_sum = options[3], cached_row_bytes = options[4]
    cdef Py_ssize_t n_rows = logits.shape[0], n_classes = logits.shape[1], i
    cdef const floating* x0 = &logits[0, 0]
    cdef const target_t* y0 = &targets[0, 0]
    cdef floating* g0 = &grad[0, 0] if want_grad else NULL
    cdef const double* cw = &class_weight[0] if class_weight.shape[0] > 0 else NULL
    cdef bint has_sw = sample_weight.shape[0] > 0
    cdef Py_ssize_t width = row_bufs.shape[1]
    cdef floating* rb0 = &row_bufs[0, 0] if width == row_buf_width(n_classes) else NULL
    cdef Py_ssize_t n_bufs = row_bufs.shape[0] if rb0 != NULL else 0
    for i in prange(n_rows, nogil=True, num_threads=n_threads, schedule="guided"):
        row_loss[i] = dense_row(x0 + i * n_classes,
                                g0 + i * n_classes if want_grad else g0, want_grad, n_classes,
                                y0 + i * n_classes, cw, sample_weight[i] if has_sw else 1.0,
                                eps, z_loss, grad_scale, cw_sum, cached_row_bytes,
                                rb0 + threadid() * width if threadid() < n_bufs else NULL)


def cached_row_width(Py_ssize_t n_classes):
    """Columns of ``row_bufs`` for rows of ``n_classes``: the row, and a reference max per
    block (``_rows.row_buf_width``)."""
    return row_buf_width(n_classes)
