"""Sigmoid binary cross-entropy and sigmoid focal loss, forward and gradient (CUDA).

The same formulas as ``backends/numba_cpu/sigmoid.py`` (docs/losses.md)::

    loss = sw * sum_c w_c l(x_c, y'_c)       grad = sw * scale * w_c dl/dx(x_c, y'_c)

with ``l`` = ``_math.bce_term`` or ``_math.focal_term``. ``make_kernels(element)`` builds the
dense and sparse kernels of one element formula (specialised at compile time; ``params`` is
always ``(pos_weight, gamma, gamma_neg, clip, alpha, clip_hi, clip_lo)``, the last two
``_math.clip_logit(clip, .)``; the element functions take ``clip`` as the triple
``(clip, clip_hi, clip_lo)``).

Sparse targets cost O(nnz) on top of one pass over the logits: 1. the positives' own terms
(their loss, and their final gradient, kept in ``pos_buf``) before any write, 2./3. one pass
treating every logit as background ``y'_0 = eps / 2`` (the gradient of every logit, the loss of
every logit but the positives: each lane walks the row's sorted positives alongside its columns;
subtracting a confident positive's background term afterwards would cancel), then the positives'
gradients put in place. No row statistics: one read, one write.
"""
from numba import cuda

from ... import _math
from ._primitives import device
from ._rows import F64, SCRATCH_SIZE, SHARED_PASSES, SHARED_SHAPE, group_sums, load4


@device
def bce_element(x, y, pos_weight, gamma, gamma_neg, clip, alpha):
    return _math.bce_term(x, y, pos_weight)


@device
def focal_element(x, y, pos_weight, gamma, gamma_neg, clip, alpha):
    """Focal loss without probability shifting: clip is a literal 0 here, and the formula's
    shifting branch folds away (``focal_clip_element``'s kernels take clip > 0)."""
    zero = _math.cast_like(x, 0.0)
    return _math.focal_term(x, y, gamma, gamma_neg, zero, alpha, zero, zero)


@device
def focal_clip_element(x, y, pos_weight, gamma, gamma_neg, clip, alpha):
    return _math.focal_term(x, y, gamma, gamma_neg, clip[0], alpha, clip[1], clip[2])


def make_kernels(element, prefix=""):
    """(dense kernel, sparse kernel) computing the loss ``element`` per logit, named
    ``prefix + "dense_kernel"`` and ``prefix + "sparse_kernel"``."""

    @device
    def target_element(x, t, j, row, class_weight, has_cw, pos_weight, has_pw, pw0, keep, y0,
                       gamma, gamma_neg, clip, alpha, grad, want_grad, scale_x, one):
        """``w_j l(x, y)`` (float64) for the target ``y = keep t + y0``, writing
        ``grad[row, j] = scale w_j dl/dx`` if wanted (a background element: t = y0, keep = 0)."""
        w = _math.cast_like(x, class_weight[j]) if has_cw else one
        pw = _math.cast_like(x, pos_weight[j]) if has_pw else pw0
        y = keep * _math.cast_like(x, t) + y0
        lj, gj = element(x, y, pw, gamma, gamma_neg, clip, alpha)
        if want_grad:
            grad[row, j] = scale_x * w * gj
        return float(w * lj)

    @device
    def unless_positive(contribution, j, indices, kp, k1):
        """``(contribution, kp)``, the contribution 0.0 if column ``j`` is a positive;
        ``kp`` walks the row's sorted positives ``indices[kp:k1]`` (j increasing per lane)."""
        while kp < k1 and indices[kp] < j:
            kp += 1
        if kp < k1 and indices[kp] == j:
            return 0.0, kp
        return contribution, kp

    @device
    def dense_row(logits, row, n_cols, lane, group_threads, targets, class_weight, pos_weight,
                  sw, options, params, grad, want_grad, shared, scratch):
        eps, grad_scale = options
        has_cw = class_weight.size > 0
        has_pw = pos_weight.size > 0
        like = logits[0, 0]
        one = _math.cast_like(like, 1.0)
        pw0 = _math.cast_like(like, params[0])
        gamma = _math.cast_like(like, params[1])
        gamma_neg = _math.cast_like(like, params[2])
        clip = (_math.cast_like(like, params[3]), _math.cast_like(like, params[5]),
                _math.cast_like(like, params[6]))
        alpha = _math.cast_like(like, params[4])
        y0 = _math.cast_like(like, 0.5 * eps)
        keep = _math.cast_like(like, 1.0 - eps)
        scale_x = _math.cast_like(like, sw * grad_scale)
        # 2. loss and 3. gradient in one pass
        acc = 0.0
        g = group_threads
        for j in range(lane, n_cols, 4 * g):        # LOADS_IN_FLIGHT (4) logits and targets
            j1 = j + g                               # loaded before the first is used
            j2 = j + 2 * g
            j3 = j + 3 * g
            x0, x1, x2, x3 = load4(logits, row, j, g, n_cols)
            t0, t1, t2, t3 = load4(targets, row, j, g, n_cols)
            acc += target_element(x0, t0, j, row, class_weight, has_cw, pos_weight, has_pw, pw0,
                                  keep, y0, gamma, gamma_neg, clip, alpha, grad, want_grad,
                                  scale_x, one)
            if j1 < n_cols:
                acc += target_element(x1, t1, j1, row, class_weight, has_cw, pos_weight, has_pw,
                                      pw0, keep, y0, gamma, gamma_neg, clip, alpha, grad,
                                      want_grad, scale_x, one)
            if j2 < n_cols:
                acc += target_element(x2, t2, j2, row, class_weight, has_cw, pos_weight, has_pw,
                                      pw0, keep, y0, gamma, gamma_neg, clip, alpha, grad,
                                      want_grad, scale_x, one)
            if j3 < n_cols:
                acc += target_element(x3, t3, j3, row, class_weight, has_cw, pos_weight, has_pw,
                                      pw0, keep, y0, gamma, gamma_neg, clip, alpha, grad,
                                      want_grad, scale_x, one)
        total, _, _ = group_sums(acc, 0.0, 0.0, group_threads, shared, scratch)
        return sw * total

    @device
    def sparse_row(logits, row, n_cols, lane, group_threads, k0, k1, indices, values,
                   class_weight, pos_weight, sw, options, params, grad, want_grad, pos_buf,
                   shared, scratch):
        eps, grad_scale = options
        has_values = values.size > 0
        has_cw = class_weight.size > 0
        has_pw = pos_weight.size > 0
        like = logits[0, 0]
        one = _math.cast_like(like, 1.0)
        pw0 = _math.cast_like(like, params[0])
        gamma = _math.cast_like(like, params[1])
        gamma_neg = _math.cast_like(like, params[2])
        clip = (_math.cast_like(like, params[3]), _math.cast_like(like, params[5]),
                _math.cast_like(like, params[6]))
        alpha = _math.cast_like(like, params[4])
        y0 = _math.cast_like(like, 0.5 * eps)
        keep = _math.cast_like(like, 1.0 - eps)
        zero = _math.cast_like(like, 0.0)
        scale = sw * grad_scale
        # 2. the positives' own terms, before any write (logits may alias grad)
        acc = 0.0
        for k in range(k0 + lane, k1, group_threads):
            c = indices[k]
            x = logits[row, c]
            y = keep * _math.cast_like(like, values[k] if has_values else 1.0) + y0
            pw = _math.cast_like(like, pos_weight[c]) if has_pw else pw0
            l_pos, g_pos = element(x, y, pw, gamma, gamma_neg, clip, alpha)
            w = class_weight[c] if has_cw else 1.0
            acc += w * float(l_pos)
            pos_buf[k] = scale * w * float(g_pos)
        cuda.syncthreads()
        # 2./3. the background pass: every logit as y'_0, gradient written once, the loss
        # of every logit but the positives
        use_pw = has_pw and eps > 0.0
        scale_x = _math.cast_like(like, scale)
        g = group_threads
        kp = k0
        for j in range(lane, n_cols, 4 * g):        # LOADS_IN_FLIGHT (4) logits loaded
            j1 = j + g                               # before the first is used
            j2 = j + 2 * g
            j3 = j + 3 * g
            x0, x1, x2, x3 = load4(logits, row, j, g, n_cols)
            c, kp = unless_positive(
                target_element(x0, y0, j, row, class_weight, has_cw, pos_weight, use_pw, pw0,
                               zero, y0, gamma, gamma_neg, clip, alpha, grad, want_grad,
                               scale_x, one), j, indices, kp, k1)
            acc += c
            if j1 < n_cols:
                c, kp = unless_positive(
                    target_element(x1, y0, j1, row, class_weight, has_cw, pos_weight, use_pw,
                                   pw0, zero, y0, gamma, gamma_neg, clip, alpha, grad,
                                   want_grad, scale_x, one), j1, indices, kp, k1)
                acc += c
            if j2 < n_cols:
                c, kp = unless_positive(
                    target_element(x2, y0, j2, row, class_weight, has_cw, pos_weight, use_pw,
                                   pw0, zero, y0, gamma, gamma_neg, clip, alpha, grad,
                                   want_grad, scale_x, one), j2, indices, kp, k1)
                acc += c
            if j3 < n_cols:
                c, kp = unless_positive(
                    target_element(x3, y0, j3, row, class_weight, has_cw, pos_weight, use_pw,
                                   pw0, zero, y0, gamma, gamma_neg, clip, alpha, grad,
                                   want_grad, scale_x, one), j3, indices, kp, k1)
                acc += c
        total, _, _ = group_sums(acc, 0.0, 0.0, group_threads, shared, scratch)
        if want_grad:
            for k in range(k0 + lane, k1, group_threads):
                grad[row, indices[k]] = _math.cast_like(like, pos_buf[k])
        return sw * total

    def dense_kernel(logits, targets, class_weight, pos_weight, sample_weight, options, params,
                     row_loss, grad, want_grad, group_threads):
        """options = (label_smoothing, grad_scale); params = (pos_weight, gamma, gamma_neg,
        clip, alpha, clip_hi, clip_lo); pos_weight: [C] or empty (then params[0])."""
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
            loss = dense_row(logits, r, n_classes if active else 0, lane, group_threads,
                             targets, class_weight, pos_weight,
                             sample_weight[r] if has_sw else 1.0, options, params, grad,
                             want_grad, shared, scratch)
            if active and lane == 0:
                row_loss[r] = loss

    def sparse_kernel(logits, indptr, indices, values, class_weight, pos_weight, sample_weight,
                      options, params, row_loss, grad, want_grad, pos_buf, group_threads):
        """As the dense kernel, targets in CSR form; pos_buf is float64 [nnz]."""
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
            loss = sparse_row(logits, r, n_classes if active else 0, lane, group_threads, k0,
                              k1, indices, values, class_weight, pos_weight,
                              sample_weight[r] if has_sw else 1.0, options, params, grad,
                              want_grad, pos_buf, shared, scratch)
            if active and lane == 0:
                row_loss[r] = loss

    dense_kernel.__name__ = dense_kernel.__qualname__ = prefix + "dense_kernel"
    sparse_kernel.__name__ = sparse_kernel.__qualname__ = prefix + "sparse_kernel"
    return cuda.jit(dense_kernel), cuda.jit(sparse_kernel)


bce_dense, bce_sparse = make_kernels(bce_element)
focal_dense, focal_sparse = make_kernels(focal_element)
#: focal with clip > 0 (probability shifting): kernels of their own, so that the shifting
#: branch's registers do not weigh on the default focal kernels (it spilled 24 bytes there)
focal_clip_dense, focal_clip_sparse = make_kernels(focal_clip_element, "clip_")
