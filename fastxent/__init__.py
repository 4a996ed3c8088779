"""fastxent: fused cross-entropy losses and their gradients for extreme multi-label batches.

Public names only; importing fastxent never changes Numba's global configuration.
"""
from ._version import __version__
from .api import (sigmoid_binary_cross_entropy, sigmoid_focal_loss, softmax_cross_entropy,
                  softmax_focal_loss)
from .targets import MultiLabel
from ._dispatch import available_backends
from .pipeline import LossAccumulator, evaluate_chunked
from ._threads import get_num_threads, num_threads, set_num_threads

__all__ = ["__version__", "MultiLabel", "softmax_cross_entropy", "softmax_focal_loss",
           "sigmoid_binary_cross_entropy", "sigmoid_focal_loss", "available_backends",
           "get_num_threads", "set_num_threads", "num_threads", "LossAccumulator",
           "evaluate_chunked"]
