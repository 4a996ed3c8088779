"""The CUDA backend (fastxent/backends/numba_cuda) and device routing (fastxent/_device.py).

Two runs use this file:

* under the simulator, ``NUMBA_ENABLE_CUDASIM=1 pytest tests/test_cuda.py`` (CI; about 2,000
  elements per second, so every case is tiny, and the launch tunables are patched small so the
  rows span several groups, blocks and grid-stride trips): every family x target form x dtype
  with every option against the float64 reference, the four reductions, ``grad_out`` and in
  place, device inputs with device outputs, host-input copies, mixing errors, and bit-for-bit
  determinism;
* in the normal run (no simulator): every kernel signature compiled to PTX for a Hopper GPU
  (``cuda.compile_ptx(..., cc=(9, 0))``; needs ``numba-cuda[cu13]``), and the "no GPU" error.

Tests that need a real GPU skip without one.
"""
from __future__ import annotations

import numpy as np
import pytest

import fastxent
from fastxent import _config
from fastxent import reference as R

from conftest import assert_grad_close, assert_loss_close

pytestmark = pytest.mark.cuda

try:
    from numba import cuda
    from numba.core import config as _numba_config
    HAVE_NUMBA_CUDA = getattr(cuda, "implementation", "") == "NVIDIA" or bool(
        _numba_config.ENABLE_CUDASIM)
except ImportError:                                  # pragma: no cover - numba-cuda missing
    cuda = None
    HAVE_NUMBA_CUDA = False
SIMULATOR = HAVE_NUMBA_CUDA and bool(_numba_config.ENABLE_CUDASIM)
GPU = HAVE_NUMBA_CUDA and not SIMULATOR and cuda.is_available()

needs_kernels = pytest.mark.skipif(
    not (SIMULATOR or GPU),
    reason="CUDA kernels need a GPU or the simulator: run "
           "NUMBA_ENABLE_CUDASIM=1 pytest tests/test_cuda.py")
needs_gpu = pytest.mark.skipif(not GPU, reason="needs a real CUDA GPU")

FAMILIES = ("softmax_cross_entropy", "softmax_focal_loss", "sigmoid_binary_cross_entropy",
            "sigmoid_focal_loss")
SOFTMAX = FAMILIES[:2]
DTYPES = {"f32": np.float32, "f64": np.float64}
N_ROWS, N_CLASSES = 5, 7


@pytest.fixture(autouse=True)
def small_launch(monkeypatch):
    """Groups of 2 threads, 4 rows per 8-thread block, at most 1 block: each launch runs
    several grid-stride trips, and every row spans several threads."""
    if SIMULATOR:
        monkeypatch.setattr(_config, "CUDA_THREADS_PER_BLOCK", 8)
        monkeypatch.setattr(_config, "CUDA_ELEMENTS_PER_THREAD", 4)
        monkeypatch.setattr(_config, "CUDA_MAX_BLOCKS", 1)


def make_case(family, form, dtype, seed, n=N_ROWS, c=N_CLASSES):
    """(logits, targets, options) with every option of the family switched on."""
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal((n, c)) * 3).astype(dtype)
    logits[0, 2] = logits[0].max() + 12.0          # a confident row: p close to 1
    if form == "index":
        targets = rng.integers(0, c, n)
        targets[1] = -100
    elif form == "dense":
        targets = rng.random((n, c))
        if family in SOFTMAX:
            targets /= targets.sum(1, keepdims=True)
    else:
        lists = [[2], [0, 3, 6], [], [1, 4], [5]][:n]        # an empty row: not counted
        values = [[1.0], [0.5, 1.0, 0.25], [], [1.0, 0.75], [0.0]][:n]   # a zero-mass row
        indptr = np.cumsum([0] + [len(r) for r in lists])
        targets = fastxent.MultiLabel(indptr, np.concatenate(lists).astype(np.int64),
                                      n_classes=c, values=np.concatenate(values))
    options = dict(class_weight=rng.random(c) + 0.5, sample_weight=rng.random(n) + 0.5,
                   label_smoothing=0.1)
    if family == "softmax_cross_entropy":
        options["z_loss"] = 0.01
    elif family == "softmax_focal_loss":
        options.update(gamma=1.5, alpha=rng.random(c))
    elif family == "sigmoid_binary_cross_entropy":
        options["pos_weight"] = rng.random(c) + 1.0
    else:
        options.update(gamma=2.0, alpha=0.25, gamma_neg=4.0, clip=0.05)
    return logits, targets, options


def cases():
    out = []
    for family in FAMILIES:
        for form in (("index", "dense", "sparse") if family in SOFTMAX else ("dense", "sparse")):
            for dtype in DTYPES:
                out.append(pytest.param(family, form, dtype, id=f"{family}-{form}-{dtype}"))
    return out


def reference(family, logits, targets, options, reduction):
    return getattr(R, family)(logits.astype(np.float64), targets, reduction=reduction,
                              return_grad=True, **options)


def to_device(value):
    return cuda.to_device(value) if isinstance(value, np.ndarray) else value


def to_host(value):
    return value.copy_to_host() if hasattr(value, "copy_to_host") else value


# --------------------------------------------------------------------------------------------
# every family, target form, dtype and option against the reference
# --------------------------------------------------------------------------------------------

@needs_kernels
@pytest.mark.parametrize("family,form,dtype", cases())
def test_host_inputs_match_reference(family, form, dtype):
    """backend="cuda" on host arrays: copied over and back; NumPy outputs."""
    dtype = DTYPES[dtype]
    logits, targets, options = make_case(family, form, dtype, seed=len(family) + len(form))
    snapshot = logits.copy()
    loss, grad = getattr(fastxent, family)(logits, targets, reduction="none", return_grad=True,
                                           backend="cuda", **options)
    ref_loss, ref_grad = reference(family, logits, targets, options, "none")
    assert isinstance(loss, np.ndarray) and loss.dtype == dtype and loss.shape == (N_ROWS,)
    assert isinstance(grad, np.ndarray) and grad.dtype == dtype
    assert_loss_close(loss, ref_loss, dtype)
    assert_grad_close(grad, ref_grad, dtype)
    np.testing.assert_array_equal(logits, snapshot)


@needs_kernels
@pytest.mark.parametrize("family,form,dtype", cases())
def test_device_inputs_match_reference(family, form, dtype):
    """Device logits and targets: computed on the device, the gradient returned as a device
    array; each case takes one of the four reductions."""
    dtype = DTYPES[dtype]
    seed = len(family) * 3 + len(form) + (dtype == np.float32)
    logits, targets, options = make_case(family, form, dtype, seed=seed)
    reduction = ("none", "sum", "mean", "batchmean")[seed % 4]
    options_dev = {k: to_device(np.asarray(v)) if isinstance(v, np.ndarray) else v
                   for k, v in options.items()}
    loss, grad = getattr(fastxent, family)(to_device(logits), to_device(targets),
                                           reduction=reduction, return_grad=True,
                                           **options_dev)
    ref_loss, ref_grad = reference(family, logits, targets, options, reduction)
    assert getattr(type(grad), "__cuda_ndarray__", False), type(grad)
    if reduction == "none":
        assert getattr(type(loss), "__cuda_ndarray__", False)
        loss = to_host(loss)
        assert loss.dtype == dtype
    else:
        assert isinstance(loss, float)
    assert_loss_close(loss, ref_loss, dtype)
    assert_grad_close(to_host(grad), ref_grad, dtype)


@needs_kernels
@pytest.mark.parametrize("family", FAMILIES)
def test_default_options_without_grad(family):
    """The optional arrays absent (empty placeholders in the kernels), no gradient."""
    form = "index" if family in SOFTMAX else "sparse"
    logits, targets, _ = make_case(family, form, np.float64, seed=3)
    loss = getattr(fastxent, family)(logits, targets, reduction="sum", backend="cuda")
    assert_loss_close(loss, getattr(R, family)(logits, targets, reduction="sum"), np.float64)


@needs_kernels
@pytest.mark.parametrize("family,form", [("softmax_cross_entropy", "sparse"),
                                         ("sigmoid_focal_loss", "dense")])
def test_groups_wider_than_a_warp(monkeypatch, family, form):
    """C = 70 with 64 threads per row: two warps per group, combined through shared memory."""
    monkeypatch.setattr(_config, "CUDA_THREADS_PER_BLOCK", 64)
    monkeypatch.setattr(_config, "CUDA_ELEMENTS_PER_THREAD", 1)
    logits, targets, options = make_case(family, form, np.float64, seed=11, n=2, c=70)
    if form == "sparse":
        targets = fastxent.MultiLabel.from_lists([[3, 40, 69], [0]], n_classes=70)
    loss, grad = getattr(fastxent, family)(logits, targets, reduction="none", return_grad=True,
                                           backend="cuda", **options)
    ref_loss, ref_grad = reference(family, logits, targets, options, "none")
    assert_loss_close(loss, ref_loss, np.float64)
    assert_grad_close(grad, ref_grad, np.float64)


@needs_kernels
@pytest.mark.parametrize("family,form", [("softmax_cross_entropy", "index"),
                                         ("softmax_focal_loss", "dense")])
def test_long_softmax_rows_get_their_own_larger_blocks(monkeypatch, family, form):
    """Rows over CUDA_LONG_ROW_BYTES: one row per block of CUDA_LONG_ROW_THREADS threads (here
    16-thread blocks where other rows get 8), same results."""
    monkeypatch.setattr(_config, "CUDA_LONG_ROW_BYTES", 8 * 30)
    monkeypatch.setattr(_config, "CUDA_LONG_ROW_THREADS", 16)
    logits, targets, options = make_case(family, form, np.float64, seed=12, n=3, c=37)
    loss, grad = getattr(fastxent, family)(logits, targets, reduction="none", return_grad=True,
                                           backend="cuda", **options)
    ref_loss, ref_grad = reference(family, logits, targets, options, "none")
    assert_loss_close(loss, ref_loss, np.float64)
    assert_grad_close(grad, ref_grad, np.float64)


@pytest.mark.skipif(not HAVE_NUMBA_CUDA, reason="numba-cuda is not installed")
def test_layout_gives_long_softmax_rows_one_larger_block_each(monkeypatch):
    from fastxent.backends.numba_cuda import launch
    monkeypatch.setattr(_config, "CUDA_THREADS_PER_BLOCK", 256)
    monkeypatch.setattr(_config, "CUDA_ELEMENTS_PER_THREAD", 8)
    monkeypatch.setattr(_config, "CUDA_MAX_BLOCKS", 65536)
    monkeypatch.setattr(_config, "CUDA_LONG_ROW_BYTES", 65536)
    monkeypatch.setattr(_config, "CUDA_LONG_ROW_THREADS", 512)
    assert launch.layout(1000, 100) == (63, 256, 16)           # 16 rows per block
    assert launch.layout(1000, 16384, 16384 * 4) == (1000, 256, 256)
    assert launch.layout(1000, 16385, 16385 * 4) == (1000, 512, 512)
    assert launch.layout(1000, 16385, 0) == (1000, 256, 256)   # sigmoid: one read per row
    monkeypatch.setattr(_config, "CUDA_LONG_ROW_BYTES", 0)
    assert launch.layout(1000, 10 ** 6, 8 * 10 ** 6) == (1000, 256, 256)
    monkeypatch.setattr(_config, "CUDA_LONG_ROW_BYTES", 65536)
    monkeypatch.setattr(_config, "CUDA_LONG_ROW_THREADS", 384)
    with pytest.raises(ValueError, match="CUDA_LONG_ROW_THREADS"):
        launch.layout(10, 10 ** 5, 4 * 10 ** 5)


# --------------------------------------------------------------------------------------------
# buffers, in place, determinism, edge cases
# --------------------------------------------------------------------------------------------

@needs_kernels
def test_grad_out_and_in_place_on_device():
    logits, targets, options = make_case("softmax_cross_entropy", "index", np.float32, seed=5)
    ref_loss, ref_grad = reference("softmax_cross_entropy", logits, targets, options, "mean")
    d_logits, d_targets = cuda.to_device(logits), cuda.to_device(targets)
    d_options = {k: to_device(np.asarray(v)) if isinstance(v, np.ndarray) else v
                 for k, v in options.items()}
    buffer = cuda.device_array_like(logits)
    loss, grad = fastxent.softmax_cross_entropy(d_logits, d_targets, return_grad=True,
                                                grad_out=buffer, **d_options)
    assert grad is buffer
    assert_grad_close(buffer.copy_to_host(), ref_grad, np.float32)
    np.testing.assert_array_equal(d_logits.copy_to_host(), logits)      # logits untouched
    loss, grad = fastxent.softmax_cross_entropy(d_logits, d_targets, return_grad=True,
                                                grad_out=d_logits, **d_options)
    assert grad is d_logits
    assert_loss_close(loss, ref_loss, np.float32)
    assert_grad_close(d_logits.copy_to_host(), ref_grad, np.float32)


@needs_kernels
@pytest.mark.parametrize("family", ["sigmoid_binary_cross_entropy", "softmax_focal_loss"])
def test_in_place_on_host_inputs(family):
    logits, targets, options = make_case(family, "sparse", np.float64, seed=8)
    ref_loss, ref_grad = reference(family, logits, targets, options, "sum")
    work = logits.copy()
    loss, grad = getattr(fastxent, family)(work, targets, reduction="sum", return_grad=True,
                                           grad_out=work, backend="cuda", **options)
    assert grad is work
    assert_loss_close(loss, ref_loss, np.float64)
    assert_grad_close(work, ref_grad, np.float64)


@needs_kernels
def test_deterministic_run_to_run(monkeypatch):
    """No float atomics: the same inputs give the same bits (rows of 3 warps' worth here)."""
    monkeypatch.setattr(_config, "CUDA_THREADS_PER_BLOCK", 64)
    monkeypatch.setattr(_config, "CUDA_ELEMENTS_PER_THREAD", 1)
    rng = np.random.default_rng(4)
    logits = cuda.to_device(rng.standard_normal((2, 45)).astype(np.float32))
    labels = cuda.to_device(np.array([3, 44]))
    first = fastxent.softmax_cross_entropy(logits, labels, label_smoothing=0.2,
                                           return_grad=True)
    second = fastxent.softmax_cross_entropy(logits, labels, label_smoothing=0.2,
                                            return_grad=True)
    assert first[0] == second[0]
    np.testing.assert_array_equal(first[1].copy_to_host(), second[1].copy_to_host())


@pytest.mark.skipif(not SIMULATOR, reason="the race is the simulator's own (no GPU has it)")
@pytest.mark.parametrize("family", FAMILIES)
def test_simulator_shared_allocation_race(monkeypatch, family):
    """The simulator's ``FakeCUDAShared.array`` looks a line's array up and inserts it without
    a lock, so threads arriving together may each get a private array (seen in CI as an
    intermittent wrong loss). Here every thread's first call on a line gets a private array,
    the race's worst case; the kernels' second allocation pass (``_rows.SHARED_PASSES``) must
    still give one array per block and the reference's results."""
    import threading

    from numba.cuda.simulator import kernelapi
    from numba.cuda.np import numpy_support

    lock = threading.Lock()
    calls = []

    def racy_array(self, shape, dtype, alignment=None):
        import sys
        import traceback
        line = tuple(traceback.extract_stack(sys._getframe(1), limit=1)[0][0:2])
        key = (threading.get_ident(), line)
        with lock:                                      # per block: the instance's own set
            seen = self.__dict__.setdefault("_first_calls_seen", set())
            first = key not in seen
            seen.add(key)
            calls.append(first)
        if first:                                       # lost the race: a private array
            res = np.full(shape, np.nan, numpy_support.as_dtype(dtype))
            self._allocations[line] = res
            return res
        return self._allocations[line]

    monkeypatch.setattr(kernelapi.FakeCUDAShared, "array", racy_array)
    monkeypatch.setattr(_config, "CUDA_THREADS_PER_BLOCK", 64)     # groups wider than a warp
    logits, targets, options = make_case(family, "dense", np.float32, seed=11, n=3, c=70)
    loss, grad = getattr(fastxent, family)(logits, targets, backend="cuda", return_grad=True,
                                           **options)
    ref_loss, ref_grad = reference(family, logits, targets, options, "mean")
    assert any(calls) and not all(calls), "the patched allocator was not used as planned"
    assert_loss_close(loss, ref_loss, np.float32)
    assert_grad_close(grad, ref_grad, np.float32)


@needs_kernels
def test_no_rows():
    logits = np.zeros((0, 4), np.float32)
    loss, grad = fastxent.softmax_cross_entropy(cuda.to_device(logits), cuda.to_device(
        np.zeros(0, np.int64)), return_grad=True)
    assert loss == 0.0 and grad.shape == (0, 4)


@needs_kernels
def test_every_row_ignored_mean_is_zero():
    logits, _, _ = make_case("softmax_cross_entropy", "index", np.float64, seed=2, n=2, c=3)
    loss, grad = fastxent.softmax_cross_entropy(cuda.to_device(logits),
                                                cuda.to_device(np.array([-100, -100])),
                                                return_grad=True)
    assert loss == 0.0
    assert not np.any(grad.copy_to_host())


# --------------------------------------------------------------------------------------------
# routing and errors (no kernel launch)
# --------------------------------------------------------------------------------------------

@needs_kernels
def test_mixing_host_and_device_raises():
    logits = np.zeros((2, 3), np.float32)
    with pytest.raises(TypeError, match="targets is on the host"):
        fastxent.softmax_cross_entropy(cuda.to_device(logits), np.array([0, 1]))
    with pytest.raises(TypeError, match="class_weight is on the host"):
        fastxent.softmax_cross_entropy(cuda.to_device(logits), cuda.to_device(np.array([0, 1])),
                                       class_weight=np.ones(3))
    with pytest.raises(TypeError, match="on the host"):
        fastxent.sigmoid_binary_cross_entropy(logits, cuda.to_device(np.zeros((2, 3))))


@needs_kernels
@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_device_inputs_need_a_device_backend(backend):
    with pytest.raises(ValueError, match="backend='auto' or 'cuda'"):
        fastxent.softmax_cross_entropy(cuda.to_device(np.zeros((2, 3))),
                                       cuda.to_device(np.array([0, 1])), backend=backend)


@needs_kernels
def test_bad_device_targets_raise_before_any_work():
    logits = cuda.to_device(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fastxent.sigmoid_binary_cross_entropy(logits, cuda.to_device(np.full((2, 3), 1.5)))
    with pytest.raises(ValueError, match="outside"):
        fastxent.softmax_cross_entropy(logits, cuda.to_device(np.array([0, 7])))
    with pytest.raises(ValueError, match="shape"):
        fastxent.sigmoid_focal_loss(logits, cuda.to_device(np.zeros((3, 2))))
    with pytest.raises(TypeError, match="float32 or float64"):
        fastxent.softmax_cross_entropy(cuda.to_device(np.zeros((2, 3), np.int32)),
                                       cuda.to_device(np.array([0, 1])))
    soft = np.full((2, 3), 1 / 3)
    with pytest.raises(ValueError, match="ignore_index=0 applies to class-index targets"):
        fastxent.softmax_cross_entropy(logits, cuda.to_device(soft), ignore_index=0)
    with pytest.raises(ValueError, match="ignore_index=2 .* sparse targets"):
        fastxent.softmax_focal_loss(logits, fastxent.MultiLabel.from_dense(soft > 0),
                                    ignore_index=2)
    with pytest.raises(TypeError, match="ignore_index must be an int"):
        fastxent.softmax_cross_entropy(logits, cuda.to_device(soft), ignore_index=0.5)


@needs_kernels
@pytest.mark.parametrize("family", ["softmax_cross_entropy", "softmax_focal_loss"])
def test_device_class_indices_stay_on_the_device(monkeypatch, family):
    """Class indices on the device become CSR rows on the device: the weighted mean (ignored
    rows, class and sample weights) matches the reference, and neither the labels nor the
    weights are read back to the host (what comes back: one count of bad weights per vector,
    read at once, and single values: the mean's denominator, the class weights' sum, the
    loss); an index out of range raises, naming the row, before the logits (here also the
    gradient buffer) change."""
    rng = np.random.default_rng(7)
    n, c = 9, 6
    logits = rng.standard_normal((n, c))
    labels = rng.integers(0, c, n)
    labels[[1, 4]] = -100
    options = {"class_weight": rng.random(c) + 0.5, "sample_weight": rng.random(n) + 0.5}
    options_dev = {k: cuda.to_device(v) for k, v in options.items()}
    reads = []
    array_type = type(cuda.to_device(np.zeros(1)))
    original = array_type.copy_to_host

    def recording(self, *args, **kwargs):
        reads.append((np.dtype(self.dtype).kind, int(np.prod(self.shape))))
        return original(self, *args, **kwargs)
    monkeypatch.setattr(array_type, "copy_to_host", recording)
    loss, grad = getattr(fastxent, family)(cuda.to_device(logits), cuda.to_device(labels),
                                           return_grad=True, **options_dev)
    assert reads.count(("i", 4)) == 1, reads                 # the weights' bad-entry counts
    floats = [size for kind, size in reads if kind == "f"]
    assert floats == [1] * (3 if family == "softmax_cross_entropy" else 2), reads
    assert len(reads) == len(floats) + 1, reads
    monkeypatch.setattr(array_type, "copy_to_host", original)
    ref_loss, ref_grad = reference(family, logits, labels, options, "mean")
    assert_loss_close(loss, ref_loss, np.float64)
    assert_grad_close(to_host(grad), ref_grad, np.float64)
    labels[5] = c
    x = cuda.to_device(logits)
    with pytest.raises(ValueError, match="row 5 has class index 6"):
        getattr(fastxent, family)(x, cuda.to_device(labels), return_grad=True, grad_out=x,
                                  **options_dev)
    np.testing.assert_array_equal(x.copy_to_host(), logits)


@needs_kernels
@pytest.mark.parametrize("family,name,bad,message", [
    ("softmax_cross_entropy", "class_weight", -1.0, "class_weight must be finite and >= 0, "
                                                    "found -1.0"),
    ("softmax_focal_loss", "sample_weight", np.nan, "sample_weight must be finite and >= 0, "
                                                    "found nan"),
    ("sigmoid_binary_cross_entropy", "pos_weight", np.inf, "pos_weight must be finite and >= 0"),
    ("softmax_focal_loss", "alpha", 1.5, r"alpha must be in \[0, 1\], found 1.5"),
])
def test_device_weight_vectors_are_checked_on_the_device(family, name, bad, message):
    """A bad entry in a device weight vector raises the host message, before any loss kernel
    writes the gradient (here the logits themselves), and leaves the vector as it was."""
    rng = np.random.default_rng(4)
    n, c = 4, 5
    logits = rng.standard_normal((n, c))
    targets = rng.integers(0, c, n) if family in SOFTMAX else (rng.random((n, c)) > 0.5) * 1.0
    vector = rng.random(n if name == "sample_weight" else c) * 0.5
    vector[2] = bad
    d_vector = cuda.to_device(vector)
    x = cuda.to_device(logits)
    with pytest.raises(ValueError, match=message):
        getattr(fastxent, family)(x, cuda.to_device(targets), return_grad=True, grad_out=x,
                                  **{name: d_vector})
    np.testing.assert_array_equal(x.copy_to_host(), logits)
    np.testing.assert_array_equal(d_vector.copy_to_host(), vector)
    vector[2] = 0.25                                   # and a good one gives the host result
    ok = getattr(fastxent, family)(cuda.to_device(logits), cuda.to_device(targets),
                                   **{name: cuda.to_device(vector)})
    ref = getattr(fastxent, family)(logits, targets, backend="numpy", **{name: vector})
    assert_loss_close(ok, ref, np.float64)


def test_device_detection_without_a_gpu():
    from fastxent import _device

    class Foreign:                                    # a CuPy-like object, never touched
        __cuda_array_interface__ = {"shape": (2, 3), "typestr": "<f4", "data": (0, False),
                                    "version": 3}

    class DLPackCPU:
        def __dlpack_device__(self):
            return (1, 0)

    assert _device.is_device_array(Foreign())
    assert not _device.is_device_array(DLPackCPU())
    assert not _device.is_device_array(np.zeros(3))
    assert not _device.is_device_array(fastxent.MultiLabel.from_lists([[0]], n_classes=2))
    assert not _device.is_device_array(2.5)


@pytest.mark.skipif(SIMULATOR or GPU, reason="checks the message without a GPU")
def test_cuda_backend_without_gpu_says_so():
    with pytest.raises(RuntimeError, match="GPU"):
        fastxent.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 1]), backend="cuda")


# --------------------------------------------------------------------------------------------
# real compilation: every kernel signature to PTX for a Hopper GPU (sm_90), without a GPU
# --------------------------------------------------------------------------------------------

def _ptx_signatures():
    if not HAVE_NUMBA_CUDA or SIMULATOR:
        return []
    from fastxent.backends.numba_cuda import launch
    return [pytest.param(kernel, sig, id=f"{kernel.py_func.__name__}-{i}")
            for i, (kernel, sig) in enumerate(launch.signatures())]


def _toolkit_reason():
    if not HAVE_NUMBA_CUDA:
        return "numba-cuda is not installed (pip install 'fastxent[cuda]')"
    if SIMULATOR:
        return "the simulator replaces the compiler: PTX is checked in the run without it"
    try:
        from numba.cuda.cudadrv import nvvm
        nvvm.NVVM()
    except Exception as exc:                          # noqa: BLE001 - any toolkit problem
        return f"the CUDA toolkit (NVVM) is missing: pip install 'numba-cuda[cu13]' ({exc})"
    return ""


@pytest.mark.skipif(bool(_toolkit_reason()), reason=_toolkit_reason() or "-")
@pytest.mark.parametrize("kernel,signature", _ptx_signatures())
def test_kernels_compile_to_ptx(kernel, signature, monkeypatch):
    """Device functions ask the driver for the current device's compute capability; without
    a GPU the test tells them sm_90, the target of the kernel itself."""
    import numba.cuda.dispatcher as dispatcher

    class Hopper:
        compute_capability = (9, 0)

    if not GPU:
        monkeypatch.setattr(dispatcher, "get_current_device", lambda: Hopper())
    ptx, _ = cuda.compile_ptx(kernel.py_func, signature, cc=(9, 0))
    assert ".target sm_90" in ptx
    assert "atom.global.add.f" not in ptx and "red.global.add.f" not in ptx   # no float atomics


def _nvjitlink_reason():
    reason = _toolkit_reason()
    if reason:
        return reason
    try:
        from cuda.bindings import nvjitlink  # noqa: F401
    except ImportError as exc:
        return f"nvJitLink is missing: pip install 'numba-cuda[cu13]' ({exc})"
    return ""


def _blocks_per_sm(registers, threads=256):
    """Resident blocks of ``threads`` threads on an sm_90 SM (65536 registers, allocated per
    warp in units of 256; at most 64 warps)."""
    per_warp = -(-registers * 32 // 256) * 256
    warps = threads // 32
    return min(65536 // (per_warp * warps), 64 // warps)


@pytest.mark.skipif(not HAVE_NUMBA_CUDA or SIMULATOR,
                    reason="registers exist on a GPU only: checked in the run without the "
                           "simulator" if HAVE_NUMBA_CUDA else "numba-cuda is not installed")
def test_loss_kernels_launch_with_the_register_cap_of_their_dtype(monkeypatch):
    from fastxent.backends.numba_cuda import launch
    monkeypatch.setattr(_config, "CUDA_MAX_REGISTERS_F32", 80)
    monkeypatch.setattr(_config, "CUDA_MAX_REGISTERS_F64", 128)
    k32 = launch.capped(launch.bce_sparse, np.float32, 256)
    k64 = launch.capped(launch.bce_sparse, np.float64, 256)
    assert k32.targetoptions["max_registers"] == 80
    assert k64.targetoptions["max_registers"] == 128
    assert k32.py_func is launch.bce_sparse.py_func
    assert launch.capped(launch.bce_sparse, np.float32, 256) is k32       # made once
    with pytest.raises(ValueError, match="FASTXENT_CUDA_MAX_REGISTERS_F32"):
        launch.capped(launch.softmax_xent_sparse, np.float32, 1024)       # 81920 > 65536
    monkeypatch.setattr(_config, "CUDA_MAX_REGISTERS_F32", 0)
    assert launch.capped(launch.bce_sparse, np.float32, 1024) is launch.bce_sparse
    monkeypatch.setattr(_config, "CUDA_MAX_REGISTERS_F32", 300)
    with pytest.raises(ValueError, match="up to 255"):
        launch.capped(launch.bce_sparse, np.float32, 256)


@pytest.mark.skipif(bool(_nvjitlink_reason()), reason=_nvjitlink_reason() or "-")
def test_kernel_registers_leave_room_for_loads_in_flight():
    """What the README's on-paper performance rests on, as compiled for a Hopper GPU: every
    loss kernel keeps at least 2 blocks of 256 threads per SM, float32 ones 3 (the register
    caps of ``_config``), and the float32 kernels of the main paths (class indices or CSR
    targets) do it without spilling more than a register to local memory (focal with
    ``clip > 0`` has kernels of its own, ``clip_*``, held to the blocks per SM only)."""
    from fastxent.backends.numba_cuda import launch
    table = launch.kernel_resources()
    assert len(table) == len(launch.signatures())
    main = {"softmax_xent_sparse", "sparse_kernel"}
    for name, signature, registers, spilled in table:
        if name in ("sum_rows", "count_outside_unit_kernel", "index_targets_kernel",
                    "cast_rows"):
            continue
        float32 = str(signature[0].dtype) == "float32"
        assert _blocks_per_sm(registers) >= (3 if float32 else 2), (name, signature, registers)
        if float32 and name in main:
            assert spilled <= 4, (name, signature, spilled)


# --------------------------------------------------------------------------------------------
# a real GPU: frameworks' device tensors
# --------------------------------------------------------------------------------------------

@needs_gpu
def test_torch_cuda_tensors_round_trip():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch without CUDA")
    logits = torch.randn(64, 1000, device="cuda")
    labels = torch.randint(0, 1000, (64,), device="cuda")
    loss, grad = fastxent.softmax_cross_entropy(logits, labels, return_grad=True)
    assert isinstance(grad, torch.Tensor) and grad.is_cuda
    ref = torch.nn.functional.cross_entropy(logits.double(), labels)
    assert abs(loss - float(ref)) < 1e-5 * max(1.0, abs(float(ref)))


@needs_gpu
def test_dlpack_capsule_input():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch without CUDA")
    logits = torch.randn(8, 50, device="cuda", dtype=torch.float64)
    labels = torch.randint(0, 50, (8,), device="cuda")
    loss = fastxent.softmax_cross_entropy(torch.utils.dlpack.to_dlpack(logits), labels)
    ref = torch.nn.functional.cross_entropy(logits, labels)
    assert abs(loss - float(ref)) < 1e-12 * max(1.0, abs(float(ref)))
