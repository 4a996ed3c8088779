"""Row machinery shared by the CUDA kernels: the thread layout, online row statistics and the
deterministic group reductions.

Layout: a block of ``blockDim.x`` threads is cut into groups of ``group_threads`` (a power of
two); a group owns one row at a time (a block per row for long rows, several rows per block for
short ones) and walks the rows of its block with a grid-stride loop. Thread ``lane`` of a group
handles the classes ``lane, lane + group_threads, ...``: consecutive threads read consecutive
addresses (coalesced), and a thread reads and writes only its own classes, so the logits may be
the gradient buffer. Every thread of a block runs the same number of loop trips and reductions
(rows past the end are empty), which keeps ``syncthreads`` and full-warp shuffles legal.

Reductions: a butterfly of ``xor_shuffle5`` (``shfl_xor_sync``) inside the warp (every lane ends
with the same bits: floating-point addition is commutative), then, for groups wider than a warp,
one value per warp through shared memory, combined by every thread in warp order. No atomics: the
same input gives the same bits, run after run.
"""
import math

from numba import cuda, float64

from ... import _math
from ._primitives import MAX_WARPS, SCRATCH, SIMULATOR, SLOTS, WARP, device, xor_shuffle5

NEG_INF = -math.inf


@device
def combine_stats(m_a, s1_a, m_b, s1_b):
    """Union of two online softmax states ``(m, s1)``: ``m`` the max, ``s1 = sum exp(x - m) - 1``
    (the max's own 1 is left out so ``log1p(s1)`` keeps full relative accuracy). Commutative
    bit for bit; the empty state is ``(-inf, -1)``."""
    if m_b > m_a:
        m_a, s1_a, m_b, s1_b = m_b, s1_b, m_a, s1_a
    if m_b == m_a:
        return m_a, s1_a + s1_b + 1.0
    return m_a, s1_a + (1.0 + s1_b) * math.exp(m_b - m_a)


@device
def group_reduce(m, s1, a, b, c, group_threads, shared, scratch):
    """Reduce the online state ``(m, s1)`` and the sums ``a, b, c`` (float64) over the group;
    every thread of the group gets the totals. Called by every thread of the block; ends with
    ``syncthreads``, so it also orders the group's memory accesses (reads before writes)."""
    m = float(m)
    width = group_threads if group_threads < WARP else WARP
    offset = width // 2
    while offset > 0:
        m_o, s_o, a_o, b_o, c_o = xor_shuffle5(m, s1, a, b, c, offset, scratch)
        m, s1 = combine_stats(m, s1, m_o, s_o)
        a += a_o
        b += b_o
        c += c_o
        offset //= 2
    if group_threads > WARP:
        tid = cuda.threadIdx.x
        if tid % WARP == 0:
            warp = tid // WARP
            shared[0, warp] = m
            shared[1, warp] = s1
            shared[2, warp] = a
            shared[3, warp] = b
            shared[4, warp] = c
        cuda.syncthreads()
        first = (tid // group_threads) * (group_threads // WARP)
        m = shared[0, first]
        s1 = shared[1, first]
        a = shared[2, first]
        b = shared[3, first]
        c = shared[4, first]
        for w in range(first + 1, first + group_threads // WARP):
            m, s1 = combine_stats(m, s1, shared[0, w], shared[1, w])
            a += shared[2, w]
            b += shared[3, w]
            c += shared[4, w]
    cuda.syncthreads()
    return m, s1, a, b, c


@device
def group_sums(a, b, c, group_threads, shared, scratch):
    """``group_reduce`` of three sums only."""
    _, _, a, b, c = group_reduce(NEG_INF, -1.0, a, b, c, group_threads, shared, scratch)
    return a, b, c


@device
def fold_stats(m, s1, v):
    """The online state ``(m, s1)`` with one more logit ``v``. A new maximum rescales the sum:
    ``s1 <- (1 + s1) exp(m_old - m_new)`` (the new max is the left-out 1), so no cancellation
    ever happens; NaN propagates through ``s1``; a -inf logit (a masked class) adds 0."""
    if v > m:
        return v, (1.0 + s1) * float(_math.exp_nonpos(m - v))
    if v == NEG_INF:              # adds exp(-inf) = 0; while m is -inf too, exp(v - m) is NaN
        return m, s1
    return m, s1 + float(_math.exp_nonpos(v - m))


@device
def load4(values, row, j, g, n_cols):
    """``values[row, j + q g]`` for q = 0..3, loaded together before any is used (those past
    ``n_cols`` read ``values[row, j]`` instead; the caller skips them): see
    ``LOADS_IN_FLIGHT``."""
    v0 = values[row, j]
    v1 = values[row, j + g] if j + g < n_cols else v0
    v2 = values[row, j + 2 * g] if j + 2 * g < n_cols else v0
    v3 = values[row, j + 3 * g] if j + 3 * g < n_cols else v0
    return v0, v1, v2, v3


@device
def pick4(q, v0, v1, v2, v3):
    """``(v0, v1, v2, v3)[q]`` for the loop index ``q`` of an unrolled four-load loop (a device
    function cannot index a tuple with a variable)."""
    return v0 if q == 0 else (v1 if q == 1 else (v2 if q == 2 else v3))


@device
def thread_stats(logits, row, lane, n_cols, group_threads):
    """This thread's online state ``(m, s1)`` over its classes (one read of each logit), folded
    in class order. The loads come eight at a time, ahead of the (branching) folds: eight
    independent loads in flight per thread instead of one (``STATS_LOADS_IN_FLIGHT``), then
    four, then one at a time for the last few."""
    m = _math.cast_like(logits[0, 0], NEG_INF)
    s1 = -1.0
    g = group_threads
    j = lane
    while j + 7 * g < n_cols:
        v0, v1, v2, v3 = load4(logits, row, j, g, n_cols)
        v4, v5, v6, v7 = load4(logits, row, j + 4 * g, g, n_cols)
        m, s1 = fold_stats(m, s1, v0)
        m, s1 = fold_stats(m, s1, v1)
        m, s1 = fold_stats(m, s1, v2)
        m, s1 = fold_stats(m, s1, v3)
        m, s1 = fold_stats(m, s1, v4)
        m, s1 = fold_stats(m, s1, v5)
        m, s1 = fold_stats(m, s1, v6)
        m, s1 = fold_stats(m, s1, v7)
        j += 8 * g
    if j + 3 * g < n_cols:
        v0, v1, v2, v3 = load4(logits, row, j, g, n_cols)
        m, s1 = fold_stats(m, s1, v0)
        m, s1 = fold_stats(m, s1, v1)
        m, s1 = fold_stats(m, s1, v2)
        m, s1 = fold_stats(m, s1, v3)
        j += 4 * g
    while j < n_cols:
        m, s1 = fold_stats(m, s1, logits[row, j])
        j += g
    return m, s1


#: Logits each thread loads before using the first of them, in the element loops of the
#: gradient passes and of the sigmoid families: memory latency on a GPU is hidden by bytes in
#: flight, and a loop that loads one value and then computes with it keeps one load per thread
#: in flight. Written out as four explicit loads (this constant documents it).
LOADS_IN_FLIGHT = 4

#: The same in pass 1 of the softmax families (``thread_stats``), which reads HBM while the
#: gradient pass mostly re-reads rows from L2: eight loads per thread, eight float32 logits in
#: 8 more registers (README, "Expected performance").
STATS_LOADS_IN_FLIGHT = 8


#: Kernels allocate ``cuda.shared.array(SHARED_SHAPE, F64)`` (the reductions' per-warp slots)
#: and ``cuda.shared.array(SCRATCH_SIZE, F64)`` (the simulator's shuffle scratch) at their top.
SHARED_SHAPE = (SLOTS, MAX_WARPS)
SCRATCH_SIZE = SCRATCH
F64 = float64
#: Kernels allocate them in a loop of SHARED_PASSES trips ending with ``syncthreads``. On a GPU one
#: trip. The simulator (numba-cuda's ``FakeCUDAShared.array``) keys a block's shared arrays by
#: source line with an unlocked check-then-insert, so two threads that reach the line at once can
#: each get a private array (a shuffle then reads values nobody wrote: an intermittent wrong
#: loss, seen in CI). The second trip, after the barrier, finds the one array every thread shares.
SHARED_PASSES = 2 if SIMULATOR else 1
