"""Softmax cross-entropy, forward and gradient (Numba CPU).

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
A row function does the work; the kernel is a parallel loop over rows (out of place, with
class indices or CSR targets and rows that stay in cache, a parallel loop over runs of rows
that writes each row's gradient while it reads the next: ``softmax_xent_sparse_pipelined``).
"""
import math

from numba import njit, prange

from ... import _math
from ._primitives import JIT_OPTIONS, address_of, store_fence, wide_vectors
from ._rows import (BLOCK, argmax_of, row_buf_width, row_stats, row_stats_store,
                    row_stats_store_streaming, row_sum_gap, source_row, stream_ends,
                    stream_scaled_row, thread_row, write_softmax_grad)


@njit(**JIT_OPTIONS)
def exact_grad(gap, mass_rest, u):
    """``(M' - u) p - u (1 - p)`` for a class with ``-log p = gap`` (no cancellation)."""
    return mass_rest * math.exp(-gap) - u * (-math.expm1(-gap))


@njit(**JIT_OPTIONS)
def others_mass(k, wy, wy_sum, cols, vals, has_values, class_weight, has_cw, mass_pos):
    """``sum w y`` over the row's positives but ``k``: ``wy_sum - wy``, or for a positive that
    holds more than half of the mass (at most one does) the direct sum of the others, which
    the difference would cancel (values 1 and 1e-10: float64 gradient off by 8e-8)."""
    if not wy > 0.5 * wy_sum:
        return wy_sum - wy
    total = 0.0
    for q in range(cols.size):
        if q != k:
            wq = (vals[q] if has_values else 1.0) / mass_pos
            if has_cw:
                wq *= class_weight[cols[q]]
            total += wq
    return total


@njit(**JIT_OPTIONS)
def sparse_row(xr, gr, want_grad, cols, vals, has_values, class_weight, has_cw, sw, options,
               pos_buf, row_buf):
    wide_vectors()
    eps, z_loss, grad_scale, cw_sum, cached_row_bytes = options
    n_classes = xr.size
    mass_pos = row_mass(cols, vals, has_values)
    if cols.size == 0 or not mass_pos > 0.0:            # no target distribution: not counted
        if want_grad:
            gr[:] = 0.0
        return 0.0
    if (want_grad and eps == 0.0 and n_classes * xr.itemsize <= cached_row_bytes
            and row_buf.size >= row_buf_width(n_classes)):
        return cached_sparse_row(xr, gr, cols, vals, has_values, class_weight, has_cw, sw,
                                 options, mass_pos, pos_buf, row_buf)
    # 1. row statistics
    m, s1 = row_stats(xr)
    s = 1.0 + s1
    log_s = math.log1p(s1)
    lse = float(m) + log_s
    # 2. loss
    wy_sum = 0.0          # sum over positives of w_c y_c
    wy_gap = 0.0          # sum over positives of w_c y_c (m - x_c)
    for k in range(cols.size):
        c = cols[k]
        wy = (vals[k] if has_values else 1.0) / mass_pos
        if has_cw:
            wy *= class_weight[c]
        wy_sum += wy
        wy_gap += wy * (float(m) - float(xr[c]))
    mass = (1.0 - eps) * wy_sum + eps / n_classes * cw_sum
    gap = (1.0 - eps) * wy_gap
    if eps > 0.0:
        gap += eps / n_classes * row_sum_gap(xr, m, class_weight, has_cw)
    loss = sw * (gap + mass * log_s + z_loss * lse * lse)
    # 3. gradient: the positives' exact values first (logits may alias grad), then one write
    if want_grad:
        scale = sw * grad_scale
        for k in range(cols.size):
            c = cols[k]
            w = class_weight[c] if has_cw else 1.0
            wy = (vals[k] if has_values else 1.0) / mass_pos     # as in phase 2, bit for bit
            if has_cw:
                wy *= w
            rest = ((1.0 - eps) * others_mass(k, wy, wy_sum, cols, vals, has_values,
                                              class_weight, has_cw, mass_pos)
                    + eps / n_classes * (cw_sum - w) + 2.0 * z_loss * lse)
            u = (1.0 - eps) * wy + eps / n_classes * w
            pos_buf[k] = scale * exact_grad(_math.fence(float(m) - float(xr[c])) + log_s,
                                            rest, u)
        # with smoothing every class has u = eps w / C: the row's max (p may be close to 1),
        # when it is no positive, in the exact form too (a p - b w cancelled there)
        top = argmax_of(xr, m) if eps > 0.0 else -1
        top_grad = 0.0
        if top >= 0:
            w = class_weight[top] if has_cw else 1.0
            top_grad = scale * exact_grad(log_s, (1.0 - eps) * wy_sum
                                          + eps / n_classes * (cw_sum - w) + 2.0 * z_loss * lse,
                                          eps / n_classes * w)
        a = _math.cast_like(m, scale * (mass + 2.0 * z_loss * lse) / s)
        b = _math.cast_like(m, scale * eps / n_classes)
        write_softmax_grad(xr, gr, m, a, b, class_weight, has_cw)
        if top >= 0:
            gr[top] = _math.cast_like(m, top_grad)
        for k in range(cols.size):
            gr[cols[k]] = _math.cast_like(m, pos_buf[k])
    return loss


@njit(**JIT_OPTIONS)
def cached_sparse_row(xr, gr, cols, vals, has_values, class_weight, has_cw, sw, options,
                      mass_pos, pos_buf, row_buf):
    """``sparse_row`` with a gradient, no label smoothing, and a row that stays in L2: the
    online statistics with ``exp(x - m)`` stored in ``row_buf`` (``row_stats_store``: this
    thread's buffer, which stays in cache), then that scaled into the gradient with
    non-temporal stores (one exp per element and one read of the logits from memory; the
    gradient is written without being read; the same loss and gradient formulas).
    ``pos_buf`` holds ``m - x_c`` of the positives, then their gradients."""
    loss, a = cached_sparse_terms(xr, cols, vals, has_values, class_weight, has_cw, sw, options,
                                  mass_pos, pos_buf, row_buf, xr[:0], row_buf[:0],
                                  _math.cast_like(xr[0], 0.0))
    write_row(gr, row_buf[:xr.size], a, address_of(gr) == address_of(xr), cols, pos_buf)
    return loss


@njit(**JIT_OPTIONS)
def cached_sparse_terms(xr, cols, vals, has_values, class_weight, has_cw, sw, options, mass_pos,
                        pos_buf, row_buf, pg, psrc, pa):
    """``(loss, a)`` of ``cached_sparse_row``: its phases 1 and 2, ``exp(x - m)`` left in
    ``row_buf`` and the positives' gradients in ``pos_buf``; the row's gradient is then
    ``a * row_buf`` with the positives' put in place (``put_positives``). While it reads the
    logits, the previous row's gradient ``pg = pa * psrc`` goes out (``pg`` empty: none;
    ``row_stats_store_streaming``)."""
    wide_vectors()
    eps, z_loss, grad_scale, cw_sum, cached_row_bytes = options
    # 1. row statistics, exp(x - m) stored into row_buf
    m, s1 = row_stats_store_streaming(xr, row_buf, True, pg, psrc, pa)
    for k in range(cols.size):
        pos_buf[k] = _math.fence(float(m) - float(xr[cols[k]]))
    s = 1.0 + s1
    log_s = math.log1p(s1)
    lse = float(m) + log_s
    # 2. loss
    wy_sum = 0.0
    wy_gap = 0.0
    for k in range(cols.size):
        wy = (vals[k] if has_values else 1.0) / mass_pos
        if has_cw:
            wy *= class_weight[cols[k]]
        wy_sum += wy
        wy_gap += wy * pos_buf[k]
    loss = sw * (wy_gap + wy_sum * log_s + z_loss * lse * lse)
    # 3. gradient: the positives' exact values (the rest is the stored exp, scaled by a)
    scale = sw * grad_scale
    for k in range(cols.size):
        c = cols[k]
        wy = (vals[k] if has_values else 1.0) / mass_pos           # as in phase 2, bit for bit
        if has_cw:
            wy *= class_weight[c]
        pos_buf[k] = scale * exact_grad(pos_buf[k] + log_s,
                                        others_mass(k, wy, wy_sum, cols, vals, has_values,
                                                    class_weight, has_cw, mass_pos)
                                        + 2.0 * z_loss * lse, wy)
    a = _math.cast_like(m, scale * (wy_sum + 2.0 * z_loss * lse) / s)
    return loss, a


@njit(inline="always", **JIT_OPTIONS)
def write_row(gr, src, a, cached, cols, pos_buf):
    """A cached row's whole gradient: ``gr = a * src`` streamed (``stream_scaled_row``), then
    the positives' exact values put in place (``put_positives``)."""
    stream_scaled_row(gr, src, a, cached)
    put_positives(gr, cols, pos_buf)


@njit(inline="always", **JIT_OPTIONS)
def put_positives(gr, cols, pos_buf):
    """``gr[cols[k]] = pos_buf[k]``: the positives' exact gradients, after the row's stream."""
    for k in range(cols.size):
        gr[cols[k]] = _math.cast_like(gr[0], pos_buf[k])


@njit(**JIT_OPTIONS)
def row_mass(cols, vals, has_values):
    """The positives' total value (their count without values): 0 for a row that is not
    counted (no target distribution)."""
    mass_pos = 0.0
    for k in range(cols.size):
        mass_pos += vals[k] if has_values else 1.0
    return mass_pos


@njit(inline="always", **JIT_OPTIONS)
def target_sums(xb, yb, cwb, has_cw, m):
    """``(sum w y, sum w y (m - x))`` over a slice, in x's type (a block's partial sums)."""
    wide_vectors()
    one = _math.cast_like(m, 1.0)
    acc_wy = _math.cast_like(m, 0.0)
    acc_gap = _math.cast_like(m, 0.0)
    for j in range(xb.size):
        wy = _math.cast_like(m, yb[j]) * (_math.cast_like(m, cwb[j]) if has_cw else one)
        acc_wy += wy
        acc_gap += wy * (m - xb[j])
    return acc_wy, acc_gap


@njit(**JIT_OPTIONS)
def dense_target_sums(xr, yr, m, top, class_weight, has_cw):
    """``(sum w y, the same sum without the top class, sum w y (m - x))`` of a dense target row,
    float64 from block partial sums. The top class is left out of its block's sums and added
    back (``wy_sum - wy_top`` would cancel when it holds the row's mass)."""
    n = xr.size
    wy_rest = 0.0
    wy_gap = 0.0
    for b0 in range(0, n, BLOCK):
        b1 = min(b0 + BLOCK, n)
        t = top - b0 if b0 <= top < b1 else b1 - b0       # top's place in the block, or its end
        s_wy, s_gap = target_sums(xr[b0:b0 + t], yr[b0:b0 + t], class_weight[b0:b0 + t],
                                  has_cw, m)
        wy_rest += float(s_wy)
        wy_gap += float(s_gap)
        if b0 + t < b1:
            s_wy, s_gap = target_sums(xr[b0 + t + 1:b1], yr[b0 + t + 1:b1],
                                      class_weight[b0 + t + 1:b1], has_cw, m)
            wy_rest += float(s_wy)
            wy_gap += float(s_gap)
    wy_top = 0.0
    if top >= 0:
        wy_top = float(yr[top]) * (float(class_weight[top]) if has_cw else 1.0)
    return wy_rest + wy_top, wy_rest, wy_gap


@njit(**JIT_OPTIONS)
def dense_terms(xr, yr, m, top, s1, class_weight, has_cw, sw, options):
    """``(loss, a, b, c1, top_grad)`` of a dense target row from its statistics: the row's loss,
    the gradient's coefficients ``grad_j = a exp(x_j - m) - b w_j - c1 w_j y_j`` and the exact
    gradient of the top class (``p_top`` may be close to 1)."""
    eps, z_loss, grad_scale, cw_sum, cached_row_bytes = options
    n_classes = xr.size
    log_s = math.log1p(s1)
    lse = float(m) + log_s
    wy_sum, wy_rest, wy_gap = dense_target_sums(xr, yr, m, top, class_weight, has_cw)
    mass = (1.0 - eps) * wy_sum + eps / n_classes * cw_sum
    gap = (1.0 - eps) * wy_gap
    if eps > 0.0:
        gap += eps / n_classes * row_sum_gap(xr, m, class_weight, has_cw)
    loss = sw * (gap + mass * log_s + z_loss * lse * lse)
    scale = sw * grad_scale
    a = scale * (mass + 2.0 * z_loss * lse) / (1.0 + s1)
    top_grad = 0.0
    if top >= 0:
        w = class_weight[top] if has_cw else 1.0
        wy = w * float(yr[top])
        rest = (1.0 - eps) * wy_rest + eps / n_classes * (cw_sum - w) + 2.0 * z_loss * lse
        top_grad = scale * exact_grad(log_s, rest, (1.0 - eps) * wy + eps / n_classes * w)
    return loss, a, scale * eps / n_classes, scale * (1.0 - eps), top_grad


@njit(**JIT_OPTIONS)
def dense_row(xr, gr, want_grad, yr, class_weight, has_cw, sw, options, row_buf):
    wide_vectors()
    cached_row_bytes = options[4]
    if (want_grad and xr.size * xr.itemsize <= cached_row_bytes
            and row_buf.size >= row_buf_width(xr.size)):
        return cached_dense_row(xr, gr, yr, class_weight, has_cw, sw, options, row_buf)
    # 1. row statistics
    m, s1 = row_stats(xr)
    top = argmax_of(xr, m)
    # 2. loss
    loss, a64, b64, c64, top_grad = dense_terms(xr, yr, m, top, s1, class_weight, has_cw,
                                                sw, options)
    # 3. gradient
    if want_grad:
        a = _math.cast_like(m, a64)
        b = _math.cast_like(m, b64)
        c1 = _math.cast_like(m, c64)
        if has_cw:
            for j in range(xr.size):
                w = _math.cast_like(m, class_weight[j])
                gr[j] = (a * _math.exp_nonpos(xr[j] - m) - b * w
                         - c1 * w * _math.cast_like(m, yr[j]))
        else:
            for j in range(xr.size):
                gr[j] = a * _math.exp_nonpos(xr[j] - m) - b - c1 * _math.cast_like(m, yr[j])
        if top >= 0:
            gr[top] = _math.cast_like(m, top_grad)
    return loss


@njit(**JIT_OPTIONS)
def cached_dense_row(xr, gr, yr, class_weight, has_cw, sw, options, row_buf):
    """``dense_row`` with a gradient and a row that stays in L2: the online statistics with
    ``exp(x - m)`` stored in ``row_buf`` (``row_stats_store``: this thread's buffer), the
    loss's target sums, then the gradient formed in ``row_buf`` and streamed out with
    non-temporal stores (one exp per element where the one-read path takes two; the same
    formulas). The logits are read before the gradient is written (they may be the gradient
    buffer)."""
    wide_vectors()
    # 1. row statistics, exp(x - m) stored into row_buf
    m, s1 = row_stats_store(xr, row_buf, False)
    top = argmax_of(xr, m)
    # 2. loss
    loss, a64, b64, c64, top_grad = dense_terms(xr, yr, m, top, s1, class_weight, has_cw,
                                                sw, options)
    # 3. gradient from the stored exp, formed in row_buf, then streamed out
    a = _math.cast_like(m, a64)
    b = _math.cast_like(m, b64)
    c1 = _math.cast_like(m, c64)
    if has_cw:
        for j in range(xr.size):
            w = _math.cast_like(m, class_weight[j])
            row_buf[j] = a * row_buf[j] - b * w - c1 * w * _math.cast_like(m, yr[j])
    else:
        for j in range(xr.size):
            row_buf[j] = a * row_buf[j] - b - c1 * _math.cast_like(m, yr[j])
    if top >= 0:
        row_buf[top] = _math.cast_like(m, top_grad)
    stream_scaled_row(gr, row_buf[:xr.size], _math.cast_like(m, 1.0),
                      address_of(gr) == address_of(xr))
    return loss


@njit(parallel=True, **JIT_OPTIONS)
def softmax_xent_sparse(logits, indptr, indices, values, class_weight, sample_weight, options,
                        row_loss, grad, want_grad, pos_buf, row_bufs, copies):
    """options = (label_smoothing, z_loss, grad_scale, sum of class weights, the longest row in
    bytes for the cached two-pass gradient (``_config.CACHED_ROW_BYTES``)). Absent optional
    arrays are empty; without a gradient, ``grad`` is an empty [1, 0] array. ``row_bufs`` has a
    row per thread for the cached gradient ([T, C], T = ``numba.get_num_threads()``), or is
    empty ([1, 0]): then every row takes the one-read path. ``copies``: see
    ``_rows.source_row`` (in place), else empty [1, 0]."""
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
                                 sample_weight[i] if has_sw else 1.0, options, pos_buf[k0:k1],
                                 thread_row(row_bufs))


@njit(parallel=True, **JIT_OPTIONS)
def softmax_xent_sparse_pipelined(logits, indptr, indices, values, class_weight, sample_weight,
                                  options, row_loss, grad, pos_buf, row_bufs):
    """``softmax_xent_sparse`` for calls that take ``cached_sparse_row`` on every counted row
    (a gradient, no label smoothing, rows of at most the cached row bytes) out of place: each
    of the ``row_bufs.shape[0]`` runs of rows writes row i's gradient while it reads row i + 1
    (``cached_sparse_terms``), which keeps the memory busy during the arithmetic (two row
    buffers per run: ``row_bufs`` [R, 2, W], W >= ``row_buf_width(C)``). A row that counts
    nothing gets zeros (after the pending row's gradient). The same bits as the row by row
    form."""
    wide_vectors()
    has_values = values.size > 0
    has_cw = class_weight.size > 0
    has_sw = sample_weight.size > 0
    n_rows = logits.shape[0]
    n_runs = row_bufs.shape[0]
    n_classes = logits.shape[1]
    for t in prange(n_runs):
        r0 = t * n_rows // n_runs
        r1 = (t + 1) * n_rows // n_runs
        pending = -1                             # the row whose gradient is still to go out
        pa = _math.cast_like(logits[0, 0], 0.0)
        pcols = indices[:0]                      # its positives and their gradients
        ppos = pos_buf[:0]
        for i in range(r0, r1):
            cur = row_bufs[t, i % 2]
            prev = row_bufs[t, 1 - i % 2]
            k0 = indptr[i]
            k1 = indptr[i + 1]
            cols = indices[k0:k1]
            vals = values[k0:k1] if has_values else values
            mass_pos = row_mass(cols, vals, has_values)
            pg = grad[i, :0]
            if pending >= 0:
                pg = grad[pending]
            if cols.size == 0 or not mass_pos > 0.0:     # not counted: zeros
                if pending >= 0:
                    write_row(pg, prev[:n_classes], pa, False, pcols, ppos)
                    pending = -1
                grad[i, :] = 0.0
                row_loss[i] = 0.0
                continue
            loss, a = cached_sparse_terms(
                logits[i], cols, vals, has_values, class_weight, has_cw,
                sample_weight[i] if has_sw else 1.0, options, mass_pos, pos_buf[k0:k1], cur,
                pg, prev, pa)
            row_loss[i] = loss
            if pending >= 0:
                stream_ends(pg, prev, pa)
                store_fence()
                put_positives(pg, pcols, ppos)
            pending = i
            pa = a
            pcols = cols
            ppos = pos_buf[k0:k1]
        if pending >= 0:
            write_row(grad[pending], row_bufs[t, pending % 2, :n_classes], pa, False, pcols,
                      ppos)


@njit(parallel=True, **JIT_OPTIONS)
def softmax_xent_dense(logits, targets, class_weight, sample_weight, options, row_loss, grad,
                       want_grad, row_bufs, copies):
    """options = (label_smoothing, z_loss, grad_scale, sum of class weights, cached row bytes);
    ``row_bufs``, ``copies``: see ``softmax_xent_sparse``."""
    wide_vectors()
    has_cw = class_weight.size > 0
    has_sw = sample_weight.size > 0
    for i in prange(logits.shape[0]):
        row_loss[i] = dense_row(source_row(logits, i, copies),
                                grad[i] if want_grad else grad[0], want_grad,
                                targets[i], class_weight, has_cw,
                                sample_weight[i] if has_sw else 1.0, options,
                                thread_row(row_bufs))
