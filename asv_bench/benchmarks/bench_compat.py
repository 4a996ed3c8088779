"""The Keras/TensorFlow compatibility helpers with logits against the main-API call they map to
(issue: within 1.5x of the engine). Forward + gradient, float32, one shape."""
import numpy as np

import fastxent
from fastxent.compat import keras, tf

N, C = 512, 32768


class CompatVsEngine:
    params = [["keras.sparse_categorical_crossentropy", "keras.categorical_crossentropy",
               "tf.softmax_cross_entropy_with_logits", "keras.binary_crossentropy",
               "keras.binary_focal_crossentropy", "tf.sigmoid_cross_entropy_with_logits"],
              ["compat", "engine"]]
    param_names = ["helper", "side"]

    def setup(self, helper, side):
        rng = np.random.default_rng(0)
        x = rng.standard_normal((N, C), dtype=np.float32)
        labels = rng.integers(0, C, N)
        onehot = np.zeros((N, C), np.float32)
        onehot[np.arange(N), labels] = 1
        multi = (rng.random((N, C)) < 1e-3).astype(np.float32)
        calls = {
            "keras.sparse_categorical_crossentropy": (
                lambda: keras.sparse_categorical_crossentropy(labels, x, from_logits=True,
                                                              return_grad=True),
                lambda: fastxent.softmax_cross_entropy(x, labels, reduction="none",
                                                       return_grad=True)),
            "keras.categorical_crossentropy": (
                lambda: keras.categorical_crossentropy(onehot, x, from_logits=True,
                                                       return_grad=True),
                lambda: fastxent.softmax_cross_entropy(x, onehot, reduction="none",
                                                       return_grad=True)),
            "tf.softmax_cross_entropy_with_logits": (
                lambda: tf.softmax_cross_entropy_with_logits(onehot, x, return_grad=True),
                lambda: fastxent.softmax_cross_entropy(x, onehot, reduction="none",
                                                       return_grad=True)),
            "keras.binary_crossentropy": (
                lambda: keras.binary_crossentropy(multi, x, from_logits=True, return_grad=True),
                lambda: fastxent.sigmoid_binary_cross_entropy(x, multi, reduction="none",
                                                              return_grad=True)),
            "keras.binary_focal_crossentropy": (
                lambda: keras.binary_focal_crossentropy(multi, x, from_logits=True,
                                                        return_grad=True),
                lambda: fastxent.sigmoid_focal_loss(x, multi, alpha=None, reduction="none",
                                                    return_grad=True)),
            "tf.sigmoid_cross_entropy_with_logits": (
                lambda: tf.sigmoid_cross_entropy_with_logits(multi, x, return_grad=True),
                lambda: fastxent.sigmoid_binary_cross_entropy(x, multi, reduction="none",
                                                              return_grad=True)),
        }
        self.call = calls[helper][0 if side == "compat" else 1]
        self.call()                                   # JIT warm-up

    def time_forward_and_gradient(self, helper, side):
        self.call()
