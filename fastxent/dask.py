"""fastxent's losses over ``dask.array`` logits chunked by rows (optional: needs ``dask[array]``).

The four functions have the names, arguments and defaults of the main API. Each row chunk is
one task that calls the fused kernel once (``reduction="sum"``, with the gradient when asked)
and returns its loss sum and its denominator (``fastxent.api._denominator``: the same
definition as one call); a Dask reduction adds them and divides once, so the loss equals one
in-memory call within float64 rounding. Everything runs on Dask's own scheduler (threads,
processes or ``dask.distributed``).

* ``logits``: a dask array [N, C] (a NumPy array is wrapped, in chunks of about 32 MiB); a
  chunked class axis is merged (``rechunk({1: -1})``): softmax needs whole rows.
* ``targets``: a dask or NumPy array (class indices [N] or dense [N, C]) rechunked to the
  logits' row chunks, or a :class:`fastxent.MultiLabel` / scipy.sparse matrix, split by the same
  row chunks (each piece travels with its task). ``sample_weight`` likewise.
* Results are lazy: a 0-d dask array for ``"mean"``/``"sum"``/``"batchmean"``, a dask array
  [N] for ``"none"``; with ``return_grad=True`` also the gradient, a dask array [N, C] chunked
  like the logits. Compute both together, ``dask.compute(loss, grad)``, to run each kernel
  once; store a large gradient with ``da.store`` / ``to_zarr`` rather than in memory.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

try:
    import dask.array as da
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError("fastxent.dask needs dask: pip install 'dask[array]'") from exc

from . import _checks, api
from .pipeline import row_slice
from .targets import as_multilabel

__all__ = list(api.__all__)

_SCALAR = ("mean", "sum", "batchmean")


# ------------------------------------------------------------------------------------------
# per-block tasks (module level: picklable for process-based schedulers)
# ------------------------------------------------------------------------------------------

def _block(logits, targets, *rest, loss, reduction, return_grad, has_weight, options):
    """One row chunk: (loss sum or row losses, denominator, n rows, gradient or None)."""
    sample_weight = rest[0] if has_weight else None
    function = getattr(api, loss)
    out = function(logits, targets, reduction="none" if reduction == "none" else "sum",
                   sample_weight=sample_weight, return_grad=return_grad, **options)
    value, grad = out if return_grad else (out, None)
    n, c = logits.shape
    denominator = api._denominator(loss, n, c, targets, reduction=reduction,
                                   class_weight=options.get("class_weight"),
                                   sample_weight=sample_weight,
                                   ignore_index=options.get("ignore_index", -100))
    return value, denominator, grad


def _partials(part):
    return np.array([[float(part[0]), part[1]]], dtype=np.float64)


def _rows(part):
    return part[0]


def _scale(totals, reduction):
    """1 / D as the API reduces (0.0 when D = 0); 1 for "sum" (whose D per chunk is 1)."""
    denominator = float(totals[1])
    if reduction in ("sum", "none"):
        return np.float64(1.0)
    return np.float64(1.0 / denominator if denominator > 0 else 0.0)


def _finish(totals, reduction):
    """The loss from (sum, denominator): sum * (1 / D)."""
    return np.float64(float(totals[0]) * float(_scale(totals, reduction)))


def _grad(part, scale):
    grad = part[2]
    scale = float(scale)
    if scale != 1.0:
        np.multiply(grad, scale, out=grad)       # our own buffer, used once
    return grad


# ------------------------------------------------------------------------------------------
# inputs
# ------------------------------------------------------------------------------------------

def _as_logits(logits: Any):
    if not isinstance(logits, da.Array):
        arr = np.asarray(logits)
        if arr.ndim != 2:
            raise ValueError(f"logits must be 2-D [N, C], got shape {arr.shape}")
        rows = max(1, (32 << 20) // max(1, arr.shape[1] * arr.dtype.itemsize))
        logits = da.from_array(arr, chunks=(rows, -1))
    if logits.ndim != 2:
        raise ValueError(f"logits must be a 2-D dask array [N, C], got shape {logits.shape}")
    if np.isnan(logits.shape[0]) or any(np.isnan(c) for c in logits.chunks[0]):
        raise ValueError("logits have unknown chunk sizes; call logits.compute_chunk_sizes()")
    if len(logits.chunks[1]) > 1:
        logits = logits.rechunk({1: -1})
    return logits


def _rowwise(value: Any, row_chunks, n_classes: int, name: str):
    """A row-aligned argument as (dask array with blocks matching the logits' rows, index)."""
    ml = as_multilabel(value, n_classes, n_rows=sum(row_chunks))
    if ml is not None:
        token = tokenize(ml.indptr, ml.indices, ml.values, ml.n_classes, row_chunks)
        key = f"fastxent-{name}-{token}"
        graph, start = {}, 0
        for i, rows in enumerate(row_chunks):
            graph[(key, i)] = row_slice(ml, start, start + rows)
            start += rows
        array = da.Array(HighLevelGraph.from_collections(key, graph, dependencies=[]), key,
                         chunks=(row_chunks,), meta=np.empty((0,), dtype=object))
        return array, "i"
    if not isinstance(value, da.Array):
        value = np.asarray(value)
    if value.ndim == 0 or value.shape[0] != sum(row_chunks):
        raise ValueError(f"{name} has shape {value.shape} but the logits have "
                         f"{sum(row_chunks)} rows; they must match")
    if not isinstance(value, da.Array):
        value = da.from_array(value, chunks=(row_chunks,) + tuple((s,) for s in value.shape[1:]))
    if value.ndim == 1:
        return value.rechunk((row_chunks,)), "i"
    if value.ndim == 2:
        return value.rechunk((row_chunks, (value.shape[1],))), "ij"
    raise ValueError(f"{name} must be [N] or [N, C], got shape {value.shape}")


def _compute(loss: str, logits: Any, targets: Any, sample_weight: Any, reduction: str,
             return_grad: bool, grad_out: Any, options: dict):
    return_grad = _checks.flag(return_grad, "return_grad")
    if grad_out is not None:
        raise ValueError("grad_out is not taken by fastxent.dask: the gradient is returned as "
                         "a dask array; write it with da.store(grad, target)")
    if reduction not in _SCALAR + ("none",):
        raise ValueError(f"reduction must be one of {_SCALAR + ('none',)}, got {reduction!r}")
    logits = _as_logits(logits)
    row_chunks = logits.chunks[0]
    n, c = logits.shape
    args = [logits, "ij"]
    args += _rowwise(targets, row_chunks, c, "targets")
    if sample_weight is not None:
        args += _rowwise(sample_weight, row_chunks, c, "sample_weight")
    token = tokenize(loss, reduction, return_grad, options, *args[::2])
    fused = da.blockwise(_block, "i", *args, dtype=object, meta=np.empty((0,), dtype=object),
                         concatenate=True, align_arrays=False, name=f"fastxent-{loss}-{token}",
                         loss=loss, reduction=reduction, return_grad=return_grad,
                         has_weight=sample_weight is not None, options=options)
    n_blocks = len(row_chunks)
    if reduction == "none":
        result = fused.map_blocks(_rows, dtype=logits.dtype,
                                  meta=np.empty((0,), dtype=logits.dtype))
        totals = None
    else:
        partials = fused.map_blocks(_partials, new_axis=1, chunks=((1,) * n_blocks, (2,)),
                                    dtype=np.float64, meta=np.empty((0, 0), dtype=np.float64))
        totals = partials.sum(axis=0)
        result = totals.map_blocks(_finish, reduction, drop_axis=0, dtype=np.float64,
                                   meta=np.empty((), dtype=np.float64))
    if not return_grad:
        return result
    if totals is None:
        scale = np.float64(1.0)
    else:
        scale = totals.map_blocks(_scale, reduction, drop_axis=0, dtype=np.float64,
                                  meta=np.empty((), dtype=np.float64))
    grad = da.blockwise(_grad, "ij", fused, "i", scale, None if totals is None else "",
                        new_axes={"j": c}, dtype=logits.dtype,
                        meta=np.empty((0, 0), dtype=logits.dtype))
    return result, grad


# ------------------------------------------------------------------------------------------
# the public functions (same names, arguments and defaults as fastxent's main API)
# ------------------------------------------------------------------------------------------

def softmax_cross_entropy(logits, targets, *, class_weight=None, sample_weight=None,
                          ignore_index: int = -100, label_smoothing: float = 0.0,
                          z_loss: float = 0.0, reduction: str = "mean",
                          return_grad: bool = False, grad_out=None, backend: str = "auto"):
    """:func:`fastxent.softmax_cross_entropy` over row chunks of a dask array (lazy result)."""
    options = dict(class_weight=class_weight, ignore_index=ignore_index,
                   label_smoothing=label_smoothing, z_loss=z_loss, backend=backend)
    return _compute("softmax_cross_entropy", logits, targets, sample_weight, reduction,
                    return_grad, grad_out, options)


def softmax_focal_loss(logits, targets, *, gamma: float = 2.0, alpha=None, class_weight=None,
                       sample_weight=None, ignore_index: int = -100,
                       label_smoothing: float = 0.0, reduction: str = "mean",
                       return_grad: bool = False, grad_out=None, backend: str = "auto"):
    """:func:`fastxent.softmax_focal_loss` over row chunks of a dask array (lazy result)."""
    options = dict(gamma=gamma, alpha=alpha, class_weight=class_weight,
                   ignore_index=ignore_index, label_smoothing=label_smoothing, backend=backend)
    return _compute("softmax_focal_loss", logits, targets, sample_weight, reduction,
                    return_grad, grad_out, options)


def sigmoid_binary_cross_entropy(logits, targets, *, pos_weight=None, class_weight=None,
                                 sample_weight=None, label_smoothing: float = 0.0,
                                 reduction: str = "mean", return_grad: bool = False,
                                 grad_out=None, backend: str = "auto"):
    """:func:`fastxent.sigmoid_binary_cross_entropy` over row chunks of a dask array (lazy)."""
    options = dict(pos_weight=pos_weight, class_weight=class_weight,
                   label_smoothing=label_smoothing, backend=backend)
    return _compute("sigmoid_binary_cross_entropy", logits, targets, sample_weight, reduction,
                    return_grad, grad_out, options)


def sigmoid_focal_loss(logits, targets, *, gamma: float = 2.0, alpha: Optional[float] = 0.25,
                       gamma_neg: Optional[float] = None, clip: float = 0.0, class_weight=None,
                       sample_weight=None, label_smoothing: float = 0.0,
                       reduction: str = "mean", return_grad: bool = False, grad_out=None,
                       backend: str = "auto"):
    """:func:`fastxent.sigmoid_focal_loss` over row chunks of a dask array (lazy result)."""
    options = dict(gamma=gamma, alpha=alpha, gamma_neg=gamma_neg, clip=clip,
                   class_weight=class_weight, label_smoothing=label_smoothing, backend=backend)
    return _compute("sigmoid_focal_loss", logits, targets, sample_weight, reduction,
                    return_grad, grad_out, options)
