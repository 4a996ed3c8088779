"""Entry point of the CUDA backend: ``run(job)`` launches the kernel for a validated job
(``fastxent._checks.Canonical``) and returns the float64 row losses.

Host jobs (NumPy arrays, ``backend="cuda"`` on host input) are copied to the device and the
results back (``job.grad`` is filled, the row losses come back as NumPy). Device jobs
(``fastxent._device`` builds them from CUDA arrays) stay on the device: ``run`` returns a device
array of row losses and writes the gradient into ``job.grad`` without synchronising the host;
``sum_rows`` reduces row losses on the device in a fixed order (no float atomics: results are
identical run to run).

``kernels.py`` re-exports this module after checking that a GPU (or the simulator) is there;
this module itself imports without a GPU (the PTX test compiles its ``signatures()``).
"""
import math

import numpy as np
from numba import cuda

from ... import _config, _math
from ._primitives import SIMULATOR, WARP
from ._rows import F64, SCRATCH_SIZE, SHARED_PASSES, SHARED_SHAPE, group_sums
from .sigmoid import (bce_dense, bce_sparse, focal_clip_dense, focal_clip_sparse, focal_dense,
                      focal_sparse)
from .softmax_focal import softmax_focal_dense, softmax_focal_sparse
from .softmax_xent import softmax_xent_dense, softmax_xent_sparse


@cuda.jit
def sum_rows(row_loss, out):
    """``out[0] = sum(row_loss)`` by one block: strided partial sums, then a fixed tree."""
    for _ in range(SHARED_PASSES):      # 2 under the simulator: see _rows
        shared = cuda.shared.array(SHARED_SHAPE, F64)
        scratch = cuda.shared.array(SCRATCH_SIZE, F64)
        cuda.syncthreads()
    tid = cuda.threadIdx.x
    acc = 0.0
    for i in range(tid, row_loss.size, cuda.blockDim.x):
        acc += row_loss[i]
    total, _, _ = group_sums(acc, 0.0, 0.0, cuda.blockDim.x, shared, scratch)
    if tid == 0:
        out[0] = total


@cuda.jit
def cast_rows(row_loss, out):
    """``out[i] = row_loss[i]`` in out's dtype (the "none" reduction's output)."""
    for i in range(cuda.grid(1), row_loss.size, cuda.gridsize(1)):
        out[i] = row_loss[i]


@cuda.jit
def count_outside_unit_kernel(values, out):
    """``out[0] += `` the number of ``values`` [N, C] outside [0, 1] (NaN included); an integer
    count, so the atomic add is exact and order-free."""
    n_rows, n_cols = values.shape
    count = 0
    for i in range(cuda.grid(1), n_rows * n_cols, cuda.gridsize(1)):
        v = values[i // n_cols, i % n_cols]
        if not (v >= 0 and v <= 1):
            count += 1
    if count:
        cuda.atomic.add(out, 0, count)


def count_outside_unit(values) -> int:
    """How many entries of the device array ``values`` [N, C] lie outside [0, 1] (validation
    of dense device targets: one int64 comes back to the host)."""
    out = cuda.to_device(np.zeros(1, np.int64))
    size = values.shape[0] * values.shape[1]
    if size:
        threads = 8 if SIMULATOR else 256
        count_outside_unit_kernel[max(1, min(-(-size // threads), 1024)), threads](values, out)
    return int(out.copy_to_host()[0])


@cuda.jit
def weights_kernel(values, lo, hi, factor, out, bad, slot):
    """``out[i] = values[i] * factor[i]`` in float64 (``factor`` empty: 1) and ``bad[slot] +=``
    the number of ``values`` outside [lo, hi] or not finite (validation of device weight
    vectors; an integer count, so the atomic add is exact and order-free)."""
    has_factor = factor.size > 0
    count = 0
    for i in range(cuda.grid(1), values.size, cuda.gridsize(1)):
        v = float(values[i])
        if not (math.isfinite(v) and v >= lo and v <= hi):
            count += 1
        out[i] = v * factor[i] if has_factor else v
    if count:
        cuda.atomic.add(bad, slot, count)


def weights(values, lo: float, hi: float, bad, slot: int, factor=None):
    """A float64 device copy of the device vector ``values`` (times ``factor``, host or device,
    when given), counting its entries outside [lo, hi] into ``bad[slot]`` on the device: no
    host synchronisation (the caller reads ``bad`` once for every vector it checks)."""
    n = values.shape[0]
    out = cuda.device_array(n, np.float64)
    if n:
        threads = 8 if SIMULATOR else 256
        weights_kernel[max(1, min(-(-n // threads), 1024)), threads](
            values, float(lo), float(hi), _optional(factor), out, bad, np.int64(slot))
    return out


@cuda.jit
def index_targets_kernel(labels, ignore_index, n_classes, sample_weight, class_weight, indptr,
                         indices, values, row_weight):
    """Class indices -> one-positive CSR rows, on the device: ``indptr[i] = i``, ``indices[i]``
    the class and ``values[i] = 1`` (0 for an ignored row: no target mass, so the kernels leave
    it out like a row without positives), ``row_weight[i]`` the row's weight in the mean
    (sample weight x class weight, 0 if ignored, NaN for a class index outside [0, C): the sum
    of the weights then says the targets are bad)."""
    n = labels.shape[0]
    has_sw = sample_weight.size > 0
    has_cw = class_weight.size > 0
    for i in range(cuda.grid(1), n + 1, cuda.gridsize(1)):
        indptr[i] = i
        if i < n:
            label = labels[i]
            if label == ignore_index:
                indices[i] = 0
                values[i] = 0.0
                row_weight[i] = 0.0
            elif label < 0 or label >= n_classes:
                indices[i] = 0
                values[i] = 0.0
                row_weight[i] = math.nan
            else:
                indices[i] = label
                values[i] = 1.0
                w = sample_weight[i] if has_sw else 1.0
                row_weight[i] = w * class_weight[label] if has_cw else w


def index_targets(labels, ignore_index: int, n_classes: int, sample_weight, class_weight):
    """(indptr, indices, values, weight sum) of device class indices ``labels`` [N]: the CSR
    arrays stay on the device; the one value read back is the sum of the rows' weights (the
    mean's denominator), NaN when some index lies outside [0, C) and is not ``ignore_index``
    (8 bytes, read before any loss kernel runs, so bad targets raise first)."""
    n = labels.shape[0]
    indptr = cuda.device_array(n + 1, np.int64)
    indices = cuda.device_array(max(n, 1), np.int64)
    values = cuda.device_array(max(n, 1), np.float64)
    row_weight = cuda.device_array(n, np.float64)
    threads = 8 if SIMULATOR else 256
    index_targets_kernel[max(1, min(-(-(n + 1) // threads), 1024)), threads](
        labels, np.int64(ignore_index), np.int64(n_classes), _optional(sample_weight),
        _optional(class_weight), indptr, indices, values, row_weight)
    return indptr, indices[:n], values[:n], device_sum(row_weight)


def layout(n_rows: int, n_classes: int, row_bytes: int = 0):
    """(blocks, threads per block, threads per row) from the tunables in ``_config``;
    ``row_bytes``: a softmax row's size (0 for the sigmoid families), which picks the long-row
    blocks above ``CUDA_LONG_ROW_BYTES``."""
    threads = int(_config.CUDA_THREADS_PER_BLOCK)
    if 0 < int(_config.CUDA_LONG_ROW_BYTES) < row_bytes:
        threads = int(_config.CUDA_LONG_ROW_THREADS)
    if not SIMULATOR and (threads % WARP or not 0 < threads <= 1024):
        raise ValueError(f"threads per block (CUDA_THREADS_PER_BLOCK, CUDA_LONG_ROW_THREADS) "
                         f"must be a multiple of {WARP} in [32, 1024], got {threads}")
    if threads & (threads - 1):
        raise ValueError(f"threads per block (CUDA_THREADS_PER_BLOCK, CUDA_LONG_ROW_THREADS) "
                         f"must be a power of two, got {threads}")
    want = max(1, -(-n_classes // max(1, int(_config.CUDA_ELEMENTS_PER_THREAD))))
    group = 1 << (want - 1).bit_length()
    group = min(group, threads)
    rows_per_block = threads // group
    blocks = max(1, min(-(-n_rows // rows_per_block), int(_config.CUDA_MAX_BLOCKS)))
    return blocks, threads, group


def _on_device(arr, dtype=None):
    """A device array for ``arr`` (NumPy: copied; device arrays: as they are)."""
    if isinstance(arr, np.ndarray):
        return cuda.to_device(np.ascontiguousarray(arr, dtype=dtype))
    return arr


def _optional(arr):
    return _on_device(arr, np.float64) if arr is not None else cuda.device_array(0, np.float64)


def plan(job, row_loss=None):
    """(kernel, blocks, threads, args, row_loss, grad) for ``job`` without launching (used by
    ``run`` and by the PTX test, which compiles every signature this produces)."""
    host = isinstance(job.logits, np.ndarray)
    n_rows, n_classes = job.logits.shape
    logits = _on_device(job.logits)
    dtype = np.dtype(job.logits.dtype)
    want_grad = job.grad is not None
    if not want_grad:
        grad = cuda.device_array((1, 1), dtype)
    elif not host:
        grad = job.grad
    elif job.grad is job.logits:
        grad = logits                                  # in place on the device as well
    else:
        grad = cuda.device_array(job.logits.shape, dtype)
    if row_loss is None:
        row_loss = cuda.device_array(n_rows, np.float64)
    cw = _optional(job.class_weight)
    sw = _optional(job.sample_weight)
    softmax = job.family in ("softmax_xent", "softmax_focal")
    blocks, threads, group = layout(n_rows, n_classes,
                                    n_classes * dtype.itemsize if softmax else 0)
    sparse = job.kind == "sparse"
    if sparse:
        indptr = _on_device(job.indptr, np.int64)
        indices = _on_device(job.indices, np.int64)
        values = _optional(job.values)
        nnz = int(job.indices.shape[0])
        targets = None
    else:
        targets = _on_device(job.dense)
    family = job.family
    if family == "softmax_xent":
        if job.class_weight is None:
            cw_sum = float(n_classes)
        else:
            cw_sum = float(np.sum(job.class_weight)) if isinstance(job.class_weight, np.ndarray) \
                else float(job.extra["class_weight_sum"])
        options = (float(job.label_smoothing), float(job.z_loss), float(job.grad_scale), cw_sum)
        if sparse:
            pos_buf = cuda.device_array(max(nnz, 1), np.float64)
            kernel = softmax_xent_sparse
            args = (logits, indptr, indices, values, cw, sw, options, row_loss, grad, want_grad,
                    pos_buf, group)
        else:
            kernel = softmax_xent_dense
            args = (logits, targets, cw, sw, options, row_loss, grad, want_grad, group)
    elif family == "softmax_focal":
        options = (float(job.label_smoothing), float(job.gamma), float(job.grad_scale))
        if sparse:
            pos_buf = cuda.device_array((max(nnz, 1), 2), np.float64)
            kernel = softmax_focal_sparse
            args = (logits, indptr, indices, values, cw, sw, options, row_loss, grad, want_grad,
                    pos_buf, group)
        else:
            kernel = softmax_focal_dense
            args = (logits, targets, cw, sw, options, row_loss, grad, want_grad, group)
    else:
        focal = family == "sigmoid_focal"
        clipped = focal and job.clip > 0
        params = (float(job.pos_weight_scalar), float(job.gamma), float(job.gamma_neg),
                  float(job.clip), float(job.alpha)) + _math.clip_logit(
                      float(job.clip), dtype == np.float32)
        pw = _optional(job.pos_weight)
        options = (float(job.label_smoothing), float(job.grad_scale))
        if sparse:
            pos_buf = cuda.device_array(max(nnz, 1), np.float64)
            kernel = (focal_clip_sparse if clipped else focal_sparse) if focal else bce_sparse
            args = (logits, indptr, indices, values, cw, pw, sw, options, params, row_loss, grad,
                    want_grad, pos_buf, group)
        else:
            kernel = (focal_clip_dense if clipped else focal_dense) if focal else bce_dense
            args = (logits, targets, cw, pw, sw, options, params, row_loss, grad, want_grad,
                    group)
    return kernel, blocks, threads, args, row_loss, grad


_CAPPED = {}


def register_cap(dtype) -> int:
    """The register cap of kernels on ``dtype`` logits (``_config``; 0: none)."""
    name = "CUDA_MAX_REGISTERS_F32" if np.dtype(dtype) == np.float32 else "CUDA_MAX_REGISTERS_F64"
    cap = int(getattr(_config, name))
    if cap < 0 or cap > 255:
        raise ValueError(f"{name} must be 0 (no cap) or a register count up to 255, got {cap}")
    return cap


def capped(kernel, dtype, threads: int):
    """``kernel`` compiled with the register cap of ``dtype`` (one dispatcher per cap, made on
    first use; the simulator has no registers). Refuses a block that could not launch."""
    cap = register_cap(dtype)
    if SIMULATOR or cap == 0:
        return kernel
    if threads * cap > 65536:
        which = "F32" if np.dtype(dtype) == np.float32 else "F64"
        raise ValueError(f"{threads} threads per block x {cap} registers per thread exceed an "
                         f"SM's 65536 registers, so the kernel could not launch: lower "
                         f"FASTXENT_CUDA_THREADS_PER_BLOCK or FASTXENT_CUDA_MAX_REGISTERS_{which}")
    key = (kernel.py_func, cap)
    if key not in _CAPPED:
        _CAPPED[key] = cuda.jit(max_registers=cap)(kernel.py_func)
    return _CAPPED[key]


def run(job):
    """Row losses of ``job`` (float64; NumPy for a host job, a device array for a device job);
    the gradient goes to ``job.grad`` when it is set."""
    host = isinstance(job.logits, np.ndarray)
    n_rows = job.logits.shape[0]
    if n_rows == 0:
        return np.zeros(0) if host else cuda.device_array(0, np.float64)
    kernel, blocks, threads, args, row_loss, grad = plan(job)
    capped(kernel, job.logits.dtype, threads)[blocks, threads](*args)
    if not host:
        return row_loss
    if job.grad is not None:
        grad.copy_to_host(job.grad)
    return row_loss.copy_to_host()


def device_sum(row_loss) -> float:
    """``sum(row_loss)`` of a device array, reduced on the device in a fixed order; the one
    host synchronisation of a scalar loss."""
    out = cuda.device_array(1, np.float64)
    if row_loss.shape[0] == 0:
        return 0.0
    sum_rows[1, _config.CUDA_SUM_THREADS if not SIMULATOR else 8](row_loss, out)
    return float(out.copy_to_host()[0])


def device_cast(row_loss, dtype):
    """The row losses as a new device array of ``dtype``."""
    out = cuda.device_array(row_loss.shape[0], dtype)
    if row_loss.shape[0]:
        threads = 128 if not SIMULATOR else 8
        cast_rows[max(1, min(math.ceil(row_loss.shape[0] / threads), 1024)), threads](row_loss,
                                                                                      out)
    return out


def signatures():
    """Every (kernel, argument types) that ``run`` launches: logits float32/float64, dense
    targets of any float dtype (or uint8 for booleans), with and without the optional arrays
    (absent ones are empty arrays of the same type, so one signature covers both). Used by the
    test that compiles each to PTX for a real GPU (``cuda.compile_ptx``)."""
    from numba.cuda import types

    def arr(dtype, ndim=1):
        return types.Array(dtype, ndim, "C")

    f64 = types.float64
    i64 = types.int64
    out = [(sum_rows, (arr(f64), arr(f64)))]
    for target in (types.float32, types.float64, types.uint8):
        out.append((count_outside_unit_kernel, (arr(target, 2), arr(i64))))
    for value in (types.float64, types.float32, types.int64, types.int32):
        out.append((weights_kernel, (arr(value), f64, f64, arr(f64), arr(f64), arr(i64), i64)))
    for label in (types.int64, types.int32, types.uint8):
        out.append((index_targets_kernel, (arr(label), i64, i64, arr(f64), arr(f64), arr(i64),
                                           arr(i64), arr(f64), arr(f64))))
    for dtype in (types.float32, types.float64):
        x = arr(dtype, 2)
        out.append((cast_rows, (arr(f64), arr(dtype))))
        csr = (x, arr(i64), arr(i64), arr(f64))
        common = (arr(f64), types.boolean)            # row_loss, (grad), want_grad
        for kernel, n_options in ((softmax_xent_sparse, 4), (softmax_focal_sparse, 3)):
            pos_ndim = 1 if kernel is softmax_xent_sparse else 2
            out.append((kernel, csr + (arr(f64), arr(f64), types.UniTuple(f64, n_options),
                                       common[0], x, common[1], arr(f64, pos_ndim), i64)))
        for kernel in (bce_sparse, focal_sparse, focal_clip_sparse):
            out.append((kernel, csr + (arr(f64), arr(f64), arr(f64), types.UniTuple(f64, 2),
                                       types.UniTuple(f64, 7), common[0], x, common[1],
                                       arr(f64), i64)))
        for target in (types.float32, types.float64, types.uint8):
            y = arr(target, 2)
            for kernel, n_options in ((softmax_xent_dense, 4), (softmax_focal_dense, 3)):
                if target == types.uint8:               # softmax dense targets are floats
                    continue
                out.append((kernel, (x, y, arr(f64), arr(f64), types.UniTuple(f64, n_options),
                                     common[0], x, common[1], i64)))
            for kernel in (bce_dense, focal_dense, focal_clip_dense):
                out.append((kernel, (x, y, arr(f64), arr(f64), arr(f64), types.UniTuple(f64, 2),
                                     types.UniTuple(f64, 7), common[0], x, common[1], i64)))
    return out


_LOSS_KERNELS = (softmax_xent_sparse, softmax_xent_dense, softmax_focal_sparse,
                 softmax_focal_dense, bce_sparse, bce_dense, focal_sparse, focal_dense,
                 focal_clip_sparse, focal_clip_dense)


def kernel_resources(cc=(9, 0)):
    """``[(kernel, signature, registers per thread, spilled bytes)]`` of every signature of
    ``signatures()``, compiled to PTX and assembled for compute capability ``cc`` by nvJitLink
    (``numba-cuda[cu13]``; no GPU needed) under the register caps ``run`` applies. Registers
    decide how many blocks share an SM (65536 registers each on sm_90), hence the loads in
    flight per SM (README, "Expected performance"); spilled bytes are register spill stores
    to local memory. Without a GPU, device functions are told ``cc`` in place of the current
    device's compute capability."""
    import re
    from unittest import mock

    import numba.cuda.dispatcher as dispatcher
    from cuda.bindings import nvjitlink

    class _Device:
        compute_capability = tuple(cc)

    patch = (mock.patch.object(dispatcher, "get_current_device", lambda: _Device())
             if not cuda.is_available() else mock.MagicMock())
    out = []
    with patch:
        for kernel, signature in signatures():
            ptx, _ = cuda.compile_ptx(kernel.py_func, signature, cc=tuple(cc))
            data = ptx.encode()
            options = [f"-arch=sm_{cc[0]}{cc[1]}", "-Xptxas=-v"]
            dtype = getattr(signature[0], "dtype", None)
            cap = register_cap(np.float32 if str(dtype) == "float32" else np.float64)
            if kernel in _LOSS_KERNELS and cap:
                options.append(f"-maxrregcount={cap}")
            handle = nvjitlink.create(len(options), options)
            try:
                nvjitlink.add_data(handle, nvjitlink.InputType.PTX, data, len(data), "kernel")
                nvjitlink.complete(handle)
                log = bytearray(nvjitlink.get_info_log_size(handle))
                nvjitlink.get_info_log(handle, log)
            finally:
                nvjitlink.destroy(handle)
            found = re.search(r"(\d+) bytes spill stores.*?Used (\d+) registers", log.decode(),
                              re.S)
            if found is None:
                raise RuntimeError(f"nvJitLink reported no resources for "
                                   f"{kernel.py_func.__name__}: {log.decode()[-500:]}")
            out.append((kernel.py_func.__name__, signature, int(found.group(2)),
                        int(found.group(1))))
    return out


if __name__ == "__main__":                            # the table in the README
    for name, signature, registers, spilled in kernel_resources():
        types_ = ", ".join(str(getattr(t, "dtype", t)) for t in signature[:2])
        print(f"{name:26s} {types_:20s} {registers:4d} registers {spilled:4d} B spilled")
