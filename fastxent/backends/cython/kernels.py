"""Entry point of the Cython backend: ``run(job)`` picks the kernel for a validated job
(``fastxent._checks.Canonical``), fills ``job.grad`` if set, and returns the row losses.

Same semantics as ``backends/numba_cpu/kernels.py::run``. The thread count is an argument of every
kernel: ``job.extra["n_threads"]`` when the dispatcher set it, else ``fastxent.get_num_threads()``.
Dense targets of float32/float64 are read as they are; other dtypes (bool, integers, float16,
all exact in the logits' dtype since they hold values in [0, 1]) are converted once.

CPU variants: on x86-64, setup.py also builds the kernel modules with ``-march=x86-64-v4``
(AVX-512) and ``-march=x86-64-v3`` (AVX2 + FMA). The best one the running CPU supports
(``_support.cpu_level()``) is imported, else the baseline build. ``FASTXENT_CYTHON_ISA``
(``baseline``, ``x86-64-v3``, ``x86-64-v4``) caps the choice (it never picks a variant the CPU
cannot run). :data:`ISA` names the build in use.
"""
import importlib
import os

import numpy as np

from ... import _config, _math, _threads

_VARIANTS = (("x86-64-v4", 4, "._x86_64_v4"), ("x86-64-v3", 3, "._x86_64_v3"))


def _kernel_modules():
    """(ISA name, sigmoid, softmax_focal, softmax_xent modules) of the best usable build."""
    from ._support import cpu_level
    cap = os.environ.get("FASTXENT_CYTHON_ISA", "").strip().lower()
    level = min(cpu_level(), {"baseline": 1, "x86-64-v3": 3}.get(cap, 4))
    for name, need, package in _VARIANTS:
        if level < need:
            continue
        try:
            return (name,) + tuple(importlib.import_module(f"{package}.{leaf}", __package__)
                                   for leaf in ("sigmoid", "softmax_focal", "softmax_xent"))
        except ImportError:      # this variant was not built: try the next one
            continue
    from . import sigmoid, softmax_focal, softmax_xent
    return ("baseline", sigmoid, softmax_focal, softmax_xent)


try:
    from ._support import openmp_enabled
    ISA, _sigmoid, _softmax_focal, _softmax_xent = _kernel_modules()
except ImportError as exc:  # the extension modules were not built
    raise ImportError(
        f"the Cython extension modules are not built ({exc}); reinstall fastxent with a C "
        "compiler and Cython (`pip install -e .`), or build them in place with "
        "`python setup.py build_ext --inplace`") from exc

sigmoid_dense, sigmoid_sparse = _sigmoid.sigmoid_dense, _sigmoid.sigmoid_sparse
softmax_focal_dense = _softmax_focal.softmax_focal_dense
softmax_focal_sparse = _softmax_focal.softmax_focal_sparse
softmax_xent_dense = _softmax_xent.softmax_xent_dense
softmax_xent_sparse = _softmax_xent.softmax_xent_sparse
softmax_xent_sparse_pipelined = _softmax_xent.softmax_xent_sparse_pipelined
cached_row_width = _softmax_xent.cached_row_width

_EMPTY_F64 = np.empty(0, dtype=np.float64)

#: whether the kernels run in parallel (compiled with OpenMP)
OPENMP = openmp_enabled()


def _or_empty(arr):
    """float64 vector (the kernels read weights as float64), or an empty one for None."""
    return _EMPTY_F64 if arr is None else np.ascontiguousarray(arr, dtype=np.float64)


def _dense_targets(dense, dtype):
    if dense.dtype in (np.float32, np.float64):
        return dense
    return dense.astype(dtype)


def _pipelines(logits, grad):
    """Whether the class-index / CSR softmax CE with cached rows takes
    ``softmax_xent_sparse_pipelined``: out of place. In place the rows go one by one, as in
    the Numba backend (whose in-place cached rows write the gradient with plain stores into the
    lines the row's read has just brought in); for Cython that choice follows Numba's and was
    not measured on its own."""
    return grad.size > 0 and not np.shares_memory(logits, grad)


#: Elements of one of the pipelined softmax CE's two row buffers are rounded up to a whole
#: number of these bytes, so that the second one keeps the first one's alignment.
_LINE_BYTES = 64


def run(job):
    logits = job.logits
    n_rows, n_classes = logits.shape
    row_loss = np.empty(n_rows, dtype=np.float64)
    if n_rows == 0:
        return row_loss
    n_threads = int(job.extra.get("n_threads") or _threads.get_num_threads())
    want_grad = job.grad is not None
    grad = job.grad if want_grad else np.empty((1, 0), dtype=logits.dtype)
    cw = _or_empty(job.class_weight)
    sw = _or_empty(job.sample_weight)
    sparse = job.kind == "sparse"
    if sparse:
        values = _or_empty(job.values)
        pos_buf = np.empty(job.indices.size, dtype=np.float64)
    else:
        dense = _dense_targets(job.dense, logits.dtype)
    family = job.family
    if family == "softmax_xent":
        cw_sum = float(cw.sum()) if cw.size else float(n_classes)
        options = (job.label_smoothing, job.z_loss, job.grad_scale, cw_sum,
                   float(_config.CACHED_ROW_BYTES))
        if sparse:
            cached = (want_grad and job.label_smoothing == 0.0
                      and n_classes * logits.itemsize <= _config.CACHED_ROW_BYTES)
            if cached and _pipelines(logits, grad):
                per = _LINE_BYTES // logits.itemsize
                width = -(-cached_row_width(n_classes) // per) * per
                runs = n_threads if OPENMP else 1
                row_bufs = np.empty((runs, 2 * width), dtype=logits.dtype)
                softmax_xent_sparse_pipelined(logits, job.indptr, job.indices, values, cw, sw,
                                              options, row_loss, grad, pos_buf, row_bufs,
                                              n_threads)
                return row_loss
            row_bufs = np.empty((n_threads, cached_row_width(n_classes)) if cached else (1, 0),
                                dtype=logits.dtype)
            softmax_xent_sparse(logits, job.indptr, job.indices, values, cw, sw, options,
                                row_loss, grad, want_grad, pos_buf, row_bufs, n_threads)
        else:
            cached = want_grad and n_classes * logits.itemsize <= _config.CACHED_ROW_BYTES
            row_bufs = np.empty((n_threads, cached_row_width(n_classes)) if cached else (1, 0),
                                dtype=logits.dtype)
            softmax_xent_dense(logits, dense, cw, sw, options, row_loss, grad, want_grad,
                               row_bufs, n_threads)
    elif family == "softmax_focal":
        options = (job.label_smoothing, job.gamma, job.grad_scale)
        if sparse:
            softmax_focal_sparse(logits, job.indptr, job.indices, values, cw, sw, options,
                                 row_loss, grad, want_grad, pos_buf, n_threads)
        else:
            softmax_focal_dense(logits, dense, cw, sw, options, row_loss, grad, want_grad,
                                n_threads)
    else:
        if family == "sigmoid_bce":
            params = (job.pos_weight_scalar,)
        else:
            params = (job.gamma, job.gamma_neg, job.alpha, job.clip) + _math.clip_logit(
                job.clip, logits.dtype == np.float32)
        pw = _or_empty(job.pos_weight)
        options = (job.label_smoothing, job.grad_scale)
        if sparse:
            sigmoid_sparse(logits, job.indptr, job.indices, values, cw, pw, sw, options, params,
                           row_loss, grad, want_grad, pos_buf, n_threads,
                           _config.SPARSE_SIGMOID_STORES)
        else:
            sigmoid_dense(logits, dense, cw, pw, sw, options, params, row_loss, grad,
                          want_grad, n_threads)
    return row_loss
