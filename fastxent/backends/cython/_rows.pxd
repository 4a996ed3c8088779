# cython: language_level=3
"""Row loops shared by the Cython kernels (mirror of ``backends/numba_cpu/_rows.py``).

Each helper walks one C-contiguous row through a pointer from index 0 (so the C compiler
vectorises it) and accumulates long sums in float64, block by block, from float32-or-float64
partial sums over ``BLOCK`` elements. ``class_weight`` is a float64 pointer, NULL when absent.

Sums: the kernels are built without ``-fassociative-math`` (see setup.py), so gcc never
vectorises ``acc += v[j]`` itself. Block sums therefore go through ``lane_sum`` (``MAX_LANES``
independent accumulators in a local array, which gcc turns into vector adds), usually over a
block buffer that a separate, vectorised element loop filled.
"""
from libc.math cimport exp as libm_exp, expm1 as libm_expm1, INFINITY
from cython cimport floating

from ._scalar cimport exp_nonpos, fence

cdef enum:
    BLOCK = 256    # elements per block: float32 partial sums over a block stay accurate, then go
    #                to float64; a block is 1 KiB of float32, so its second read hits L1; also
    #                the prefetch step (see backends/numba_cpu/_rows.py)
    MAX_LANES = 16  # independent accumulators of the lane sums (one AVX-512 vector of float32)


cdef inline floating lane_sum(const floating* v, Py_ssize_t n) noexcept nogil:
    """``sum v[j]`` with ``MAX_LANES`` independent accumulators (vectorises without
    reassociation flags), then the lanes pairwise."""
    cdef floating lanes[MAX_LANES]
    cdef Py_ssize_t j, l, n_full = n - n % MAX_LANES
    for l in range(MAX_LANES):
        lanes[l] = 0.0
    j = 0
    while j < n_full:
        for l in range(MAX_LANES):
            lanes[l] += v[j + l]
        j += MAX_LANES
    for j in range(n_full, n):
        lanes[0] += v[j]
    for l in range(MAX_LANES // 2):
        lanes[l] += lanes[l + MAX_LANES // 2]
    for l in range(MAX_LANES // 4):
        lanes[l] += lanes[l + MAX_LANES // 4]
    for l in range(MAX_LANES // 8):
        lanes[l] += lanes[l + MAX_LANES // 8]
    return lanes[0] + lanes[1]


cdef inline floating count_equal(const floating* v, Py_ssize_t n, floating m) noexcept nogil:
    """How many ``v[j] == m`` (as a float; lanes as in ``lane_sum``)."""
    cdef floating lanes[MAX_LANES]
    cdef floating one = 1.0
    cdef floating zero = 0.0
    cdef Py_ssize_t j, l, n_full = n - n % MAX_LANES
    for l in range(MAX_LANES):
        lanes[l] = zero
    j = 0
    while j < n_full:
        for l in range(MAX_LANES):
            lanes[l] += one if v[j + l] == m else zero
        j += MAX_LANES
    for j in range(n_full, n):
        lanes[0] += one if v[j] == m else zero
    for l in range(1, MAX_LANES):
        lanes[0] += lanes[l]
    return lanes[0]


cdef extern from "_fxt_support.h" nogil:
    float fxt_max_f32(const float* x, Py_ssize_t n)
    double fxt_max_f64(const double* x, Py_ssize_t n)
    void prefetch_ahead "fxt_prefetch_ahead"(const void* p, size_t n_bytes)
    void prefetch_at "fxt_prefetch_at"(const void* p, size_t n_bytes, size_t ahead)
    int PREFETCH_BYTES "FXT_PREFETCH_BYTES"


cdef inline floating block_max(const floating* xr, Py_ssize_t n) noexcept nogil:
    """max of a row slice, NaN if it holds a NaN (``fxt_max_*`` in _fxt_support.h: gcc does not
    vectorise ``v > m ? v : m`` itself without finite-math flags)."""
    if floating is float:
        return fxt_max_f32(xr, n)
    else:
        return fxt_max_f64(xr, n)


cdef extern from "_fxt_support.h" nogil:
    void stream_span_f32 "fxt_stream_span_f32"(float* dst, const float* src, Py_ssize_t n,
                                               Py_ssize_t j0, Py_ssize_t j1, float a)
    void stream_span_f64 "fxt_stream_span_f64"(double* dst, const double* src, Py_ssize_t n,
                                               Py_ssize_t j0, Py_ssize_t j1, double a)


cdef inline void stream_span(floating* dst, const floating* src, Py_ssize_t n, Py_ssize_t j0,
                             Py_ssize_t j1, floating a) noexcept nogil:
    """``dst[j] = a * src[j]`` over the whole aligned vectors of ``dst[:n]`` that start in
    ``[j0, j1)``, non-temporal stores, no fence (``fxt_stream_span_*``; ``stream_ends`` writes
    the partial first and last vectors)."""
    if floating is float:
        stream_span_f32(dst, src, n, j0, j1, a)
    else:
        stream_span_f64(dst, src, n, j0, j1, a)


cdef inline double online_stats(const floating* xr, Py_ssize_t n, floating* m_out,
                                floating* buf, bint store, floating* pg, const floating* psrc,
                                floating pa) noexcept nogil:
    """``row_stats``; with ``store`` (a constant where it is inlined), also
    ``buf[j] = exp(x_j - m_b)`` and ``buf[n + b] = m_b``, ``m_b`` the running max when block
    ``b`` was read (``row_stats_store`` rescales them to ``exp(x_j - m)``). Unless ``pg`` is
    NULL, the previous row's gradient goes out meanwhile, block by block: ``pg[j] = pa *
    psrc[j]`` through non-temporal stores for the whole vectors of ``pg`` (as long as ``xr``;
    ``stream_span``); the caller writes its partial ends (``stream_ends``) and fences."""
    cdef floating m = -INFINITY
    cdef floating one = 1.0
    cdef floating bm, v, e, acc, ties
    cdef floating ebuf[BLOCK]
    cdef double s1 = -1.0                      # s = 0 so far
    cdef double d
    cdef Py_ssize_t b0, j, size
    cdef const floating* blk
    b0 = 0
    while b0 < n:
        blk = xr + b0
        size = n - b0 if n - b0 < BLOCK else BLOCK
        prefetch_ahead(blk, size * sizeof(floating))
        if pg != NULL:                         # pg's vectors that start in this block
            stream_span(pg, psrc, n, b0, b0 + size, pa)
        bm = block_max(blk, size)
        if bm > m:                             # s <- s exp(m - bm): s1 <- (s1 + 1) r - 1
            d = <double>m - <double>bm
            s1 = s1 * libm_exp(d) - (-libm_expm1(d))
            m = bm
        if bm == m and m == -INFINITY:
            # every logit so far is -inf (masked classes): each adds exp(-inf) = 0, where the
            # block sums would take exp(-inf - (-inf)) = NaN
            if store:
                for j in range(size):
                    buf[b0 + j] = 0
                buf[n + b0 // BLOCK] = m
            b0 += BLOCK
            continue
        for j in range(size):                  # vectorised element loop, then lane sums
            v = blk[j]
            e = exp_nonpos(v - m)
            ebuf[j] = e - one if v == m else e # exp(0) = 1 exactly: counted separately
            if store:
                buf[b0 + j] = e
        if store:
            buf[n + b0 // BLOCK] = m
        acc = lane_sum(ebuf, size)
        ties = count_equal(blk, size, m)
        # ties first: s1 + ties is exact (s1 >= -1, ties a small integer); adding the ties and
        # the small sum together first would round away the low bits of s1 when s is near 1
        s1 = fence(s1 + <double>ties) + <double>acc
        b0 += BLOCK
    m_out[0] = m
    return s1


cdef inline double row_stats(const floating* xr, Py_ssize_t n, floating* m_out) noexcept nogil:
    """Online softmax statistics of a row, reading it once from memory (block by block):
    returns ``s1 = sum exp(x - m) - 1`` (float64) and stores ``m = max x``. The max's own term 1
    is left out of the float32 block sums and added back exactly, so ``log s = log1p(s1)`` keeps
    full relative accuracy when one class dominates."""
    return online_stats(xr, n, m_out, NULL, False, NULL, NULL, 0)


cdef inline void scale_row(floating* gr, Py_ssize_t n, floating a) noexcept nogil:
    """``gr[j] *= a``."""
    cdef Py_ssize_t j
    for j in range(n):
        gr[j] = a * gr[j]


cdef inline Py_ssize_t row_buf_width(Py_ssize_t n) noexcept nogil:
    """Elements of ``row_stats_store``'s buffer for a row of ``n``: the row and one reference
    max per block."""
    return n + (n + BLOCK - 1) // BLOCK


cdef inline double row_stats_store(const floating* xr, floating* buf, Py_ssize_t n,
                                   floating* m_out) noexcept nogil:
    """``row_stats`` that also leaves ``exp(x_j - m)`` in ``buf[j]`` (``buf`` holds
    ``row_buf_width(n)`` elements: the tail keeps each block's reference max). Still one read
    of the logits from memory: the exp of a block is taken against the running max and
    stored, and the blocks read before the final max are rescaled by ``exp(m_b - m)`` once the
    row is done (in cache; blocks already at ``m`` are skipped)."""
    return row_stats_store_streaming(xr, buf, n, m_out, NULL, NULL, 0)


cdef inline double row_stats_store_streaming(const floating* xr, floating* buf, Py_ssize_t n,
                                             floating* m_out, floating* pg,
                                             const floating* psrc,
                                             floating pa) noexcept nogil:
    """``row_stats_store`` that meanwhile writes the previous row's gradient
    ``pg[j] = pa * psrc[j]`` block by block with non-temporal stores (``online_stats``;
    ``pg`` NULL: nothing)."""
    cdef double s1 = online_stats(xr, n, m_out, buf, True, pg, psrc, pa)
    cdef floating m = m_out[0]
    cdef floating mb
    cdef Py_ssize_t b0 = 0
    while b0 < n:
        mb = buf[n + b0 // BLOCK]
        if mb != m:
            scale_row(buf + b0, n - b0 if n - b0 < BLOCK else BLOCK,
                      <floating>libm_exp(<double>mb - <double>m))
        b0 += BLOCK
    return s1


cdef extern from "_fxt_support.h" nogil:
    void fxt_stream_scaled_f32(float* dst, const float* src, Py_ssize_t n, float a)
    void fxt_stream_scaled_f64(double* dst, const double* src, Py_ssize_t n, double a)
    Py_ssize_t fxt_stream_pre(const void* p, size_t size)
    void fxt_stream_block_f32(float* gr, Py_ssize_t b0, Py_ssize_t b1, Py_ssize_t n, float* st,
                              Py_ssize_t pre)
    void fxt_stream_block_f64(double* gr, Py_ssize_t b0, Py_ssize_t b1, Py_ssize_t n,
                              double* st, Py_ssize_t pre)
    void fxt_store_fence()
    void fxt_stream_ends_f32(float* dst, const float* src, Py_ssize_t n, float a)
    void fxt_stream_ends_f64(double* dst, const double* src, Py_ssize_t n, double a)
    enum: FXT_STREAM_BYTES


cdef inline void stream_scaled_row(floating* gr, const floating* src, Py_ssize_t n,
                                   floating a) noexcept nogil:
    """``gr[j] = a * src[j]`` with non-temporal stores for the whole aligned vectors of ``gr``,
    plain stores for the ends (``fxt_stream_scaled_*`` in _fxt_support.h)."""
    if floating is float:
        fxt_stream_scaled_f32(gr, src, n, a)
    else:
        fxt_stream_scaled_f64(gr, src, n, a)


cdef inline void stream_ends(floating* gr, const floating* src, Py_ssize_t n,
                             floating a) noexcept nogil:
    """``gr[j] = a * src[j]`` for the elements of ``gr``'s partial first and last vectors
    (plain stores), which ``online_stats``'s streaming leaves out (``fxt_stream_ends_*``)."""
    if floating is float:
        fxt_stream_ends_f32(gr, src, n, a)
    else:
        fxt_stream_ends_f64(gr, src, n, a)


cdef inline void stream_block(floating* gr, Py_ssize_t b0, Py_ssize_t b1, Py_ssize_t n,
                              floating* staging, Py_ssize_t pre) noexcept nogil:
    """The block ``gr[b0:b1]`` of a row of ``n``, staged in ``staging[pre:]``, out through
    non-temporal stores (``fxt_stream_block_*`` in _fxt_support.h; mirror of Numba's
    ``sigmoid.stream_block``)."""
    if floating is float:
        fxt_stream_block_f32(gr, b0, b1, n, staging, pre)
    else:
        fxt_stream_block_f64(gr, b0, b1, n, staging, pre)


cdef inline double row_sum_gap(const floating* xr, Py_ssize_t n, floating m,
                               const double* class_weight) noexcept nogil:
    """``sum_c w_c (m - x_c)`` in float64 (every term >= 0: no cancellation)."""
    cdef double total = 0.0
    cdef floating acc
    cdef Py_ssize_t b0, j, size
    cdef const floating* blk
    cdef const double* wb
    b0 = 0
    while b0 < n:
        blk = xr + b0
        size = n - b0 if n - b0 < BLOCK else BLOCK
        acc = 0.0
        if class_weight != NULL:
            wb = class_weight + b0
            for j in range(size):
                acc += <floating>wb[j] * fence(m - blk[j])
        else:
            for j in range(size):
                acc += fence(m - blk[j])
        total += <double>acc
        b0 += BLOCK
    return total


cdef inline Py_ssize_t argmax_of(const floating* xr, Py_ssize_t n, floating m) noexcept nogil:
    """The first index holding the row maximum ``m`` (-1 if none: a NaN row). Each block's hits
    are counted first (a vectorised loop; an early exit per element is not), and only the
    block holding the first one is scanned."""
    cdef Py_ssize_t b0 = 0, j, size
    while b0 < n:
        size = n - b0 if n - b0 < BLOCK else BLOCK
        if count_equal(xr + b0, size, m) > 0:
            for j in range(size):
                if xr[b0 + j] == m:
                    return b0 + j
        b0 += BLOCK
    return -1


cdef inline void write_softmax_grad(const floating* xr, floating* gr, Py_ssize_t n, floating m,
                                    floating a, floating b,
                                    const double* class_weight) noexcept nogil:
    """``gr[j] = a exp(x_j - m) - b w_j``: the softmax gradient's one write (x may alias gr)."""
    cdef Py_ssize_t j
    if class_weight != NULL:
        for j in range(n):
            gr[j] = a * exp_nonpos(xr[j] - m) - b * <floating>class_weight[j]
    else:
        for j in range(n):
            gr[j] = a * exp_nonpos(xr[j] - m) - b
