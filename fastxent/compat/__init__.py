"""Framework-compatible cross-entropy helpers: each framework's exact numbers, on fastxent.

* ``fastxent.compat.tf``: TensorFlow's ``tf.nn`` ``softmax_cross_entropy_with_logits``,
  ``sparse_softmax_cross_entropy_with_logits``, ``sigmoid_cross_entropy_with_logits`` and
  ``weighted_cross_entropy_with_logits`` (unreduced, with an exact gradient);
* ``fastxent.compat.keras``: Keras 3's ``binary_crossentropy``, ``categorical_crossentropy``,
  ``sparse_categorical_crossentropy``, ``binary_focal_crossentropy`` and
  ``categorical_focal_crossentropy`` (clipping, renormalisation and per-sample means included).

See docs/compat.md for which helper to use when, and where the frameworks differ.
"""
from . import keras, tf

__all__ = ["keras", "tf"]
