"""Softmax focal loss, forward and gradient (CUDA).

The same formulas as ``backends/numba_cpu/softmax_focal.py`` (docs/losses.md): with
``gap_c = lse - x_c = -log p_c`` and ``u_c = alpha_c w_c y'_c``,
``_math.softmax_focal_term(gap, gamma) = (f, h)``::

    loss = sw * sum_c u_c f_c
    grad = sw * scale * ( p_j H - u_j h_j ),   H = sum_c u_c h_c

Phases per row (a group of threads per row, ``_rows``): 1. row statistics (one read; sparse rows
save their positives' logits in ``pos_buf[k, 0]``), 2. loss and H (positives in float64; the
smoothing background ``eps / C`` or dense targets need a pass over the row), 3. gradient (one
write; the positives' exact values ``(H - U_c) p_c - U_c (1 - p_c)`` last).
"""
import math

from numba import cuda

from ... import _math
from ._primitives import device
from ._rows import F64, NEG_INF, SCRATCH_SIZE, SHARED_PASSES, SHARED_SHAPE, group_reduce, \
    group_sums, load4, pick4, thread_stats


@device
def sparse_grad_element(x, j, row, m_x, log_s_x, gamma_x, a, b, eps, counted, class_weight,
                        has_cw, grad):
    """One logit of the gradient pass: ``grad[row, j] = a p_j - b w_j h_j`` (without smoothing
    ``a p_j``; 0 for a row that is not counted)."""
    if not counted:
        grad[row, j] = _math.cast_like(x, 0.0)
    elif eps > 0.0:
        f, h = _math.softmax_focal_term((m_x - x) + log_s_x, gamma_x)
        w = _math.cast_like(x, class_weight[j]) if has_cw else _math.cast_like(x, 1.0)
        grad[row, j] = a * _math.exp_nonpos(x - m_x) - b * w * h
    else:
        grad[row, j] = a * _math.exp_nonpos(x - m_x)


@device
def sparse_row(logits, row, n_cols, lane, group_threads, k0, k1, indices, values,
               class_weight, sw, options, grad, want_grad, pos_buf, shared, scratch):
    eps, gamma, grad_scale = options
    n_classes = logits.shape[1]
    has_values = values.size > 0
    has_cw = class_weight.size > 0
    like = logits[0, 0]
    # 1. row statistics; the positives' mass and logits (before any write)
    m, s1 = thread_stats(logits, row, lane, n_cols, group_threads)
    mass_part = 0.0
    for k in range(k0 + lane, k1, group_threads):
        mass_part += values[k] if has_values else 1.0
        pos_buf[k, 0] = float(logits[row, indices[k]])
    m, s1, mass_pos, _, _ = group_reduce(m, s1, mass_part, 0.0, 0.0, group_threads, shared,
                                         scratch)
    counted = k1 > k0 and mass_pos > 0.0
    s = 1.0 + s1 if s1 != -1.0 else 1.0       # an empty row (past the end) has s = 0
    log_s = math.log1p(s1) if s1 != -1.0 else NEG_INF     # -1: an empty row
    y0 = eps / n_classes
    # 2. loss and H: the positives (pos_buf[k, 1] = h_c), then the background y0 on every class
    loss_part = 0.0
    h_part = 0.0
    if counted:
        for k in range(k0 + lane, k1, group_threads):
            c = indices[k]
            u = (1.0 - eps) * (values[k] if has_values else 1.0) / mass_pos
            if has_cw:
                u *= class_weight[c]
            f, h = _math.softmax_focal_term((m - pos_buf[k, 0]) + log_s, gamma)
            loss_part += u * f
            h_part += u * h
            pos_buf[k, 1] = h
    m_x = _math.cast_like(like, m)
    gamma_x = _math.cast_like(like, gamma)
    log_s_x = _math.cast_like(like, log_s)
    one = _math.cast_like(like, 1.0)
    if eps > 0.0 and counted:
        f_bg = 0.0
        h_bg = 0.0
        for j in range(lane, n_cols, group_threads):
            f, h = _math.softmax_focal_term((m_x - logits[row, j]) + log_s_x, gamma_x)
            w = _math.cast_like(like, class_weight[j]) if has_cw else one
            f_bg += float(w * f)
            h_bg += float(w * h)
        loss_part += y0 * f_bg
        h_part += y0 * h_bg
    loss, h_sum, _ = group_sums(loss_part, h_part, 0.0, group_threads, shared, scratch)
    # 3. gradient: one write, then the positives' exact values
    if want_grad:
        scale = sw * grad_scale
        a = _math.cast_like(like, scale * h_sum / s)
        b = _math.cast_like(like, scale * y0)
        g = group_threads
        for j in range(lane, n_cols, 4 * g):        # LOADS_IN_FLIGHT (4) logits loaded before
            j1 = j + g                               # the first is used
            j2 = j + 2 * g
            j3 = j + 3 * g
            x0, x1, x2, x3 = load4(logits, row, j, g, n_cols)
            sparse_grad_element(x0, j, row, m_x, log_s_x, gamma_x, a, b, eps, counted,
                                class_weight, has_cw, grad)
            if j1 < n_cols:
                sparse_grad_element(x1, j1, row, m_x, log_s_x, gamma_x, a, b, eps, counted,
                                    class_weight, has_cw, grad)
            if j2 < n_cols:
                sparse_grad_element(x2, j2, row, m_x, log_s_x, gamma_x, a, b, eps, counted,
                                    class_weight, has_cw, grad)
            if j3 < n_cols:
                sparse_grad_element(x3, j3, row, m_x, log_s_x, gamma_x, a, b, eps, counted,
                                    class_weight, has_cw, grad)
        cuda.syncthreads()
        if counted:
            for k in range(k0 + lane, k1, group_threads):
                c = indices[k]
                w = class_weight[c] if has_cw else 1.0
                u_full = w * ((1.0 - eps) * (values[k] if has_values else 1.0) / mass_pos + y0)
                big_u = u_full * pos_buf[k, 1]
                gap = (m - pos_buf[k, 0]) + log_s
                grad[row, c] = _math.cast_like(like, scale * (
                    (h_sum - big_u) * math.exp(-gap) - big_u * (-math.expm1(-gap))))
    return sw * loss if counted else 0.0


@device
def dense_weight(x, t, j, keep, y0, class_weight, has_cw):
    """``u_j = alpha_j w_j y'_j`` of a dense target ``t`` (smoothed: ``y' = keep t + y0``), in
    x's type."""
    u = keep * _math.cast_like(x, t) + y0
    if has_cw:
        u *= _math.cast_like(x, class_weight[j])
    return u


@device
def dense_pass(logits, targets, row, lane, g, n_cols, m_x, log_s_x, gamma_x, keep, y0,
               class_weight, has_cw, a, b, top, grad, write):
    """One pass over a row with dense targets, four logits and targets loaded ahead
    (``LOADS_IN_FLIGHT``): ``write`` False returns this thread's ``(sum u f, sum u h, sum u)``
    (phase 2; the classes at the row max give their u to the third sum instead of u h to the
    second), True writes ``grad[row, j] = a p_j - b u_j h_j`` (phase 3), at the row max in the
    exact form of ``top`` = ``(H_rest, U_max, h_max, p_max, 1 - p_max, scale)``:
    ``scale ((H_rest + (U_max - u_j) h_max) p_max - u_j h_max (1 - p_max))`` (float64: the
    plain form cancels when p_max is close to 1), and returns zeros."""
    loss_part = 0.0
    h_part = 0.0
    u_max = 0.0
    for j in range(lane, n_cols, 4 * g):
        x0, x1, x2, x3 = load4(logits, row, j, g, n_cols)
        t0, t1, t2, t3 = load4(targets, row, j, g, n_cols)
        for q in range(4):
            jq = j + q * g
            if jq < n_cols:
                x = pick4(q, x0, x1, x2, x3)
                t = pick4(q, t0, t1, t2, t3)
                u = dense_weight(x, t, jq, keep, y0, class_weight, has_cw)
                f, h = _math.softmax_focal_term((m_x - x) + log_s_x, gamma_x)
                if write:
                    if x == m_x:
                        h_rest, u_all, h_top, p_top, omp_top, scale = top
                        uj = float(u)
                        grad[row, jq] = _math.cast_like(x, scale * (
                            (h_rest + (u_all - uj) * h_top) * p_top - uj * h_top * omp_top))
                    else:
                        grad[row, jq] = a * _math.exp_nonpos(x - m_x) - b * u * h
                else:
                    loss_part += float(u * f)
                    if x == m_x:
                        u_max += float(u)
                    else:
                        h_part += float(u * h)
    return loss_part, h_part, u_max


@device
def dense_row(logits, row, n_cols, lane, group_threads, targets, class_weight, sw, options,
              grad, want_grad, shared, scratch):
    eps, gamma, grad_scale = options
    n_classes = logits.shape[1]
    has_cw = class_weight.size > 0
    like = logits[0, 0]
    # 1. row statistics
    m, s1 = thread_stats(logits, row, lane, n_cols, group_threads)
    m, s1, _, _, _ = group_reduce(m, s1, 0.0, 0.0, 0.0, group_threads, shared, scratch)
    s = 1.0 + s1 if s1 != -1.0 else 1.0       # an empty row (past the end) has s = 0
    log_s = math.log1p(s1) if s1 != -1.0 else NEG_INF     # -1: an empty row
    m_x = _math.cast_like(like, m)
    gamma_x = _math.cast_like(like, gamma)
    log_s_x = _math.cast_like(like, log_s)
    keep = _math.cast_like(like, 1.0 - eps)
    y0 = _math.cast_like(like, eps / n_classes)
    # 2. loss and H (H_rest: the classes below the row max; U_max: the u of those at it)
    none = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    loss_part, h_part, u_part = dense_pass(logits, targets, row, lane, group_threads, n_cols,
                                           m_x, log_s_x, gamma_x, keep, y0, class_weight, has_cw,
                                           like, like, none, grad, False)
    loss, h_rest, u_max = group_sums(loss_part, h_part, u_part, group_threads, shared, scratch)
    # 3. gradient; the classes at the row max (p may be close to 1) in the exact form
    if want_grad:
        scale = sw * grad_scale
        h_max = 0.0
        if s1 != -1.0:
            _, h_max = _math.softmax_focal_term(log_s, gamma)          # gap of the max: log s
        h_sum = h_rest + u_max * h_max
        a = _math.cast_like(like, scale * h_sum / s)
        b = _math.cast_like(like, scale)
        top = (h_rest, u_max, h_max, 1.0 / s, -math.expm1(-log_s) if s1 != -1.0 else 0.0,
               scale)
        dense_pass(logits, targets, row, lane, group_threads, n_cols, m_x, log_s_x, gamma_x,
                   keep, y0, class_weight, has_cw, a, b, top, grad, True)
    return sw * loss


@cuda.jit
def softmax_focal_sparse(logits, indptr, indices, values, class_weight, sample_weight, options,
                         row_loss, grad, want_grad, pos_buf, group_threads):
    """options = (label_smoothing, gamma, grad_scale); class_weight already holds alpha_c w_c;
    pos_buf is float64 [nnz, 2]."""
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
def softmax_focal_dense(logits, targets, class_weight, sample_weight, options, row_loss, grad,
                        want_grad, group_threads):
    """options = (label_smoothing, gamma, grad_scale); class_weight already holds alpha_c w_c."""
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
