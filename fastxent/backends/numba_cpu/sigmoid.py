"""Sigmoid binary cross-entropy and sigmoid focal loss, forward and gradient (Numba CPU).

One kernel per target form serves both losses; ``params`` selects the element formula at compile
time by its length: ``(pos_weight,)`` -> ``_math.bce_term``, ``(gamma, gamma_neg, alpha)`` ->
``_math.focal_term`` with clip 0, ``(gamma, gamma_neg, alpha, clip, clip_hi, clip_lo)`` -> the
same with clip > 0 (docs/losses.md; ``clip_hi, clip_lo = _math.clip_logit(clip, .)``)::

    loss = sw * sum_c w_c l(x_c, y'_c)       grad = sw * scale * w_c dl/dx(x_c, y'_c)

Sparse targets cost O(nnz) on top of one pass over the logits: phase 2 computes the positives'
own terms (their loss, and their final gradient, kept in ``pos_buf``); phase 3 treats every logit
as a background element ``y'_0 = eps / 2``, writes the gradient once and sums the loss of every
logit but the positives (the blocks holding positives keep their terms and leave the positives'
out: subtracting them afterwards would cancel); then the positives' gradients are put in place.
Without smoothing and without probability shifting the background uses the closed forms
``_math.bce_negative_term`` / ``focal_negative_term`` (``focal_negative_term_sq`` when
``gamma_neg = 2``: no second exp).
Phases: 1. (no row statistics), 2. loss, 3. gradient.
"""
from numba import njit, prange, types
from numba.extending import overload

from ... import _math
from ._primitives import JIT_OPTIONS, prefetch, wide_vectors
from ._rows import BLOCK, block_buffer, prefetch_ahead, source_row


def _is_focal(params):
    return isinstance(params, types.BaseTuple) and len(params) in (3, 6)


def element(x, y, class_pos_weight, params):
    """Loss and derivative of one logit (params already in x's type): BCE for
    ``(pos_weight,)``; focal for ``(gamma, gamma_neg, alpha)`` (no probability shifting: clip is
    a constant 0 and the formula's shifting branch is compiled out) and for
    ``(gamma, gamma_neg, alpha, clip, clip_hi, clip_lo)`` (clip > 0)."""
    if len(params) == 6:
        return _math.focal_term(x, y, params[0], params[1], params[3], params[2], params[4],
                                params[5])
    if len(params) == 3:
        return _math.focal_term(x, y, params[0], params[1], 0.0, params[2], 0.0, 0.0)
    return _math.bce_term(x, y, class_pos_weight)


@overload(element, inline="always")
def _element(x, y, class_pos_weight, params):
    if _is_focal(params) and len(params) == 6:
        def shifted(x, y, class_pos_weight, params):
            return _math.focal_term(x, y, params[0], params[1], params[3], params[2],
                                    params[4], params[5])
        return shifted
    if _is_focal(params):
        def focal(x, y, class_pos_weight, params):
            zero = _math.cast_like(x, 0.0)
            return _math.focal_term(x, y, params[0], params[1], zero, params[2], zero, zero)
        return focal

    def bce(x, y, class_pos_weight, params):
        return _math.bce_term(x, y, class_pos_weight)
    return bce


def negative_element(x, params):
    """``element(x, 0, ., params)`` of a negative without probability shifting (closed forms:
    ``_math.bce_negative_term``, ``_math.focal_negative_term``)."""
    if len(params) in (3, 6):
        return _math.focal_negative_term(x, params[1], params[2])
    return _math.bce_negative_term(x)


@overload(negative_element, inline="always")
def _negative_element(x, params):
    if _is_focal(params):
        return lambda x, params: _math.focal_negative_term(x, params[1], params[2])
    return lambda x, params: _math.bce_negative_term(x)


def negative_element_sq(x, params):
    """``negative_element`` when ``squares_negatives(params)``: focal with ``gamma_neg = 2``
    (``_math.focal_negative_term_sq``: ``p**2`` as ``p * p``, no second exp)."""
    if len(params) in (3, 6):
        return _math.focal_negative_term_sq(x, params[2])
    return _math.bce_negative_term(x)


@overload(negative_element_sq, inline="always")
def _negative_element_sq(x, params):
    if _is_focal(params):
        return lambda x, params: _math.focal_negative_term_sq(x, params[2])
    return lambda x, params: _math.bce_negative_term(x)


def squares_negatives(params):
    """Whether negatives are focused with ``p**2`` (focal ``gamma_neg == 2``)."""
    return len(params) in (3, 6) and params[1] == 2


@overload(squares_negatives, inline="always")
def _squares_negatives(params):
    if _is_focal(params):
        return lambda params: params[1] == 2
    return lambda params: False


def shifts_negatives(params):
    """Whether the loss shifts negatives' probabilities (focal with clip > 0: the 6-tuple)."""
    return len(params) == 6


@overload(shifts_negatives, inline="always")
def _shifts_negatives(params):
    if _is_focal(params) and len(params) == 6:
        return lambda params: True
    return lambda params: False


def _typed(like, params):
    return params


@overload(_typed, inline="always")
def _typed_ol(like, params):
    if len(params) == 6:
        return lambda like, params: (_math.cast_like(like, params[0]),
                                     _math.cast_like(like, params[1]),
                                     _math.cast_like(like, params[2]),
                                     _math.cast_like(like, params[3]),
                                     _math.cast_like(like, params[4]),
                                     _math.cast_like(like, params[5]))
    if len(params) == 3:
        return lambda like, params: (_math.cast_like(like, params[0]),
                                     _math.cast_like(like, params[1]),
                                     _math.cast_like(like, params[2]))
    return lambda like, params: (_math.cast_like(like, params[0]),)


@njit(**JIT_OPTIONS)
def positive_loss(x, y, pw, prm):
    """(loss, gradient) of one positive at its target ``y``, float64."""
    l_pos, g_pos = element(x, y, pw, prm)
    return float(l_pos), float(g_pos)


@njit(**JIT_OPTIONS)
def background_pass(xr, gr, want_grad, y0, class_weight, has_cw, pos_weight, use_pw, prm,
                    scale, cols, mask):
    """``sum_j w_j l(x_j, y0)`` over every logit but the positives ``cols`` (sorted), float64
    from float32 block partial sums, and, if wanted, ``gr[j] = scale w_j dl/dx(x_j, y0)`` for
    every logit (the positives' entries are overwritten afterwards); gr may alias xr.
    The blocks holding positives go through ``positive_block`` (their terms summed without the
    positives', selected by ``mask``, ``BLOCK`` ones: subtracting a positive's background term
    afterwards would cancel, a confident positive's being ~x while the rest of the row may sum
    to 1e-10);
    the runs of blocks between them through ``background_blocks``, whose loops stay as they
    are without positives (a test per block inside them measured 5-13% slower)."""
    n = xr.size
    total = 0.0
    start = 0                                    # the first block not done yet
    kp = 0                                       # the next positive
    while kp < cols.size:
        b0 = max(cols[kp] // BLOCK * BLOCK, start)
        total += background_blocks(xr, gr, want_grad, y0, class_weight, has_cw, pos_weight,
                                   use_pw, prm, scale, start, b0)
        b1 = min(b0 + BLOCK, n)
        acc, kp = positive_block(xr, gr, want_grad, y0, class_weight, has_cw, pos_weight,
                                 use_pw, prm, scale, b0, b1, cols, kp, mask)
        total += acc
        start = b1
    return total + background_blocks(xr, gr, want_grad, y0, class_weight, has_cw, pos_weight,
                                     use_pw, prm, scale, start, n)


@njit(inline="always", **JIT_OPTIONS)
def background_blocks(xr, gr, want_grad, y0, class_weight, has_cw, pos_weight, use_pw, prm,
                      scale, start, stop):
    """``background_pass`` over the blocks from ``start`` to ``stop`` (block boundaries),
    which hold no positive."""
    wide_vectors()
    one = _math.cast_like(xr[0], 1.0)
    pw0 = prm[0]
    general = y0 != _math.cast_like(xr[0], 0.0) or shifts_negatives(prm)
    squared = squares_negatives(prm)
    total = 0.0
    for b0 in range(start, stop, BLOCK):
        b1 = min(b0 + BLOCK, stop)
        prefetch_ahead(xr, b0, b1)
        xb = xr[b0:b1]
        gb = gr[b0:b1]
        cwb = class_weight[b0:b1]                # (empty when absent) sliced: a loop indexed
        pwb = pos_weight[b0:b1]                  # from b0 gathers instead of vectorising
        acc = _math.cast_like(xr[0], 0.0)
        if general:                              # smoothed targets or shifted negatives
            for j in range(xb.size):
                w = _math.cast_like(xr[0], cwb[j]) if has_cw else one
                pw = _math.cast_like(xr[0], pwb[j]) if use_pw else pw0
                lj, gj = element(xb[j], y0, pw, prm)
                acc += w * lj
                if want_grad:
                    gb[j] = scale * w * gj
        # (the next two loops differ only in the element function: choosing it per element
        # would be if-converted into computing both, the second exp the first loop saves)
        elif squared:                            # plain negatives, gamma_neg = 2
            for j in range(xb.size):
                w = _math.cast_like(xr[0], cwb[j]) if has_cw else one
                lj, gj = negative_element_sq(xb[j], prm)
                acc += w * lj
                if want_grad:
                    gb[j] = scale * w * gj
        else:                                    # plain negatives: the closed forms
            for j in range(xb.size):
                w = _math.cast_like(xr[0], cwb[j]) if has_cw else one
                lj, gj = negative_element(xb[j], prm)
                acc += w * lj
                if want_grad:
                    gb[j] = scale * w * gj
        total += float(acc)
    return total


@njit(inline="always", **JIT_OPTIONS)
def positive_block(xr, gr, want_grad, y0, class_weight, has_cw, pos_weight, use_pw, prm, scale,
                   b0, b1, cols, kp, mask):
    """``(sum, kp)``: ``background_pass`` over the block ``[b0, b1)``, which holds the
    positives ``cols[kp:]`` below ``b1``: the gradient written, the terms summed without the
    positives' (``mask``: ``BLOCK`` ones, the positives' entries set to 0 for the block and
    back to 1 after it; a select, so a positive's infinite background term drops out too);
    ``kp`` moved past them. (The previous form stored the block's terms, zeroed the
    positives' and summed them in a second loop: A/B, 2 threads, float32, 5 positives per row,
    BCE 2-7% and sigmoid focal 2-5% slower at 1024 x 32768 and 256 x 262144.)"""
    wide_vectors()
    one = _math.cast_like(xr[0], 1.0)
    zero = _math.cast_like(xr[0], 0.0)
    pw0 = prm[0]
    general = y0 != _math.cast_like(xr[0], 0.0) or shifts_negatives(prm)
    squared = squares_negatives(prm)
    prefetch_ahead(xr, b0, b1)
    xb = xr[b0:b1]
    gb = gr[b0:b1]
    mb = mask[:b1 - b0]
    cwb = class_weight[b0:b1]
    pwb = pos_weight[b0:b1]
    k1 = kp
    while k1 < cols.size and cols[k1] < b1:
        if cols[k1] >= b0:                       # (always, for sorted rows)
            mb[cols[k1] - b0] = zero
        k1 += 1
    acc = zero
    if general:
        for j in range(xb.size):
            w = _math.cast_like(xr[0], cwb[j]) if has_cw else one
            pw = _math.cast_like(xr[0], pwb[j]) if use_pw else pw0
            lj, gj = element(xb[j], y0, pw, prm)
            acc += w * lj if mb[j] > zero else zero
            if want_grad:
                gb[j] = scale * w * gj
    elif squared:
        for j in range(xb.size):
            w = _math.cast_like(xr[0], cwb[j]) if has_cw else one
            lj, gj = negative_element_sq(xb[j], prm)
            acc += w * lj if mb[j] > zero else zero
            if want_grad:
                gb[j] = scale * w * gj
    else:
        for j in range(xb.size):
            w = _math.cast_like(xr[0], cwb[j]) if has_cw else one
            lj, gj = negative_element(xb[j], prm)
            acc += w * lj if mb[j] > zero else zero
            if want_grad:
                gb[j] = scale * w * gj
    for k in range(kp, k1):
        if cols[k] >= b0:
            mb[cols[k] - b0] = one
    return float(acc), k1


@njit(**JIT_OPTIONS)
def sparse_row(xr, gr, want_grad, cols, vals, has_values, class_weight, has_cw, pos_weight,
               has_pw, sw, options, params, pos_buf, mask):
    wide_vectors()
    eps, grad_scale = options
    prm = _typed(xr[0], params)
    pw0 = prm[0]
    y0 = _math.cast_like(xr[0], 0.5 * eps)
    keep = _math.cast_like(xr[0], 1.0 - eps)
    scale = sw * grad_scale
    # 2. loss: the positives' own terms (before any write: logits may alias grad)
    loss = 0.0
    for k in range(cols.size):
        prefetch(xr, cols[k], False)
    for k in range(cols.size):
        c = cols[k]
        x = xr[c]
        y = keep * _math.cast_like(x, vals[k] if has_values else 1.0) + y0
        pw = _math.cast_like(x, pos_weight[c]) if has_pw else pw0
        l_pos, g_pos = positive_loss(x, y, pw, prm)
        w = class_weight[c] if has_cw else 1.0
        loss += w * l_pos
        pos_buf[k] = scale * w * g_pos
    # 2./3. the background pass: every other logit as y'_0, gradient written once
    loss += background_pass(xr, gr, want_grad, y0, class_weight, has_cw, pos_weight,
                            has_pw and eps > 0.0, prm, _math.cast_like(xr[0], scale), cols,
                            mask)
    if want_grad:
        for k in range(cols.size):
            gr[cols[k]] = _math.cast_like(xr[0], pos_buf[k])
    return sw * loss


@njit(**JIT_OPTIONS)
def dense_row(xr, gr, want_grad, yr, class_weight, has_cw, pos_weight, has_pw, sw, options,
              params):
    wide_vectors()
    eps, grad_scale = options
    n_classes = xr.size
    one = _math.cast_like(xr[0], 1.0)
    prm = _typed(xr[0], params)
    pw0 = prm[0]
    y0 = _math.cast_like(xr[0], 0.5 * eps)
    keep = _math.cast_like(xr[0], 1.0 - eps)
    scale_x = _math.cast_like(xr[0], sw * grad_scale)
    acc = 0.0
    # 2. loss and 3. gradient in one pass (float32 block partial sums, then float64)
    for b0 in range(0, n_classes, BLOCK):
        b1 = min(b0 + BLOCK, n_classes)
        acc_blk = _math.cast_like(xr[0], 0.0)
        xb = xr[b0:b1]
        yb = yr[b0:b1]
        gb = gr[b0:b1] if want_grad else gr
        cwb = class_weight[b0:b1]
        pwb = pos_weight[b0:b1]
        for j in range(xb.size):
            w = _math.cast_like(xr[0], cwb[j]) if has_cw else one
            pw = _math.cast_like(xr[0], pwb[j]) if has_pw else pw0
            y = keep * _math.cast_like(xr[0], yb[j]) + y0
            lj, gj = element(xb[j], y, pw, prm)
            acc_blk += w * lj
            if want_grad:
                gb[j] = scale_x * w * gj
        acc += float(acc_blk)
    return sw * acc


@njit(parallel=True, **JIT_OPTIONS)
def sigmoid_sparse(logits, indptr, indices, values, class_weight, pos_weight, sample_weight,
                   options, params, row_loss, grad, want_grad, pos_buf, block_bufs, copies):
    """options = (label_smoothing, grad_scale); pos_weight: [C] or empty (then params[0]);
    block_bufs: ``thread_buffers(threads, BLOCK)`` in the logits' dtype, filled with ones
    (``block_buffer``; ``positive_block``'s masks, left as ones);
    copies: ``_rows.source_row``; indices sorted within each row."""
    wide_vectors()
    has_values = values.size > 0
    has_cw = class_weight.size > 0
    has_pw = pos_weight.size > 0
    has_sw = sample_weight.size > 0
    for i in prange(logits.shape[0]):
        k0 = indptr[i]
        k1 = indptr[i + 1]
        row_loss[i] = sparse_row(source_row(logits, i, copies),
                                 grad[i] if want_grad else grad[0], want_grad,
                                 indices[k0:k1], values[k0:k1] if has_values else values,
                                 has_values, class_weight, has_cw, pos_weight, has_pw,
                                 sample_weight[i] if has_sw else 1.0, options, params,
                                 pos_buf[k0:k1], block_buffer(block_bufs))


@njit(parallel=True, **JIT_OPTIONS)
def sigmoid_dense(logits, targets, class_weight, pos_weight, sample_weight, options, params,
                  row_loss, grad, want_grad, copies):
    """options = (label_smoothing, grad_scale); pos_weight: [C] or empty (then params[0]);
    copies: ``_rows.source_row``."""
    wide_vectors()
    has_cw = class_weight.size > 0
    has_pw = pos_weight.size > 0
    has_sw = sample_weight.size > 0
    for i in prange(logits.shape[0]):
        row_loss[i] = dense_row(source_row(logits, i, copies),
                                grad[i] if want_grad else grad[0], want_grad,
                                targets[i], class_weight, has_cw, pos_weight, has_pw,
                                sample_weight[i] if has_sw else 1.0, options, params)


@njit(**JIT_OPTIONS)
def elements_row(xr, yr, pos_weight, has_pw, pw0, lr, gr, want_grad):
    """``lr[j] = l(x_j, y_j)`` and ``gr[j] = dl/dx`` of BCE, element by element (gr may alias
    xr; lr may not)."""
    wide_vectors()
    for b0 in range(0, xr.size, BLOCK):
        b1 = min(b0 + BLOCK, xr.size)
        xb = xr[b0:b1]
        yb = yr[b0:b1]
        lb = lr[b0:b1]
        pwb = pos_weight[b0:b1]
        gb = gr[b0:b1] if want_grad else gr
        for j in range(xb.size):
            pw = pwb[j] if has_pw else pw0
            lj, gj = _math.bce_term(xb[j], yb[j], pw)
            lb[j] = lj
            if want_grad:
                gb[j] = gj


@njit(parallel=True, **JIT_OPTIONS)
def sigmoid_elements(logits, targets, pos_weight, pw0, loss_out, grad, want_grad):
    """Unreduced BCE with logits: ``loss_out[i, j]`` and (if wanted) ``grad[i, j]``, for the
    TensorFlow-compatible elementwise helpers; pos_weight: [C] in the logits' dtype, or empty
    (then the scalar ``pw0``)."""
    wide_vectors()
    has_pw = pos_weight.size > 0
    for i in prange(logits.shape[0]):
        elements_row(logits[i], targets[i], pos_weight, has_pw, pw0, loss_out[i],
                     grad[i] if want_grad else grad[0], want_grad)
