"""Public losses: check -> canonicalise targets -> dispatch -> kernel -> reduce.

Every function computes the loss and, with ``return_grad=True``, its exact gradient with respect
to the logits in the same fused pass. The formulas, target forms, weights and reductions are
specified in ``docs/losses.md``; the NumPy reference (``fastxent.reference``) implements them
literally and is the test oracle.
"""
from __future__ import annotations

from typing import Any, Optional, Union

import numpy as np

from . import _checks, _device, _dispatch
from ._checks import Canonical
from .targets import MultiLabel

ArrayLike = Any
Loss = Union[float, np.ndarray]

__all__ = ["softmax_cross_entropy", "sigmoid_binary_cross_entropy", "sigmoid_focal_loss",
           "softmax_focal_loss"]


def _softmax_job(family, logits, targets, ignore_index, class_weight, sample_weight):
    """Validate softmax-family inputs; returns (job, denominator of "mean", reference targets)."""
    x = _checks.logits(logits)
    n, c = x.shape
    cw = _checks.class_vector(class_weight, c, "class_weight")
    sw = _checks.row_vector(sample_weight, n, "sample_weight")
    job = Canonical(family=family, logits=x, kind="sparse", sample_weight=sw)
    kind, parts, denominator, ref_targets = _softmax_targets(targets, n, c, ignore_index, cw, sw)
    if kind == "dense":
        job.kind, job.dense = "dense", parts
    else:
        job.indptr, job.indices, job.values = parts
    return job, cw, denominator, ref_targets


def _softmax_targets(targets, n, c, ignore_index, cw, sw, check_dense=True):
    """Softmax-family targets -> (kind, kernel arrays, denominator D of "mean", reference targets).

    ``cw``/``sw`` are already validated (or None). D is defined in docs/losses.md (Reductions).
    """
    _checks.ignore_index(ignore_index)
    ml = _checks.sparse_targets(targets, n, c, unit_values=False)
    if ml is not None:
        _checks.ignore_index(ignore_index, "sparse")
        denominator = float(np.count_nonzero(ml.row_sums() > 0))
        return "sparse", (ml.indptr, ml.indices, ml.values), denominator, ml
    _checks.no_masked_entries(targets, "targets")
    y = np.asarray(targets)
    if y.dtype.kind in "iu":
        indptr, indices, valid = _checks.class_index_targets(y, n, c, int(ignore_index))
        weights = np.ones(n) if sw is None else sw
        if cw is not None:
            weights = weights[valid] * cw[indices]
        else:
            weights = weights[valid]
        return "sparse", (indptr, indices, None), float(np.sum(weights)), y
    if y.dtype.kind == "f" and y.ndim == 2:
        _checks.ignore_index(ignore_index, "probability")
        dense = _checks.dense_targets(y, n, c) if check_dense else y
        return "dense", dense, float(n), dense
    if y.dtype.kind == "f" and y.ndim == 1:
        raise TypeError("targets: class indices must be integers, got a float array [N]; "
                        "cast with .astype(np.int64), or pass probabilities as [N, C]")
    raise TypeError(f"targets must be class indices (int [N]), probabilities (float [N, C]) or "
                    f"sparse (MultiLabel / scipy.sparse), got {type(targets).__name__} of dtype "
                    f"{y.dtype} and shape {y.shape}")


def _denominator(loss: str, n_rows: int, n_classes: int, targets: Any, *, reduction: str,
                 class_weight=None, sample_weight=None, ignore_index: int = -100) -> float:
    """What ``reduction`` divides the summed row losses of this batch by (1.0 for "sum").

    Private: ``fastxent.pipeline`` and ``fastxent.dask`` add the sums and the denominators of
    row chunks so that chunked results equal one call. Dense targets are not re-validated here
    (the loss call on the same chunk validates them).
    """
    reduction = _checks.reduction(reduction)
    if reduction in ("sum", "none"):
        return 1.0
    if reduction == "batchmean":
        return float(n_rows)
    if loss in ("sigmoid_binary_cross_entropy", "sigmoid_focal_loss"):
        return float(n_rows * n_classes)
    if loss not in ("softmax_cross_entropy", "softmax_focal_loss"):
        raise ValueError(f"unknown loss {loss!r}; expected one of {__all__}")
    cw = _checks.class_vector(class_weight, n_classes, "class_weight")
    sw = _checks.row_vector(sample_weight, n_rows, "sample_weight")
    return _softmax_targets(targets, n_rows, n_classes, ignore_index, cw, sw,
                            check_dense=False)[2]


def _sigmoid_elements(logits: np.ndarray, targets: np.ndarray, pos_weight, return_grad: bool):
    """Private engine path of the elementwise (unreduced [N, C]) sigmoid cross-entropy used by
    ``fastxent.compat.tf``: ``(loss [N, C], grad or None)`` from the Numba kernel, or None when
    the Numba backend is not available (the caller then computes it with NumPy).

    ``logits``/``targets``: 2-D arrays of one float dtype and shape (validated by the caller; the
    targets may lie outside [0, 1] as TensorFlow allows); ``pos_weight``: a number or a [C] array.
    """
    if "numba" not in _dispatch.available_backends():
        return None
    x = np.ascontiguousarray(logits)
    y = np.ascontiguousarray(targets, dtype=x.dtype)
    q = np.asarray(pos_weight, dtype=x.dtype)
    if q.ndim != 0 and q.shape != (x.shape[1],):
        return None
    return _dispatch.call_numba(_dispatch.kernels("numba").run_elements, x, y, q, return_grad)


def _sigmoid_job(family, logits, targets, class_weight, sample_weight):
    x = _checks.logits(logits)
    n, c = x.shape
    job = Canonical(family=family, logits=x, kind="sparse",
                    class_weight=_checks.class_vector(class_weight, c, "class_weight"),
                    sample_weight=_checks.row_vector(sample_weight, n, "sample_weight"))
    ml = _checks.sparse_targets(targets, n, c, unit_values=True)
    if ml is not None:
        job.indptr, job.indices, job.values = ml.indptr, ml.indices, ml.values
        return job, ml
    _checks.no_masked_entries(targets, "targets")
    y = np.asarray(targets)
    if y.ndim != 2 or y.dtype.kind not in "fiub":
        raise TypeError(f"targets must be [N, C] values in [0, 1] or sparse positives "
                        f"(MultiLabel / scipy.sparse), got {type(targets).__name__} of dtype "
                        f"{y.dtype} and shape {y.shape}; for class indices use "
                        f"softmax_cross_entropy")
    job.kind = "dense"
    job.dense = _checks.dense_targets(y, n, c)
    return job, job.dense


def _caller_arrays(**arguments) -> list:
    """(name, array) of every array the caller passed: ``grad_out`` must not overlap any of
    them (validation may have copied or converted one, which hides the overlap from the job)."""
    found = []
    for name, value in arguments.items():
        if isinstance(value, MultiLabel):
            found += [(f"{name}.indptr", value.indptr), (f"{name}.indices", value.indices),
                      (f"{name}.values", value.values)]
        elif hasattr(value, "indptr") and hasattr(value, "indices"):     # scipy.sparse
            found += [(f"{name}.{part}", getattr(value, part, None))
                      for part in ("indptr", "indices", "data")]
        elif hasattr(value, "row") and hasattr(value, "col"):              # scipy COO
            found += [(f"{name}.{part}", getattr(value, part, None))
                      for part in ("row", "col", "data")]
        else:
            found.append((name, value))
    return [(name, arr) for name, arr in found if isinstance(arr, np.ndarray)]


def _run(job: Canonical, reduction: str, denominator: float, return_grad: bool,
         grad_out: Optional[np.ndarray], logits_in, backend: str, reference_call,
         caller_arrays=()):
    """Dispatch a validated job and reduce; ``reference_call(reduction, return_grad)`` runs the
    NumPy backend on the same (validated) inputs; ``caller_arrays``: ``_caller_arrays(...)``."""
    x = job.logits
    n = x.shape[0]
    return_grad = _checks.flag(return_grad, "return_grad")
    if grad_out is not None and not return_grad:
        raise ValueError("grad_out is only written with return_grad=True; pass return_grad=True")
    name = _dispatch.select(backend)
    grad = None
    if return_grad:
        others = list(caller_arrays)
        others += [("targets", job.dense), ("targets.indices", job.indices),
                   ("class_weight", job.class_weight), ("sample_weight", job.sample_weight),
                   ("pos_weight", job.pos_weight)]
        if x is not logits_in and isinstance(logits_in, np.ndarray):
            others.append(("logits (a non-contiguous view)", logits_in))
        grad = _checks.grad_buffer(grad_out, logits_in, x, others)
    if name == "numpy":
        out = reference_call(reduction, return_grad)
        loss, ref_grad = out if return_grad else (out, None)
        if grad is not None:
            np.copyto(grad, ref_grad, casting="unsafe")
        loss = loss.astype(x.dtype) if reduction == "none" else float(loss)
        return (loss, grad) if return_grad else loss
    if reduction == "mean":
        scale = 1.0 / denominator if denominator > 0 else 0.0
    elif reduction == "batchmean":
        scale = 1.0 / n if n > 0 else 0.0
    else:
        scale = 1.0
    job.grad_scale = scale
    job.grad = grad
    row_loss = _dispatch.run(name, job)      # on fastxent.get_num_threads() threads
    if reduction == "none":
        loss = row_loss.astype(x.dtype)
    else:
        loss = float(np.sum(row_loss)) * scale
    return (loss, grad) if return_grad else loss


@_device.route("softmax_xent")
def softmax_cross_entropy(logits: ArrayLike, targets: Any, *,
                          class_weight: Optional[ArrayLike] = None,
                          sample_weight: Optional[ArrayLike] = None,
                          ignore_index: int = -100, label_smoothing: float = 0.0,
                          z_loss: float = 0.0, reduction: str = "mean",
                          return_grad: bool = False, grad_out: Optional[np.ndarray] = None,
                          backend: str = "auto"):
    """Softmax cross-entropy from logits, with its gradient in the same pass.

    For a counted row ``n``, with ``lse_n = log sum_c exp(x_nc)`` and smoothed targets
    ``y'_c = (1 - label_smoothing) y_c + label_smoothing / C``::

        loss_n = sample_weight_n * ( sum_c class_weight_c y'_c (lse_n - x_nc)
                                     + z_loss * lse_n**2 )

    ``targets`` may be class indices (int [N]; ``ignore_index`` rows are skipped; PyTorch's
    ``F.cross_entropy`` semantics), probabilities (float [N, C]; every row counts), or sparse
    positives (``MultiLabel`` / scipy.sparse [N, C]; each row's values normalised to sum 1, rows
    without positives are skipped). ``reduction``: ``"none"`` (per row [N]), ``"sum"``, ``"mean"``
    (PyTorch's weighted mean; 0.0 when every row is skipped, where PyTorch gives NaN),
    ``"batchmean"`` (sum / N). With ``return_grad=True`` returns ``(loss, grad)``, grad = d loss /
    d logits, written into ``grad_out`` when given (which may be ``logits`` itself).

    >>> import numpy as np, fastxent
    >>> logits = np.array([[2.0, 1.0, 0.1], [0.5, 2.5, 0.3]], dtype=np.float32)
    >>> round(fastxent.softmax_cross_entropy(logits, np.array([0, 1])), 6)
    0.305382

    See docs/losses.md for every formula and the reductions' denominators.
    """
    reduction = _checks.reduction(reduction)
    job, cw, denominator, ref_targets = _softmax_job("softmax_xent", logits, targets,
                                                     ignore_index, class_weight, sample_weight)
    job.class_weight = cw
    job.label_smoothing = _checks.unit_interval(label_smoothing, "label_smoothing")
    job.z_loss = _checks.nonneg(z_loss, "z_loss")

    def reference_call(red, rg):
        from . import reference
        return reference.softmax_cross_entropy(
            job.logits, ref_targets, class_weight=cw, sample_weight=job.sample_weight,
            ignore_index=ignore_index, label_smoothing=job.label_smoothing, z_loss=job.z_loss,
            reduction=red, return_grad=rg)
    return _run(job, reduction, denominator, return_grad, grad_out, logits, backend,
                reference_call,
                caller_arrays=_caller_arrays(targets=targets, class_weight=class_weight,
                                            sample_weight=sample_weight))


@_device.route("softmax_focal")
def softmax_focal_loss(logits: ArrayLike, targets: Any, *, gamma: float = 2.0,
                       alpha: Union[None, float, ArrayLike] = None,
                       class_weight: Optional[ArrayLike] = None,
                       sample_weight: Optional[ArrayLike] = None,
                       ignore_index: int = -100, label_smoothing: float = 0.0,
                       reduction: str = "mean", return_grad: bool = False,
                       grad_out: Optional[np.ndarray] = None, backend: str = "auto"):
    """Categorical (softmax) focal loss from logits, with its gradient in the same pass::

        loss_n = sample_weight_n * sum_c alpha_c class_weight_c y'_c (1 - p_nc)**gamma
                 * (-log p_nc)

    computed stably from the logits (``1 - p`` as ``-expm1(log p)``). ``alpha``: None (1), a
    scalar, or an array [C]; a negative scalar disables it. Targets, smoothing, skipped rows and
    reductions are those of :func:`softmax_cross_entropy`; ``gamma=0, alpha=None`` is exactly
    softmax cross-entropy. See docs/losses.md.
    """
    reduction = _checks.reduction(reduction)
    job, cw, denominator, ref_targets = _softmax_job("softmax_focal", logits, targets,
                                                     ignore_index, class_weight, sample_weight)
    c = job.logits.shape[1]
    job.gamma = _checks.nonneg(gamma, "gamma")
    job.label_smoothing = _checks.unit_interval(label_smoothing, "label_smoothing")
    if alpha is not None and np.ndim(alpha) == 1:
        alpha_vec = _checks.class_vector(alpha, c, "alpha")
        if alpha_vec.size and alpha_vec.max() > 1:
            raise ValueError(f"alpha must be in [0, 1], found {alpha_vec.max()}")
        ref_alpha = alpha_vec
    else:
        a = _checks.alpha_scalar(alpha)
        alpha_vec = None if a < 0 else np.full(c, a)
        ref_alpha = None if a < 0 else a
    if alpha_vec is not None:
        job.class_weight = alpha_vec * cw if cw is not None else alpha_vec
    else:
        job.class_weight = cw

    def reference_call(red, rg):
        from . import reference
        return reference.softmax_focal_loss(
            job.logits, ref_targets, gamma=job.gamma, alpha=ref_alpha, class_weight=cw,
            sample_weight=job.sample_weight, ignore_index=ignore_index,
            label_smoothing=job.label_smoothing, reduction=red, return_grad=rg)
    return _run(job, reduction, denominator, return_grad, grad_out, logits, backend,
                reference_call,
                caller_arrays=_caller_arrays(alpha=alpha, targets=targets,
                                            class_weight=class_weight,
                                            sample_weight=sample_weight))


@_device.route("sigmoid_bce")
def sigmoid_binary_cross_entropy(logits: ArrayLike, targets: Any, *,
                                 pos_weight: Union[None, float, ArrayLike] = None,
                                 class_weight: Optional[ArrayLike] = None,
                                 sample_weight: Optional[ArrayLike] = None,
                                 label_smoothing: float = 0.0, reduction: str = "mean",
                                 return_grad: bool = False,
                                 grad_out: Optional[np.ndarray] = None, backend: str = "auto"):
    """Sigmoid binary cross-entropy from logits (one-vs-all), with its gradient in one pass::

        l_nc = sample_weight_n class_weight_c ( pos_weight_c y' softplus(-x) + (1 - y') softplus(x) )

    with ``y' = y (1 - label_smoothing) + label_smoothing / 2`` (Keras's binary smoothing, applied
    to the implicit zeros of sparse targets too). ``targets``: [N, C] values in [0, 1], or sparse
    positives (``MultiLabel`` / scipy.sparse: 1 or the stored value at the positives, 0 elsewhere;
    never densified). Row loss = sum over the C classes; ``"mean"`` divides by N * C (PyTorch's
    ``binary_cross_entropy_with_logits``), ``"batchmean"`` by N. See docs/losses.md.

    >>> import numpy as np, fastxent
    >>> x = np.array([[1.0, -1.0, 0.0]])
    >>> y = fastxent.MultiLabel.from_lists([[0]], n_classes=3)
    >>> round(fastxent.sigmoid_binary_cross_entropy(x, y, reduction="sum"), 6)
    1.319667
    """
    reduction = _checks.reduction(reduction)
    job, ref_targets = _sigmoid_job("sigmoid_bce", logits, targets, class_weight, sample_weight)
    n, c = job.logits.shape
    job.pos_weight, job.pos_weight_scalar = _checks.scalar_or_class_vector(pos_weight, c,
                                                                           "pos_weight")
    job.label_smoothing = _checks.unit_interval(label_smoothing, "label_smoothing")

    def reference_call(red, rg):
        from . import reference
        return reference.sigmoid_binary_cross_entropy(
            job.logits, ref_targets, pos_weight=pos_weight if pos_weight is None
            else (job.pos_weight if job.pos_weight is not None else job.pos_weight_scalar),
            class_weight=job.class_weight, sample_weight=job.sample_weight,
            label_smoothing=job.label_smoothing, reduction=red, return_grad=rg)
    return _run(job, reduction, float(n * c), return_grad, grad_out, logits, backend,
                reference_call,
                caller_arrays=_caller_arrays(targets=targets, pos_weight=pos_weight,
                                            class_weight=class_weight,
                                            sample_weight=sample_weight))


@_device.route("sigmoid_focal")
def sigmoid_focal_loss(logits: ArrayLike, targets: Any, *, gamma: float = 2.0,
                       alpha: Optional[float] = 0.25, gamma_neg: Optional[float] = None,
                       clip: float = 0.0, class_weight: Optional[ArrayLike] = None,
                       sample_weight: Optional[ArrayLike] = None, label_smoothing: float = 0.0,
                       reduction: str = "mean", return_grad: bool = False,
                       grad_out: Optional[np.ndarray] = None, backend: str = "auto"):
    """Sigmoid focal loss (Lin et al. 2017) and the asymmetric loss (Ridnik et al. 2021)::

        p = sigmoid(x);  p_m = max(p - clip, 0);  q = y' (1 - p) + (1 - y') p_m
        g = gamma y' + gamma_neg (1 - y');  ce = y' softplus(-x) - (1 - y') log(1 - p_m)
        l_nc = sample_weight_n class_weight_c alpha_t q**g ce,  alpha_t = alpha y' + (1-alpha)(1-y')

    ``alpha=None`` or negative disables balancing (torchvision); ``gamma_neg`` (default ``gamma``)
    and ``clip`` give the asymmetric loss. With the defaults this is torchvision's
    ``sigmoid_focal_loss``; ``gamma=0, alpha=None`` is exactly BCE. The gradient is the exact
    derivative (the focal factor is not detached). Targets and reductions as
    :func:`sigmoid_binary_cross_entropy`. See docs/losses.md.
    """
    reduction = _checks.reduction(reduction)
    job, ref_targets = _sigmoid_job("sigmoid_focal", logits, targets, class_weight,
                                    sample_weight)
    n, c = job.logits.shape
    job.gamma = _checks.nonneg(gamma, "gamma")
    job.gamma_neg = job.gamma if gamma_neg is None else _checks.nonneg(gamma_neg, "gamma_neg")
    job.clip = _checks.unit_interval(clip, "clip")
    job.alpha = _checks.alpha_scalar(alpha)
    job.label_smoothing = _checks.unit_interval(label_smoothing, "label_smoothing")

    def reference_call(red, rg):
        from . import reference
        return reference.sigmoid_focal_loss(
            job.logits, ref_targets, gamma=job.gamma, alpha=None if job.alpha < 0 else job.alpha,
            gamma_neg=job.gamma_neg, clip=job.clip, class_weight=job.class_weight,
            sample_weight=job.sample_weight, label_smoothing=job.label_smoothing,
            reduction=red, return_grad=rg)
    return _run(job, reduction, float(n * c), return_grad, grad_out, logits, backend,
                reference_call,
                caller_arrays=_caller_arrays(targets=targets, class_weight=class_weight,
                                            sample_weight=sample_weight))
