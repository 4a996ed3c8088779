# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Softmax focal loss, forward and gradient (Cython; mirror of numba_cpu/softmax_focal.py).

For a counted row (docs/losses.md), with ``gap_c = lse - x_c = -log p_c`` and per-class weight
``u_c = alpha_c * w_c * y'_c``, ``softmax_focal_term(gap, gamma) = (f, h)`` gives
``f = (1 - p)**gamma gap`` and ``h`` with ``d f_c / d x_j = h_c (p_j - [j == c])``::

    loss = sw * sum_c u_c f_c
    grad = sw * scale * ( p_j H - u_j h_j ),   H = sum_c u_c h_c

Phases per row: 1. row statistics, 2. loss and H (positives in float64; the smoothing background
``eps / C`` or the dense targets need a second read of the row), 3. gradient (one write; the
logits may be the gradient buffer). ``pos_buf`` [nnz] holds ``h_c`` of the positives between
phases 2 and 3, so nothing is re-read after it is overwritten.
A row function does the work; the kernel is an OpenMP ``prange`` over rows.
"""
from cython.parallel cimport prange
from cython cimport floating
from libc.math cimport exp as libm_exp, expm1 as libm_expm1, log1p as libm_log1p
from libc.stdint cimport int64_t

from ._scalar cimport exp_nonpos, fence, softmax_focal_term
from ._rows cimport BLOCK, argmax_of, row_stats

ctypedef fused target_t:
    float
    double


cdef void background(const floating* xr, Py_ssize_t n, floating m, double log_s, double gamma,
                     const double* class_weight, double* f_out, double* h_out) noexcept nogil:
    """``(sum_c w_c f_c, sum_c w_c h_c)`` over every class (float64 per element)."""
    cdef floating gamma_x = <floating>gamma
    cdef floating log_s_x = <floating>log_s
    cdef floating f, h, w
    cdef double f_total = 0.0, h_total = 0.0, f_acc, h_acc
    cdef Py_ssize_t b0 = 0, j, size
    cdef const floating* xb
    while b0 < n:
        xb = xr + b0
        size = n - b0 if n - b0 < BLOCK else BLOCK
        f_acc = 0.0                  # float64 per element: H feeds every gradient entry
        h_acc = 0.0
        for j in range(size):
            softmax_focal_term(fence(m - xb[j]) + log_s_x, gamma_x, &f, &h)
            w = <floating>class_weight[b0 + j] if class_weight != NULL else <floating>1.0
            f_acc += w * f
            h_acc += w * h
        f_total += f_acc
        h_total += h_acc
        b0 += BLOCK
    f_out[0] = f_total
    h_out[0] = h_total


cdef void write_grad(const floating* xr, floating* gr, Py_ssize_t n, floating m, double log_s,
                     double gamma, floating a, floating b, const target_t* yr,
                     const double* class_weight, double keep, double y0) noexcept nogil:
    """``gr[j] = a exp(x_j - m) - b u_j h_j`` with ``u_j = w_j (keep y_j + y0)`` (dense targets)
    or ``u_j = w_j`` (background only: ``yr`` NULL); gr may alias xr."""
    cdef floating gamma_x = <floating>gamma
    cdef floating log_s_x = <floating>log_s
    cdef floating keep_x = <floating>keep
    cdef floating y0_x = <floating>y0
    cdef floating u, f, h
    cdef Py_ssize_t j
    for j in range(n):
        u = keep_x * <floating>yr[j] + y0_x if yr != NULL else <floating>1.0
        if class_weight != NULL:
            u = u * <floating>class_weight[j]
        softmax_focal_term(fence(m - xr[j]) + log_s_x, gamma_x, &f, &h)
        gr[j] = a * exp_nonpos(xr[j] - m) - b * u * h


cdef double sparse_row(const floating* xr, floating* gr, bint want_grad, Py_ssize_t n_classes,
                       const int64_t* cols, const double* vals, Py_ssize_t n_pos,
                       const double* class_weight, double sw, double eps, double gamma,
                       double grad_scale, double* pos_buf) noexcept nogil:
    cdef double mass_pos = 0.0, s1, s, log_s, y0, loss, h_sum, u, f, h, f_bg, h_bg
    cdef double scale, w, u_full, big_u, gap
    cdef floating m, a
    cdef Py_ssize_t k, j, c
    for k in range(n_pos):
        mass_pos += vals[k] if vals != NULL else 1.0
    if n_pos == 0 or not mass_pos > 0.0:
        if want_grad:
            for j in range(n_classes):
                gr[j] = 0.0
        return 0.0
    # 1. row statistics
    s1 = row_stats(xr, n_classes, &m)
    s = 1.0 + s1
    log_s = libm_log1p(s1)
    y0 = eps / n_classes
    # 2. loss and H; pos_buf[k] = h of positive k (float64)
    loss = 0.0
    h_sum = 0.0
    for k in range(n_pos):
        c = cols[k]
        u = (1.0 - eps) * (vals[k] if vals != NULL else 1.0) / mass_pos
        if class_weight != NULL:                       # the weight as the background reads it
            u = u * <floating>class_weight[c]
        softmax_focal_term(fence(<double>m - <double>xr[c]) + log_s, gamma, &f, &h)
        loss += u * f
        h_sum += u * h
        pos_buf[k] = h
    if eps > 0.0:                                      # background y0 on every class
        background(xr, n_classes, m, log_s, gamma, class_weight, &f_bg, &h_bg)
        loss += y0 * f_bg
        h_sum += y0 * h_bg
    # 3. gradient: the positives' exact values first (logits may alias grad), then one write:
    #    (H - U_c) p_c - U_c (1 - p_c) with U_c = (u_c + y0 w_c) h_c: no cancellation at p -> 1
    if want_grad:
        scale = sw * grad_scale
        for k in range(n_pos):
            c = cols[k]
            w = <floating>class_weight[c] if class_weight != NULL else 1.0
            u_full = w * ((1.0 - eps) * (vals[k] if vals != NULL else 1.0) / mass_pos + y0)
            big_u = u_full * pos_buf[k]
            gap = fence(<double>m - <double>xr[c]) + log_s
            pos_buf[k] = scale * ((h_sum - big_u) * libm_exp(-gap)
                                  - big_u * (-libm_expm1(-gap)))
        a = <floating>(scale * h_sum / s)
        if eps > 0.0:
            write_grad(xr, gr, n_classes, m, log_s, gamma, a, <floating>(scale * y0),
                       <const floating*>NULL, class_weight, 0.0, 1.0)
        else:
            for j in range(n_classes):
                gr[j] = a * exp_nonpos(xr[j] - m)
        for k in range(n_pos):
            gr[cols[k]] = <floating>pos_buf[k]
    return sw * loss


cdef inline void dense_target_sums(const floating* xb, const target_t* yb,
                                   const double* cwb, Py_ssize_t j0, Py_ssize_t j1, floating m,
                                   floating log_s_x, floating gamma_x, floating keep,
                                   floating y0, double* f_sum, double* h_sum) noexcept nogil:
    """Adds ``sum u f`` and ``sum u h`` over classes ``j0 <= j < j1`` of a block,
    ``u = (keep y + y0) w``, float64 from per-element terms in the logits' type (H feeds every
    gradient entry)."""
    cdef double f_acc = 0.0, h_acc = 0.0
    cdef floating u, f, h
    cdef Py_ssize_t j
    for j in range(j0, j1):
        u = keep * <floating>yb[j] + y0
        if cwb != NULL:
            u = u * <floating>cwb[j]
        softmax_focal_term(fence(m - xb[j]) + log_s_x, gamma_x, &f, &h)
        f_acc += u * f
        h_acc += u * h
    f_sum[0] += f_acc
    h_sum[0] += h_acc


cdef double dense_row(const floating* xr, floating* gr, bint want_grad, Py_ssize_t n_classes,
                      const target_t* yr, const double* class_weight, double sw, double eps,
                      double gamma, double grad_scale) noexcept nogil:
    cdef double s1, s, log_s, loss, h_sum, h_rest, scale
    cdef double top_grad, u_top, f_top, h_top, big_u
    cdef floating m, gamma_x, log_s_x, keep, y0, a
    cdef Py_ssize_t b0 = 0, size, top, t
    cdef const floating* xb
    cdef const target_t* yb
    # 1. row statistics
    s1 = row_stats(xr, n_classes, &m)
    s = 1.0 + s1
    log_s = libm_log1p(s1)
    gamma_x = <floating>gamma
    log_s_x = <floating>log_s
    keep = <floating>(1.0 - eps)
    y0 = <floating>(eps / n_classes)
    # 2. loss and H; the row's top class (p may be close to 1) is left out of its block's sums
    #    and added in float64: its gradient (H - U) p - U (1 - p), U = u h, takes H - U, which
    #    cancelled when U held most of H and came from float32 terms (gradient off by up to 60%)
    top = argmax_of(xr, n_classes, m)
    loss = 0.0
    h_rest = 0.0
    while b0 < n_classes:
        xb = xr + b0
        yb = yr + b0
        size = n_classes - b0 if n_classes - b0 < BLOCK else BLOCK
        t = top - b0 if b0 <= top < b0 + size else size   # top's place in the block, or its end
        dense_target_sums(xb, yb, class_weight + b0 if class_weight != NULL else class_weight,
                          0, t, m, log_s_x, gamma_x, keep, y0, &loss, &h_rest)
        dense_target_sums(xb, yb, class_weight + b0 if class_weight != NULL else class_weight,
                          t + 1, size, m, log_s_x, gamma_x, keep, y0, &loss, &h_rest)
        b0 += BLOCK
    h_sum = h_rest
    big_u = 0.0
    if top >= 0:
        u_top = (1.0 - eps) * <double>yr[top] + eps / n_classes
        if class_weight != NULL:
            u_top = u_top * class_weight[top]
        softmax_focal_term(log_s, gamma, &f_top, &h_top)          # gap of the max: log s
        loss += u_top * f_top
        big_u = u_top * h_top
        h_sum += big_u
    # 3. gradient, computed before the write (logits may alias grad)
    if want_grad:
        scale = sw * grad_scale
        top_grad = scale * (h_rest * libm_exp(-log_s) - big_u * (-libm_expm1(-log_s)))
        a = <floating>(scale * h_sum / s)
        write_grad(xr, gr, n_classes, m, log_s, gamma, a, <floating>scale, yr, class_weight,
                   1.0 - eps, eps / n_classes)
        if top >= 0:
            gr[top] = <floating>top_grad
    return sw * loss


def softmax_focal_sparse(const floating[:, ::1] logits, const int64_t[::1] indptr,
                         const int64_t[::1] indices, const double[::1] values,
                         const double[::1] class_weight, const double[::1] sample_weight,
                         tuple options, double[::1] row_loss, floating[:, ::1] grad,
                         bint want_grad, double[::1] pos_buf, int n_threads):
    """options = (label_smoothing, gamma, grad_scale); class_weight already holds alpha_c w_c."""
    cdef double eps = options[0], gamma = options[1], grad_scale = options[2]
    cdef Py_ssize_t n_rows = logits.shape[0], n_classes = logits.shape[1], i, k0
    cdef const floating* x0 = &logits[0, 0]
    cdef floating* g0 = &grad[0, 0] if want_grad else NULL
    cdef const int64_t* cols = &indices[0] if indices.shape[0] > 0 else NULL
    cdef const double* vals = &values[0] if values.shape[0] > 0 else NULL
    cdef const double* cw = &class_weight[0] if class_weight.shape[0] > 0 else NULL
    cdef double* buf = &pos_buf[0] if pos_buf.shape[0] > 0 else NULL
    cdef bint has_sw = sample_weight.shape[0] > 0
    for i in prange(n_rows, nogil=True, num_threads=n_threads, schedule="guided"):
        k0 = indptr[i]
        row_loss[i] = sparse_row(x0 + i * n_classes,
                                 g0 + i * n_classes if want_grad else g0, want_grad, n_classes,
                                 cols + k0 if cols != NULL else cols,
                                 vals + k0 if vals != NULL else vals, indptr[i + 1] - k0, cw,
                                 sample_weight[i] if has_sw else 1.0, eps, gamma, grad_scale,
                                 buf + k0 if buf != NULL else buf)


def softmax_focal_dense(const floating[:, ::1] logits, const target_t[:, ::1] targets,
                        const double[::1] class_weight, const double[::1] sample_weight,
                        tuple options, double[::1] row_loss, floating[:, ::1] grad,
                        bint want_grad, int n_threads):
    """options = (label_smoothing, gamma, grad_scale); class_weight already holds alpha_c w_c."""
    cdef double eps = options[0], gamma = options[1], grad_scale = options[2]
    cdef Py_ssize_t n_rows = logits.shape[0], n_classes = logits.shape[1], i
    cdef const floating* x0 = &logits[0, 0]
    cdef const target_t* y0 = &targets[0, 0]
    cdef floating* g0 = &grad[0, 0] if want_grad else NULL
    cdef const double* cw = &class_weight[0] if class_weight.shape[0] > 0 else NULL
    cdef bint has_sw = sample_weight.shape[0] > 0
    for i in prange(n_rows, nogil=True, num_threads=n_threads, schedule="guided"):
        row_loss[i] = dense_row(x0 + i * n_classes,
                                g0 + i * n_classes if want_grad else g0, want_grad, n_classes,
                                y0 + i * n_classes, cw, sample_weight[i] if has_sw else 1.0,
                                eps, gamma, grad_scale)
