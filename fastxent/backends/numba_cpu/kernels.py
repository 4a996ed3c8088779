"""Entry point of the Numba CPU backend: ``run(job)`` picks the kernel for a validated job
(``fastxent._checks.Canonical``), fills ``job.grad`` if set, and returns the row losses."""
import numba
import numpy as np

from ... import _config, _math

from .sigmoid import sigmoid_dense, sigmoid_elements, sigmoid_sparse
from .softmax_focal import softmax_focal_dense, softmax_focal_sparse
from ._rows import BLOCK_SCRATCH, GUARD, SCRATCH_ALIGN, row_buf_width, thread_buffers
from .softmax_xent import softmax_xent_dense, softmax_xent_sparse, softmax_xent_sparse_pipelined


_PADS = {}


def _nothing(dtype, shape=(0,)):
    """A zero-size array standing for an absent input (or an unwanted gradient). It points into
    the middle of a private allocation of ``2 * GUARD`` elements: a fresh ``np.empty(0)`` is a
    tiny allocation that may sit right below a buffer a kernel writes, and LLVM's address checks
    (``_rows.GUARD``) then ran the loop in its scalar form."""
    dtype = np.dtype(dtype)
    pad = _PADS.get(dtype)
    if pad is None:
        pad = _PADS.setdefault(dtype, np.zeros(2 * GUARD, dtype=dtype))
    return pad[GUARD:GUARD + 1][:0].reshape(shape)


def _pipelines(logits, grad):
    """Whether the class-index / CSR softmax CE with cached rows takes
    ``softmax_xent_sparse_pipelined``: out of place (in place, the cached rows write the
    gradient with plain stores right after reading the row)."""
    return grad.size > 0 and not np.shares_memory(logits, grad)


#: Elements of one of the pipelined softmax CE's two row buffers are rounded up to this many
#: bytes, so that the second one starts on a ``SCRATCH_ALIGN`` boundary too.
_LINE_PAIR_BYTES = SCRATCH_ALIGN


def _or_empty(arr, dtype=np.float64):
    """``arr`` as ``dtype`` or an empty array (``_nothing``). Per-class vectors read inside the
    element loops come in the logits' dtype: a float64 vector next to float32 logits halves
    the vector width LLVM picks for the whole loop."""
    return _nothing(dtype) if arr is None else arr.astype(dtype, copy=False)


def run(job):
    logits = job.logits
    n_rows, n_classes = logits.shape
    row_loss = np.empty(n_rows, dtype=np.float64)
    if n_rows == 0:
        return row_loss
    want_grad = job.grad is not None
    grad = job.grad if want_grad else _nothing(logits.dtype, (1, 0))
    # in place (grad_out=logits; the checks refuse any other overlap) the row functions read
    # a per-thread copy of each row (_rows.source_row); softmax CE's cached gradient needs none
    in_place = want_grad and grad.ctypes.data == logits.ctypes.data

    def copies(needed=True):
        if in_place and needed:
            return thread_buffers(numba.get_num_threads(), n_classes, logits.dtype)
        return _nothing(logits.dtype, (1, 0))

    cw = _or_empty(job.class_weight, logits.dtype)
    sw = _or_empty(job.sample_weight)
    sparse = job.kind == "sparse"
    if sparse:
        values = _or_empty(job.values)
        pos_buf = np.empty(job.indices.size, dtype=np.float64)
    family = job.family
    if family == "softmax_xent":
        # the sum of the weights the kernel reads (float32 weights for float32 logits)
        cw_sum = float(cw.sum(dtype=np.float64)) if cw.size else float(n_classes)
        options = (job.label_smoothing, job.z_loss, job.grad_scale, cw_sum,
                   float(_config.CACHED_ROW_BYTES))
        if sparse:
            cached = (want_grad and job.label_smoothing == 0.0
                      and n_classes * logits.itemsize <= _config.CACHED_ROW_BYTES)
            if cached and _pipelines(logits, grad):
                per = _LINE_PAIR_BYTES // logits.itemsize
                width = -(-row_buf_width(n_classes) // per) * per
                runs = numba.get_num_threads()
                row_bufs = thread_buffers(runs, 2 * width, logits.dtype)
                softmax_xent_sparse_pipelined(logits, job.indptr, job.indices, values, cw, sw,
                                              options, row_loss, grad, pos_buf,
                                              row_bufs.reshape(runs, 2, width))
                return row_loss
            row_bufs = (thread_buffers(numba.get_num_threads(), row_buf_width(n_classes),
                                       logits.dtype) if cached else _nothing(logits.dtype, (1, 0)))
            softmax_xent_sparse(logits, job.indptr, job.indices, values, cw, sw, options,
                                row_loss, grad, want_grad, pos_buf, row_bufs,
                                copies(not cached))
        else:
            cached = want_grad and n_classes * logits.itemsize <= _config.CACHED_ROW_BYTES
            row_bufs = (thread_buffers(numba.get_num_threads(), row_buf_width(n_classes),
                                       logits.dtype) if cached else _nothing(logits.dtype, (1, 0)))
            softmax_xent_dense(logits, job.dense, cw, sw, options, row_loss, grad, want_grad,
                               row_bufs, copies(not cached))
    elif family == "softmax_focal":
        options = (job.label_smoothing, job.gamma, job.grad_scale)
        if sparse:
            softmax_focal_sparse(logits, job.indptr, job.indices, values, cw, sw, options,
                                 row_loss, grad, want_grad, pos_buf, copies())
        else:
            softmax_focal_dense(logits, job.dense, cw, sw, options, row_loss, grad, want_grad,
                                copies())
    else:
        if family == "sigmoid_bce":
            params = (job.pos_weight_scalar,)
        else:
            params = (job.gamma, job.gamma_neg, job.alpha)     # (see sigmoid.element)
            if job.clip > 0:
                params += (job.clip,) + _math.clip_logit(job.clip, logits.dtype == np.float32)
        pw = _or_empty(job.pos_weight, logits.dtype)
        options = (job.label_smoothing, job.grad_scale)
        if sparse:
            block_bufs = thread_buffers(numba.get_num_threads(), BLOCK_SCRATCH, logits.dtype)
            block_bufs[...] = 1     # positive_block's masks (ones), then its staging area
            sigmoid_sparse(logits, job.indptr, job.indices, values, cw, pw, sw, options, params,
                           row_loss, grad, want_grad, pos_buf, block_bufs, copies(),
                           _config.SPARSE_SIGMOID_STORES)
        else:
            sigmoid_dense(logits, job.dense, cw, pw, sw, options, params, row_loss, grad,
                          want_grad, copies())
    return row_loss


def run_elements(x, y, pos_weight, return_grad):
    """Unreduced BCE with logits for ``fastxent.compat``: ``(loss [N, C], grad or None)``;
    x, y: C-contiguous, one float dtype; pos_weight: a 0-d or [C] array in that dtype."""
    if pos_weight.ndim == 0:
        pw, pw0 = _nothing(x.dtype), pos_weight[()]
    else:
        pw, pw0 = np.ascontiguousarray(pos_weight), x.dtype.type(1)
    loss = np.empty_like(x)
    grad = np.empty_like(x) if return_grad else _nothing(x.dtype, (1, 0))
    if x.size:
        sigmoid_elements(x, y, pw, pw0, loss, grad, return_grad)
    return loss, (grad if return_grad else None)
