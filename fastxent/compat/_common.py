"""The math behind ``fastxent.compat.tf`` and ``fastxent.compat.keras``, written once.

Two kinds of formulas live here:

* **logits paths** (TensorFlow's ``tf.nn.*_with_logits`` and Keras's ``from_logits=True``, except
  the categorical focal loss): stable formulas. Whatever produces a per-row value runs on the fused
  engine (``fastxent.softmax_cross_entropy`` / ``sigmoid_binary_cross_entropy`` /
  ``sigmoid_focal_loss`` with ``reduction="none"``), with the class axis moved last. Elementwise
  outputs (``tf.nn.sigmoid_cross_entropy_with_logits``), and targets the engine refuses (values
  outside [0, 1], which TensorFlow and Keras accept without a check), use the NumPy form below
  or the float64 reference (``fastxent.reference``), which compute the same formulas.
* **probability paths** (Keras's ``from_logits=False``, and both Keras focal losses): Keras 3's
  float arithmetic literally, in the prediction's dtype (float32 for lists): clipping to
  ``[EPSILON, 1 - EPSILON]`` (``1 - 1e-7`` rounds to ``1 - 2**-23`` in float32), renormalisation of
  categorical predictions, then logs.

Every function returns ``(loss, grad)`` with ``grad = d sum(loss) / d prediction`` (same shape and
dtype as the prediction; ``None`` when not asked for). Because each output value depends on its
own slice only, that is the whole Jacobian's information. Where a clip is active the derivative is
zero, as TensorFlow's ``clip_by_value`` gradient gives (it passes the gradient for values exactly
on a bound).
"""
from __future__ import annotations

import numbers
from typing import Any, Optional, Tuple

import numpy as np

import fastxent
from fastxent import _checks, reference

EPSILON = 1e-7            # keras.config.epsilon()
Grad = Optional[np.ndarray]


# ============================================================================================
# input conversion and checks
# ============================================================================================

def as_prediction(value: Any, name: str) -> np.ndarray:
    """A float32/float64 NumPy array stays as it is; anything else real becomes float32.

    This follows Keras 3's ``ops.convert_to_tensor``: Python numbers and lists become ``floatx``
    (float32) and NumPy float64 arrays stay float64.
    """
    _checks.no_masked_entries(value, name)
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a real-valued array, got dtype {arr.dtype}")
    if isinstance(value, (np.ndarray, np.generic)) and arr.dtype in (np.float32, np.float64):
        return arr
    return arr.astype(np.float32)


def as_targets(value: Any, like: np.ndarray, name: str, like_name: str) -> np.ndarray:
    """Dense targets cast to ``like``'s dtype; their shape must be ``like``'s."""
    _checks.no_masked_entries(value, name)
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a real-valued array, got dtype {arr.dtype}")
    if arr.shape != like.shape:
        raise ValueError(f"{name} and {like_name} must have the same shape, got {name}.shape="
                         f"{arr.shape} and {like_name}.shape={like.shape}")
    return arr.astype(like.dtype, copy=False)


def as_class_ids(value: Any, name: str) -> np.ndarray:
    """Integer class ids as int64; floats are accepted when they hold whole numbers."""
    _checks.no_masked_entries(value, name)
    arr = np.asarray(value)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64, copy=False)
    if arr.dtype.kind == "f":
        if arr.size and not (np.all(np.isfinite(arr)) and np.all(arr == np.round(arr))):
            raise ValueError(f"{name} must hold whole class ids, found non-integer values "
                             f"(e.g. {arr[arr != np.round(arr)].flat[0]!r})")
        return arr.astype(np.int64)
    raise TypeError(f"{name} must be integer class ids, got dtype {arr.dtype}")


def class_axis(axis: Any, ndim: int, name: str = "axis") -> int:
    """``axis`` as a non-negative int; the array must be at least 1-D."""
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(axis).__name__} {axis!r}")
    if ndim < 1:
        raise ValueError("the predictions must be at least 1-D (the class axis), got a scalar")
    if not -ndim <= axis < ndim:
        raise ValueError(f"{name}={axis} is out of range for {ndim}-D predictions "
                         f"(valid: {-ndim} .. {ndim - 1})")
    return int(axis) % ndim


def real_number(value: Any, name: str, low: float = -np.inf, high: float = np.inf) -> float:
    """A finite real number in [low, high]."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    v = float(value)
    if not (np.isfinite(v) and low <= v <= high):
        raise ValueError(f"{name} must be a finite number in [{low}, {high}], got {v}")
    return v


def clip_bounds(dtype: np.dtype) -> Tuple[np.floating, np.floating]:
    """``(EPSILON, 1 - EPSILON)`` rounded to ``dtype``: float32 gives (1e-7, 1 - 2**-23)."""
    dt = np.dtype(dtype).type
    return dt(EPSILON), dt(1.0 - EPSILON)


def _in_unit_interval(y: np.ndarray) -> bool:
    return y.size == 0 or bool(y.min() >= 0 and y.max() <= 1)


def _to_rows(arr: np.ndarray, axis: int) -> np.ndarray:
    """[..., C, ...] -> [N, C] with the class axis last (a copy only when axis is not last)."""
    moved = np.moveaxis(arr, axis, -1)
    return moved.reshape(-1, moved.shape[-1])


def _from_rows(rows: np.ndarray, shape: Tuple[int, ...], axis: int) -> np.ndarray:
    """Inverse of ``_to_rows`` for a gradient [N, C] of an array of ``shape``."""
    moved = shape[:axis] + shape[axis + 1:] + (shape[axis],)
    return np.moveaxis(rows.reshape(moved), -1, axis)


def _lead_shape(shape: Tuple[int, ...], axis: int) -> Tuple[int, ...]:
    return shape[:axis] + shape[axis + 1:]


# ============================================================================================
# stable logits primitives (NumPy, in the input's dtype)
# ============================================================================================

def _sigmoid_parts(x: np.ndarray):
    """``(softplus(x), softplus(-x), sigmoid(x), sigmoid(-x))`` with the reference's stable
    primitives (accurate in both tails; they keep ``x``'s dtype)."""
    return (reference._softplus(x), reference._softplus(-x), reference._sigmoid(x),
            reference._sigmoid(-x))


def sigmoid_xent_elementwise(labels: np.ndarray, logits: np.ndarray, pos_weight: Any = 1.0,
                             return_grad: bool = False) -> Tuple[np.ndarray, Grad]:
    """Elementwise sigmoid cross-entropy with a positive-class weight ``q`` (broadcast)::

        loss = q * z * softplus(-x) + (1 - z) * softplus(x)
        d loss / dx = (1 - z) * sigmoid(x) - q * z * sigmoid(-x)

    With ``q = 1`` this is ``max(x, 0) - x z + log(1 + exp(-|x|))``
    (``tf.nn.sigmoid_cross_entropy_with_logits``, gradient ``sigmoid(x) - z``); with ``q`` it is
    ``tf.nn.weighted_cross_entropy_with_logits``, computed without TensorFlow's cancellation.
    """
    z, x = labels, logits
    q = np.asarray(pos_weight)
    if x.ndim >= 1 and x.size and (q.ndim == 0 or q.shape == x.shape[-1:]) \
            and np.shape(z) == x.shape:
        from ..api import _sigmoid_elements                  # the engine's fused kernel
        c = x.shape[-1]
        out = _sigmoid_elements(x.reshape(-1, c), np.reshape(z, (-1, c)), q, return_grad)
        if out is not None:
            loss, grad = out
            return loss.reshape(x.shape), (grad.reshape(x.shape) if return_grad else None)
    sp_pos, sp_neg, sig, sig_neg = _sigmoid_parts(x)
    q = np.asarray(pos_weight, dtype=x.dtype)
    loss = q * z * sp_neg + (1 - z) * sp_pos
    grad = ((1 - z) * sig - q * z * sig_neg).astype(x.dtype, copy=False) if return_grad else None
    return loss.astype(x.dtype, copy=False), grad


# ============================================================================================
# logits paths (engine)
# ============================================================================================

def softmax_xent_dense(labels: np.ndarray, logits: np.ndarray, axis: int,
                       label_smoothing: float = 0.0,
                       return_grad: bool = False) -> Tuple[np.ndarray, Grad]:
    """Softmax cross-entropy with dense labels along ``axis`` (``tf.nn.softmax_cross_entropy_with
    _logits``; Keras ``categorical_crossentropy(from_logits=True)``)::

        y'   = (1 - label_smoothing) y + label_smoothing / C      (C = logits.shape[axis])
        loss = -sum_c y'_c log_softmax(x)_c
        d loss / dx = (sum_c y'_c) softmax(x) - y'

    The gradient is the exact derivative: TensorFlow's fused kernel returns ``softmax(x) - y``,
    which is wrong for label rows that do not sum to 1.
    """
    shape = logits.shape
    n_classes = shape[axis]
    if n_classes == 0:
        raise ValueError(f"logits have no classes along axis {axis} (shape {shape})")
    x = _to_rows(logits, axis)
    y = _to_rows(labels, axis)
    if x.shape[0] == 0:
        return (np.zeros(_lead_shape(shape, axis), logits.dtype),
                np.zeros(shape, logits.dtype) if return_grad else None)
    if label_smoothing and (label_smoothing >= 1 or not _in_unit_interval(y)):
        y = y * (1 - label_smoothing) + label_smoothing / n_classes
        label_smoothing = 0.0
    if _in_unit_interval(y):
        out = fastxent.softmax_cross_entropy(x, y, label_smoothing=label_smoothing,
                                             reduction="none", return_grad=return_grad)
        loss, grad = out if return_grad else (out, None)
    else:   # TF and Keras accept any label values; the engine wants [0, 1]
        out = reference.softmax_cross_entropy(x, y, reduction="none", return_grad=return_grad)
        loss, grad = out if return_grad else (out, None)
        loss = loss.astype(x.dtype)
        grad = grad.astype(x.dtype) if return_grad else None
    loss = loss.reshape(_lead_shape(shape, axis))
    return loss, (_from_rows(grad, shape, axis) if return_grad else None)


def check_class_ids(labels: np.ndarray, n_classes: int, ignore: Optional[int], name: str):
    """Every id in [0, C) unless equal to ``ignore``; else ValueError naming ``name``."""
    valid = labels != ignore if ignore is not None else np.ones(labels.shape, bool)
    bad = valid & ((labels < 0) | (labels >= n_classes))
    if bad.any():
        where = tuple(int(i[0]) for i in np.nonzero(bad))
        extra = "" if ignore is None else f" and not ignore_class={ignore}"
        raise ValueError(f"{name}{list(where)} = {int(labels[where])} is not a class id in "
                         f"[0, {n_classes}){extra}")
    return valid


def softmax_xent_ids(labels: np.ndarray, logits: np.ndarray, axis: int,
                     ignore: Optional[int] = None,
                     return_grad: bool = False) -> Tuple[np.ndarray, Grad]:
    """Softmax cross-entropy with integer class ids (``tf.nn.sparse_softmax_cross_entropy_with
    _logits``; Keras ``sparse_categorical_crossentropy(from_logits=True)``)::

        loss = logsumexp(x) - x_t,   d loss / dx = softmax(x) - onehot(t)

    Positions whose id equals ``ignore`` get loss 0 and gradient 0 (Keras ``ignore_class``).
    ``labels`` has the logits' shape without ``axis`` and must be checked by the caller.
    """
    shape = logits.shape
    x = _to_rows(logits, axis)
    if x.shape[0] == 0:
        return (np.zeros(_lead_shape(shape, axis), logits.dtype),
                np.zeros(shape, logits.dtype) if return_grad else None)
    ignore_index = -100 if ignore is None else int(ignore)   # ids are checked: -100 never occurs
    out = fastxent.softmax_cross_entropy(x, labels.reshape(-1), ignore_index=ignore_index,
                                         reduction="none", return_grad=return_grad)
    loss, grad = out if return_grad else (out, None)
    loss = loss.reshape(_lead_shape(shape, axis))
    return loss, (_from_rows(grad, shape, axis) if return_grad else None)


def sigmoid_xent_mean(labels: np.ndarray, logits: np.ndarray, axis: int,
                      label_smoothing: float = 0.0,
                      return_grad: bool = False) -> Tuple[np.ndarray, Grad]:
    """Mean over ``axis`` of the elementwise sigmoid cross-entropy (Keras
    ``binary_crossentropy(from_logits=True)``), with Keras's binary smoothing
    ``y' = y (1 - label_smoothing) + label_smoothing / 2``::

        loss = mean_c [ y'_c softplus(-x_c) + (1 - y'_c) softplus(x_c) ]
        d loss / dx_c = (sigmoid(x_c) - y'_c) / C

    On the engine: its per-row value is the SUM over classes, divided here by C.
    """
    return _sigmoid_family_mean(labels, logits, axis, label_smoothing, None, return_grad)


def sigmoid_focal_mean(labels: np.ndarray, logits: np.ndarray, axis: int, gamma: float,
                       alpha: Optional[float], label_smoothing: float = 0.0,
                       return_grad: bool = False) -> Tuple[np.ndarray, Grad]:
    """Mean over ``axis`` of the binary focal loss from logits with a stable cross-entropy (Keras
    3 ``binary_focal_crossentropy(from_logits=True)`` on the TensorFlow backend; ``alpha=None``
    means no class balancing)::

        p = sigmoid(x);  1 - p_t = y (1 - p) + (1 - y) p
        ce = y softplus(-x) + (1 - y) softplus(x);  w = alpha y + (1 - alpha)(1 - y)  (or 1)
        loss = mean_c w (1 - p_t)**gamma ce

    This is ``fastxent.sigmoid_focal_loss(gamma=gamma, alpha=alpha)`` (exact gradient, the focal
    factor not detached): its per-row sums are divided here by C.
    """
    return _sigmoid_family_mean(labels, logits, axis, label_smoothing, (gamma, alpha),
                                return_grad)


def _sigmoid_family_mean(labels, logits, axis, label_smoothing, focal, return_grad):
    shape = logits.shape
    n_classes = shape[axis]
    lead = _lead_shape(shape, axis)
    if logits.size == 0:
        # Keras: the mean over an empty class axis is NaN; an empty batch gives an empty result
        fill = np.nan if n_classes == 0 else 0.0
        return (np.full(lead, fill, logits.dtype),
                np.zeros(shape, logits.dtype) if return_grad else None)
    x = _to_rows(logits, axis)
    y = _to_rows(labels, axis)
    # the engine wants targets in [0, 1] and smoothing below 1; Keras accepts anything, and the
    # float64 reference computes the same formulas for any values
    engine_ok = label_smoothing < 1 and _in_unit_interval(y)
    losses = fastxent if engine_ok else reference
    # the mean over the class axis as a sample weight 1 / C: the kernel scales the row sums and
    # the gradient in its one pass (no second pass over an N x C gradient)
    mean_weight = np.full(x.shape[0], 1.0 / n_classes)
    if focal is None:
        out = losses.sigmoid_binary_cross_entropy(
            x, y, label_smoothing=label_smoothing, sample_weight=mean_weight, reduction="none",
            return_grad=return_grad)
    else:
        gamma, alpha = focal
        out = losses.sigmoid_focal_loss(
            x, y, gamma=gamma, alpha=alpha, label_smoothing=label_smoothing,
            sample_weight=mean_weight, reduction="none", return_grad=return_grad)
    row_mean, grad = out if return_grad else (out, None)
    loss = np.asarray(row_mean).astype(logits.dtype).reshape(lead)
    if return_grad:
        grad = _from_rows(grad.astype(logits.dtype, copy=False), shape, axis)
    return loss, grad


# ============================================================================================
# probability paths (Keras 3, literally, in the prediction's dtype)
# ============================================================================================

def clipped_bce(y: np.ndarray, p: np.ndarray, legacy: bool = False,
                return_grad: bool = False) -> Tuple[np.ndarray, Grad]:
    """Elementwise binary cross-entropy of probabilities, Keras 3 (``legacy=False``)::

        o = clip(p, eps, 1 - eps);  loss = -(y log o + (1 - y) log(1 - o))

    or tf.keras / Keras 2 (``legacy=True``), which also adds eps inside the logs::

        loss = -(y log(o + eps) + (1 - y) log(1 - o + eps))

    d loss / dp = -y / o + (1 - y) / (1 - o) (with the ``+ eps`` in the legacy form) where
    eps <= p <= 1 - eps, and 0 where the clip is active.
    """
    lo, hi = clip_bounds(p.dtype)
    o = np.clip(p, lo, hi)
    shift = lo if legacy else p.dtype.type(0)
    loss = -(y * np.log(o + shift) + (1 - y) * np.log(1 - o + shift))
    grad = None
    if return_grad:
        active = (p >= lo) & (p <= hi)
        grad = np.where(active, -y / (o + shift) + (1 - y) / (1 - o + shift), 0)
        grad = grad.astype(p.dtype, copy=False)
    return loss.astype(p.dtype, copy=False), grad


def _renormalised(p: np.ndarray, axis: int):
    """``(o, s, active, q)``: ``s = sum_axis p``, ``o = p / s``, ``q = clip(o, eps, 1 - eps)``."""
    lo, hi = clip_bounds(p.dtype)
    s = np.sum(p, axis=axis, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        o = p / s
    return o, s, (o >= lo) & (o <= hi), np.clip(o, lo, hi)


def _through_renormalisation(grad_q: np.ndarray, o: np.ndarray, s: np.ndarray, axis: int):
    """d/dp from d/dq (already zero where clipped) through ``o = p / s``:
    ``(g - sum_axis(g o)) / s``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return (grad_q - np.sum(grad_q * o, axis=axis, keepdims=True)) / s


def clipped_categorical(y: np.ndarray, p: np.ndarray, axis: int,
                        return_grad: bool = False) -> Tuple[np.ndarray, Grad]:
    """Keras 3 categorical cross-entropy of probabilities (every backend)::

        o = p / sum_axis p;   q = clip(o, eps, 1 - eps);   loss = -sum_axis y log q

    so ``[0.2, 0.8]`` and ``[2, 8]`` give the same loss. Gradient: ``g = -y / q`` where the clip is
    inactive (else 0), then ``d loss / dp = (g - sum_axis(g o)) / sum_axis p``.
    """
    o, s, active, q = _renormalised(p, axis)
    loss = -np.sum(y * np.log(q), axis=axis)
    grad = None
    if return_grad:
        grad = _through_renormalisation(np.where(active, -y / q, 0), o, s, axis)
        grad = grad.astype(p.dtype, copy=False)
    return loss.astype(p.dtype, copy=False), grad


def clipped_sparse_categorical(labels: np.ndarray, p: np.ndarray, axis: int,
                               valid: Optional[np.ndarray] = None,
                               return_grad: bool = False) -> Tuple[np.ndarray, Grad]:
    """Keras 3 sparse categorical cross-entropy of probabilities, TensorFlow backend order
    (clip, then renormalise through ``sparse_softmax_cross_entropy_with_logits(log q)``)::

        q = clip(p, eps, 1 - eps);   loss = log(sum_axis q) - log q_t
        d loss / dp_j = (1 / sum q - [j = t] / q_t)  where the clip is inactive, else 0

    (the JAX, PyTorch and NumPy backends renormalise first, then clip: see docs/compat.md).
    ``valid`` (same shape as ``labels``) zeroes the loss and gradient of ignored positions.
    """
    lo, hi = clip_bounds(p.dtype)
    pm = np.moveaxis(p, axis, -1)
    q = np.clip(pm, lo, hi)
    t = labels if valid is None else np.where(valid, labels, 0)
    total = q.sum(axis=-1, dtype=p.dtype)
    q_t = np.take_along_axis(q, t[..., None], axis=-1)[..., 0]
    loss = np.log(total) - np.log(q_t)
    if valid is not None:
        loss = np.where(valid, loss, 0)
    grad = None
    if return_grad:
        g = np.broadcast_to((1 / total)[..., None], q.shape).copy()
        np.put_along_axis(g, t[..., None], (1 / total - 1 / q_t)[..., None], axis=-1)
        g = np.where((pm >= lo) & (pm <= hi), g, 0)
        if valid is not None:
            g = np.where(valid[..., None], g, 0)
        grad = np.moveaxis(g.astype(p.dtype, copy=False), -1, axis)
    return loss.astype(p.dtype, copy=False), grad


def clipped_binary_focal(y: np.ndarray, p: np.ndarray, gamma: float, alpha: Optional[float],
                         return_grad: bool = False) -> Tuple[np.ndarray, Grad]:
    """Keras 3 binary focal loss of probabilities, elementwise::

        bce = clipped_bce(y, p);   p_t = y p + (1 - y)(1 - p)   (unclipped p)
        loss = w (1 - p_t)**gamma bce,   w = alpha y + (1 - alpha)(1 - y)  (or 1: alpha None)
        d loss / dp = w ( gamma (1 - p_t)**(gamma - 1) (1 - 2y) bce + (1 - p_t)**gamma dbce/dp )
    """
    bce, dbce = clipped_bce(y, p, return_grad=return_grad)
    p_t = y * p + (1 - y) * (1 - p)
    omp = 1 - p_t
    focal = omp ** p.dtype.type(gamma)
    w = 1 if alpha is None else y * p.dtype.type(alpha) + (1 - y) * p.dtype.type(1 - alpha)
    loss = (w * focal * bce).astype(p.dtype, copy=False)
    if not return_grad:
        return loss, None
    with np.errstate(divide="ignore", invalid="ignore"):
        dfocal = (np.zeros_like(omp) if gamma == 0
                  else gamma * omp ** (gamma - 1) * (1 - 2 * y))
    grad = w * (dfocal * bce + focal * dbce)
    return loss, grad.astype(p.dtype, copy=False)


def softmax(x: np.ndarray, axis: int) -> np.ndarray:
    """Max-shifted softmax along ``axis`` in ``x``'s dtype (what ``ops.softmax`` returns)."""
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def clipped_categorical_focal(y: np.ndarray, p: np.ndarray, axis: int, alpha: np.ndarray,
                              gamma: float, from_logits: bool,
                              return_grad: bool = False) -> Tuple[np.ndarray, Grad]:
    """Keras 3 categorical focal loss (every backend; with ``from_logits`` the softmax is applied
    first and the clipped probability path still follows, so +-1000 logits saturate)::

        o = p / sum_axis p;   q = clip(o, eps, 1 - eps)
        loss = sum_axis alpha (1 - q)**gamma (-y log q)       (alpha broadcast like Keras)
        d/dq = alpha y ( gamma (1 - q)**(gamma - 1) log q - (1 - q)**gamma / q )  (0 if clipped)

    then through the renormalisation, and through the softmax ``p (g - sum_axis(g p))`` when
    ``from_logits``.
    """
    probs = softmax(p, axis) if from_logits else p
    o, s, active, q = _renormalised(probs, axis)
    one_minus = 1 - q
    g_ = p.dtype.type(gamma)
    modulating = one_minus ** g_
    neg_log = -np.log(q)
    loss = np.sum(modulating * alpha * (y * neg_log), axis=axis).astype(p.dtype, copy=False)
    if not return_grad:
        return loss, None
    with np.errstate(divide="ignore", invalid="ignore"):
        dmod = (np.zeros_like(q) if gamma == 0 else g_ * one_minus ** (g_ - 1))
    grad_q = np.where(active, alpha * y * (-dmod * neg_log - modulating / q), 0)
    grad = _through_renormalisation(grad_q, o, s, axis)
    if from_logits:
        grad = probs * (grad - np.sum(grad * probs, axis=axis, keepdims=True))
    return loss, grad.astype(p.dtype, copy=False)
