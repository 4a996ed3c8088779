"""Softmax cross-entropy, forward and gradient, one row per loop iteration (Numba CPU).

For a counted row (docs/losses.md), with target mass ``M = sum_c w_c y'_c``,
``y'_c = (1 - eps) y_c + eps / C``, ``lse = m + log s``::

    loss = sw * ( sum_c w_c y'_c (m - x_c) + M log s + z_loss lse**2 )
    grad = sw * scale * ( (M + 2 z_loss lse) p_j - w_j y'_j )

Phases per row: 1. row statistics (one read of the logits), 2. loss, 3. gradient (one write;
the logits may be the gradient buffer: every read of x_j happens before its write).
Targets: sparse (CSR; class indices arrive here as one positive per row) or dense [N, C].
"""
import math

from numba import njit, prange

from ... import _math
from ._primitives import FASTMATH
from ._rows import row_stats, row_sum_gap, write_softmax_grad


@njit(parallel=True, nogil=True, cache=True, fastmath=FASTMATH)
def softmax_xent_sparse(logits, indptr, indices, values, class_weight, sample_weight, options,
                        row_loss, grad):
    """options = (label_smoothing, z_loss, grad_scale, sum of class weights)."""
    n_rows, n_classes = logits.shape
    eps, z_loss, grad_scale, cw_sum = options
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
        if k1 == k0 or not mass_pos > 0.0:            # no target distribution: not counted
            row_loss[i] = 0.0
            if want_grad:
                grad[i, :] = 0.0
            continue
        # 1. row statistics
        m, s = row_stats(xr)
        log_s = math.log(s)
        lse = float(m) + log_s
        # 2. loss
        wy_sum = 0.0          # sum over positives of w_c y_c
        wy_gap = 0.0          # sum over positives of w_c y_c (m - x_c)
        for k in range(k0, k1):
            c = indices[k]
            wy = (values[k] if has_values else 1.0) / mass_pos
            if has_cw:
                wy *= class_weight[c]
            wy_sum += wy
            wy_gap += wy * (float(m) - float(xr[c]))
        mass = (1.0 - eps) * wy_sum + eps / n_classes * cw_sum
        gap = (1.0 - eps) * wy_gap
        if eps > 0.0:
            gap += eps / n_classes * row_sum_gap(xr, m, class_weight, has_cw)
        sw = sample_weight[i] if has_sw else 1.0
        row_loss[i] = sw * (gap + mass * log_s + z_loss * lse * lse)
        # 3. gradient
        if want_grad:
            scale = sw * grad_scale
            gr = grad[i]
            a = _math.cast_like(m, scale * (mass + 2.0 * z_loss * lse) / s)
            b = _math.cast_like(m, scale * eps / n_classes)
            write_softmax_grad(xr, gr, m, a, b, class_weight, has_cw)
            for k in range(k0, k1):
                c = indices[k]
                wy = (values[k] if has_values else 1.0) / mass_pos
                if has_cw:
                    wy *= class_weight[c]
                gr[c] -= _math.cast_like(m, scale * (1.0 - eps) * wy)


@njit(parallel=True, nogil=True, cache=True, fastmath=FASTMATH)
def softmax_xent_dense(logits, targets, class_weight, sample_weight, options, row_loss, grad):
    """options = (label_smoothing, z_loss, grad_scale, sum of class weights)."""
    n_rows, n_classes = logits.shape
    eps, z_loss, grad_scale, cw_sum = options
    has_cw = class_weight.size > 0
    has_sw = sample_weight.size > 0
    want_grad = grad.shape[0] > 0
    for i in prange(n_rows):
        xr = logits[i]
        yr = targets[i]
        # 1. row statistics
        m, s = row_stats(xr)
        log_s = math.log(s)
        lse = float(m) + log_s
        # 2. loss
        wy_sum = 0.0
        wy_gap = 0.0
        for j in range(n_classes):
            wy = float(yr[j])
            if has_cw:
                wy *= class_weight[j]
            wy_sum += wy
            wy_gap += wy * (float(m) - float(xr[j]))
        mass = (1.0 - eps) * wy_sum + eps / n_classes * cw_sum
        gap = (1.0 - eps) * wy_gap
        if eps > 0.0:
            gap += eps / n_classes * row_sum_gap(xr, m, class_weight, has_cw)
        sw = sample_weight[i] if has_sw else 1.0
        row_loss[i] = sw * (gap + mass * log_s + z_loss * lse * lse)
        # 3. gradient
        if want_grad:
            scale = sw * grad_scale
            gr = grad[i]
            a = _math.cast_like(m, scale * (mass + 2.0 * z_loss * lse) / s)
            b = _math.cast_like(m, scale * eps / n_classes)
            c1 = _math.cast_like(m, scale * (1.0 - eps))
            if has_cw:
                for j in range(n_classes):
                    w = _math.cast_like(m, class_weight[j])
                    gr[j] = (a * _math.exp(xr[j] - m) - b * w
                             - c1 * w * _math.cast_like(m, yr[j]))
            else:
                for j in range(n_classes):
                    gr[j] = a * _math.exp(xr[j] - m) - b - c1 * _math.cast_like(m, yr[j])

