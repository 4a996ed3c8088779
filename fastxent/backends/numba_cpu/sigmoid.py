"""Sigmoid binary cross-entropy and sigmoid focal loss, forward and gradient (Numba CPU).

One kernel per target form serves both losses; ``params`` selects the element formula at compile
time by its length: ``(pos_weight,)`` -> ``_math.bce_term``, ``(gamma, gamma_neg, alpha)`` ->
``_math.focal_term`` with clip 0, ``(gamma, gamma_neg, alpha, clip, clip_hi, clip_lo)`` -> the
same with clip > 0 (docs/losses.md; ``clip_hi, clip_lo = _math.clip_logit(clip, .)``)::

    loss = sw * sum_c w_c l(x_c, y'_c)       grad = sw * scale * w_c dl/dx(x_c, y'_c)

Sparse targets cost O(nnz) on top of one pass over the logits: every logit is a background
element ``y'_0 = eps / 2``; the pass goes block by block (``BLOCK`` elements), writes the gradient
once and sums the loss of every logit but the positives. A block holding positives computes
their own terms first (their logits are in cache then, and are read before the block's gradient
is written: logits may alias grad), sums its background terms without the positives' (a mask:
subtracting them afterwards would cancel) and puts the positives' gradients in place before the
block goes out. Out of place, where ``_config.SPARSE_SIGMOID_STORES`` says so (by CPU vendor:
Intel yes, AMD no), each block's gradient is staged in a per-thread buffer and written with
non-temporal stores (whole cache lines, not read first: ``stream_block``); the loops store
every element unconditionally (to the staging buffer when no gradient is wanted: a store under
``if want_grad`` kept the loss-only loops from vectorising, 7-9x slower than with a gradient).
Without smoothing and without probability shifting the background uses the closed forms
``_math.bce_negative_term`` / ``focal_negative_term`` (``focal_negative_term_sq`` when
``gamma_neg = 2``: no second exp).
Phases: 1. (no row statistics), 2. loss, 3. gradient.
"""
from numba import njit, prange, types
from numba.extending import overload

from ... import _math
from ._primitives import (JIT_OPTIONS, STREAM_BYTES, address_of, store_fence, stream_scaled,
                          wide_vectors)
from ._rows import BLOCK, block_buffer, block_scratch, prefetch_ahead, source_row


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
    """``element(x, 0, ., params)`` of a negative without probability shifting, at weight 1:
    ``negative_weight(params)`` times it is the term (closed forms: ``_math.bce_negative_term``,
    ``_math.focal_negative_term`` at ``alpha = -1``)."""
    if len(params) in (3, 6):
        return _math.focal_negative_term(x, params[1], -1.0)
    return _math.bce_negative_term(x)


@overload(negative_element, inline="always")
def _negative_element(x, params):
    if _is_focal(params):
        return lambda x, params: _math.focal_negative_term(x, params[1],
                                                           _math.cast_like(x, -1.0))
    return lambda x, params: _math.bce_negative_term(x)


def negative_element_sq(x, params):
    """``negative_element`` when ``squares_negatives(params)``: focal with ``gamma_neg = 2``
    (``_math.focal_negative_term_sq``: ``p**2`` as ``p * p``, no second exp)."""
    if len(params) in (3, 6):
        return _math.focal_negative_term_sq(x, -1.0)
    return _math.bce_negative_term(x)


@overload(negative_element_sq, inline="always")
def _negative_element_sq(x, params):
    if _is_focal(params):
        return lambda x, params: _math.focal_negative_term_sq(x, _math.cast_like(x, -1.0))
    return lambda x, params: _math.bce_negative_term(x)


def negative_weight(params):
    """The factor ``negative_element`` leaves out, in the params' type: focal's
    ``_math.focal_negative_weight`` (``1 - alpha``), 1 for BCE. The background loops multiply
    each block's sum and the gradient's scale by it once, not every element; where it is 0
    (alpha = 1) they take the general element instead (a block's sum of logits near the float
    maximum may overflow to inf, which times 0 would be NaN where the loss is 0)."""
    if len(params) in (3, 6):
        return _math.focal_negative_weight(params[2], params[2])
    return 1.0


@overload(negative_weight, inline="always")
def _negative_weight(params):
    if _is_focal(params):
        return lambda params: _math.focal_negative_weight(params[2], params[2])
    return lambda params: _math.cast_like(params[0], 1.0)


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


@njit(inline="always", **JIT_OPTIONS)
def takes_general(y0, prm, weight_n):
    """Whether the background of sparse targets needs the general ``element`` instead of the
    closed forms: smoothed targets (``y0 != 0``), shifted negatives, or negatives of weight 0
    (alpha = 1: a block's sum of logits near the float maximum may overflow to inf, and
    ``weight_n`` times it would be NaN where the loss is 0)."""
    zero = _math.cast_like(y0, 0.0)
    return y0 != zero or shifts_negatives(prm) or weight_n == zero


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
                    scale, cols, bufs, positives, stream, ahead):
    """``sum_j w_j l(x_j, y0)`` over every logit but the positives ``cols`` (sorted), float64
    from float32 block partial sums, plus the positives' own losses (``positive_terms``), and,
    if wanted, the gradient written once: ``gr[j] = scale w_j dl/dx(x_j, y0)`` for every
    logit but the positives, theirs from ``positive_terms``; gr may alias xr.
    The blocks holding positives go through ``positive_block`` (their terms summed without the
    positives', selected by a mask: subtracting a positive's background term afterwards would
    cancel, a confident positive's being ~x while the rest of the row may sum to 1e-10);
    the runs of blocks between them through ``background_blocks``, whose loops stay as they
    are without positives (a test per block inside them measured 5-13% slower).
    ``bufs``: ``block_buffer``. With ``stream`` each block's gradient is staged there and goes
    out through non-temporal stores (``stream_block``). ``ahead``: how many bytes ahead the
    logits are prefetched (``prefetch_ahead``; 0: not at all). The blocks are ``BLOCK``
    elements from the row's start wherever gr lies, so the sums, hence the bits, do not depend
    on gr's address."""
    wide_vectors()
    n = xr.size
    pre = address_of(gr) % STREAM_BYTES // gr.itemsize if stream else 0
    mask, staging = block_scratch(bufs, xr, pre)
    total = 0.0
    start = 0                                    # the first block not done yet
    kp = 0                                       # the next positive
    while True:
        b0 = max(cols[kp] // BLOCK * BLOCK, start) if kp < cols.size else n
        total += background_blocks(xr, gr, want_grad, y0, class_weight, has_cw, pos_weight,
                                   use_pw, prm, scale, start, b0, stream, staging, pre, ahead)
        if b0 == n:
            break
        b1 = min(b0 + BLOCK, n)
        acc, kp = positive_block(xr, gr, want_grad, y0, class_weight, has_cw, pos_weight,
                                 use_pw, prm, scale, b0, b1, cols, kp, mask, positives,
                                 stream, staging, pre, ahead)
        total += acc
        start = b1
    if stream:
        store_fence()
    return total


@njit(inline="always", **JIT_OPTIONS)
def stream_block(gr, b0, b1, staging, pre):
    """Writes the block ``gr[b0:b1]``, staged in ``staging[pre:pre + b1 - b0]``, through
    non-temporal stores of whole cache lines. ``pre``: how many elements of gr's first cache
    line lie before ``gr[0]`` (and before each ``gr[b0]``); ``staging[:pre]`` holds the
    previous block's last ``pre`` elements (carried over: they share a line with this block's
    first ones), and this block leaves its own last ``pre`` there. The row's partial first and
    last lines take plain stores."""
    lanes = STREAM_BYTES // gr.itemsize
    one = _math.cast_like(staging[0], 1.0)
    m = pre + (b1 - b0)                          # staged elements, the carried ones included
    j = 0
    if b0 == 0 and pre > 0:                      # the row's first line: gr[0:lanes - pre]
        j = lanes
        for q in range(pre, min(lanes, m)):
            gr[q - pre] = staging[q]
    d = b0 - pre                                 # gr[d + j] <- staging[j]
    while j + lanes <= m:
        stream_scaled(gr, d + j, staging, j, one)
        j += lanes
    if b1 == gr.size:                            # the row's last, partial line
        for q in range(j, m):
            gr[d + q] = staging[q]
    else:
        for q in range(j, m):
            staging[q - j] = staging[q]


@njit(inline="always", **JIT_OPTIONS)
def background_blocks(xr, gr, want_grad, y0, class_weight, has_cw, pos_weight, use_pw, prm,
                      scale, start, stop, stream, staging, pre, ahead):
    """``background_pass`` over the blocks from ``start`` to ``stop`` (block boundaries),
    which hold no positive."""
    wide_vectors()
    one = _math.cast_like(xr[0], 1.0)
    pw0 = prm[0]
    weight_n = negative_weight(prm)              # (the closed forms' factor, out of the loops)
    general = takes_general(y0, prm, weight_n)
    squared = squares_negatives(prm)
    scale_n = scale * weight_n
    total = 0.0
    for b0 in range(start, stop, BLOCK):
        b1 = min(b0 + BLOCK, stop)
        if ahead > 0:
            prefetch_ahead(xr, b0, b1, ahead)
        xb = xr[b0:b1]
        gb = staging[pre:pre + b1 - b0] if stream or not want_grad else gr[b0:b1]
        cwb = class_weight[b0:b1]                # (empty when absent) sliced: a loop indexed
        pwb = pos_weight[b0:b1]                  # from b0 gathers instead of vectorising
        acc = _math.cast_like(xr[0], 0.0)
        if general:                              # smoothed targets or shifted negatives
            for j in range(xb.size):
                w = _math.cast_like(xr[0], cwb[j]) if has_cw else one
                pw = _math.cast_like(xr[0], pwb[j]) if use_pw else pw0
                lj, gj = element(xb[j], y0, pw, prm)
                acc += w * lj
                gb[j] = scale * w * gj
        # (the next two loops differ only in the element function: choosing it per element
        # would be if-converted into computing both, the second exp the first loop saves)
        elif squared:                            # plain negatives, gamma_neg = 2
            for j in range(xb.size):
                w = _math.cast_like(xr[0], cwb[j]) if has_cw else one
                lj, gj = negative_element_sq(xb[j], prm)
                acc += w * lj
                gb[j] = scale_n * w * gj
            acc *= weight_n
        else:                                    # plain negatives: the closed forms
            for j in range(xb.size):
                w = _math.cast_like(xr[0], cwb[j]) if has_cw else one
                lj, gj = negative_element(xb[j], prm)
                acc += w * lj
                gb[j] = scale_n * w * gj
            acc *= weight_n
        if stream:
            stream_block(gr, b0, b1, staging, pre)
        total += float(acc)
    return total


@njit(inline="always", **JIT_OPTIONS)
def positive_block(xr, gr, want_grad, y0, class_weight, has_cw, pos_weight, use_pw, prm, scale,
                   b0, b1, cols, kp, mask, positives, stream, staging, pre, ahead):
    """``(sum, kp)``: ``background_pass`` over the block ``[b0, b1)``, which holds the
    positives ``cols[kp:]`` below ``b1``: the gradient written, the background terms summed
    without the positives' (``mask``: ``BLOCK`` ones, the positives' entries set to 0 for the
    block and back to 1 after it; a select, so a positive's infinite background term drops out
    too), plus the positives' own losses; ``kp`` moved past them. (The previous form stored
    the block's terms, zeroed the positives' and summed them in a second loop: A/B, 2 threads,
    float32, 5 positives per row, BCE 2-7% and sigmoid focal 2-5% slower at 1024 x 32768 and
    256 x 262144.)"""
    wide_vectors()
    one = _math.cast_like(xr[0], 1.0)
    zero = _math.cast_like(xr[0], 0.0)
    pw0 = prm[0]
    weight_n = negative_weight(prm)
    general = takes_general(y0, prm, weight_n)
    squared = squares_negatives(prm)
    scale_n = scale * weight_n
    if ahead > 0:
        prefetch_ahead(xr, b0, b1, ahead)
    xb = xr[b0:b1]
    gb = staging[pre:pre + b1 - b0] if stream or not want_grad else gr[b0:b1]
    mb = mask[:b1 - b0]
    cwb = class_weight[b0:b1]
    pwb = pos_weight[b0:b1]
    pos_buf = positives[2]
    k1 = kp
    pos_loss = 0.0
    while k1 < cols.size and cols[k1] < b1:      # (their logits read before gb is written)
        if cols[k1] >= b0:                       # (always, for sorted rows)
            mb[cols[k1] - b0] = zero
            l_pos, pos_buf[k1] = positive_terms(xr, k1, cols, positives)
            pos_loss += l_pos
        k1 += 1
    acc = zero
    if general:
        for j in range(xb.size):
            w = _math.cast_like(xr[0], cwb[j]) if has_cw else one
            pw = _math.cast_like(xr[0], pwb[j]) if use_pw else pw0
            lj, gj = element(xb[j], y0, pw, prm)
            acc += w * lj if mb[j] > zero else zero
            gb[j] = scale * w * gj
    elif squared:
        for j in range(xb.size):
            w = _math.cast_like(xr[0], cwb[j]) if has_cw else one
            lj, gj = negative_element_sq(xb[j], prm)
            acc += w * lj if mb[j] > zero else zero
            gb[j] = scale_n * w * gj
        acc *= weight_n
    else:
        for j in range(xb.size):
            w = _math.cast_like(xr[0], cwb[j]) if has_cw else one
            lj, gj = negative_element(xb[j], prm)
            acc += w * lj if mb[j] > zero else zero
            gb[j] = scale_n * w * gj
        acc *= weight_n
    for k in range(kp, k1):
        if cols[k] >= b0:
            mb[cols[k] - b0] = one
            gb[cols[k] - b0] = _math.cast_like(xr[0], pos_buf[k])
    if stream:
        stream_block(gr, b0, b1, staging, pre)
    return float(acc) + pos_loss, k1


@njit(inline="always", **JIT_OPTIONS)
def positive_terms(xr, k, cols, positives):
    """``(loss, gradient)`` of positive ``k`` (float64, weighted; the gradient scaled). (The
    caller stores the gradient: a store into ``pos_buf`` unpacked from ``positives`` here, in
    an inlined function, was lost in numba 0.68.)"""
    vals, has_values, _, keep, y0, class_weight, has_cw, pos_weight, has_pw, pw0, prm, \
        scale = positives
    c = cols[k]
    x = xr[c]
    y = keep * _math.cast_like(x, vals[k] if has_values else 1.0) + y0
    pw = _math.cast_like(x, pos_weight[c]) if has_pw else pw0
    l_pos, g_pos = positive_loss(x, y, pw, prm)
    w = class_weight[c] if has_cw else 1.0
    return w * l_pos, scale * w * g_pos


@njit(**JIT_OPTIONS)
def sparse_row(xr, gr, want_grad, cols, vals, has_values, class_weight, has_cw, pos_weight,
               has_pw, sw, options, params, pos_buf, bufs, stream, ahead):
    wide_vectors()
    eps, grad_scale = options
    prm = _typed(xr[0], params)
    pw0 = prm[0]
    y0 = _math.cast_like(xr[0], 0.5 * eps)
    keep = _math.cast_like(xr[0], 1.0 - eps)
    scale = sw * grad_scale
    positives = (vals, has_values, pos_buf, keep, y0, class_weight, has_cw, pos_weight, has_pw,
                 pw0, prm, scale)
    loss = background_pass(xr, gr, want_grad, y0, class_weight, has_cw, pos_weight,
                           has_pw and eps > 0.0, prm, _math.cast_like(xr[0], scale), cols,
                           bufs, positives, stream and want_grad, ahead)
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
                   options, params, row_loss, grad, want_grad, pos_buf, block_bufs, copies,
                   stores):
    """options = (label_smoothing, grad_scale); pos_weight: [C] or empty (then params[0]);
    stores = (stream, ahead): whether the gradient may go out through non-temporal stores
    (only out of place), how many bytes ahead the logits are prefetched
    (``_config.SPARSE_SIGMOID_STORES``); block_bufs: ``thread_buffers(threads, BLOCK_SCRATCH)`` in the logits' dtype, filled with
    ones (``block_buffer``: ``positive_block``'s masks, left as ones, and staging areas);
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
                                 pos_buf[k0:k1], block_buffer(block_bufs),
                                 stores[0] and copies.size == 0, stores[1])


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
