"""fastxent: fused cross-entropy losses and their gradients for extreme multi-label batches."""
from ._version import __version__
