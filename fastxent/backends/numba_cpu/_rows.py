"""Row loops shared by the Numba CPU kernels.

Each helper walks one C-contiguous row slice from index 0 (so LLVM vectorises it) and accumulates
long sums in float64, block by block, from float32-or-float64 partial sums over ``BLOCK`` elements.
"""
import math

import numpy as np
from numba import get_thread_id, njit

from ... import _math
from . import _primitives  # noqa: F401  (registers _math for Numba)
from ._primitives import (JIT_OPTIONS, STREAM_BYTES, prefetch, address_of, maximum, store_fence,
                          stream_scaled, wide_vectors)

#: Elements per block: float32 partial sums over a block stay accurate (< 2e-6 relative even in
#: the worst case, with 8-lane vector accumulators), then go to float64; a block is 1 KiB of
#: float32, so its second read hits L1. The block is also the prefetch step (``prefetch_ahead``
#: runs once per block): 256 elements, i.e. 16 prefetches between stretches of arithmetic,
#: kept the memory busier than 512 (32 at once) on this project's machine (A/B, 2 threads,
#: 1024 x 32768 float32: sigmoid focal 13.3-14.7 -> 11.9-13.5 ms, BCE 11.3-12.1 -> 10.5-11.3,
#: softmax CE 1-2%; 128 was no better).
BLOCK = 256

#: How far ahead of the block being computed the compute-heavy passes that read the logits
#: from memory prefetch them (``prefetch_ahead``: the sigmoid family's background pass and
#: ``row_stats``; the hardware prefetcher does not cross 4 KiB pages, and loops this heavy
#: leave too few misses in flight to hide the memory's latency). Measured on this project's
#: machine (2 threads, float32, 1024 x 32768, A/B against no prefetch): BCE with CSR targets
#: 13.8-15.0 -> 12.0-12.4 ms, sigmoid focal 14.8 -> 13.3-13.6 ms (2 KiB ahead; 4 KiB gained
#: less for focal, 2 to 32 KiB all 10-15% for BCE), softmax focal 3-4% (``row_stats``). Not
#: used where it measured no gain: dense sigmoid targets (logits and targets both prefetched,
#: or either: 0-10% slower), prefetching the gradient's lines for writing (slower).
PREFETCH_BYTES = 2048

#: The cached softmax statistics of a row with one target stream (class indices, CSR targets:
#: ``row_stats_store(xr, buf, True)``) prefetch the logits farther ahead while the row is at
#: most ``SHORT_ROW_BYTES`` long. A/B on this project's machine (2 threads, float32, softmax CE
#: with a gradient, 6144 against 2048): 1024 x 32768 (128 KiB rows) 3-6% faster (9.1-9.6
#: against 9.6-9.9 ms), 4096 x 8192 3%; rows of 256 KiB and 1 MiB no faster with it (and
#: 1 MiB rows 9% slower: hence the bound); dense soft targets, a second stream, 2-4% slower
#: (they keep ``PREFETCH_BYTES``); the Cython kernels 2% slower at 1024 x 32768 (they keep it
#: too).
SHORT_ROW_PREFETCH_BYTES = 6144
SHORT_ROW_BYTES = 131072

_jit = njit(**JIT_OPTIONS)


@njit(inline="always", **JIT_OPTIONS)
def prefetch_ahead(arr, b0, b1, ahead_bytes=PREFETCH_BYTES):
    """Prefetch the cache lines of ``arr[b0:b1]`` moved ``ahead_bytes`` ahead (past the end of
    a row slice: the next row's start, or beyond the array, where a prefetch does nothing)."""
    ahead = ahead_bytes // arr.itemsize
    for q in range(b0 + ahead, b1 + ahead, STREAM_BYTES // arr.itemsize):
        prefetch(arr, q, False)


@njit(inline="always", **JIT_OPTIONS)
def block_max(xr):
    """max of a row slice, NaN if it holds a NaN (``maximum``: the loop vectorises)."""
    wide_vectors()
    m = _math.cast_like(xr[0], -math.inf)
    for j in range(xr.size):
        m = maximum(m, xr[j])
    return m


@njit(inline="always", **JIT_OPTIONS)
def exp_block_sums(blk, m, out, store):
    """``(acc, ties)`` of a block: ``acc = sum exp(x - m)`` without the exact 1 of each tie
    ``x == m``, ``ties`` their count (both in x's type); ``out[j] = exp(x_j - m)`` if ``store``
    (a constant where it is inlined: the loop compiles without the test)."""
    one = _math.cast_like(m, 1.0)
    zero = _math.cast_like(m, 0.0)
    acc = zero
    ties = zero
    for j in range(blk.size):
        v = blk[j]
        e = _math.exp_nonpos(v - m)
        if store:
            out[j] = e
        tie = v == m                             # exp(0) = 1 exactly: count it separately
        acc += e - one if tie else e             # 0 for a tie (a select of 0 instead stops
        #                                           LLVM vectorising the sum: 5x slower)
        ties += one if tie else zero
    return acc, ties


@njit(inline="always", **JIT_OPTIONS)
def online_stats(xr, buf, block_m, store, ahead_bytes, pg, psrc, pa):
    """``row_stats``; with ``store``, also ``buf[j] = exp(x_j - m_b)`` and ``block_m[b] = m_b``,
    ``m_b`` the running max when block ``b`` was read (``row_stats_store`` then rescales them
    to ``exp(x_j - m)``). The logits are prefetched ``ahead_bytes`` ahead. Unless ``pg`` is
    empty, the previous row's gradient goes out meanwhile, block by block:
    ``pg[j] = pa * psrc[j]`` with non-temporal stores for the cache lines ``pg`` (as long as
    ``xr``) covers whole; the caller writes its partial first and last lines
    (``stream_ends``) and fences."""
    wide_vectors()
    n = xr.size
    m = _math.cast_like(xr[0], -math.inf)
    s1 = -1.0                                    # s = 0 so far
    lanes = STREAM_BYTES // xr.itemsize
    head, body = line_span(pg)
    for b0 in range(0, n, BLOCK):
        b1 = min(b0 + BLOCK, n)
        prefetch_ahead(xr, b0, b1, ahead_bytes)
        if pg.size > 0:                          # pg's lines that start in this block
            j = b0 + (head - b0) % lanes
            while j < min(b1, body):
                stream_scaled(pg, j, psrc, j, pa)
                j += lanes
        blk = xr[b0:b1]
        bm = block_max(blk)
        if bm > m:                               # s <- s exp(m - bm): s1 <- (s1 + 1) r - 1
            s1 = s1 * math.exp(float(m) - float(bm)) - (-math.expm1(float(m) - float(bm)))
            m = bm
        if bm == m and m == _math.cast_like(m, -math.inf):
            # every logit so far is -inf (masked classes): each adds exp(-inf) = 0, where the
            # block sums would take exp(-inf - (-inf)) = NaN
            if store:
                out = buf[b0:b1]
                for j in range(out.size):
                    out[j] = 0
                block_m[b0 // BLOCK] = m
            continue
        acc, ties = exp_block_sums(blk, m, buf[b0:b1], store)
        if store:
            block_m[b0 // BLOCK] = m
        # the ties cancel the -1 exactly first; fenced, or fast-math computes s1 + (acc + ties)
        s1 = _math.fence(s1 + float(ties)) + float(acc)
    return m, s1


@_jit
def row_stats(xr):
    """Online softmax statistics of a row, reading it once from memory (block by block):
    ``(m, s1)`` with ``m = max x`` and ``s1 = sum exp(x - m) - 1`` (float64). The max's own
    term 1 is left out of the float32 block sums and added back exactly, so
    ``log s = log1p(s1)`` keeps full relative accuracy when one class dominates."""
    return online_stats(xr, xr[:0], xr[:0], False, PREFETCH_BYTES, xr[:0], xr[:0],
                        _math.cast_like(xr[0], 0.0))


@_jit
def scale_row(gr, a):
    """``gr[j] *= a``."""
    wide_vectors()
    for j in range(gr.size):
        gr[j] = a * gr[j]


@_jit
def row_buf_width(n):
    """Elements of ``row_stats_store``'s buffer for a row of ``n``: the row and one reference
    max per block."""
    return n + (n + BLOCK - 1) // BLOCK


@_jit
def row_stats_store(xr, buf, one_stream):
    """``row_stats`` that also leaves ``exp(x_j - m)`` in ``buf[j]`` (``buf`` holds
    ``row_buf_width(xr.size)`` elements: the tail keeps each block's reference max).
    Still one read of the logits from memory: the exp of a block is taken against the running
    max and stored, and the blocks read before the final max are rescaled by
    ``exp(m_b - m)`` once the row is done (in cache; blocks already at ``m`` are skipped).
    ``one_stream``: the logits are the only row read from memory (then short rows are
    prefetched ``SHORT_ROW_PREFETCH_BYTES`` ahead)."""
    return row_stats_store_streaming(xr, buf, one_stream, xr[:0], xr[:0],
                                     _math.cast_like(xr[0], 0.0))


@_jit
def row_stats_store_streaming(xr, buf, one_stream, pg, psrc, pa):
    """``row_stats_store`` that meanwhile writes the previous row's gradient
    ``pg[j] = pa * psrc[j]`` block by block with non-temporal stores (``online_stats``;
    ``pg`` empty: nothing)."""
    n = xr.size
    ahead = (SHORT_ROW_PREFETCH_BYTES if one_stream and n * xr.itemsize <= SHORT_ROW_BYTES
             else PREFETCH_BYTES)
    m, s1 = online_stats(xr, buf[:n], buf[n:], True, ahead, pg, psrc, pa)
    for b0 in range(0, n, BLOCK):
        mb = buf[n + b0 // BLOCK]
        if mb != m:
            scale_row(buf[b0:min(b0 + BLOCK, n)],
                      _math.cast_like(m, math.exp(float(mb) - float(m))))
    return m, s1


#: Elements of padding at either end of the per-thread buffers' allocation (``thread_buffers``)
#: and around the absent-input stand-ins (``kernels._nothing``). A loop
#: that writes one array and reads others is vectorised behind LLVM's address checks, which
#: send it to its scalar form whenever two of its arrays start within a vector's bytes (64 to
#: 256) of each other, overlapping or not. A buffer allocated right after another array (a
#: class-weight vector, the logits) made a call run scalar: slower, and different in the last
#: bit from the same call elsewhere in memory (seen as one call in ~1600 under threads).
#: Padding inside the buffer's own allocation keeps every other array out of that range.
GUARD = 64

#: Bytes each per-thread scratch row starts on and is rounded up to (``thread_buffers``): two
#: cache lines, the unit the adjacent-line prefetcher fetches.
SCRATCH_ALIGN = 128


def thread_buffers(n_threads, width, dtype):
    """Per-thread scratch rows for ``thread_row``: a C-contiguous [n_threads, width'] view
    ``GUARD`` elements inside a private allocation at either end, each row starting on a
    ``SCRATCH_ALIGN`` boundary and ``width' >= width`` rounded up to whole ``SCRATCH_ALIGN``
    bytes, so no cache line (nor the pair the hardware prefetches together) holds two threads'
    rows (packed back to back, two rows could share their boundary line, which then moved
    between the cores each time both wrote it). (Padding each row inside ``thread_row``
    instead measured 5% slower on sparse BCE: the kernels' code changed around it.)"""
    dtype = np.dtype(dtype)
    per_line = SCRATCH_ALIGN // dtype.itemsize
    width = -(-max(int(width), 1) // per_line) * per_line
    flat = np.empty(n_threads * width + 2 * GUARD + per_line, dtype=dtype)
    start = GUARD + (-(flat.ctypes.data + GUARD * dtype.itemsize) % SCRATCH_ALIGN) // dtype.itemsize
    return flat[start:start + n_threads * width].reshape(n_threads, width)


@_jit
def thread_row(row_bufs):
    """The calling thread's row of ``row_bufs`` (``thread_buffers``; an empty row if it has
    none)."""
    t = get_thread_id()
    return row_bufs[t] if t < row_bufs.shape[0] else row_bufs[0, :0]


@njit(inline="always", **JIT_OPTIONS)
def source_row(logits, i, copies):
    """Row ``i`` of the logits for a row function to read: the row itself, or, when the
    gradient is written in place (``copies`` from ``thread_buffers(., C, .)``), a copy of it in
    the calling thread's row of ``copies``. Reading the logits where the gradient is written
    made LLVM's address checks (``GUARD``) run every element loop in its scalar form: the
    sigmoid family 8-10x slower in place. The copy costs one pass over a row in cache; the
    row's one read from memory is the copy's."""
    xr = logits[i]
    buf = thread_row(copies)
    if buf.size < xr.size:
        return xr
    row = buf[:xr.size]
    for j in range(xr.size):
        row[j] = xr[j]
    return row


#: Elements of each thread's ``block_buffer``: a mask of ``BLOCK`` ones, then room for a
#: staging area of ``BLOCK`` elements and a cache line, placed by ``block_scratch``.
BLOCK_SCRATCH = 3 * BLOCK + 64


@njit(inline="always", **JIT_OPTIONS)
def block_buffer(block_bufs):
    """The calling thread's row of ``block_bufs`` (``thread_buffers(., BLOCK_SCRATCH, .)``
    filled with ones), or a new array of ``BLOCK_SCRATCH`` ones if it has none. (Buffers come
    from the caller: an allocation per row inside a kernel measured 2-3x slower, each one
    faulting in freshly zeroed pages.)"""
    buf = thread_row(block_bufs)
    if buf.size < BLOCK_SCRATCH:
        buf = np.ones(BLOCK_SCRATCH, dtype=block_bufs.dtype)
    return buf


@njit(inline="always", **JIT_OPTIONS)
def block_scratch(buf, xr, pre):
    """``(mask, staging)`` in a ``block_buffer``: its first ``BLOCK`` elements (the ones), and
    ``BLOCK`` elements and a cache line about 512 bytes past ``xr``'s start modulo 1 KiB, with
    ``staging[pre]`` on a cache line (where each block's first element is stored). Stores to
    the staging area then never fall on the 4 KiB offset of the logits loaded beside them
    (blocks of 1 or 2 KiB from ``xr`` on): a store and a load at the same address bits 0-11
    are taken for a dependency (4K aliasing; measured on this project's machine, a stand-alone
    BCE block loop staging its gradient ran 5-7% slower at 0 mod 1 KiB than at 512)."""
    mask = buf[:BLOCK]
    isz = buf.itemsize
    off = (address_of(xr) + 512 - address_of(buf) - BLOCK * isz) % 1024 // 64 * 64 // isz
    lanes = STREAM_BYTES // isz
    off += (lanes - pre) % lanes
    return mask, buf[BLOCK + off:2 * BLOCK + off + lanes]


@_jit
def stream_scaled_row(gr, src, a, cached):
    """``gr[j] = a * src[j]`` with non-temporal stores (``stream_scaled``) for the cache lines
    ``gr`` covers whole, plain stores for the partial lines at either end; plain stores only if
    ``gr`` is ``cached`` (in place: the row was just read)."""
    wide_vectors()
    n = gr.size
    if cached:
        for j in range(n):
            gr[j] = a * src[j]
        return
    head, body = line_span(gr)
    stream_ends(gr, src, a)
    for j in range(head, body, STREAM_BYTES // gr.itemsize):
        stream_scaled(gr, j, src, j, a)
    store_fence()


@njit(inline="always", **JIT_OPTIONS)
def line_span(gr):
    """``(head, body)``: ``gr[head:body]`` are the whole cache lines ``gr`` covers (``head``
    elements lie before its first line boundary); (0, 0) for an empty ``gr``."""
    n = gr.size
    if n == 0:
        return 0, 0
    lanes = STREAM_BYTES // gr.itemsize
    head = min(n, (-address_of(gr)) % STREAM_BYTES // gr.itemsize)
    return head, head + (n - head) // lanes * lanes


@njit(inline="always", **JIT_OPTIONS)
def stream_ends(gr, src, a):
    """``gr[j] = a * src[j]`` for the elements of ``gr``'s partial first and last cache lines
    (plain stores), which the non-temporal stores of whole lines leave out (``line_span``)."""
    head, body = line_span(gr)
    for j in range(head):
        gr[j] = a * src[j]
    for j in range(body, gr.size):
        gr[j] = a * src[j]


@_jit
def row_sum_gap(xr, m, class_weight, has_cw):
    """``sum_c w_c (m - x_c)`` in float64 (every term >= 0: no cancellation)."""
    wide_vectors()
    n = xr.size
    total = 0.0
    for b0 in range(0, n, BLOCK):
        b1 = min(b0 + BLOCK, n)
        blk = xr[b0:b1]
        acc = _math.cast_like(xr[0], 0.0)
        if has_cw:
            wb = class_weight[b0:b1]
            for j in range(blk.size):
                acc += _math.cast_like(m, wb[j]) * _math.fence(m - blk[j])
        else:
            for j in range(blk.size):
                acc += _math.fence(m - blk[j])
        total += float(acc)
    return total


@_jit
def argmax_of(xr, m):
    """The first index holding the row maximum ``m`` (-1 if none: a NaN row). Each block's hits
    are counted first (a vectorised loop; an early exit per element is not), and only the
    block holding the first one is scanned."""
    wide_vectors()
    n = xr.size
    for b0 in range(0, n, BLOCK):
        xb = xr[b0:min(b0 + BLOCK, n)]
        hits = 0
        for j in range(xb.size):
            hits += xb[j] == m
        if hits > 0:
            for j in range(xb.size):
                if xb[j] == m:
                    return b0 + j
    return -1


@_jit
def write_softmax_grad(xr, gr, m, a, b, class_weight, has_cw):
    """``gr[j] = a exp(x_j - m) - b w_j``: the softmax gradient's one write (x may alias gr)."""
    wide_vectors()
    if has_cw:
        for j in range(xr.size):
            gr[j] = a * _math.exp_nonpos(xr[j] - m) - b * _math.cast_like(m, class_weight[j])
    else:
        for j in range(xr.size):
            gr[j] = a * _math.exp_nonpos(xr[j] - m) - b
