"""Keras 3's cross-entropy loss functions with their exact semantics, on fastxent.

The functional forms of ``keras.losses`` (not the ``Loss`` classes: no batch reduction, no
``sample_weight``), with Keras 3's signatures and defaults:

* ``binary_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1)``
* ``categorical_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1)``
* ``sparse_categorical_crossentropy(y_true, y_pred, from_logits=False, ignore_class=None,
  axis=-1)``
* ``binary_focal_crossentropy(y_true, y_pred, apply_class_balancing=False, alpha=0.25,
  gamma=2.0, from_logits=False, label_smoothing=0.0, axis=-1)``
* ``categorical_focal_crossentropy(y_true, y_pred, alpha=0.25, gamma=2.0, from_logits=False,
  label_smoothing=0.0, axis=-1)``

Each returns the per-sample losses, the input's shape without ``axis`` (a 0-d array for 1-D
input), in ``y_pred``'s dtype: Python lists and non-float arrays become float32 (Keras's
``floatx``), float64 arrays stay float64. What Keras does, and so what these do:

* probabilities (``from_logits=False``) are clipped to ``[1e-7, 1 - 1e-7]``, never rejected; in
  float32 ``1 - 1e-7`` rounds to ``1 - 2**-23``, so the largest per-element binary loss is
  ``-log(2**-23) = 15.942385`` for a prediction of 1 and ``-log(1e-7) = 16.118095`` for 0;
* categorical predictions are renormalised (``y_pred / sum(y_pred)``) before the clip, so
  ``[0.2, 0.8]`` and ``[2, 8]`` give the same loss;
* the binary losses are the MEAN over ``axis`` of the elementwise losses (not the sum);
* label smoothing goes toward 0.5 (binary) or ``1 / C`` (categorical, with ``C =
  y_true.shape[-1]`` as in Keras, even when ``axis`` is another axis);
* ``ignore_class`` positions get loss 0 (and gradient 0).

Where Keras's backends disagree, these follow the TensorFlow backend:

* ``binary_crossentropy(from_logits=True)`` is the stable ``sigmoid_cross_entropy_with_logits``
  (the NumPy backend applies a sigmoid and clips, so logits of +-1000 give 15.94 instead of 1000);
* ``binary_focal_crossentropy(from_logits=True)`` uses the stable cross-entropy too: the
  TensorFlow backend's ``sigmoid`` remembers its logits and ``binary_crossentropy`` uses them.
  The JAX, PyTorch and NumPy backends clip the sigmoid (logits +-1000 give 15.942385, not 1000);
  pass ``sigmoid(logits)`` with ``from_logits=False`` to get their numbers;
* ``sparse_categorical_crossentropy`` of probabilities clips, then renormalises (the other
  backends renormalise, then clip; the difference is at most ~C * 1e-7). Unlike the TensorFlow
  backend (``axis=-1`` only), any ``axis`` is accepted, as on the other backends.

``categorical_focal_crossentropy`` clips on every backend, also with ``from_logits=True`` (so it
saturates at ``alpha * 16.118 = 4.0295`` for +-1000 logits), and so does this one.

``return_grad=True`` returns ``(loss, grad)`` with ``grad = d sum(loss) / d y_pred`` (the
prediction's shape and dtype): the exact derivative of what is returned, zero where a clip is
active (TensorFlow's ``clip_by_value`` gradient). Differences from Keras's autodiff: none, except
``categorical_crossentropy(from_logits=True)`` with label rows not summing to 1, where the
TensorFlow backend's fused gradient ``softmax - y`` is wrong and the exact one is returned.

The ``from_logits=True`` paths of the three cross-entropies and of the binary focal loss run on
the fused engine; the probability paths are elementwise NumPy in ``y_pred``'s dtype, like Keras.
The formulas live in ``fastxent/compat/_common.py``, shared with ``fastxent.compat.tf``.

Beyond Keras: ``binary_crossentropy(..., legacy=True)`` gives tf.keras 2's probability formula
(``log(o + 1e-7)`` after the clip), whose ``binary_crossentropy([1], [0.1])`` is the often quoted
2.3025842 (Keras 3: 2.3025851). Bad input (shape mismatch, wrong axis, out-of-range class ids,
non-numeric arrays) raises ``ValueError`` / ``TypeError`` naming the argument.
"""
from __future__ import annotations

import warnings
from typing import Any, Optional, Tuple, Union

import numpy as np

from .. import _checks
from . import _common

__all__ = ["binary_crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy",
           "binary_focal_crossentropy", "categorical_focal_crossentropy"]

Result = Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]


def _inputs(y_true: Any, y_pred: Any, axis: Any):
    p = _common.as_prediction(y_pred, "y_pred")
    ax = _common.class_axis(axis, p.ndim)
    y = _common.as_targets(y_true, p, "y_true", "y_pred")
    return y, p, ax


def _smoothing(label_smoothing: Any) -> float:
    return _common.real_number(label_smoothing, "label_smoothing", 0.0, 1.0)




def _warn_single_class(p: np.ndarray, fn: str) -> None:
    if p.shape[-1] == 1:
        warnings.warn(f"In loss {fn}, expected y_pred.shape to be (batch_size, num_classes) with "
                      f"num_classes > 1. Received: y_pred.shape={p.shape}. Consider using "
                      f"'binary_crossentropy' if you only have 2 classes.", SyntaxWarning,
                      stacklevel=3)


def _categorical_smoothing(y: np.ndarray, label_smoothing: float) -> np.ndarray:
    """Keras: ``y (1 - ls) + ls / C`` with ``C = y.shape[-1]`` (whatever the axis)."""
    if not label_smoothing:
        return y
    return y * y.dtype.type(1 - label_smoothing) + y.dtype.type(label_smoothing / y.shape[-1])


def _binary_smoothing(y: np.ndarray, label_smoothing: float) -> np.ndarray:
    if not label_smoothing:
        return y
    return y * y.dtype.type(1 - label_smoothing) + y.dtype.type(0.5 * label_smoothing)


def _mean_over(loss: np.ndarray, grad: Optional[np.ndarray], axis: int, dtype) -> Tuple:
    n = loss.shape[axis]
    mean = np.mean(loss, axis=axis, dtype=np.float64).astype(dtype)
    if grad is not None:
        grad = (grad / dtype.type(n)).astype(dtype, copy=False)
    return mean, grad


def _done(loss: np.ndarray, grad: Optional[np.ndarray], return_grad: bool) -> Result:
    loss = np.asarray(loss)
    return (loss, grad) if _checks.flag(return_grad, "return_grad") else loss


def binary_crossentropy(y_true: Any, y_pred: Any, from_logits: bool = False,
                        label_smoothing: float = 0.0, axis: int = -1, *,
                        legacy: bool = False, return_grad: bool = False) -> Result:
    """Binary cross-entropy, averaged over ``axis`` (Keras 3 ``keras.losses.binary_crossentropy``).

    With ``y = y_true * (1 - label_smoothing) + 0.5 * label_smoothing``::

        from_logits=True:   l = y softplus(-x) + (1 - y) softplus(x)            (stable)
        from_logits=False:  o = clip(p, 1e-7, 1 - 1e-7);  l = -(y log o + (1 - y) log(1 - o))
        loss = mean_axis l

    ``legacy=True`` (probabilities only) gives tf.keras 2's ``-(y log(o + 1e-7) + (1 - y)
    log(1 - o + 1e-7))``. ``return_grad=True`` also returns ``d sum(loss) / d y_pred``.

    >>> binary_crossentropy([[0, 1], [0, 0]], [[0.6, 0.4], [0.4, 0.6]]).round(5)
    array([0.91629, 0.71356], dtype=float32)
    """
    y, p, ax = _inputs(y_true, y_pred, axis)
    ls = _smoothing(label_smoothing)
    if _checks.flag(from_logits, "from_logits"):
        return _done(*_common.sigmoid_xent_mean(y, p, ax, ls, return_grad), return_grad)
    loss, grad = _common.clipped_bce(_binary_smoothing(y, ls), p, _checks.flag(legacy, "legacy"),
                                     return_grad)
    return _done(*_mean_over(loss, grad, ax, p.dtype), return_grad)


def categorical_crossentropy(y_true: Any, y_pred: Any, from_logits: bool = False,
                             label_smoothing: float = 0.0, axis: int = -1, *,
                             return_grad: bool = False) -> Result:
    """Categorical cross-entropy along ``axis`` (Keras 3 ``keras.losses.categorical_crossentropy``).

    With ``y = y_true * (1 - label_smoothing) + label_smoothing / y_true.shape[-1]``::

        from_logits=True:   loss = -sum_axis y log_softmax(x)                   (stable)
        from_logits=False:  o = p / sum_axis p;  q = clip(o, 1e-7, 1 - 1e-7);
                            loss = -sum_axis y log q

    The renormalisation is why ``categorical_crossentropy([0, 1, 0, 0], [.1, .1, .8, .1])`` is
    ``-log(0.1 / 1.1) = 2.3978953``, not ``-log(0.1) = 2.3025851``. With logits, the gradient
    ``sum(y) softmax(x) - y`` is exact also when the rows of ``y`` do not sum to 1 (the TensorFlow
    backend's fused gradient ``softmax(x) - y`` is not).

    >>> print(categorical_crossentropy([0, 1, 0, 0], [0.1, 0.1, 0.8, 0.1]))
    2.3978953
    """
    y, p, ax = _inputs(y_true, y_pred, axis)
    ls = _smoothing(label_smoothing)
    from_logits = _checks.flag(from_logits, "from_logits")
    _warn_single_class(p, "categorical_crossentropy")
    if from_logits:
        if ax == p.ndim - 1:    # the engine smooths toward 1 / shape[axis] = 1 / shape[-1]
            return _done(*_common.softmax_xent_dense(y, p, ax, ls, return_grad), return_grad)
        y = _categorical_smoothing(y, ls)
        return _done(*_common.softmax_xent_dense(y, p, ax, 0.0, return_grad), return_grad)
    y = _categorical_smoothing(y, ls)
    return _done(*_common.clipped_categorical(y, p, ax, return_grad), return_grad)


def sparse_categorical_crossentropy(y_true: Any, y_pred: Any, from_logits: bool = False,
                                    ignore_class: Optional[int] = None, axis: int = -1, *,
                                    return_grad: bool = False) -> Result:
    """Categorical cross-entropy with integer class ids (Keras 3
    ``keras.losses.sparse_categorical_crossentropy``)::

        from_logits=True:   loss = logsumexp_axis(x) - x_t
        from_logits=False:  q = clip(p, 1e-7, 1 - 1e-7);  loss = log(sum_axis q) - log q_t

    ``y_true`` has ``y_pred``'s shape without ``axis`` (a trailing size-1 axis is squeezed, as in
    Keras); ids must lie in ``[0, C)`` except where equal to ``ignore_class``, whose positions get
    loss 0 and gradient 0. Float ids are accepted when they are whole numbers (Keras's ``Loss``
    classes pass ``y_true`` as float32). No ``label_smoothing`` (Keras has none here).

    >>> sparse_categorical_crossentropy([1, 2], [[0.05, 0.95, 0], [0.1, 0.8, 0.1]]).round(5)
    array([0.05129, 2.30259], dtype=float32)
    """
    p = _common.as_prediction(y_pred, "y_pred")
    ax = _common.class_axis(axis, p.ndim)
    ids = np.asarray(y_true)
    if ids.ndim == p.ndim and ids.ndim and ids.shape[-1] == 1:
        ids = ids[..., 0]
    ids = _common.as_class_ids(ids, "y_true")
    lead = p.shape[:ax] + p.shape[ax + 1:]
    if ids.shape != lead:
        raise ValueError(f"y_true must have y_pred's shape without axis {ax}, i.e. {lead} (one "
                         f"class id per sample), got y_true.shape={ids.shape}")
    if ignore_class is not None and (isinstance(ignore_class, (bool, np.bool_))
                                     or not isinstance(ignore_class, (int, np.integer))):
        raise TypeError(f"ignore_class must be None or an int, got {ignore_class!r}")
    ignore = None if ignore_class is None else int(ignore_class)
    valid = _common.check_class_ids(ids, p.shape[ax], ignore, "y_true")
    if _checks.flag(from_logits, "from_logits"):
        return _done(*_common.softmax_xent_ids(ids, p, ax, ignore, return_grad), return_grad)
    return _done(*_common.clipped_sparse_categorical(
        ids, p, ax, None if ignore is None else valid, return_grad), return_grad)


def _gamma(gamma: Any) -> float:
    return _common.real_number(gamma, "gamma", 0.0)


def binary_focal_crossentropy(y_true: Any, y_pred: Any, apply_class_balancing: bool = False,
                              alpha: float = 0.25, gamma: float = 2.0,
                              from_logits: bool = False, label_smoothing: float = 0.0,
                              axis: int = -1, *, return_grad: bool = False) -> Result:
    """Binary focal cross-entropy, averaged over ``axis`` (Keras 3
    ``keras.losses.binary_focal_crossentropy``).

    With ``y`` smoothed toward 0.5 and ``p = sigmoid(x)`` when ``from_logits``::

        p_t   = y p + (1 - y)(1 - p)
        bce   = y softplus(-x) + (1 - y) softplus(x)          (from_logits; TensorFlow backend)
              = -(y log o + (1 - y) log(1 - o)),  o = clip(p, 1e-7, 1 - 1e-7)   (probabilities)
        l     = w (1 - p_t)**gamma bce,   w = alpha y + (1 - alpha)(1 - y) if apply_class_balancing
                                          else 1   (alpha is ignored by default, as in Keras)
        loss  = mean_axis l

    >>> binary_focal_crossentropy([[0, 1], [0, 0]], [[0.6, 0.4], [0.4, 0.6]], gamma=2).round(5)
    array([0.32986, 0.2058 ], dtype=float32)
    """
    y, p, ax = _inputs(y_true, y_pred, axis)
    ls = _smoothing(label_smoothing)
    g = _gamma(gamma)
    balance = _checks.flag(apply_class_balancing, "apply_class_balancing")
    a = _common.real_number(alpha, "alpha", 0.0, 1.0)
    a = a if balance else None
    if _checks.flag(from_logits, "from_logits"):
        return _done(*_common.sigmoid_focal_mean(y, p, ax, g, a, ls, return_grad), return_grad)
    loss, grad = _common.clipped_binary_focal(_binary_smoothing(y, ls), p, g, a, return_grad)
    return _done(*_mean_over(loss, grad, ax, p.dtype), return_grad)


def categorical_focal_crossentropy(y_true: Any, y_pred: Any, alpha: Any = 0.25,
                                   gamma: float = 2.0, from_logits: bool = False,
                                   label_smoothing: float = 0.0, axis: int = -1, *,
                                   return_grad: bool = False) -> Result:
    """Categorical focal cross-entropy along ``axis`` (Keras 3
    ``keras.losses.categorical_focal_crossentropy``).

    With ``y`` smoothed toward ``1 / y_true.shape[-1]`` and ``p = softmax(x, axis)`` when
    ``from_logits``::

        o = p / sum_axis p;   q = clip(o, 1e-7, 1 - 1e-7)
        loss = sum_axis alpha (1 - q)**gamma (-y log q)

    ``alpha`` (a number or a per-class list) multiplies every class, not only the positives, and
    broadcasts against ``y_pred`` from the right as in Keras (a list lines up with the last
    axis). The clip applies with logits too, so +-1000 logits saturate at
    ``alpha * -log(1e-7) = 4.0295``, as on every Keras backend.

    >>> categorical_focal_crossentropy([[0, 1, 0], [0, 0, 1]], [[.05, .95, 0], [.1, .8, .1]]
    ...                                ).round(5)
    array([3.0000e-05, 4.6627e-01], dtype=float32)
    """
    y, p, ax = _inputs(y_true, y_pred, axis)
    ls = _smoothing(label_smoothing)
    g = _gamma(gamma)
    from_logits = _checks.flag(from_logits, "from_logits")
    _warn_single_class(p, "categorical_focal_crossentropy")
    a = np.asarray(alpha)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"alpha must be a number or a list of numbers, got {alpha!r}")
    try:
        fits = np.broadcast_shapes(a.shape, p.shape) == p.shape
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"alpha of shape {a.shape} does not broadcast to y_pred's shape "
                         f"{p.shape} (a per-class list lines up with the last axis, as in Keras)")
    y = _categorical_smoothing(y, ls)
    return _done(*_common.clipped_categorical_focal(y, p, ax, a.astype(p.dtype), g, from_logits,
                                                    return_grad), return_grad)
