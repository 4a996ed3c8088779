"""Softmax focal loss, forward and gradient (Numba CPU).

For a counted row (docs/losses.md), with ``gap_c = lse - x_c = -log p_c`` and per-class weight
``u_c = alpha_c * w_c * y'_c``, ``_math.softmax_focal_term(gap, gamma) = (f, h)`` gives
``f = (1 - p)**gamma gap`` and ``h`` with ``d f_c / d x_j = h_c (p_j - [j == c])``::

    loss = sw * sum_c u_c f_c
    grad = sw * scale * ( p_j H - u_j h_j ),   H = sum_c u_c h_c

Phases per row: 1. row statistics, 2. loss and H (positives in float64; the smoothing background
``eps / C`` or the dense targets need a second read of the row), 3. gradient (one write; the
logits may be the gradient buffer). ``pos_buf`` [nnz] holds ``u_c h_c`` of the positives between
phases 2 and 3, so nothing is re-read after it is overwritten.
A row function does the work; the kernel is a parallel loop over rows.
"""
import math

from numba import njit, prange

from ... import _math
from ._primitives import JIT_OPTIONS, wide_vectors
from ._rows import BLOCK, argmax_of, row_stats, source_row


@njit(**JIT_OPTIONS)
def background(xr, m, log_s, gamma, class_weight, has_cw):
    """``(sum_c w_c f_c, sum_c w_c h_c)`` over every class (float32 block sums -> float64)."""
    wide_vectors()
    n = xr.size
    gamma_x = _math.cast_like(m, gamma)
    log_s_x = _math.cast_like(m, log_s)
    f_total = 0.0
    h_total = 0.0
    for b0 in range(0, n, BLOCK):
        xb = xr[b0:min(b0 + BLOCK, n)]
        f_acc = 0.0                  # float64 per element: H feeds every gradient entry
        h_acc = 0.0
        for j in range(xb.size):
            f, h = _math.softmax_focal_term(_math.fence(m - xb[j]) + log_s_x, gamma_x)
            w = _math.cast_like(m, class_weight[b0 + j]) if has_cw else _math.cast_like(m, 1.0)
            f_acc += w * f
            h_acc += w * h
        f_total += float(f_acc)
        h_total += float(h_acc)
    return f_total, h_total


@njit(**JIT_OPTIONS)
def write_grad(xr, gr, m, log_s, gamma, a, b, yr, class_weight, has_cw, keep=0.0, y0=1.0):
    """``gr[j] = a exp(x_j - m) - b u_j h_j`` with ``u_j = w_j (keep y_j + y0)`` (dense targets)
    or ``u_j = w_j`` (background only: ``yr`` empty); gr may alias xr."""
    wide_vectors()
    gamma_x = _math.cast_like(m, gamma)
    log_s_x = _math.cast_like(m, log_s)
    keep_x = _math.cast_like(m, keep)
    y0_x = _math.cast_like(m, y0)
    dense = yr.size > 0
    for j in range(xr.size):
        u = keep_x * _math.cast_like(m, yr[j]) + y0_x if dense else _math.cast_like(m, 1.0)
        if has_cw:
            u *= _math.cast_like(m, class_weight[j])
        f, h = _math.softmax_focal_term(_math.fence(m - xr[j]) + log_s_x, gamma_x)
        gr[j] = a * _math.exp_nonpos(xr[j] - m) - b * u * h


@njit(**JIT_OPTIONS)
def sparse_row(xr, gr, want_grad, cols, vals, has_values, class_weight, has_cw, sw, options,
               pos_buf):
    wide_vectors()
    eps, gamma, grad_scale = options
    n_classes = xr.size
    mass_pos = 0.0
    for k in range(cols.size):
        mass_pos += vals[k] if has_values else 1.0
    if cols.size == 0 or not mass_pos > 0.0:
        if want_grad:
            gr[:] = 0.0
        return 0.0
    # 1. row statistics
    m, s1 = row_stats(xr)
    s = 1.0 + s1
    log_s = math.log1p(s1)
    y0 = eps / n_classes
    # 2. loss and H; pos_buf[k] = h of positive k (float64)
    loss = 0.0
    h_sum = 0.0
    for k in range(cols.size):
        c = cols[k]
        u = (1.0 - eps) * (vals[k] if has_values else 1.0) / mass_pos
        if has_cw:
            u *= class_weight[c]
        f, h = _math.softmax_focal_term(_math.fence(float(m) - float(xr[c])) + log_s, gamma)
        loss += u * f
        h_sum += u * h
        pos_buf[k] = h
    if eps > 0.0:                                      # background y0 on every class
        f_bg, h_bg = background(xr, m, log_s, gamma, class_weight, has_cw)
        loss += y0 * f_bg
        h_sum += y0 * h_bg
    # 3. gradient: the positives' exact values first (logits may alias grad), then one write:
    #    (H - U_c) p_c - U_c (1 - p_c) with U_c = (u_c + y0 w_c) h_c: no cancellation at p -> 1
    if want_grad:
        scale = sw * grad_scale
        for k in range(cols.size):
            c = cols[k]
            w = class_weight[c] if has_cw else 1.0
            u_full = w * ((1.0 - eps) * (vals[k] if has_values else 1.0) / mass_pos + y0)
            big_u = u_full * pos_buf[k]
            gap = _math.fence(float(m) - float(xr[c])) + log_s
            pos_buf[k] = scale * ((h_sum - big_u) * math.exp(-gap)
                                  - big_u * (-math.expm1(-gap)))
        a = _math.cast_like(m, scale * h_sum / s)
        if eps > 0.0:
            write_grad(xr, gr, m, log_s, gamma, a, _math.cast_like(m, scale * y0), xr[:0],
                       class_weight, has_cw)
        else:
            for j in range(n_classes):
                gr[j] = a * _math.exp_nonpos(xr[j] - m)
        for k in range(cols.size):
            gr[cols[k]] = _math.cast_like(m, pos_buf[k])
    return sw * loss


@njit(inline="always", **JIT_OPTIONS)
def dense_target_sums(xb, yb, cwb, has_cw, m, log_s_x, gamma_x, keep, y0):
    """``(sum u f, sum u h)`` over a run of classes, ``u = (keep y + y0) w``, float64 from
    per-element terms in the logits' type (H feeds every gradient entry)."""
    f_acc = 0.0
    h_acc = 0.0
    for j in range(xb.size):
        u = keep * _math.cast_like(m, yb[j]) + y0
        if has_cw:
            u *= _math.cast_like(m, cwb[j])
        f, h = _math.softmax_focal_term(_math.fence(m - xb[j]) + log_s_x, gamma_x)
        f_acc += u * f
        h_acc += u * h
    return f_acc, h_acc


@njit(**JIT_OPTIONS)
def dense_row(xr, gr, want_grad, yr, class_weight, has_cw, sw, options):
    wide_vectors()
    eps, gamma, grad_scale = options
    n_classes = xr.size
    # 1. row statistics
    m, s1 = row_stats(xr)
    s = 1.0 + s1
    log_s = math.log1p(s1)
    gamma_x = _math.cast_like(m, gamma)
    log_s_x = _math.cast_like(m, log_s)
    keep = _math.cast_like(m, 1.0 - eps)
    y0 = _math.cast_like(m, eps / n_classes)
    # 2. loss and H; the row's top class (p may be close to 1) is left out of its block's sums
    #    and added in float64: its gradient (H - U) p - U (1 - p), U = u h, takes H - U, which
    #    cancelled when U held most of H and came from float32 terms (gradient off by up to 60%)
    top = argmax_of(xr, m)
    loss = 0.0
    h_rest = 0.0
    for b0 in range(0, n_classes, BLOCK):
        b1 = min(b0 + BLOCK, n_classes)
        t = top - b0 if b0 <= top < b1 else b1 - b0       # top's place in the block, or its end
        xb = xr[b0:b1]
        yb = yr[b0:b1]
        cwb = class_weight[b0:b1]
        f_acc, h_acc = dense_target_sums(xb[:t], yb[:t], cwb[:t], has_cw, m, log_s_x, gamma_x,
                                         keep, y0)
        loss += f_acc
        h_rest += h_acc
        if b0 + t < b1:
            f_acc, h_acc = dense_target_sums(xb[t + 1:], yb[t + 1:], cwb[t + 1:], has_cw, m,
                                             log_s_x, gamma_x, keep, y0)
            loss += f_acc
            h_rest += h_acc
    h_sum = h_rest
    big_u = 0.0
    if top >= 0:
        u_top = (1.0 - eps) * float(yr[top]) + eps / n_classes
        if has_cw:
            u_top *= float(class_weight[top])
        f_top, h_top = _math.softmax_focal_term(log_s, gamma)          # gap of the max: log s
        loss += u_top * f_top
        big_u = u_top * h_top
        h_sum += big_u
    # 3. gradient, computed before the write (logits may alias grad)
    if want_grad:
        scale = sw * grad_scale
        top_grad = scale * (h_rest * math.exp(-log_s) - big_u * (-math.expm1(-log_s)))
        a = _math.cast_like(m, scale * h_sum / s)
        write_grad(xr, gr, m, log_s, gamma, a, _math.cast_like(m, scale), yr, class_weight,
                   has_cw, keep, y0)
        if top >= 0:
            gr[top] = _math.cast_like(m, top_grad)
    return sw * loss


@njit(parallel=True, **JIT_OPTIONS)
def softmax_focal_sparse(logits, indptr, indices, values, class_weight, sample_weight, options,
                         row_loss, grad, want_grad, pos_buf, copies):
    """options = (label_smoothing, gamma, grad_scale); class_weight already holds alpha_c w_c;
    copies: ``_rows.source_row``."""
    wide_vectors()
    has_values = values.size > 0
    has_cw = class_weight.size > 0
    has_sw = sample_weight.size > 0
    for i in prange(logits.shape[0]):
        k0 = indptr[i]
        k1 = indptr[i + 1]
        row_loss[i] = sparse_row(source_row(logits, i, copies),
                                 grad[i] if want_grad else grad[0], want_grad,
                                 indices[k0:k1], values[k0:k1] if has_values else values,
                                 has_values, class_weight, has_cw,
                                 sample_weight[i] if has_sw else 1.0, options, pos_buf[k0:k1])


@njit(parallel=True, **JIT_OPTIONS)
def softmax_focal_dense(logits, targets, class_weight, sample_weight, options, row_loss, grad,
                        want_grad, copies):
    """options = (label_smoothing, gamma, grad_scale); class_weight already holds alpha_c w_c;
    copies: ``_rows.source_row``."""
    wide_vectors()
    has_cw = class_weight.size > 0
    has_sw = sample_weight.size > 0
    for i in prange(logits.shape[0]):
        row_loss[i] = dense_row(source_row(logits, i, copies),
                                grad[i] if want_grad else grad[0], want_grad,
                                targets[i], class_weight, has_cw,
                                sample_weight[i] if has_sw else 1.0, options)
