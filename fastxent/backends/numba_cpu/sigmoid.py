"""Sigmoid binary cross-entropy and sigmoid focal loss, forward and gradient (Numba CPU).

One kernel per target form serves both losses; ``params`` selects the element formula at compile
time by its length: ``(pos_weight,)`` -> ``_math.bce_term``,
``(gamma, gamma_neg, clip, alpha)`` -> ``_math.focal_term`` (docs/losses.md)::

    loss = sw * sum_c w_c l(x_c, y'_c)       grad = sw * scale * w_c dl/dx(x_c, y'_c)

Sparse targets cost O(nnz) on top of one pass over the logits: phase 2 computes the positives'
corrections (their loss minus the background loss, and their final gradient, kept in ``pos_buf``);
phase 3 treats every logit as a background element ``y'_0 = eps / 2`` and writes the gradient once;
then the positives' gradients are put in place. Phases: 1. (no row statistics), 2. loss, 3. gradient.
"""
from numba import njit, prange, types
from numba.extending import overload

from ... import _math
from ._primitives import FASTMATH


def element(x, y, class_pos_weight, params):
    """Loss and derivative of one logit: BCE for ``params = (pos_weight,)``, focal for
    ``params = (gamma, gamma_neg, clip, alpha)`` (all already in x's type)."""
    if len(params) == 4:
        return _math.focal_term(x, y, *params)
    return _math.bce_term(x, y, class_pos_weight)


@overload(element, inline="always")
def _element(x, y, class_pos_weight, params):
    if isinstance(params, types.BaseTuple) and len(params) == 4:
        def focal(x, y, class_pos_weight, params):
            return _math.focal_term(x, y, params[0], params[1], params[2], params[3])
        return focal

    def bce(x, y, class_pos_weight, params):
        return _math.bce_term(x, y, class_pos_weight)
    return bce


def _typed(like, params):
    return params


@overload(_typed, inline="always")
def _typed_ol(like, params):
    if len(params) == 4:
        return lambda like, params: (_math.cast_like(like, params[0]),
                                     _math.cast_like(like, params[1]),
                                     _math.cast_like(like, params[2]),
                                     _math.cast_like(like, params[3]))
    return lambda like, params: (_math.cast_like(like, params[0]),)


@njit(parallel=True, nogil=True, cache=True, fastmath=FASTMATH)
def sigmoid_sparse(logits, indptr, indices, values, class_weight, pos_weight, sample_weight,
                   options, params, row_loss, grad, pos_buf):
    """options = (label_smoothing, grad_scale); pos_weight: [C] or empty (then params[0])."""
    n_rows, n_classes = logits.shape
    eps, grad_scale = options
    has_values = values.size > 0
    has_cw = class_weight.size > 0
    has_pw = pos_weight.size > 0
    has_sw = sample_weight.size > 0
    want_grad = grad.shape[0] > 0
    for i in prange(n_rows):
        xr = logits[i]
        one = _math.cast_like(xr[0], 1.0)
        prm = _typed(xr[0], params)
        pw0 = prm[0]
        y0 = _math.cast_like(xr[0], 0.5 * eps)
        keep = _math.cast_like(xr[0], 1.0 - eps)
        sw = sample_weight[i] if has_sw else 1.0
        scale = sw * grad_scale
        k0 = indptr[i]
        k1 = indptr[i + 1]
        # 2. loss: the positives' corrections (before any write: logits may alias grad)
        loss = 0.0
        for k in range(k0, k1):
            c = indices[k]
            x = xr[c]
            y = keep * _math.cast_like(x, values[k] if has_values else 1.0) + y0
            pw = _math.cast_like(x, pos_weight[c]) if has_pw else pw0
            l_pos, g_pos = element(x, y, pw, prm)
            l_bg, g_bg = element(x, y0, pw, prm)
            w = class_weight[c] if has_cw else 1.0
            loss += w * (float(l_pos) - float(l_bg))
            pos_buf[k] = scale * w * float(g_pos)
        # 2./3. the background pass: every logit as y'_0, gradient written once
        acc = 0.0
        if want_grad:
            gr = grad[i]
            scale_x = _math.cast_like(xr[0], scale)
            if has_cw or (has_pw and eps > 0.0):
                for j in range(n_classes):
                    w = _math.cast_like(xr[0], class_weight[j]) if has_cw else one
                    pw = _math.cast_like(xr[0], pos_weight[j]) if has_pw else pw0
                    lj, gj = element(xr[j], y0, pw, prm)
                    acc += w * lj
                    gr[j] = scale_x * w * gj
            else:
                for j in range(n_classes):
                    lj, gj = element(xr[j], y0, pw0, prm)
                    acc += lj
                    gr[j] = scale_x * gj
            for k in range(k0, k1):
                gr[indices[k]] = _math.cast_like(xr[0], pos_buf[k])
        else:
            for j in range(n_classes):
                w = _math.cast_like(xr[0], class_weight[j]) if has_cw else one
                pw = _math.cast_like(xr[0], pos_weight[j]) if has_pw else pw0
                lj, gj = element(xr[j], y0, pw, prm)
                acc += w * lj
        row_loss[i] = sw * (loss + acc)


@njit(parallel=True, nogil=True, cache=True, fastmath=FASTMATH)
def sigmoid_dense(logits, targets, class_weight, pos_weight, sample_weight, options, params,
                  row_loss, grad):
    """options = (label_smoothing, grad_scale); pos_weight: [C] or empty (then params[0])."""
    n_rows, n_classes = logits.shape
    eps, grad_scale = options
    has_cw = class_weight.size > 0
    has_pw = pos_weight.size > 0
    has_sw = sample_weight.size > 0
    want_grad = grad.shape[0] > 0
    for i in prange(n_rows):
        xr = logits[i]
        yr = targets[i]
        one = _math.cast_like(xr[0], 1.0)
        prm = _typed(xr[0], params)
        pw0 = prm[0]
        y0 = _math.cast_like(xr[0], 0.5 * eps)
        keep = _math.cast_like(xr[0], 1.0 - eps)
        sw = sample_weight[i] if has_sw else 1.0
        scale_x = _math.cast_like(xr[0], sw * grad_scale)
        acc = 0.0
        # 2. loss and 3. gradient in one pass
        for j in range(n_classes):
            w = _math.cast_like(xr[0], class_weight[j]) if has_cw else one
            pw = _math.cast_like(xr[0], pos_weight[j]) if has_pw else pw0
            y = keep * _math.cast_like(xr[0], yr[j]) + y0
            lj, gj = element(xr[j], y, pw, prm)
            acc += w * lj
            if want_grad:
                grad[i, j] = scale_x * w * gj
        row_loss[i] = sw * acc


