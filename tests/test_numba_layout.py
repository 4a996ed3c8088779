"""The Numba CPU kernels give the same bits wherever their arrays sit in memory.

LLVM guards each vectorised loop with address checks that fall back to the loop's scalar form
when two of the loop's arrays start within a vector's bytes of each other, whether or not they
overlap; the scalar form is slower and rounds some elements differently (last bit). Arrays that
fastxent allocates itself (the zero-size stand-ins for absent inputs, the per-thread scratch
rows) are laid out so that no other array can come that close (``_rows.GUARD``). Before, a
stand-in allocated right below a scratch row sent one call in ~1600 of
``test_threads.py`` to the scalar loop. Skipped where Numba is not installed.
"""
import numpy as np
import pytest

import fastxent
from fastxent import MultiLabel, _config

pytest.importorskip("numba")
if "numba" not in fastxent.available_backends():
    pytest.skip("the Numba CPU backend is not available", allow_module_level=True)

from conftest import PIPELINED_SHAPES, check_pipelined_softmax_ce  # noqa: E402  (tests/conftest.py)
from fastxent.backends.numba_cpu import kernels  # noqa: E402
from fastxent.backends.numba_cpu._rows import (BLOCK, BLOCK_SCRATCH, GUARD,  # noqa: E402
                                               SCRATCH_ALIGN, thread_buffers)
from fastxent.backends.numba_cpu.sigmoid import sigmoid_sparse  # noqa: E402


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(0,), (1, 0)])
def test_absent_inputs_sit_inside_a_private_allocation(dtype, shape):
    a = kernels._nothing(dtype, shape)
    pad = kernels._PADS[np.dtype(dtype)]
    assert a.shape == shape and a.dtype == dtype and a.flags.c_contiguous and a.flags.writeable
    start = a.ctypes.data - pad.ctypes.data
    assert start == GUARD * pad.itemsize                         # GUARD elements below ...
    assert pad.nbytes - start == GUARD * pad.itemsize            # ... and above, all private
    assert kernels._nothing(dtype, shape).ctypes.data == a.ctypes.data


def _sparse_case(dtype):
    rng = np.random.default_rng(5)
    n, c = 24, 40
    x = (3 * rng.standard_normal((n, c))).astype(dtype)
    targets = MultiLabel.from_dense((rng.random((n, c)) < 0.1).astype(np.float64))
    return x, targets.indptr.astype(np.int64), targets.indices.astype(np.int64)


@pytest.mark.parametrize("stores", [(True, 2048), (False, 0)], ids=["streamed", "plain"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("params", [(2.0,), (2.0, 2.0, 0.0, 0.25)], ids=["bce", "focal"])
def test_sparse_sigmoid_ignores_what_lies_below_its_scratch_rows(dtype, params, stores):
    """The regression: the class-weight stand-in ending right below the per-thread scratch
    rows (as a fresh ``np.empty(0)`` could) must not change a bit of the result."""
    fastxent.sigmoid_binary_cross_entropy(np.zeros((2, 3), dtype), np.zeros((2, 3)),
                                          backend="numba")   # loads the threading layer
    x, indptr, indices = _sparse_case(dtype)
    n, c = x.shape
    prm = tuple(dtype(p) for p in params)
    threads = 2

    def call(block_bufs, class_weight):
        row_loss, grad = np.empty(n), np.empty_like(x)
        sigmoid_sparse(x, indptr, indices, np.empty(0), class_weight, kernels._nothing(dtype),
                       np.empty(0), (0.0, 1.0 / x.size), prm, row_loss, grad, True,
                       np.empty(indices.size), block_bufs, kernels._nothing(dtype, (1, 0)),
                       stores)
        return row_loss, grad

    ones = thread_buffers(threads, BLOCK_SCRATCH, dtype)
    ones[...] = 1                        # the kernel's contract: masks of ones
    want_loss, want_grad = call(ones, kernels._nothing(dtype))
    # thread_buffers' layout inside an arena whose first 64 elements stand for whatever lies
    # below its allocation
    arena = np.zeros(64 + threads * BLOCK_SCRATCH + 2 * GUARD, dtype=dtype)
    block_bufs = arena[64 + GUARD:64 + GUARD + threads * BLOCK_SCRATCH].reshape(threads,
                                                                                BLOCK_SCRATCH)
    block_bufs[...] = 1
    own = thread_buffers(threads, BLOCK_SCRATCH, dtype)
    below_own = own.ctypes.data - own.base.ctypes.data
    above_own = own.base.nbytes - below_own - own.nbytes
    assert below_own >= GUARD * own.itemsize and above_own >= GUARD * own.itemsize
    assert own.shape == (threads, BLOCK_SCRATCH) and own.flags.c_contiguous
    for below in range(0, 17):           # a stand-in 0 .. 16 elements below the allocation
        stand_in = arena[64 - below:64 - below + 1][:0]
        assert stand_in.ctypes.data == block_bufs.ctypes.data - (below + GUARD) * arena.itemsize
        loss, grad = call(block_bufs, stand_in)
        assert (block_bufs[:, :BLOCK] == 1).all()   # each mask back to ones after its block
        np.testing.assert_array_equal(loss, want_loss)
        np.testing.assert_array_equal(grad, want_grad)


@pytest.mark.parametrize("backend", ["numba", "cython"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("family", ["sigmoid_binary_cross_entropy", "sigmoid_focal_loss"])
@pytest.mark.parametrize("c", [1, 7, 16, 17, BLOCK - 1, BLOCK, BLOCK + 1, 300, 2 * BLOCK + 17])
def test_sparse_sigmoid_gradient_at_every_offset_of_a_cache_line(backend, dtype, family, c,
                                                                 monkeypatch):
    """Sparse sigmoid targets stream the gradient out in whole cache lines (non-temporal
    stores) staged block by block, or write it with plain stores and no prefetch (both
    compiled CPU backends, either way as ``_config.SPARSE_SIGMOID_STORES`` says; the Cython
    blocks are as long as Numba's): with grad_out starting at each element of a cache line, in
    both modes, the loss and gradient keep their bits (the blocks do not move with the buffer
    or the mode), match the reference, and not one element outside grad_out changes; the loss
    without a gradient and in place has the same bits too. Positives sit on the row's first
    and last elements, on either side of a block boundary and in between."""
    if backend not in fastxent.available_backends():
        pytest.skip(f"the {backend} backend is not available in this installation")
    rng = np.random.default_rng(c)
    n = 5
    x = (4 * rng.standard_normal((n, c))).astype(dtype)
    rows = []
    for i in range(n):
        cols = {0, c - 1, BLOCK - 1, BLOCK, 5 + 3 * i} if i % 2 == 0 else set()
        cols |= set(rng.choice(c, min(c, 3), replace=False).tolist()) if i % 4 == 1 else set()
        rows.append(sorted(j for j in cols if j < c))
    targets = MultiLabel.from_lists(rows, c)
    f = getattr(fastxent, family)
    want_loss, want_grad = f(x, targets, reduction="none", return_grad=True, backend="numpy")
    lanes = 64 // x.itemsize
    arena = np.empty(n * c + 3 * lanes, dtype=dtype)
    first = (-arena.ctypes.data % 64) // x.itemsize + lanes     # a cache line boundary
    bits = None
    for stores, offset in [(m, o) for m in ((True, 2048), (False, 0)) for o in range(lanes)]:
        monkeypatch.setattr(_config, "SPARSE_SIGMOID_STORES", stores)
        arena[...] = -7.0
        start = first + offset
        gv = arena[start:start + n * c].reshape(n, c)
        loss, grad = f(x, targets, reduction="none", return_grad=True, grad_out=gv,
                       backend=backend)
        assert grad is gv
        assert (arena[:start] == -7.0).all() and (arena[start + n * c:] == -7.0).all()
        rtol = 1e-12 if dtype == np.float64 else 1e-5
        np.testing.assert_allclose(loss, want_loss, rtol=rtol)
        np.testing.assert_allclose(grad, want_grad, rtol=0,
                                   atol=(1e-15 if dtype == np.float64 else 1e-6)
                                   * max(np.abs(want_grad).max(), 1e-300))
        if bits is None:
            bits = loss.copy(), grad.copy()
        np.testing.assert_array_equal(loss, bits[0])
        np.testing.assert_array_equal(grad, bits[1])
    # without a gradient (the same loops, the gradient staged and dropped), and in place
    # (plain stores): the same bits
    np.testing.assert_array_equal(f(x, targets, reduction="none", backend=backend), bits[0])
    xi = x.copy()
    loss, grad = f(xi, targets, reduction="none", return_grad=True, grad_out=xi,
                   backend=backend)
    np.testing.assert_array_equal(loss, bits[0])
    np.testing.assert_array_equal(grad, bits[1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("width", [1, 5, 16, 31, 256, 1000])
def test_thread_buffers_share_no_cache_line(dtype, width):
    """Each thread's scratch row starts on a SCRATCH_ALIGN boundary and is whole SCRATCH_ALIGN
    blocks wide (at least ``width``), GUARD elements clear of either end of the allocation."""
    for threads in (1, 2, 3):
        bufs = thread_buffers(threads, width, dtype)
        assert bufs.shape[0] == threads and bufs.shape[1] >= width and bufs.flags.c_contiguous
        assert bufs.ctypes.data % SCRATCH_ALIGN == 0
        assert bufs.strides[0] % SCRATCH_ALIGN == 0
        below = bufs.ctypes.data - bufs.base.ctypes.data
        assert below >= GUARD * bufs.itemsize
        assert bufs.base.nbytes - below - bufs.nbytes >= GUARD * bufs.itemsize


FAMILIES = ["softmax_cross_entropy", "softmax_focal_loss", "sigmoid_binary_cross_entropy",
            "sigmoid_focal_loss"]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("c", [40, 300])
def test_caller_arrays_packed_together_give_the_same_bits(family, dtype, c):
    """Logits, class weights, sample weights and grad_out cut one after another out of one
    allocation, in several orders and offsets: results identical to separate allocations."""
    rng = np.random.default_rng(c)
    n = 7
    x = (3 * rng.standard_normal((n, c))).astype(dtype)
    cw = rng.uniform(0.5, 2.0, c).astype(dtype)
    sw = rng.uniform(0.5, 2.0, n).astype(dtype)
    targets = MultiLabel.from_dense((rng.random((n, c)) < 0.1).astype(np.float64))
    f = getattr(fastxent, family)

    def call(x, cw, sw, grad_out):
        return f(x, targets, class_weight=cw, sample_weight=sw, reduction="none",
                 return_grad=True, grad_out=grad_out, backend="numba")

    want_loss, want_grad = call(x, cw, sw, None)
    sizes = {"x": n * c, "cw": c, "sw": n, "g": n * c}
    for order in (["x", "g", "cw", "sw"], ["cw", "g", "x", "sw"], ["sw", "cw", "x", "g"],
                  ["x", "cw", "g", "sw"]):
        for gap in (0, 1, 3):
            arena = np.empty(sum(sizes.values()) + 4 * gap + 1, dtype=dtype)
            views, at = {}, gap
            for name in order:
                views[name] = arena[at:at + sizes[name]]
                at += sizes[name] + gap
            views["x"][:] = x.ravel()
            views["cw"][:] = cw
            views["sw"][:] = sw
            xv, gv = views["x"].reshape(n, c), views["g"].reshape(n, c)
            loss, grad = call(xv, views["cw"], views["sw"], gv)
            assert grad is gv
            np.testing.assert_array_equal(loss, want_loss)
            np.testing.assert_array_equal(grad, want_grad)


@pytest.mark.parametrize("family, form", [(f, t) for f in FAMILIES
                                          for t in ["multilabel", "dense", "index"]
                                          if t != "index" or "softmax" in f])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cached_row_bytes", [None, 64])
def test_in_place_gives_the_same_bits(family, form, dtype, cached_row_bytes, monkeypatch):
    """grad_out=logits reads each row from a per-thread copy (``_rows.source_row``), so its
    loops run vectorised like the out-of-place ones and give identical results; softmax CE's
    cached gradient (and, with a tiny CACHED_ROW_BYTES, its two-pass one) included."""
    if cached_row_bytes is not None:
        monkeypatch.setattr(fastxent._config, "CACHED_ROW_BYTES", cached_row_bytes)
    rng = np.random.default_rng(11)
    n, c = 9, 700
    x = (4 * rng.standard_normal((n, c))).astype(dtype)
    positives = rng.random((n, c)) < 0.02
    if form == "multilabel":
        targets = MultiLabel.from_dense(positives.astype(np.float64))
    elif form == "dense":
        targets = positives / np.maximum(positives.sum(1, keepdims=True), 1) \
            if "softmax" in family else positives.astype(np.float64)
    else:
        targets = rng.integers(0, c, n)
    f = getattr(fastxent, family)
    want_loss, want_grad = f(x, targets, reduction="none", return_grad=True, backend="numba")
    x_in = x.copy()
    loss, grad = f(x_in, targets, reduction="none", return_grad=True, grad_out=x_in,
                   backend="numba")
    assert grad is x_in
    np.testing.assert_array_equal(loss, want_loss)
    np.testing.assert_array_equal(grad, want_grad)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", PIPELINED_SHAPES)
@pytest.mark.parametrize("form", ["int", "multilabel"])
@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "weighted"])
def test_pipelined_softmax_ce_keeps_the_bits_of_the_row_by_row_form(dtype, shape, form,
                                                                    weighted):
    """Softmax CE with class indices or CSR targets, out of place, writes row i's gradient
    while it reads row i + 1 (``softmax_xent_sparse_pipelined``); in place it goes row by row.
    Both give the same bits, at every offset of ``grad_out`` within a cache line, with rows
    that count nothing (ignored, no positives) anywhere, the first and last rows of a
    thread's run included; and nothing outside ``grad_out`` is written."""
    check_pipelined_softmax_ce("numba", kernels._pipelines, dtype, shape, form, weighted)
