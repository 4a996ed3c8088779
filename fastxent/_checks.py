"""Input validation with exact, helpful messages, and canonicalisation for the kernels.

Everything here runs before any kernel, never modifies the caller's arrays, and raises
``TypeError`` (wrong kind of object or dtype) or ``ValueError`` (wrong shape or value) whose
message names the argument and the fix.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from . import _config
from .targets import MultiLabel, as_multilabel, rows_strictly_increasing

_EMPTY = np.empty(0, dtype=np.float64)


@dataclass
class Canonical:
    """What a backend receives: validated, contiguous arrays and plain floats."""
    family: str                          # softmax_xent | softmax_focal | sigmoid_bce | sigmoid_focal
    logits: np.ndarray                   # [N, C] float32/float64, C-contiguous
    kind: str                            # "sparse" (class indices become one positive per row) or "dense"
    indptr: Optional[np.ndarray] = None  # int64 [N + 1]
    indices: Optional[np.ndarray] = None  # int64 [nnz]
    values: Optional[np.ndarray] = None  # float64 [nnz] or None (all ones)
    dense: Optional[np.ndarray] = None   # [N, C], C-contiguous
    class_weight: Optional[np.ndarray] = None   # float64 [C] (softmax focal: alpha_c * w_c)
    sample_weight: Optional[np.ndarray] = None  # float64 [N]
    pos_weight: Optional[np.ndarray] = None     # float64 [C] (sigmoid_bce)
    pos_weight_scalar: float = 1.0
    label_smoothing: float = 0.0
    z_loss: float = 0.0
    gamma: float = 0.0
    gamma_neg: float = 0.0
    clip: float = 0.0
    alpha: float = -1.0                   # sigmoid focal; < 0 disables
    grad_scale: float = 1.0
    grad: Optional[np.ndarray] = None    # where the kernel writes the gradient, or None
    extra: dict = field(default_factory=dict)


def reduction(value: Any) -> str:
    if value not in _config.REDUCTIONS:
        raise ValueError(f"reduction must be one of {_config.REDUCTIONS}, got {value!r}")
    return value


def no_masked_entries(value: Any, name: str) -> None:
    """A masked array's masked entries hold ordinary numbers that would be computed with:
    refuse them instead of silently using them."""
    if isinstance(value, np.ma.MaskedArray) and np.ma.is_masked(value):
        raise TypeError(f"{name} is a masked array with masked entries, which fastxent would "
                        f"read as ordinary numbers; fill them first ({name}.filled(value)); "
                        f"to leave rows out use ignore_index or sample_weight=0")


def flag(value: Any, name: str) -> bool:
    """A bool (or NumPy bool); anything else, e.g. the truthy string "no", is refused."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    return bool(value)


def _item(value: Any) -> Any:
    """A 0-d real NumPy array as its number (np.array(0.25) works where 0.25 does)."""
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "fiu":
        return value[()]
    return value


def _native(arr: np.ndarray) -> np.ndarray:
    """``arr`` in the machine's byte order (a byte-swapped copy of a big-endian array on a
    little-endian machine: compiled kernels read native numbers only)."""
    return arr if arr.dtype.isnative else arr.astype(arr.dtype.newbyteorder("="))


def _torch_logits(value: Any) -> None:
    """A CPU torch tensor works as an array, except the two cases NumPy cannot view, which
    torch reported in its own terms ("Can't call numpy() on Tensor that requires grad",
    "unsupported ScalarType BFloat16")."""
    if not type(value).__module__.startswith("torch"):
        return
    if getattr(value, "requires_grad", False):
        raise TypeError("logits is a torch tensor that requires grad: use fastxent.torch "
                        "(cross_entropy, binary_cross_entropy_with_logits, sigmoid_focal_loss: "
                        "autograd through the fused gradient), or pass logits.detach()")
    if str(getattr(value, "dtype", "")) == "torch.bfloat16":
        raise TypeError("logits must be float32 or float64, got torch.bfloat16 (which NumPy "
                        "cannot hold); cast with logits.float(), or use fastxent.torch, "
                        "which takes bfloat16")


def logits(value: Any) -> np.ndarray:
    """2-D float32/float64 logits, C-contiguous (non-contiguous or byte-swapped input is
    copied)."""
    if isinstance(value, MultiLabel):
        raise TypeError("logits must be a float array [N, C], got a MultiLabel; "
                        "did you swap logits and targets?")
    no_masked_entries(value, "logits")
    _torch_logits(value)
    arr = _native(np.asarray(value))
    if arr.dtype.kind != "f" or arr.dtype not in (np.float32, np.float64):
        if arr.dtype.kind == "c":
            hint = "logits are real: take the real part and cast, np.real(x).astype(np.float32)"
        elif arr.dtype.kind in "fiubO":
            hint = "cast it with .astype(np.float32)"
        else:
            hint = "pass a numeric array (cast it with .astype(np.float32))"
        raise TypeError(f"logits must be float32 or float64, got dtype {arr.dtype}; {hint}")
    if arr.ndim != 2:
        raise ValueError(f"logits must be 2-D [N, C] (rows, classes), got shape {arr.shape}; "
                         f"reshape a single row with logits[None, :]")
    if arr.shape[1] < 1:
        raise ValueError(f"logits must have at least one class (C >= 1), got shape {arr.shape}")
    return np.ascontiguousarray(arr)


def _finite_scalar(value: Any, name: str) -> float:
    value = _item(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating,
                                                                     np.integer)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    return v


def nonneg(value: Any, name: str) -> float:
    v = _finite_scalar(value, name)
    if v < 0:
        raise ValueError(f"{name} must be >= 0, got {v}")
    return v


def unit_interval(value: Any, name: str) -> float:
    """A number in [0, 1)."""
    v = _finite_scalar(value, name)
    if not 0.0 <= v < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {v}")
    return v


def alpha_scalar(value: Any, name: str = "alpha") -> float:
    """None or a negative value disable alpha (returned as -1.0); above 1 or NaN raise."""
    if value is None:
        return -1.0
    value = _item(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating,
                                                                     np.integer)):
        raise TypeError(f"{name} must be None or a number in [0, 1], got {value!r}")
    v = float(value)
    if math.isnan(v) or v > 1.0:
        raise ValueError(f"{name} must be in [0, 1] (None or a negative value disables it), "
                         f"got {v}")
    return v if v >= 0 else -1.0


def _weight_vector(value: Any, length: int, name: str, what: str) -> Optional[np.ndarray]:
    if value is None:
        return None
    no_masked_entries(value, name)
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiu" or arr.dtype.kind == "b":
        raise TypeError(f"{name} must be a real array, got dtype {arr.dtype}")
    if arr.ndim != 1 or arr.shape[0] != length:
        raise ValueError(f"{name} must have shape ({length},) (one per {what}), "
                         f"got shape {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    if arr.size and not (np.all(np.isfinite(arr)) and arr.min() >= 0):
        bad = arr[~(np.isfinite(arr) & (arr >= 0))][0]
        raise ValueError(f"{name} must be finite and >= 0, found {bad}")
    return arr


def class_vector(value: Any, n_classes: int, name: str) -> Optional[np.ndarray]:
    return _weight_vector(value, n_classes, name, "class")


def row_vector(value: Any, n_rows: int, name: str) -> Optional[np.ndarray]:
    return _weight_vector(value, n_rows, name, "row")


def scalar_or_class_vector(value: Any, n_classes: int, name: str):
    """(array [C] or None, scalar) for a scalar-or-[C] weight like pos_weight."""
    if value is None:
        return None, 1.0
    if np.ndim(value) == 0:
        return None, nonneg(value if not isinstance(value, np.ndarray) else value.item(), name)
    return class_vector(value, n_classes, name), 1.0


#: Dense arrays at least this large are checked by one parallel pass (Numba) when it is there.
PARALLEL_CHECK_SIZE = 1 << 20


def _all_in_unit_parallel(arr: np.ndarray) -> bool:
    """True if every entry of ``arr`` is in [0, 1], by one parallel pass; False if not, or if
    the parallel pass does not apply (small, not C-contiguous float32/float64 [N, C], no
    Numba): then the caller's NumPy check decides and finds the value to report."""
    if (arr.size < PARALLEL_CHECK_SIZE or arr.ndim != 2 or not arr.flags.c_contiguous
            or arr.dtype not in (np.float32, np.float64)):
        return False
    from . import _dispatch

    if not _dispatch._probe("numba")[0]:   # not installed, disabled, or a forked child's
        return False
    from .backends.numba_cpu.checks import count_in_unit
    return int(_dispatch.call_numba(count_in_unit, arr)) == arr.size


def _unit_dense(arr: np.ndarray, name: str) -> None:
    if arr.size == 0 or _all_in_unit_parallel(arr):
        return
    lo, hi = arr.min(), arr.max()          # NaN propagates through min/max
    if not (lo >= 0 and hi <= 1):
        bad = "NaN" if (np.isnan(lo) or np.isnan(hi)) else (lo if not lo >= 0 else hi)
        raise ValueError(f"{name} must hold probabilities in [0, 1], found {bad}; "
                         f"pass class indices as an integer array [N] instead of scores")


def dense_targets(value: np.ndarray, n_rows: int, n_classes: int) -> np.ndarray:
    if value.shape != (n_rows, n_classes):
        raise ValueError(f"targets must have the logits' shape ({n_rows}, {n_classes}) for "
                         f"dense targets, got {value.shape}")
    if value.dtype.kind == "b":
        value = value.view(np.uint8)
    elif value.dtype.kind == "f" and value.dtype not in (np.float32, np.float64):
        # float16 exactly as float32, long double rounded to float64 (compiled kernels
        # read these two)
        value = value.astype(np.float32 if value.dtype.itemsize < 4 else np.float64)
    value = _native(value)
    _unit_dense(value, "targets")
    return np.ascontiguousarray(value)


def _still_canonical(ml: MultiLabel, n_classes: int) -> bool:
    """Whether a MultiLabel's arrays still form the sorted CSR it was validated as (it borrows
    a caller's canonical arrays without a copy: a later change to them would send the kernels
    outside the row). O(N + nnz), next to the kernels' O(N C)."""
    indptr, indices = ml.indptr, ml.indices
    nnz = indices.shape[0]
    if indptr[0] != 0 or indptr[-1] != nnz or (indptr.shape[0] > 1 and np.diff(indptr).min() < 0):
        return False
    if nnz and (indices.min() < 0 or indices.max() >= n_classes):
        return False
    return rows_strictly_increasing(indptr, indices)


def sparse_targets(value: Any, n_rows: int, n_classes: int, unit_values: bool):
    ml = as_multilabel(value, n_classes, n_rows=n_rows)
    if ml is not None and not _still_canonical(ml, n_classes):
        raise ValueError("targets: the MultiLabel's indptr/indices no longer form the sorted CSR "
                         "it was built from (an array it shares with the caller was modified "
                         "afterwards); build a new MultiLabel, or build it with copy=True")
    if ml is not None and unit_values and ml.values is not None and ml.values.size \
            and ml.values.max() > 1:
        raise ValueError(f"targets: sparse target values must be in [0, 1] for the sigmoid "
                         f"family, found {ml.values.max()}")
    return ml


def ignore_index(value: Any, targets_kind: Optional[str] = None) -> int:
    """``ignore_index`` as an int. It applies to class-index targets only: with ``targets_kind``
    "probability" or "sparse" a value that could be a class (>= 0) is refused, as PyTorch refuses
    it for probability targets (ignoring it silently would count the rows the caller meant to
    leave out); the default -100 and other negative values are accepted and have no effect."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"ignore_index must be an int, got {value!r}")
    if targets_kind is not None and value >= 0:
        raise ValueError(f"ignore_index={int(value)} applies to class-index targets (int [N]) "
                         f"only, and targets are {targets_kind} targets; leave ignore_index at "
                         f"its default (-100) and leave rows out with sample_weight=0"
                         + (" or an empty row" if targets_kind == "sparse" else ""))
    return int(value)


def class_index_targets(arr: np.ndarray, n_rows: int, n_classes: int, ignore_index: int):
    """Class indices -> (indptr, indices, valid mask), one positive per non-ignored row."""
    if arr.ndim != 1 or arr.shape[0] != n_rows:
        raise ValueError(f"targets as class indices must have shape ({n_rows},), got "
                         f"{arr.shape}; pass [N, C] probabilities for dense targets")
    if arr.dtype.kind == "u" and arr.size and arr.max() > np.iinfo(np.int64).max:
        row = int(np.argmax(arr))                # would wrap around when cast to int64
        raise ValueError(f"targets: row {row} has class index {int(arr[row])}, outside "
                         f"[0, {n_classes})")
    labels = arr.astype(np.int64, copy=False)
    valid = labels != ignore_index
    bad = valid & ((labels < 0) | (labels >= n_classes))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"targets: row {row} has class index {int(labels[row])}, outside "
                         f"[0, {n_classes}) and not ignore_index={ignore_index}")
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(valid, out=indptr[1:])
    return indptr, np.ascontiguousarray(labels[valid]), valid


def grad_buffer(grad_out: Any, logits_in: Any, logits_arr: np.ndarray, others) -> np.ndarray:
    """The gradient buffer: a new array, or the caller's ``grad_out`` after checking it."""
    if grad_out is None:
        return np.empty_like(logits_arr)
    if not isinstance(grad_out, np.ndarray):
        raise TypeError(f"grad_out must be a NumPy array, got {type(grad_out).__name__}")
    if grad_out.shape != logits_arr.shape or grad_out.dtype != logits_arr.dtype:
        raise ValueError(f"grad_out must have the logits' shape {logits_arr.shape} and dtype "
                         f"{logits_arr.dtype}, got {grad_out.shape} {grad_out.dtype}")
    if not grad_out.flags.c_contiguous:
        raise ValueError("grad_out must be C-contiguous; allocate it with np.empty_like(logits)")
    if not grad_out.flags.writeable:
        raise ValueError("grad_out is read-only; pass a writeable array")
    if not grad_out.flags.aligned:
        raise ValueError(f"grad_out is not aligned: its address is not a multiple of its "
                         f"itemsize {grad_out.itemsize} (a view at an odd byte offset of a "
                         f"buffer); allocate it with np.empty_like(logits)")
    for name, arr in others:
        if isinstance(arr, np.ndarray) and arr.size and np.may_share_memory(grad_out, arr):
            raise ValueError(f"grad_out overlaps {name}; it may only be the logits array itself "
                             f"(in place) or a separate buffer")
    if np.may_share_memory(grad_out, logits_arr):
        same = (grad_out.__array_interface__["data"][0]
                == logits_arr.__array_interface__["data"][0]
                and grad_out.strides == logits_arr.strides)
        if not same:
            raise ValueError("grad_out partially overlaps logits; pass the logits array itself "
                             "for an in-place gradient, or a separate buffer")
    return grad_out
