"""Softmax focal loss, forward and gradient, one row per loop iteration (Numba CPU).

For a counted row (docs/losses.md), with ``gap_c = lse - x_c = -log p_c`` and per-class weight
``u_c = sw * alpha_c * w_c * y'_c``, ``_math.softmax_focal_term(gap, gamma) = (f, h)`` gives
``f = (1 - p)**gamma gap`` and ``h`` with ``d f_c / d x_j = h_c (p_j - [j == c])``::

    loss = sum_c u_c f_c
    grad = scale * ( p_j H - u_j h_j ),   H = sum_c u_c h_c

Phases per row: 1. row statistics, 2. loss and H (positives in float64; the smoothing background
``eps / C`` or the dense targets need a second read of the row), 3. gradient (one write; the
logits may be the gradient buffer). ``pos_buf`` [nnz] holds ``u_c h_c`` of the positives between
phases 2 and 3, so nothing is re-read after it is overwritten.
"""
import math

from numba import njit, prange

from ... import _math
from ._primitives import FASTMATH
from ._rows import row_stats


@njit(parallel=True, nogil=True, cache=True, fastmath=FASTMATH)
def softmax_focal_sparse(logits, indptr, indices, values, class_weight, sample_weight, options,
                         row_loss, grad, pos_buf):
    """options = (label_smoothing, gamma, grad_scale); class_weight already holds alpha_c w_c."""
    n_rows, n_classes = logits.shape
    eps, gamma, grad_scale = options
    has_values = values.size > 0
    has_cw = class_weight.size > 0
    has_sw = sample_weight.size > 0
    want_grad = grad.shape[0] > 0
    for i in prange(n_rows):
        xr = logits[i]
        k0 = indptr[i]
        k1 = indptr[i + 1]
        mass_pos = 0.0
        for k in range(k0, k1):
            mass_pos += values[k] if has_values else 1.0
        if k1 == k0 or not mass_pos > 0.0:
            row_loss[i] = 0.0
            if want_grad:
                grad[i, :] = 0.0
            continue
        # 1. row statistics
        m, s = row_stats(xr)
        log_s = math.log(s)
        # 2. loss and H
        loss = 0.0
        h_sum = 0.0
        for k in range(k0, k1):                        # positives, float64
            c = indices[k]
            u = (1.0 - eps) * (values[k] if has_values else 1.0) / mass_pos
            if has_cw:
                u *= class_weight[c]
            f, h = _math.softmax_focal_term((float(m) - float(xr[c])) + log_s, gamma)
            loss += u * f
            h_sum += u * h
            pos_buf[k] = u * h
        y0 = eps / n_classes
        gamma_x = _math.cast_like(m, gamma)
        log_s_x = _math.cast_like(m, log_s)
        if eps > 0.0:                                  # background y0 on every class
            f_acc = 0.0
            h_acc = 0.0
            for j in range(n_classes):
                f, h = _math.softmax_focal_term((m - xr[j]) + log_s_x, gamma_x)
                w = class_weight[j] if has_cw else 1.0
                f_acc += w * f
                h_acc += w * h
            loss += y0 * f_acc
            h_sum += y0 * h_acc
        sw = sample_weight[i] if has_sw else 1.0
        row_loss[i] = sw * loss
        # 3. gradient
        if want_grad:
            scale = sw * grad_scale
            gr = grad[i]
            a = _math.cast_like(m, scale * h_sum / s)
            b = _math.cast_like(m, scale * y0)
            if eps > 0.0:
                for j in range(n_classes):
                    f, h = _math.softmax_focal_term((m - xr[j]) + log_s_x, gamma_x)
                    w = _math.cast_like(m, class_weight[j]) if has_cw else _math.cast_like(m, 1.0)
                    gr[j] = a * _math.exp(xr[j] - m) - b * w * h
            else:
                for j in range(n_classes):
                    gr[j] = a * _math.exp(xr[j] - m)
            for k in range(k0, k1):
                gr[indices[k]] -= _math.cast_like(m, scale * pos_buf[k])


@njit(parallel=True, nogil=True, cache=True, fastmath=FASTMATH)
def softmax_focal_dense(logits, targets, class_weight, sample_weight, options, row_loss, grad):
    """options = (label_smoothing, gamma, grad_scale); class_weight already holds alpha_c w_c."""
    n_rows, n_classes = logits.shape
    eps, gamma, grad_scale = options
    has_cw = class_weight.size > 0
    has_sw = sample_weight.size > 0
    want_grad = grad.shape[0] > 0
    for i in prange(n_rows):
        xr = logits[i]
        yr = targets[i]
        # 1. row statistics
        m, s = row_stats(xr)
        log_s = math.log(s)
        gamma_x = _math.cast_like(m, gamma)
        log_s_x = _math.cast_like(m, log_s)
        keep = _math.cast_like(m, 1.0 - eps)
        y0 = _math.cast_like(m, eps / n_classes)
        # 2. loss and H
        loss = 0.0
        h_sum = 0.0
        for j in range(n_classes):
            u = keep * _math.cast_like(m, yr[j]) + y0
            if has_cw:
                u *= _math.cast_like(m, class_weight[j])
            f, h = _math.softmax_focal_term((m - xr[j]) + log_s_x, gamma_x)
            loss += u * f
            h_sum += u * h
        sw = sample_weight[i] if has_sw else 1.0
        row_loss[i] = sw * loss
        # 3. gradient
        if want_grad:
            scale = sw * grad_scale
            gr = grad[i]
            a = _math.cast_like(m, scale * h_sum / s)
            scale_x = _math.cast_like(m, scale)
            for j in range(n_classes):
                u = keep * _math.cast_like(m, yr[j]) + y0
                if has_cw:
                    u *= _math.cast_like(m, class_weight[j])
                f, h = _math.softmax_focal_term((m - xr[j]) + log_s_x, gamma_x)
                gr[j] = a * _math.exp(xr[j] - m) - scale_x * u * h
