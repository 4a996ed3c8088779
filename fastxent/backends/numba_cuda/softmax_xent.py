"""Softmax cross-entropy, forward and gradient (CUDA).

The same formulas as ``backends/numba_cpu/softmax_xent.py`` (docs/losses.md): for a counted row,
with target mass ``M = sum_c w_c y'_c``, ``y'_c = (1 - eps) y_c + eps / C``, ``lse = m + log s``::

    loss = sw * ( sum_c w_c y'_c (m - x_c) + M log s + z_loss lse**2 )
    grad = sw * scale * ( (M + 2 z_loss lse) p_j - w_j y'_j )

Where ``p_c`` may be close to 1 (the positives; the row's max with dense targets) the gradient is
``(M' - u_c) p_c - u_c (1 - p_c)`` with ``1 - p_c = -expm1(-gap_c)`` (no cancellation).

A group of threads owns a row (``_rows``). Phases: 1. row statistics (one read of the logits:
online max and sum of exp per thread, then a group reduction; sparse rows also save their
positives' logits in ``pos_buf`` and sum their target mass), 2. loss sums and 3. gradient in one
more pass (a re-read that L2 serves while the row is in flight), then the positives' exact
gradients. Per-row losses go to ``row_loss``; the batch sum is a separate deterministic step.
"""
import math

from numba import cuda

from ... import _math
from ._primitives import device
from ._rows import F64, NEG_INF, SCRATCH_SIZE, SHARED_PASSES, SHARED_SHAPE, group_reduce, \
    group_sums, load4, pick4, thread_stats


@device
def exact_grad(gap, mass_rest, u):
    """``(M' - u) p - u (1 - p)`` for a class with ``-log p = gap`` (no cancellation)."""
    return mass_rest * math.exp(-gap) - u * (-math.expm1(-gap))


@device
def sparse_element(x, j, row, m_x, a, b, eps, class_weight, has_cw, grad, want_grad, counted):
    """One logit of the gradient pass: writes ``grad[row, j] = a exp(x - m) - b w_j`` (0 for a
    row that is not counted) and returns the smoothing's gap term ``w_j (m - x)`` (0 without
    smoothing)."""
    if want_grad:
        if counted:
            w = _math.cast_like(x, class_weight[j]) if has_cw else _math.cast_like(x, 1.0)
            grad[row, j] = a * _math.exp_nonpos(x - m_x) - b * w
        else:
            grad[row, j] = _math.cast_like(x, 0.0)
    if eps > 0.0:
        return (class_weight[j] if has_cw else 1.0) * float(m_x - x)
    return 0.0


@device
def sparse_row(logits, row, n_cols, lane, group_threads, k0, k1, indices, values,
               class_weight, sw, options, grad, want_grad, pos_buf, shared, scratch):
    eps, z_loss, grad_scale, cw_sum = options
    n_classes = logits.shape[1]
    has_values = values.size > 0
    has_cw = class_weight.size > 0
    like = logits[0, 0]
    # 1. row statistics; the positives' mass and logits (before any write: x may alias grad)
    m, s1 = thread_stats(logits, row, lane, n_cols, group_threads)
    mass_part = 0.0
    wv_part = 0.0
    for k in range(k0 + lane, k1, group_threads):
        c = indices[k]
        v = values[k] if has_values else 1.0
        mass_part += v
        wv_part += v * class_weight[c] if has_cw else v
        pos_buf[k] = float(logits[row, c])
    m, s1, mass_pos, wv_sum, _ = group_reduce(m, s1, mass_part, wv_part, 0.0, group_threads,
                                              shared, scratch)
    counted = k1 > k0 and mass_pos > 0.0
    s = 1.0 + s1 if s1 != -1.0 else 1.0       # an empty row (past the end) has s = 0
    log_s = math.log1p(s1) if s1 != -1.0 else NEG_INF     # -1: an empty row
    lse = m + log_s
    wy_sum = wv_sum / mass_pos if counted else 0.0
    mass = (1.0 - eps) * wy_sum + eps / n_classes * cw_sum
    scale = sw * grad_scale
    # 2. the smoothing's gap sum and 3. the gradient's one write, in one pass
    m_x = _math.cast_like(like, m)
    a = _math.cast_like(like, scale * (mass + 2.0 * z_loss * lse) / s)
    b = _math.cast_like(like, scale * eps / n_classes)
    gap_part = 0.0
    g = group_threads
    for j in range(lane, n_cols, 4 * g):            # LOADS_IN_FLIGHT (4) logits loaded before
        j1 = j + g                                   # the first is used
        j2 = j + 2 * g
        j3 = j + 3 * g
        x0, x1, x2, x3 = load4(logits, row, j, g, n_cols)
        gap_part += sparse_element(x0, j, row, m_x, a, b, eps, class_weight, has_cw, grad,
                                   want_grad, counted)
        if j1 < n_cols:
            gap_part += sparse_element(x1, j1, row, m_x, a, b, eps, class_weight, has_cw, grad,
                                       want_grad, counted)
        if j2 < n_cols:
            gap_part += sparse_element(x2, j2, row, m_x, a, b, eps, class_weight, has_cw, grad,
                                       want_grad, counted)
        if j3 < n_cols:
            gap_part += sparse_element(x3, j3, row, m_x, a, b, eps, class_weight, has_cw, grad,
                                       want_grad, counted)
    wv_gap_part = 0.0
    for k in range(k0 + lane, k1, group_threads):
        c = indices[k]
        v = values[k] if has_values else 1.0
        wv_gap_part += (v * class_weight[c] if has_cw else v) * (m - pos_buf[k])
    gap_sum, wv_gap, _ = group_sums(gap_part, wv_gap_part, 0.0, group_threads, shared, scratch)
    # the positives' exact gradients (after the pass: group_sums ended with a barrier)
    if want_grad and counted:
        for k in range(k0 + lane, k1, group_threads):
            c = indices[k]
            w = class_weight[c] if has_cw else 1.0
            wy = (values[k] if has_values else 1.0) / mass_pos
            if has_cw:
                wy *= w
            rest = ((1.0 - eps) * (wy_sum - wy) + eps / n_classes * (cw_sum - w)
                    + 2.0 * z_loss * lse)
            u = (1.0 - eps) * wy + eps / n_classes * w
            grad[row, c] = _math.cast_like(like, scale * exact_grad((m - pos_buf[k]) + log_s,
                                                                    rest, u))
    if not counted:
        return 0.0
    gap = (1.0 - eps) * wv_gap / mass_pos + eps / n_classes * gap_sum
    return sw * (gap + mass * log_s + z_loss * lse * lse)


@device
def dense_grad_element(x, y, w, j, row, m_x, a, b, c1, eps, n_classes, wy_sum, cw_sum, z_loss,
                       lse, log_s, scale, grad):
    """One logit of the dense gradient pass: ``a p_j - b w_j - c1 w_j y_j``, in the exact form
    at the row's max (p may be close to 1 there)."""
    if x == m_x:
        wy = w * float(y)
        rest = ((1.0 - eps) * (wy_sum - wy) + eps / n_classes * (cw_sum - w)
                + 2.0 * z_loss * lse)
        grad[row, j] = _math.cast_like(x, scale * exact_grad(
            log_s, rest, (1.0 - eps) * wy + eps / n_classes * w))
    else:
        w_x = _math.cast_like(x, w)
        grad[row, j] = (a * _math.exp_nonpos(x - m_x) - b * w_x
                        - c1 * w_x * _math.cast_like(x, y))


@device
def dense_row(logits, row, n_cols, lane, group_threads, targets, class_weight, sw, options,
              grad, want_grad, shared, scratch):
    eps, z_loss, grad_scale, cw_sum = options
    n_classes = logits.shape[1]
    has_cw = class_weight.size > 0
    like = logits[0, 0]
    # 1. row statistics and the target mass sum_c w_c y_c
    m, s1 = thread_stats(logits, row, lane, n_cols, group_threads)
    wy_part = 0.0
    for j in range(lane, n_cols, group_threads):
        wy = float(targets[row, j])
        wy_part += wy * class_weight[j] if has_cw else wy
    m, s1, wy_sum, _, _ = group_reduce(m, s1, wy_part, 0.0, 0.0, group_threads, shared,
                                       scratch)
    s = 1.0 + s1 if s1 != -1.0 else 1.0       # an empty row (past the end) has s = 0
    log_s = math.log1p(s1) if s1 != -1.0 else NEG_INF     # -1: an empty row
    lse = m + log_s
    mass = (1.0 - eps) * wy_sum + eps / n_classes * cw_sum
    scale = sw * grad_scale
    # 2. loss sums and 3. gradient in one pass; p may be close to 1 at the max: exact form
    m_x = _math.cast_like(like, m)
    a = _math.cast_like(like, scale * (mass + 2.0 * z_loss * lse) / s)
    b = _math.cast_like(like, scale * eps / n_classes)
    c1 = _math.cast_like(like, scale * (1.0 - eps))
    wy_gap_part = 0.0
    gap_part = 0.0
    g = group_threads
    for j in range(lane, n_cols, 4 * g):            # LOADS_IN_FLIGHT (4) logits and targets
        x0, x1, x2, x3 = load4(logits, row, j, g, n_cols)   # loaded before the first is used
        y0, y1, y2, y3 = load4(targets, row, j, g, n_cols)
        for q in range(4):
            jq = j + q * g
            if jq < n_cols:
                x = pick4(q, x0, x1, x2, x3)
                y = pick4(q, y0, y1, y2, y3)
                w = class_weight[jq] if has_cw else 1.0
                gap = float(m_x - x)
                wy_gap_part += w * float(y) * gap
                if eps > 0.0:
                    gap_part += w * gap
                if want_grad:
                    dense_grad_element(x, y, w, jq, row, m_x, a, b, c1, eps, n_classes,
                                       wy_sum, cw_sum, z_loss, lse, log_s, scale, grad)
    wy_gap, gap_sum, _ = group_sums(wy_gap_part, gap_part, 0.0, group_threads, shared, scratch)
    if n_cols == 0:                                  # past the last row
        return 0.0
    gap = (1.0 - eps) * wy_gap + eps / n_classes * gap_sum
    return sw * (gap + mass * log_s + z_loss * lse * lse)


@cuda.jit
def softmax_xent_sparse(logits, indptr, indices, values, class_weight, sample_weight, options,
                        row_loss, grad, want_grad, pos_buf, group_threads):
    """options = (label_smoothing, z_loss, grad_scale, sum of class weights). Absent optional
    arrays are empty; without a gradient ``grad`` is a [1, 1] placeholder."""
    for _ in range(SHARED_PASSES):      # 2 under the simulator: see _rows
        shared = cuda.shared.array(SHARED_SHAPE, F64)
        scratch = cuda.shared.array(SCRATCH_SIZE, F64)
        cuda.syncthreads()
    n_rows, n_classes = logits.shape
    has_sw = sample_weight.size > 0
    tid = cuda.threadIdx.x
    lane = tid % group_threads
    rows_per_block = cuda.blockDim.x // group_threads
    for first in range(cuda.blockIdx.x * rows_per_block, n_rows,
                       cuda.gridDim.x * rows_per_block):
        row = first + tid // group_threads
        active = row < n_rows
        r = row if active else n_rows - 1
        k0 = indptr[r] if active else 0
        k1 = indptr[r + 1] if active else 0
        loss = sparse_row(logits, r, n_classes if active else 0, lane, group_threads, k0, k1,
                          indices, values, class_weight,
                          sample_weight[r] if has_sw else 1.0, options, grad, want_grad,
                          pos_buf, shared, scratch)
        if active and lane == 0:
            row_loss[r] = loss


@cuda.jit
def softmax_xent_dense(logits, targets, class_weight, sample_weight, options, row_loss, grad,
                       want_grad, group_threads):
    """options = (label_smoothing, z_loss, grad_scale, sum of class weights)."""
    for _ in range(SHARED_PASSES):      # 2 under the simulator: see _rows
        shared = cuda.shared.array(SHARED_SHAPE, F64)
        scratch = cuda.shared.array(SCRATCH_SIZE, F64)
        cuda.syncthreads()
    n_rows, n_classes = logits.shape
    has_sw = sample_weight.size > 0
    tid = cuda.threadIdx.x
    lane = tid % group_threads
    rows_per_block = cuda.blockDim.x // group_threads
    for first in range(cuda.blockIdx.x * rows_per_block, n_rows,
                       cuda.gridDim.x * rows_per_block):
        row = first + tid // group_threads
        active = row < n_rows
        r = row if active else n_rows - 1
        loss = dense_row(logits, r, n_classes if active else 0, lane, group_threads, targets,
                         class_weight, sample_weight[r] if has_sw else 1.0, options, grad,
                         want_grad, shared, scratch)
        if active and lane == 0:
            row_loss[r] = loss
