"""Losses over data that arrives in pieces: a streaming accumulator and chunked evaluation.

Every reduction of fastxent is ``sum_n loss_n / D`` where the denominator ``D`` is a sum over
rows too (docs/losses.md, Reductions): ``N * C`` for the sigmoid family's ``"mean"``, the
weighted count of counted rows for the softmax family's ``"mean"``, ``N`` for ``"batchmean"``,
1 for ``"sum"``. So the loss of a large batch is recovered exactly from row chunks by adding the
chunks' loss sums and their denominators, then dividing once:

* :class:`LossAccumulator` adds ``(sum, denominator)`` over many batches (an evaluation loop, a
  data loader, row chunks of one batch); ``result()`` equals one call on everything at once
  within float64 rounding (the sums are compensated);
* :func:`evaluate_chunked` runs a loss over a batch too large for memory (e.g. logits memory
  mapped from a ``.npy`` file with ``np.load(path, mmap_mode="r")``) chunk by chunk with bounded
  memory, optionally writing the gradient of the whole batch's loss chunk by chunk into a buffer
  you own (e.g. ``np.lib.format.open_memmap(path, mode="w+", ...)``).

Chunks of a memory map are passed to the kernels as views: nothing is copied.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional, Union

import numpy as np

from . import _checks, api
from .targets import MultiLabel, as_multilabel

__all__ = ["LossAccumulator", "evaluate_chunked"]

_LOSSES = {name: getattr(api, name) for name in api.__all__}
_SCALAR_REDUCTIONS = ("mean", "sum", "batchmean")
_FORBIDDEN = ("reduction", "return_grad", "grad_out", "sample_weight")


def _resolve_loss(loss: Union[str, Callable]) -> tuple[str, Callable]:
    """``loss`` as (public name, function): a name of the four losses, or one of them (or a
    callable with the same signature whose ``__name__`` is one of the names)."""
    if isinstance(loss, str):
        if loss not in _LOSSES:
            raise ValueError(f"loss must be one of {tuple(_LOSSES)}, got {loss!r}")
        return loss, _LOSSES[loss]
    name = getattr(loss, "__name__", None)
    if not callable(loss) or name not in _LOSSES:
        raise TypeError(f"loss must be the name of a fastxent loss {tuple(_LOSSES)} or one of "
                        f"those functions, got {loss!r}")
    return name, loss


def _check_options(options: dict) -> None:
    bad = [key for key in options if key in _FORBIDDEN]
    if bad:
        raise TypeError(f"{bad[0]} is not a loss option here: pass reduction to the constructor "
                        f"and sample_weight / return_grad / grad_out per call")


def row_slice(targets: Any, start: int, stop: int) -> Any:
    """Rows ``start:stop`` of targets: a view of an array, a new :class:`MultiLabel` sharing
    the positives' arrays (its ``indptr`` is shifted), or ``None`` for ``None``."""
    if targets is None:
        return None
    if isinstance(targets, MultiLabel):
        lo, hi = int(targets.indptr[start]), int(targets.indptr[stop])
        values = None if targets.values is None else targets.values[lo:hi]
        return MultiLabel(targets.indptr[start:stop + 1] - lo, targets.indices[lo:hi],
                          targets.n_classes, values)
    return targets[start:stop]


class _CompensatedSum:
    """Neumaier's compensated sum of Python floats (error independent of the number of terms)."""
    __slots__ = ("total", "error")

    def __init__(self) -> None:
        self.total = 0.0
        self.error = 0.0

    def add(self, value: float) -> None:
        t = self.total + value
        if not math.isfinite(t):             # inf or NaN: no compensation (inf - inf = NaN)
            self.total, self.error = t, 0.0
            return
        if abs(self.total) >= abs(value):
            self.error += (self.total - t) + value
        else:
            self.error += (value - t) + self.total
        self.total = t

    @property
    def value(self) -> float:
        return self.total + self.error if math.isfinite(self.total) else self.total


def _same_options(a: dict, b: dict) -> bool:
    """Whether two option dicts are equal (arrays compared by value)."""
    if a.keys() != b.keys():
        return False
    for key in a:
        x, y = a[key], b[key]
        if x is y:
            continue
        if x is None or y is None:
            return False
        try:
            if not np.array_equal(np.asarray(x), np.asarray(y), equal_nan=True):
                return False
        except TypeError:                    # not numeric: compare as values
            if x != y:
                return False
    return True


class LossAccumulator:
    """Sum a fastxent loss over many batches; ``result()`` equals one call on all rows at once.

    Parameters
    ----------
    loss : str or callable
        ``"softmax_cross_entropy"``, ``"softmax_focal_loss"``, ``"sigmoid_binary_cross_entropy"``
        or ``"sigmoid_focal_loss"`` (or the function itself).
    reduction : {"mean", "sum", "batchmean"}
        What ``result()`` returns, with the meaning of one call (docs/losses.md).
    **options
        The loss's options that hold for every batch (``class_weight``, ``ignore_index``,
        ``label_smoothing``, ``pos_weight``, ``gamma``, ``alpha``, ``backend``, ...).
        ``sample_weight`` is per row, so it is given to :meth:`update`.

    Examples
    --------
    >>> import numpy as np, fastxent
    >>> rng = np.random.default_rng(0)
    >>> logits = rng.standard_normal((10, 4))
    >>> labels = np.array([0, 1, 2, 3, -100, 0, 1, 2, 3, 0])
    >>> acc = fastxent.LossAccumulator("softmax_cross_entropy", class_weight=[1, 2, 3, 4])
    >>> for start in range(0, 10, 3):
    ...     _ = acc.update(logits[start:start + 3], labels[start:start + 3])
    >>> one_call = fastxent.softmax_cross_entropy(logits, labels, class_weight=[1, 2, 3, 4])
    >>> bool(abs(acc.result() - one_call) < 1e-12)
    True
    """

    def __init__(self, loss: Union[str, Callable] = "softmax_cross_entropy", *,
                 reduction: str = "mean", **options: Any) -> None:
        self.loss, self._function = _resolve_loss(loss)
        if reduction not in _SCALAR_REDUCTIONS:
            raise ValueError(f"reduction must be one of {_SCALAR_REDUCTIONS} for an accumulator, "
                             f"got {reduction!r}")
        _check_options(options)
        self.reduction = reduction
        self.options = options
        self.reset()

    def reset(self) -> None:
        """Forget every batch seen so far."""
        self._sum = _CompensatedSum()
        self._denominator = _CompensatedSum()
        self.n_rows = 0
        self.n_batches = 0

    def denominator_of(self, n_rows: int, n_classes: int, targets: Any,
                       sample_weight: Optional[Any] = None) -> float:
        """What this accumulator's reduction divides the loss sum of such a batch by."""
        return api._denominator(self.loss, n_rows, n_classes, targets, reduction=self.reduction,
                                class_weight=self.options.get("class_weight"),
                                sample_weight=sample_weight,
                                ignore_index=self.options.get("ignore_index", -100))

    def update(self, logits: Any, targets: Any, *, sample_weight: Optional[Any] = None,
               return_grad: bool = False, grad_out: Optional[np.ndarray] = None):
        """Add one batch; returns its summed loss (and, with ``return_grad``, the gradient of
        that sum, written into ``grad_out`` if given).

        The gradient of the final ``"mean"`` is this gradient times ``1 / denominator`` once
        every batch is in (:func:`evaluate_chunked` does that for you).
        """
        return_grad = _checks.flag(return_grad, "return_grad")
        out = self._function(logits, targets, reduction="sum", sample_weight=sample_weight,
                             return_grad=return_grad, grad_out=grad_out, **self.options)
        batch_sum = out[0] if return_grad else out
        shape = np.shape(logits)
        self.add(batch_sum, self.denominator_of(shape[0], shape[1], targets, sample_weight),
                 shape[0])
        return out

    def add(self, loss_sum: float, denominator: float, n_rows: int = 0) -> None:
        """Add a batch's summed loss and denominator computed elsewhere (another process)."""
        self._sum.add(float(loss_sum))
        self._denominator.add(float(denominator))
        self.n_rows += int(n_rows)
        self.n_batches += 1

    def merge(self, other: "LossAccumulator") -> "LossAccumulator":
        """Add everything ``other`` (same loss, options and reduction) has seen; returns self."""
        if (other.loss, other.reduction) != (self.loss, self.reduction):
            raise ValueError(f"cannot merge a {other.loss}/{other.reduction} accumulator into a "
                             f"{self.loss}/{self.reduction} one")
        if not _same_options(self.options, other.options):
            raise ValueError(f"cannot merge accumulators of different options: {other.options!r} "
                             f"into {self.options!r}")
        self._sum.add(other._sum.total)
        self._sum.add(other._sum.error)
        self._denominator.add(other._denominator.total)
        self._denominator.add(other._denominator.error)
        self.n_rows += other.n_rows
        self.n_batches += other.n_batches
        return self

    @property
    def loss_sum(self) -> float:
        """Sum of every row loss seen (the ``"sum"`` reduction)."""
        return self._sum.value

    @property
    def denominator(self) -> float:
        """Sum of the batches' denominators (1 per batch for ``"sum"``: not used then)."""
        return self._denominator.value

    @property
    def scale(self) -> float:
        """The factor from the loss sum to ``result()`` (0.0 when nothing counts, as the API)."""
        if self.reduction == "sum":
            return 1.0
        d = self.denominator
        return 1.0 / d if d > 0 else 0.0

    def result(self) -> float:
        """The loss over every row seen, as one call with this reduction would return it."""
        return self.loss_sum * self.scale

    def __repr__(self) -> str:
        return (f"LossAccumulator({self.loss!r}, reduction={self.reduction!r}, "
                f"n_batches={self.n_batches}, n_rows={self.n_rows}, result={self.result():.6g})")


def _chunk_rows(n_classes: int, itemsize: int, chunk_rows: Optional[int],
                max_chunk_bytes: int) -> int:
    if chunk_rows is not None:
        if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, (int, np.integer)) \
                or chunk_rows < 1:
            raise ValueError(f"chunk_rows must be a positive int, got {chunk_rows!r}")
        return int(chunk_rows)
    return max(1, int(max_chunk_bytes) // max(1, n_classes * itemsize))


def evaluate_chunked(loss: Union[str, Callable], logits: Any, targets: Any, *,
                     reduction: str = "mean", sample_weight: Optional[Any] = None,
                     return_grad: bool = False, grad_out: Optional[np.ndarray] = None,
                     chunk_rows: Optional[int] = None, max_chunk_bytes: int = 32 << 20,
                     **options: Any):
    """One loss over a batch larger than memory, ``chunk_rows`` rows at a time.

    ``logits`` is any 2-D array that slices by rows without copying (a NumPy array, a read-only
    ``np.memmap`` or ``np.load(path, mmap_mode="r")``); ``targets`` and ``sample_weight`` are
    sliced by the same rows (arrays, memory maps, a :class:`MultiLabel` or a scipy.sparse
    matrix). Each chunk covers about ``max_chunk_bytes`` of logits unless ``chunk_rows`` is
    given; memory in use stays around a chunk's worth (a memory map's pages are the OS's page
    cache, released as needed).

    Returns what one call ``loss(logits, targets, reduction=..., return_grad=...)`` returns,
    within float64 rounding: a float (an array [N] for ``"none"``), and with ``return_grad`` the
    gradient of that loss, written chunk by chunk into ``grad_out`` (e.g. a memory map opened
    with ``np.lib.format.open_memmap(path, mode="w+", dtype=logits.dtype, shape=logits.shape)``;
    allocated in memory if not given). ``grad_out`` may be ``logits`` itself (in place): every
    chunk's inputs are then validated by a forward pass before the first gradient is written,
    so that bad input leaves the logits untouched (this reads the logits once more).
    """
    name, function = _resolve_loss(loss)
    _check_options(options)
    return_grad = _checks.flag(return_grad, "return_grad")
    if reduction not in _SCALAR_REDUCTIONS + ("none",):
        raise ValueError(f"reduction must be one of {_SCALAR_REDUCTIONS + ('none',)}, "
                         f"got {reduction!r}")
    if np.ndim(logits) != 2:
        raise ValueError(f"logits must be 2-D [N, C], got shape {np.shape(logits)}")
    n, c = logits.shape
    dtype = np.asarray(logits[:0]).dtype          # (a torch CPU tensor has a torch dtype)
    step = _chunk_rows(c, dtype.itemsize, chunk_rows, max_chunk_bytes)
    ml = as_multilabel(targets, c, n_rows=n)
    if ml is not None:
        targets = ml
    elif len(targets) != n:
        raise ValueError(f"targets has {len(targets)} rows but the logits have {n}; "
                         f"they must match")
    if sample_weight is not None and np.shape(sample_weight) != (n,):
        raise ValueError(f"sample_weight must have shape ({n},) (one per row), got shape "
                         f"{np.shape(sample_weight)}")
    if return_grad:
        if grad_out is None:
            grad_out = np.empty((n, c), dtype=dtype)
        elif not isinstance(grad_out, np.ndarray) or grad_out.shape != (n, c) \
                or grad_out.dtype != dtype or not grad_out.flags.c_contiguous:
            raise ValueError(f"grad_out must be a C-contiguous array of shape {(n, c)} and dtype "
                             f"{dtype} (e.g. np.lib.format.open_memmap(path, mode='w+', "
                             f"dtype=..., shape=...))")
        else:
            # the whole buffer against the whole inputs: chunk k's gradient must not land on
            # logits (or targets, weights) that a later chunk reads
            others = [("targets", targets), ("sample_weight", sample_weight)]
            others += [(key, value) for key, value in options.items()]
            if isinstance(targets, MultiLabel):
                others += [("targets", targets.indptr), ("targets", targets.indices),
                           ("targets", targets.values)]
            _checks.grad_buffer(grad_out, logits, np.asarray(logits), others)
    elif grad_out is not None:
        raise ValueError("grad_out is only written with return_grad=True; "
                         "pass return_grad=True")
    bounds = [(start, min(start + step, n)) for start in range(0, n, step)]
    if return_grad and np.may_share_memory(grad_out, np.asarray(logits)):
        # in place: every chunk's inputs are checked (a forward pass, which validates them)
        # before the first gradient overwrites logits that bad input in a later chunk would
        # otherwise leave half replaced
        for start, stop in bounds:
            function(logits[start:stop], row_slice(targets, start, stop), reduction="sum",
                     sample_weight=row_slice(sample_weight, start, stop), **options)

    if reduction == "none":
        rows = np.empty(n, dtype=dtype)
        for start, stop in bounds:
            out = function(logits[start:stop], row_slice(targets, start, stop), reduction="none",
                           sample_weight=row_slice(sample_weight, start, stop),
                           return_grad=return_grad,
                           grad_out=None if grad_out is None else grad_out[start:stop],
                           **options)
            rows[start:stop] = out[0] if return_grad else out
        return (rows, grad_out) if return_grad else rows

    acc = LossAccumulator(name, reduction=reduction, **options)
    acc._function = function
    if return_grad:
        # the scale 1/D of the whole batch first (targets only: cheap), so that each gradient
        # chunk is final when written
        for start, stop in bounds:
            acc._denominator.add(acc.denominator_of(stop - start, c,
                                                    row_slice(targets, start, stop),
                                                    row_slice(sample_weight, start, stop)))
        scale = acc.scale
    for start, stop in bounds:
        chunk_targets = row_slice(targets, start, stop)
        chunk_weight = row_slice(sample_weight, start, stop)
        if return_grad:
            grad = grad_out[start:stop]
            acc._sum.add(function(logits[start:stop], chunk_targets, reduction="sum",
                                  sample_weight=chunk_weight, return_grad=True,
                                  grad_out=grad, **options)[0])
            if scale != 1.0:
                np.multiply(grad, scale, out=grad)
        else:
            acc.update(logits[start:stop], chunk_targets, sample_weight=chunk_weight)
    loss_value = acc.result()
    return (loss_value, grad_out) if return_grad else loss_value
