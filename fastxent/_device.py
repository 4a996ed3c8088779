"""CUDA device inputs: detection, validation without copying the logits, and the losses computed
where the data lives (the CUDA backend, ``fastxent/backends/numba_cuda``).

A *device array* is anything with ``__cuda_array_interface__`` (CuPy, PyTorch CUDA tensors, Numba
device arrays), a Numba/simulator device array (``__cuda_ndarray__``: the simulator's fake arrays
have no CUDA array interface), an object whose ``__dlpack_device__`` is CUDA, or a DLPack capsule
of a CUDA tensor. ``route`` wraps each public loss: when any array argument is on the device, the
loss runs on the CUDA backend and returns device outputs (the gradient, and ``"none"`` row losses,
in the caller's framework type for PyTorch and CuPy; Numba device arrays otherwise). Scalar
reductions are summed on the device in a fixed order; reading that float is the one host
synchronisation. Host and device arrays in one call raise ``TypeError`` (sparse targets,
``MultiLabel`` / scipy.sparse, are host structures by nature and are copied over).

Validation never calls ``np.asarray`` on a device array: shapes, dtypes and contiguity come from
the array interface; dense targets, class indices and weight vectors are checked on the device,
and a few bytes come back (a count of bad entries, the mean's denominator); only bad input is
copied to the host, to say what is wrong with the same messages as host input.
"""
from __future__ import annotations

import functools
import importlib
import inspect
import math
from typing import Any

import numpy as np

from . import _checks
from ._checks import Canonical
from .targets import MultiLabel

_KDL_CUDA = (2, 13)          # DLPack device types: kDLCUDA, kDLCUDAManaged
_ARRAY_ARGUMENTS = ("logits", "targets", "grad_out", "class_weight", "sample_weight",
                    "pos_weight", "alpha")
_SOFTMAX = ("softmax_xent", "softmax_focal")


# ------------------------------------------------------------------------------------------
# detection and conversion
# ------------------------------------------------------------------------------------------

def _capsule_tensor(obj):
    """The DLTensor of a live DLPack capsule (``None`` if ``obj`` is not one)."""
    if type(obj).__name__ != "PyCapsule":
        return None
    import ctypes

    api = ctypes.pythonapi
    api.PyCapsule_IsValid.restype = ctypes.c_int
    api.PyCapsule_IsValid.argtypes = [ctypes.py_object, ctypes.c_char_p]
    if not api.PyCapsule_IsValid(obj, b"dltensor"):
        return None
    api.PyCapsule_GetPointer.restype = ctypes.c_void_p
    api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]

    class Device(ctypes.Structure):
        _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]

    class DataType(ctypes.Structure):
        _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8),
                    ("lanes", ctypes.c_uint16)]

    class Tensor(ctypes.Structure):
        _fields_ = [("data", ctypes.c_void_p), ("device", Device), ("ndim", ctypes.c_int32),
                    ("dtype", DataType), ("shape", ctypes.POINTER(ctypes.c_int64)),
                    ("strides", ctypes.POINTER(ctypes.c_int64)),
                    ("byte_offset", ctypes.c_uint64)]

    return Tensor.from_address(api.PyCapsule_GetPointer(obj, b"dltensor"))


class _CapsuleView:
    """A CUDA DLPack capsule seen through ``__cuda_array_interface__``. The capsule is not
    consumed (its producer frees the tensor when the capsule dies); this view keeps it alive."""

    def __init__(self, capsule, tensor):
        self._capsule = capsule
        kind = {0: "i", 1: "u", 2: "f"}.get(tensor.dtype.code)
        if kind is None or tensor.dtype.lanes != 1:
            raise TypeError(f"DLPack tensor of unsupported dtype code {tensor.dtype.code}")
        itemsize = tensor.dtype.bits // 8
        shape = tuple(tensor.shape[i] for i in range(tensor.ndim))
        strides = (None if not tensor.strides else
                   tuple(tensor.strides[i] * itemsize for i in range(tensor.ndim)))
        self.__cuda_array_interface__ = {
            "shape": shape, "typestr": f"<{kind}{itemsize}", "strides": strides,
            "data": ((tensor.data or 0) + tensor.byte_offset, False), "version": 3}


def is_device_array(obj: Any) -> bool:
    """True for a CUDA device array (see the module docstring), never for host arrays."""
    if obj is None or isinstance(obj, (np.ndarray, np.generic, MultiLabel, int, float, bool)):
        return False
    if getattr(type(obj), "__cuda_ndarray__", False) or hasattr(obj,
                                                                "__cuda_array_interface__"):
        return True
    device = getattr(obj, "__dlpack_device__", None)
    if device is not None:
        try:
            return int(device()[0]) in _KDL_CUDA
        except Exception:                      # noqa: BLE001 - a foreign object's method
            return False
    tensor = _capsule_tensor(obj)
    return tensor is not None and tensor.device.device_type in _KDL_CUDA


def as_device(obj: Any):
    """A Numba device array viewing ``obj`` (no copy)."""
    from numba import cuda

    if getattr(type(obj), "__cuda_ndarray__", False):
        return obj
    if hasattr(obj, "__cuda_array_interface__"):
        return cuda.as_cuda_array(obj)
    if hasattr(obj, "__dlpack__"):
        obj = obj.__dlpack__()
    tensor = _capsule_tensor(obj)
    if tensor is None:
        raise TypeError(f"{type(obj).__name__} is not a CUDA array")
    return cuda.as_cuda_array(_CapsuleView(obj, tensor))


def _framework(obj: Any):
    """The module (torch or cupy) whose array type ``obj`` is, or None."""
    import sys

    root = type(obj).__module__.split(".")[0]
    return sys.modules.get(root) if root in ("torch", "cupy") else None


def _wrap_like(caller_obj: Any, device_array):
    """``device_array`` as the caller's framework type (zero copy), or as it is."""
    framework = _framework(caller_obj)
    if framework is None:
        return device_array
    if framework.__name__ == "torch":
        return framework.as_tensor(device_array, device=caller_obj.device)
    return framework.asarray(device_array)


def _host(value: Any):
    """A small device vector copied to the host for validation (host values pass through)."""
    if is_device_array(value):
        return as_device(value).copy_to_host()
    return value


def _is_vector(value) -> bool:
    """Whether ``value`` (host or device) is an array of one or more dimensions."""
    if is_device_array(value):
        return len(as_device(value).shape) > 0
    return value is not None and np.ndim(value) > 0


class _Weights:
    """The weight vectors of one call. Host vectors are checked at once by ``_checks``; a device
    vector's dtype and shape come from its metadata and its values are checked on the device
    (``launch.weights`` counts entries outside the domain while making the float64 copy the
    kernels read), and ``raise_if_bad`` reads every count back at once (8 bytes per vector,
    before any loss kernel runs); only a bad vector is copied to the host, to say what is
    wrong with the same message as host input."""

    def __init__(self, launch):
        self.launch = launch
        self.pending = []
        self.bad = None

    def vector(self, value, length: int, name: str, what: str, hi: float = math.inf):
        if not is_device_array(value):
            arr = _checks._weight_vector(value, length, name, what)
            if arr is not None and arr.size and arr.max() > hi:
                raise ValueError(f"{name} must be in [0, {hi:g}], found {arr.max()}")
            return arr
        from numba import cuda

        d = as_device(value)
        probe = np.lib.stride_tricks.as_strided(np.zeros(1, np.dtype(d.dtype)),
                                                shape=tuple(d.shape),
                                                strides=(0,) * len(d.shape))
        _checks._weight_vector(probe, length, name, what)    # dtype and shape, no data read
        if self.bad is None:
            self.bad = cuda.to_device(np.zeros(4, np.int64))
        slot = len(self.pending)
        self.pending.append((name, d, length, what, hi))
        return self.launch.weights(d, 0.0, hi, self.bad, slot)

    def raise_if_bad(self) -> None:
        pending, self.pending = self.pending, []
        if not pending:
            return
        counts = self.bad.copy_to_host()
        for slot, (name, d, length, what, hi) in enumerate(pending):
            if counts[slot]:
                self.vector(d.copy_to_host(), length, name, what, hi)       # raises
                raise AssertionError(f"{name} was out of its domain on the device but not "
                                     f"on the host")

    def product(self, a, b):
        """``a * b`` of two checked vectors (either may be None, host or device)."""
        if b is None:
            return a
        if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
            return a * b
        if isinstance(a, np.ndarray):
            a, b = b, a
        from numba import cuda

        scratch = cuda.to_device(np.zeros(1, np.int64))   # the values were checked already
        return self.launch.weights(a, -math.inf, math.inf, scratch, 0, factor=b)


def _pointer_range(arr):
    start = arr.__cuda_array_interface__["data"][0] if hasattr(
        arr, "__cuda_array_interface__") else id(arr._ary) if hasattr(arr, "_ary") else 0
    return start, start + arr.size * arr.dtype.itemsize


def _same_memory(a, b) -> bool:
    if getattr(a, "_ary", None) is not None and getattr(b, "_ary", None) is not None:
        return np.may_share_memory(a._ary, b._ary)            # simulator arrays
    a0, a1 = _pointer_range(a)
    b0, b1 = _pointer_range(b)
    return a0 < b1 and b0 < a1 and a.size > 0 and b.size > 0


def _same_start(a, b) -> bool:
    if getattr(a, "_ary", None) is not None and getattr(b, "_ary", None) is not None:
        return (a._ary.__array_interface__["data"][0] == b._ary.__array_interface__["data"][0]
                and a._ary.strides == b._ary.strides)
    return _pointer_range(a)[0] == _pointer_range(b)[0]


# ------------------------------------------------------------------------------------------
# routing
# ------------------------------------------------------------------------------------------

def route(family: str):
    """Decorator of a public loss: device inputs go to ``device_loss``, host inputs to the
    function itself."""
    def decorate(function):
        signature = inspect.signature(function)

        @functools.wraps(function)
        def loss(logits, targets, **kwargs):
            devices = [name for name, value in (("logits", logits), ("targets", targets),
                                                *kwargs.items())
                       if name in _ARRAY_ARGUMENTS and is_device_array(value)]
            if not devices:
                return function(logits, targets, **kwargs)
            bound = signature.bind(logits, targets, **kwargs)
            bound.apply_defaults()
            return device_loss(family, dict(bound.arguments), devices)
        return loss
    return decorate


def _check_no_mixing(arguments: dict, devices: list) -> None:
    hosts = []
    for name in _ARRAY_ARGUMENTS:
        value = arguments.get(name)
        if value is None or name in devices or np.ndim(value) == 0:
            continue                            # absent, on the device, or a scalar
        if name == "targets" and (isinstance(value, MultiLabel) or hasattr(value, "tocsr")):
            continue                            # sparse targets live on the host: copied over
        hosts.append(name)
    if hosts:
        raise TypeError(f"{', '.join(devices)} {'is a' if len(devices) == 1 else 'are'} CUDA "
                        f"device array{'s' if len(devices) > 1 else ''} but "
                        f"{', '.join(hosts)} {'is' if len(hosts) == 1 else 'are'} on the host; "
                        f"pass every array on the same device (e.g. torch's .to('cuda') / "
                        f"cupy.asarray), or every array on the host")


def _device_logits(value):
    x = as_device(value)
    dtype = np.dtype(x.dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"logits must be float32 or float64, got dtype {dtype}; cast it on the "
                        f"device (e.g. .float())")
    if len(x.shape) != 2:
        raise ValueError(f"logits must be 2-D [N, C] (rows, classes), got shape {x.shape}")
    if x.shape[1] < 1:
        raise ValueError(f"logits must have at least one class (C >= 1), got shape {x.shape}")
    if not x.is_c_contiguous():
        raise ValueError("logits on the device must be C-contiguous; make a contiguous copy "
                         "first (torch: .contiguous(), cupy: cupy.ascontiguousarray)")
    return x


def _device_dense(value, n: int, c: int, launch):
    y = as_device(value)
    if tuple(y.shape) != (n, c):
        raise ValueError(f"targets must have the logits' shape ({n}, {c}) for dense targets, "
                         f"got {tuple(y.shape)}")
    if not y.is_c_contiguous():
        raise ValueError("dense targets on the device must be C-contiguous")
    if np.dtype(y.dtype) == np.bool_:
        y = y.view(np.uint8)
    bad = launch.count_outside_unit(y)
    if bad:
        raise ValueError(f"targets must hold probabilities in [0, 1], found {bad} values "
                         f"outside (or NaN); pass class indices as an integer array [N] "
                         f"instead of scores")
    return y


def _grad_buffer(grad_out, logits_obj, x, others, launch):
    from numba import cuda

    if grad_out is None:
        framework = _framework(logits_obj)
        if framework is not None:
            caller = framework.empty_like(logits_obj)
            return caller, as_device(caller)
        buffer = cuda.device_array(x.shape, x.dtype)
        return buffer, buffer
    if not is_device_array(grad_out):
        raise TypeError(f"grad_out must be a CUDA device array like the logits, got "
                        f"{type(grad_out).__name__}")
    g = as_device(grad_out)
    if tuple(g.shape) != tuple(x.shape) or np.dtype(g.dtype) != np.dtype(x.dtype):
        raise ValueError(f"grad_out must have the logits' shape {tuple(x.shape)} and dtype "
                         f"{np.dtype(x.dtype)}, got {tuple(g.shape)} {np.dtype(g.dtype)}")
    if not g.is_c_contiguous():
        raise ValueError("grad_out must be C-contiguous")
    for name, arr in others:
        if arr is not None and _same_memory(g, arr):
            raise ValueError(f"grad_out overlaps {name}; it may only be the logits array "
                             f"itself (in place) or a separate buffer")
    if _same_memory(g, x) and not _same_start(g, x):
        raise ValueError("grad_out partially overlaps logits; pass the logits array itself "
                         "for an in-place gradient, or a separate buffer")
    return grad_out, (x if _same_memory(g, x) else g)


def device_loss(family: str, arguments: dict, devices: list):
    """One public loss on the CUDA backend; ``arguments`` holds every parameter."""
    from . import _dispatch

    backend = arguments["backend"]
    if backend not in ("auto", "cuda"):
        if backend not in _dispatch._DESCRIPTIONS:
            _dispatch.select(backend)            # the usual message for an unknown name
        where = "is a CUDA device array" if len(devices) == 1 else "are CUDA device arrays"
        raise ValueError(f"backend={backend!r} computes on the host, but {', '.join(devices)} "
                         f"{where}; use backend='auto' or 'cuda', or copy the inputs to the host")
    _check_no_mixing(arguments, devices)
    reduction = _checks.reduction(arguments["reduction"])
    return_grad = _checks.flag(arguments["return_grad"], "return_grad")
    if arguments["grad_out"] is not None and not return_grad:
        raise ValueError("grad_out is only written with return_grad=True; pass return_grad=True")
    _dispatch.select("cuda")                    # raises, saying why, without a GPU
    kernels = importlib.import_module(_dispatch._BACKENDS["cuda"][0])
    launch = importlib.import_module("fastxent.backends.numba_cuda.launch")
    from numba import cuda

    x = _device_logits(arguments["logits"])
    n, c = x.shape
    job = Canonical(family=family, logits=x, kind="sparse")
    weights = _Weights(launch)
    cw = weights.vector(arguments["class_weight"], c, "class_weight", "class")
    sw = weights.vector(arguments["sample_weight"], n, "sample_weight", "row")
    if family == "sigmoid_bce":
        pos_weight = arguments["pos_weight"]
        if _is_vector(pos_weight):
            job.pos_weight = weights.vector(pos_weight, c, "pos_weight", "class")
            job.pos_weight_scalar = 1.0
        else:
            job.pos_weight, job.pos_weight_scalar = _checks.scalar_or_class_vector(
                _host(pos_weight), c, "pos_weight")
    elif family == "softmax_focal":
        alpha = arguments["alpha"]
        if _is_vector(alpha):
            alpha_vec = weights.vector(alpha, c, "alpha", "class", hi=1.0)
        else:
            a = _checks.alpha_scalar(_host(alpha))
            alpha_vec = None if a < 0 else np.full(c, a)
    weights.raise_if_bad()                      # one read back for every device vector
    job.sample_weight = sw
    job.label_smoothing = _checks.unit_interval(arguments["label_smoothing"], "label_smoothing")
    targets = arguments["targets"]
    dense = None
    if family in _SOFTMAX:
        _checks.ignore_index(arguments["ignore_index"])
    if not is_device_array(targets):
        ml = _checks.sparse_targets(targets, n, c, unit_values=family not in _SOFTMAX)
        if ml is None:
            raise TypeError("targets must be a CUDA device array (class indices or [N, C] "
                            "values) or sparse positives (MultiLabel / scipy.sparse)")
        if family in _SOFTMAX:
            _checks.ignore_index(arguments["ignore_index"], "sparse")
        job.indptr, job.indices, job.values = ml.indptr, ml.indices, ml.values
        denominator = float(np.count_nonzero(ml.row_sums() > 0))
    else:
        t = as_device(targets)
        kind = np.dtype(t.dtype).kind
        if family in _SOFTMAX and kind in "iu" and len(t.shape) == 1:
            ignore_index = arguments["ignore_index"]
            if len(t.shape) != 1 or t.shape[0] != n:
                raise ValueError(f"targets as class indices must have shape ({n},), got "
                                 f"{tuple(t.shape)}; pass [N, C] probabilities for dense "
                                 f"targets")
            # the CSR rows are built on the device; 8 bytes come back (the weight sum, NaN
            # when an index is out of range: then the labels are read to say which)
            job.indptr, job.indices, job.values, denominator = launch.index_targets(
                t, int(ignore_index), c, sw, cw)
            if math.isnan(denominator):
                _checks.class_index_targets(t.copy_to_host(), n, c, int(ignore_index))
                raise AssertionError("a class index was out of range on the device but "
                                     "not on the host")
        elif len(t.shape) == 2 and (kind == "f" or (kind in "iub" and family not in _SOFTMAX)):
            if family in _SOFTMAX:
                _checks.ignore_index(arguments["ignore_index"], "probability")
            dense = _device_dense(t, n, c, launch)
            job.kind, job.dense = "dense", dense
            denominator = float(n)
        else:
            raise TypeError(f"targets on the device must be class indices (int [N]; softmax "
                            f"family) or values [N, C], got dtype {np.dtype(t.dtype)} and "
                            f"shape {tuple(t.shape)}")
    if family in _SOFTMAX:
        job.class_weight = cw
        if isinstance(cw, np.ndarray):
            job.extra["class_weight_sum"] = float(np.sum(cw))
        elif cw is not None and family == "softmax_xent":
            job.extra["class_weight_sum"] = launch.device_sum(cw)       # 8 bytes back
    else:
        job.class_weight = cw
        denominator = float(n * c)
    if family == "softmax_xent":
        job.z_loss = _checks.nonneg(arguments["z_loss"], "z_loss")
    elif family == "softmax_focal":
        job.gamma = _checks.nonneg(arguments["gamma"], "gamma")
        if alpha_vec is not None:
            job.class_weight = weights.product(alpha_vec, cw)
    elif family == "sigmoid_bce":
        pass                                    # pos_weight: checked with the other vectors
    else:
        job.gamma = _checks.nonneg(arguments["gamma"], "gamma")
        gamma_neg = arguments["gamma_neg"]
        job.gamma_neg = job.gamma if gamma_neg is None else _checks.nonneg(gamma_neg,
                                                                           "gamma_neg")
        job.clip = _checks.unit_interval(arguments["clip"], "clip")
        job.alpha = _checks.alpha_scalar(arguments["alpha"])
    # device copies of the small host-side arrays (kernels need device memory)
    for name in ("indptr", "indices", "values", "class_weight", "sample_weight", "pos_weight"):
        value = getattr(job, name)
        if isinstance(value, np.ndarray):
            dtype = np.int64 if name in ("indptr", "indices") else np.float64
            setattr(job, name, cuda.to_device(np.ascontiguousarray(value, dtype=dtype)))
    if reduction == "mean":
        scale = 1.0 / denominator if denominator > 0 else 0.0
    elif reduction == "batchmean":
        scale = 1.0 / n if n > 0 else 0.0
    else:
        scale = 1.0
    job.grad_scale = scale
    grad_caller = None
    if return_grad:
        grad_caller, job.grad = _grad_buffer(arguments["grad_out"], arguments["logits"], x,
                                             [("targets", dense)], launch)
    row_loss = kernels.run(job)
    if reduction == "none":
        loss = _wrap_like(arguments["logits"], kernels.device_cast(row_loss, x.dtype))
    else:
        loss = kernels.device_sum(row_loss) * scale
    return (loss, grad_caller) if return_grad else loss
