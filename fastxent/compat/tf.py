"""TensorFlow's ``tf.nn`` cross-entropy helpers with their exact semantics, on fastxent.

Drop-in NumPy versions of

* ``softmax_cross_entropy_with_logits(labels, logits, axis=-1)``: dense (soft) labels;
* ``sparse_softmax_cross_entropy_with_logits(labels, logits)``: integer class ids;
* ``sigmoid_cross_entropy_with_logits(labels, logits)``: independent binary problems;
* ``weighted_cross_entropy_with_logits(labels, logits, pos_weight)``: the same, positives weighted.

Like TensorFlow they never reduce: the softmax helpers return one value per row (the class axis
removed), the sigmoid helpers one value per element. The dtype of ``logits`` is kept (float32 or
float64; other real input becomes float32) and ``labels`` are cast to it.

``return_grad=True`` returns ``(loss, grad)`` with ``grad = d sum(loss) / d logits`` (the
logits' shape and dtype): the exact derivative of what is returned. For the dense softmax helper
this is ``sum(labels) * softmax(logits) - labels``; TensorFlow's fused kernel returns
``softmax(logits) - labels`` instead, which is wrong whenever a label row does not sum to 1 (its
docstring warns about it). No gradient with respect to the labels is returned.

The softmax helpers run on the fused engine (``fastxent.softmax_cross_entropy``). The sigmoid
helpers return elementwise values, which the engine (whose per-row value is a sum over classes)
does not produce, so they are vectorised NumPy with the stable formula; so are the rare label
values outside [0, 1], which the engine refuses and TensorFlow accepts.

Deliberate differences from TensorFlow: out-of-range class ids raise ``ValueError`` (TensorFlow
raises on CPU and returns NaN on GPU); ``weighted_cross_entropy_with_logits`` returns the exact
value where TensorFlow's formula cancels in float32 (its docstring prints ``4.5776367e-05`` for
``labels=0, logits=-10``; the exact value, returned here, is ``4.5398899e-05``).
"""
from __future__ import annotations

from typing import Any, Optional, Tuple, Union

import numpy as np

from .. import _checks
from . import _common

__all__ = ["softmax_cross_entropy_with_logits", "sparse_softmax_cross_entropy_with_logits",
           "sigmoid_cross_entropy_with_logits", "weighted_cross_entropy_with_logits"]

Result = Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]


def _done(loss: np.ndarray, grad: Optional[np.ndarray], return_grad: bool) -> Result:
    return (loss, grad) if _checks.flag(return_grad, "return_grad") else loss


def softmax_cross_entropy_with_logits(labels: Any, logits: Any, axis: int = -1,
                                      name: Optional[str] = None, *,
                                      return_grad: bool = False) -> Result:
    """Softmax cross-entropy between ``logits`` and a label distribution along ``axis``::

        loss = -sum_axis labels * log_softmax(logits, axis)
        grad = sum_axis(labels) * softmax(logits) - labels        (d sum(loss) / d logits)

    ``labels`` has the logits' shape; each row should be a probability distribution, but any
    values are accepted, as in TensorFlow. The result has the logits' shape without ``axis``.
    The gradient is exact also for label rows that do not sum to 1, where TensorFlow's fused
    gradient (``softmax - labels``) is wrong. ``name`` is accepted for compatibility and ignored.

    >>> softmax_cross_entropy_with_logits([[1, 0, 0], [0, .8, .2]], [[4., 2, 1], [0, 5, 1]]
    ...                                   ).round(5)
    array([0.16985, 0.82474], dtype=float32)
    """
    x = _common.as_prediction(logits, "logits")
    y = _common.as_targets(labels, x, "labels", "logits")
    ax = _common.class_axis(axis, x.ndim)
    return _done(*_common.softmax_xent_dense(y, x, ax, return_grad=return_grad), return_grad)


def sparse_softmax_cross_entropy_with_logits(labels: Any, logits: Any,
                                             name: Optional[str] = None, *,
                                             return_grad: bool = False) -> Result:
    """Softmax cross-entropy with one integer class id per row (classes on the last axis)::

        loss = logsumexp(logits) - logits[labels]
        grad = softmax(logits) - onehot(labels)                   (d sum(loss) / d logits)

    ``labels`` has shape ``logits.shape[:-1]`` and ids in ``[0, C)``; anything else raises
    ``ValueError`` (TensorFlow raises on CPU, returns NaN on GPU). ``name`` is ignored.

    >>> sparse_softmax_cross_entropy_with_logits([0, 3], [[2., -5, .5, -.1], [0, 0, 1.9, 1.4]]
    ...                                          ).round(5)
    array([0.29751, 1.14483], dtype=float32)
    """
    x = _common.as_prediction(logits, "logits")
    _common.class_axis(-1, x.ndim, "logits' class axis")
    ids = _common.as_class_ids(labels, "labels")
    if ids.shape != x.shape[:-1]:
        raise ValueError(f"labels must have shape logits.shape[:-1] = {x.shape[:-1]} (one class "
                         f"id per row), got labels.shape={ids.shape}")
    _common.check_class_ids(ids, x.shape[-1], None, "labels")
    return _done(*_common.softmax_xent_ids(ids, x, x.ndim - 1, return_grad=return_grad),
                 return_grad)


def sigmoid_cross_entropy_with_logits(labels: Any, logits: Any, name: Optional[str] = None, *,
                                      return_grad: bool = False) -> Result:
    """Elementwise logistic loss (independent binary problems, e.g. multi-label)::

        loss = max(x, 0) - x * z + log(1 + exp(-|x|))        (x = logits, z = labels)
        grad = sigmoid(x) - z

    ``labels`` has the logits' shape; soft labels are allowed. ``name`` is ignored.

    >>> sigmoid_cross_entropy_with_logits([0., 1, .5], [1., -1, 0]).round(5)
    array([1.31326, 1.31326, 0.69315], dtype=float32)
    """
    x = _common.as_prediction(logits, "logits")
    z = _common.as_targets(labels, x, "labels", "logits")
    return _done(*_common.sigmoid_xent_elementwise(z, x, 1.0, return_grad), return_grad)


def weighted_cross_entropy_with_logits(labels: Any, logits: Any, pos_weight: Any,
                                       name: Optional[str] = None, *,
                                       return_grad: bool = False) -> Result:
    """Elementwise logistic loss with the positive term weighted by ``pos_weight`` ``q``::

        loss = q * z * softplus(-x) + (1 - z) * softplus(x)
             = (1 - z) x + (1 + (q - 1) z) log(1 + exp(-x))      (TensorFlow's form)
        grad = (1 - z) sigmoid(x) - q z sigmoid(-x)

    ``pos_weight`` is a number or an array broadcastable to the logits (e.g. one per class on the
    last axis). Computed without TensorFlow's float32 cancellation: for ``z = 0, x = -10`` this
    returns 4.5398899e-05 where TensorFlow prints 4.5776367e-05. ``name`` is ignored.
    """
    x = _common.as_prediction(logits, "logits")
    z = _common.as_targets(labels, x, "labels", "logits")
    q = np.asarray(pos_weight)
    if q.dtype.kind not in "biuf":
        raise TypeError(f"pos_weight must be a number or a real array, got dtype {q.dtype}")
    try:
        shape = np.broadcast_shapes(q.shape, x.shape)
    except ValueError:
        shape = None
    if shape != x.shape:
        raise ValueError(f"pos_weight of shape {q.shape} does not broadcast to the logits' shape "
                         f"{x.shape}")
    return _done(*_common.sigmoid_xent_elementwise(z, x, q.astype(x.dtype), return_grad),
                 return_grad)
