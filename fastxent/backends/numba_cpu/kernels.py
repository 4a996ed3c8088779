"""Entry point of the Numba CPU backend: ``run(job)`` picks the kernel for a validated job
(``fastxent._checks.Canonical``), fills ``job.grad`` if set, and returns the row losses."""
import numpy as np

from .sigmoid import sigmoid_dense, sigmoid_sparse
from .softmax_focal import softmax_focal_dense, softmax_focal_sparse
from .softmax_xent import softmax_xent_dense, softmax_xent_sparse

_EMPTY_F64 = np.empty(0, dtype=np.float64)


def _or_empty(arr):
    return _EMPTY_F64 if arr is None else arr


def run(job):
    logits = job.logits
    n_rows, n_classes = logits.shape
    row_loss = np.empty(n_rows, dtype=np.float64)
    if n_rows == 0:
        return row_loss
    want_grad = job.grad is not None
    grad = job.grad if want_grad else np.empty((1, 0), dtype=logits.dtype)
    cw = _or_empty(job.class_weight)
    sw = _or_empty(job.sample_weight)
    sparse = job.kind == "sparse"
    if sparse:
        values = _or_empty(job.values)
        pos_buf = np.empty(job.indices.size, dtype=np.float64)
    family = job.family
    if family == "softmax_xent":
        cw_sum = float(cw.sum()) if job.class_weight is not None else float(n_classes)
        options = (job.label_smoothing, job.z_loss, job.grad_scale, cw_sum)
        if sparse:
            softmax_xent_sparse(logits, job.indptr, job.indices, values, cw, sw, options,
                                row_loss, grad, want_grad, pos_buf)
        else:
            softmax_xent_dense(logits, job.dense, cw, sw, options, row_loss, grad, want_grad)
    elif family == "softmax_focal":
        options = (job.label_smoothing, job.gamma, job.grad_scale)
        if sparse:
            softmax_focal_sparse(logits, job.indptr, job.indices, values, cw, sw, options,
                                 row_loss, grad, want_grad, pos_buf)
        else:
            softmax_focal_dense(logits, job.dense, cw, sw, options, row_loss, grad, want_grad)
    else:
        if family == "sigmoid_bce":
            params = (job.pos_weight_scalar,)
        else:
            params = (job.gamma, job.gamma_neg, job.clip, job.alpha)
        pw = _or_empty(job.pos_weight)
        options = (job.label_smoothing, job.grad_scale)
        if sparse:
            sigmoid_sparse(logits, job.indptr, job.indices, values, cw, pw, sw, options, params,
                           row_loss, grad, want_grad, pos_buf)
        else:
            sigmoid_dense(logits, job.dense, cw, pw, sw, options, params, row_loss, grad,
                          want_grad)
    return row_loss
