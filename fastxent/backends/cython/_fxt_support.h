/* Small C helpers of the Cython backend (fastxent/backends/cython).
 *
 * - float32 <-> int32 bit casts through memcpy (no aliasing UB; compilers turn them into moves,
 *   and they vectorise);
 * - FXT_FENCE(x): x itself, but the compiler may not reassociate arithmetic across it (the
 *   kernels are built without -fassociative-math unless FASTXENT_ASSOCIATIVE_MATH=1 asks for
 *   it, see setup.py; the fence keeps Cody-Waite range reductions and (m - x) + log_s exact
 *   either way, like _math.fence in Numba);
 * - fxt_stream_scaled_f32/_f64: a scaled copy with non-temporal stores;
 * - fxt_stream_span_f32/_f64, fxt_stream_ends_f32/_f64: the same copy a block at a time (the
 *   whole vectors that start in the block), and its partial first and last vectors;
 * - fxt_stream_block_f32/_f64: one block of a row out through non-temporal stores;
 * - fxt_max_f32/_f64: a row's max with vector max instructions;
 * - fxt_prefetch_ahead: software prefetch of what a streaming loop reads next;
 * - FXT_HAVE_OPENMP: 1 when compiled with OpenMP.
 */
#ifndef FXT_SUPPORT_H
#define FXT_SUPPORT_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline float fxt_f32_from_bits(int32_t bits) {
    float x;
    memcpy(&x, &bits, sizeof x);
    return x;
}

static inline int32_t fxt_bits_from_f32(float x) {
    int32_t bits;
    memcpy(&bits, &x, sizeof bits);
    return bits;
}

#if defined(__clang__)
#  if defined(__has_builtin)
#    if __has_builtin(__arithmetic_fence)
#      define FXT_FENCE(x) __arithmetic_fence(x)
#    endif
#  endif
#elif defined(__GNUC__) && __GNUC__ >= 12
#  define FXT_FENCE(x) __builtin_assoc_barrier(x)
#endif
#ifndef FXT_FENCE
#  define FXT_FENCE(x) (x)
#  define FXT_HAVE_FENCE 0
#else
#  define FXT_HAVE_FENCE 1
#endif

/* fxt_cpu_level(): the x86-64 micro-architecture level the running CPU and OS support
 * (4: x86-64-v4 / AVX-512, 3: x86-64-v3 / AVX2 + FMA, 1: baseline; 0: not x86-64 or unknown).
 * __builtin_cpu_supports checks the OS state too (XCR0 through xgetbv). kernels.py imports the
 * matching variant build of the kernels (setup.py), never one the CPU cannot run. */
#if (defined(__x86_64__) || defined(_M_X64)) && defined(__GNUC__)
static inline int fxt_cpu_level(void) {
    __builtin_cpu_init();
#  if !defined(__clang__) && __GNUC__ >= 12
    if (__builtin_cpu_supports("x86-64-v4")) return 4;
    if (__builtin_cpu_supports("x86-64-v3")) return 3;
    return 1;
#  else
    int v3 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")
             && __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2")
             && __builtin_cpu_supports("f16c") && __builtin_cpu_supports("movbe")
             && __builtin_cpu_supports("abm");
    int v4 = v3 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
             && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl")
             && __builtin_cpu_supports("avx512cd");
    return v4 ? 4 : (v3 ? 3 : 1);
#  endif
}
#else
static inline int fxt_cpu_level(void) { return 0; }
#endif

/* fxt_stream_scaled_f32/_f64(dst, src, n, a): dst[j] = a * src[j] for j < n, the vectors of dst
 * that are whole aligned ones written with non-temporal stores (the line goes to memory without
 * being read first, as Numba's stream_scaled), plain stores for the ends; then a store fence.
 * Mirror of numba_cpu/_rows.stream_scaled_row. Without x86 vector extensions: plain stores. */
#if defined(__x86_64__) || defined(_M_X64)
#  include <immintrin.h>
#endif
#if defined(__AVX512F__)
#  define FXT_STREAM_BYTES 64
#elif defined(__AVX__)
#  define FXT_STREAM_BYTES 32
#elif defined(__SSE2__)
#  define FXT_STREAM_BYTES 16
#else
#  define FXT_STREAM_BYTES 0
#endif

#define FXT_STREAM_HEAD(dst, n, T, j)                                                      \
    ptrdiff_t j = 0, head_ = (ptrdiff_t)(((uintptr_t)0 - (uintptr_t)(dst))                 \
                                         % FXT_STREAM_BYTES / sizeof(T));                   \
    if (head_ > n) head_ = n;                                                               \
    for (; j < head_; j++) dst[j] = a * src[j];

static inline void fxt_stream_scaled_f32(float* dst, const float* src, ptrdiff_t n, float a) {
#if FXT_STREAM_BYTES == 0
    ptrdiff_t j = 0;
#else
    FXT_STREAM_HEAD(dst, n, float, j)
#  if FXT_STREAM_BYTES == 64
    __m512 va = _mm512_set1_ps(a);
    for (; j + 16 <= n; j += 16)
        _mm512_stream_ps(dst + j, _mm512_mul_ps(va, _mm512_loadu_ps(src + j)));
#  elif FXT_STREAM_BYTES == 32
    __m256 va = _mm256_set1_ps(a);
    for (; j + 8 <= n; j += 8)
        _mm256_stream_ps(dst + j, _mm256_mul_ps(va, _mm256_loadu_ps(src + j)));
#  else
    __m128 va = _mm_set1_ps(a);
    for (; j + 4 <= n; j += 4)
        _mm_stream_ps(dst + j, _mm_mul_ps(va, _mm_loadu_ps(src + j)));
#  endif
    _mm_sfence();
#endif
    for (; j < n; j++) dst[j] = a * src[j];
}

static inline void fxt_stream_scaled_f64(double* dst, const double* src, ptrdiff_t n, double a) {
#if FXT_STREAM_BYTES == 0
    ptrdiff_t j = 0;
#else
    FXT_STREAM_HEAD(dst, n, double, j)
#  if FXT_STREAM_BYTES == 64
    __m512d va = _mm512_set1_pd(a);
    for (; j + 8 <= n; j += 8)
        _mm512_stream_pd(dst + j, _mm512_mul_pd(va, _mm512_loadu_pd(src + j)));
#  elif FXT_STREAM_BYTES == 32
    __m256d va = _mm256_set1_pd(a);
    for (; j + 4 <= n; j += 4)
        _mm256_stream_pd(dst + j, _mm256_mul_pd(va, _mm256_loadu_pd(src + j)));
#  else
    __m128d va = _mm_set1_pd(a);
    for (; j + 2 <= n; j += 2)
        _mm_stream_pd(dst + j, _mm_mul_pd(va, _mm_loadu_pd(src + j)));
#  endif
    _mm_sfence();
#endif
    for (; j < n; j++) dst[j] = a * src[j];
}

/* fxt_stream_span_f32/_f64(dst, src, n, j0, j1, a): dst[j] = a * src[j] over the whole aligned
 * vectors of dst[0:n] that start at a j in [j0, j1), with non-temporal stores and no fence: a row
 * streamed a block at a time (softmax_xent.pyx's pipelined kernel writes the previous row's
 * gradient while it reads the next row). fxt_stream_ends_f32/_f64(dst, src, n, a) writes the
 * rest, the partial first and last vectors, with plain stores: together the same values as
 * fxt_stream_scaled_*. Mirror of numba_cpu/_rows.online_stats's streaming and stream_ends.
 * Without x86 vector extensions there are no whole vectors: the ends are the whole row. */
#if FXT_STREAM_BYTES == 0
#  define FXT_STREAM_SPAN(T, SUFFIX, LANES, SET1, STORE)                                     \
static inline void fxt_stream_span_##SUFFIX(T* dst, const T* src, ptrdiff_t n, ptrdiff_t j0,   \
                                           ptrdiff_t j1, T a) {                              \
    (void)dst; (void)src; (void)n; (void)j0; (void)j1; (void)a;                              \
}
#else
#  define FXT_STREAM_SPAN(T, SUFFIX, LANES, SET1, STORE)                                     \
static inline void fxt_stream_span_##SUFFIX(T* dst, const T* src, ptrdiff_t n, ptrdiff_t j0,   \
                                           ptrdiff_t j1, T a) {                              \
    ptrdiff_t head = (ptrdiff_t)(((uintptr_t)0 - (uintptr_t)dst) % FXT_STREAM_BYTES / sizeof(T)); \
    ptrdiff_t j = j0 + ((head - j0) % LANES + LANES) % LANES;   /* first vector start >= j0 */ \
    SET1;                                                                                    \
    for (; j < j1 && j + LANES <= n; j += LANES) STORE;                                      \
}
#endif
#if FXT_STREAM_BYTES == 64
FXT_STREAM_SPAN(float, f32, 16, __m512 va = _mm512_set1_ps(a),
                _mm512_stream_ps(dst + j, _mm512_mul_ps(va, _mm512_loadu_ps(src + j))))
FXT_STREAM_SPAN(double, f64, 8, __m512d va = _mm512_set1_pd(a),
                _mm512_stream_pd(dst + j, _mm512_mul_pd(va, _mm512_loadu_pd(src + j))))
#elif FXT_STREAM_BYTES == 32
FXT_STREAM_SPAN(float, f32, 8, __m256 va = _mm256_set1_ps(a),
                _mm256_stream_ps(dst + j, _mm256_mul_ps(va, _mm256_loadu_ps(src + j))))
FXT_STREAM_SPAN(double, f64, 4, __m256d va = _mm256_set1_pd(a),
                _mm256_stream_pd(dst + j, _mm256_mul_pd(va, _mm256_loadu_pd(src + j))))
#elif FXT_STREAM_BYTES == 16
FXT_STREAM_SPAN(float, f32, 4, __m128 va = _mm_set1_ps(a),
                _mm_stream_ps(dst + j, _mm_mul_ps(va, _mm_loadu_ps(src + j))))
FXT_STREAM_SPAN(double, f64, 2, __m128d va = _mm_set1_pd(a),
                _mm_stream_pd(dst + j, _mm_mul_pd(va, _mm_loadu_pd(src + j))))
#else
FXT_STREAM_SPAN(float, f32, 1, (void)0, (void)0)
FXT_STREAM_SPAN(double, f64, 1, (void)0, (void)0)
#endif

#define FXT_STREAM_ENDS(T, SUFFIX)                                                           \
static inline void fxt_stream_ends_##SUFFIX(T* dst, const T* src, ptrdiff_t n, T a) {         \
    ptrdiff_t lanes = FXT_STREAM_BYTES / (ptrdiff_t)sizeof(T), j, head = n, body = n;         \
    if (lanes > 0) {                                                                         \
        head = (ptrdiff_t)(((uintptr_t)0 - (uintptr_t)dst) % (uintptr_t)(lanes * sizeof(T))  \
                           / sizeof(T));                                                     \
        if (head > n) head = n;                                                              \
        body = head + (n - head) / lanes * lanes;                                            \
    }                                                                                        \
    for (j = 0; j < head; j++) dst[j] = a * src[j];                                          \
    for (j = body; j < n; j++) dst[j] = a * src[j];                                          \
}
FXT_STREAM_ENDS(float, f32)
FXT_STREAM_ENDS(double, f64)

/* fxt_stream_pre(p, size): how many elements of ``size`` bytes lie before ``p`` on its aligned
 * vector of FXT_STREAM_BYTES (0 without vector extensions). */
static inline ptrdiff_t fxt_stream_pre(const void* p, size_t size) {
#if FXT_STREAM_BYTES == 0
    (void)p; (void)size;
    return 0;
#else
    return (ptrdiff_t)((uintptr_t)p % FXT_STREAM_BYTES / size);
#endif
}

/* fxt_stream_block_f32/_f64(gr, b0, b1, n, st, pre): writes the block gr[b0:b1] of a row of n,
 * staged in st[pre:pre + b1 - b0], with non-temporal stores of the whole aligned vectors.
 * pre = fxt_stream_pre(gr): st[0:pre] holds the previous block's last pre elements (they share
 * a vector with this block's first ones), and this block leaves its own last pre there; the
 * row's partial first and last vectors take plain stores. Mirror of numba_cpu/sigmoid.py's
 * stream_block. Without x86 vector extensions: plain stores (pre is then 0). */
#define FXT_STREAM_BLOCK_BODY(T, LANES, STORE)                                              \
    ptrdiff_t m = pre + (b1 - b0), j = 0, q, d = b0 - pre;                                 \
    if (b0 == 0 && pre > 0) {                                                               \
        j = LANES;                                                                          \
        for (q = pre; q < (m < LANES ? m : LANES); q++) gr[q - pre] = st[q];                \
    }                                                                                       \
    for (; j + LANES <= m; j += LANES) STORE;                                               \
    if (b1 == n) { for (q = j; q < m; q++) gr[d + q] = st[q]; }                             \
    else { for (q = j; q < m; q++) st[q - j] = st[q]; }

static inline void fxt_stream_block_f32(float* gr, ptrdiff_t b0, ptrdiff_t b1, ptrdiff_t n,
                                        float* st, ptrdiff_t pre) {
#if FXT_STREAM_BYTES == 64
    FXT_STREAM_BLOCK_BODY(float, 16, _mm512_stream_ps(gr + d + j, _mm512_loadu_ps(st + j)))
#elif FXT_STREAM_BYTES == 32
    FXT_STREAM_BLOCK_BODY(float, 8, _mm256_stream_ps(gr + d + j, _mm256_loadu_ps(st + j)))
#elif FXT_STREAM_BYTES == 16
    FXT_STREAM_BLOCK_BODY(float, 4, _mm_stream_ps(gr + d + j, _mm_loadu_ps(st + j)))
#else
    for (ptrdiff_t j = 0; j < b1 - b0; j++) gr[b0 + j] = st[pre + j];
#endif
}

static inline void fxt_stream_block_f64(double* gr, ptrdiff_t b0, ptrdiff_t b1, ptrdiff_t n,
                                        double* st, ptrdiff_t pre) {
#if FXT_STREAM_BYTES == 64
    FXT_STREAM_BLOCK_BODY(double, 8, _mm512_stream_pd(gr + d + j, _mm512_loadu_pd(st + j)))
#elif FXT_STREAM_BYTES == 32
    FXT_STREAM_BLOCK_BODY(double, 4, _mm256_stream_pd(gr + d + j, _mm256_loadu_pd(st + j)))
#elif FXT_STREAM_BYTES == 16
    FXT_STREAM_BLOCK_BODY(double, 2, _mm_stream_pd(gr + d + j, _mm_loadu_pd(st + j)))
#else
    for (ptrdiff_t j = 0; j < b1 - b0; j++) gr[b0 + j] = st[pre + j];
#endif
}

/* fxt_store_fence(): orders the non-temporal stores before it (sfence; nothing without them). */
static inline void fxt_store_fence(void) {
#if FXT_STREAM_BYTES != 0
    _mm_sfence();
#endif
}

/* fxt_max_f32/_f64(x, n): max of x[0..n), NaN if one of them is NaN (n = 0: -inf), as Numba's
 * block_max (llvm.maximum). gcc turns neither a running ``v > m ? v : m`` nor sixteen such lanes
 * into vector max instructions without finite-math flags; these use them directly (AVX-512 or
 * AVX builds) with a separate unordered check for the NaN. */
#define FXT_MAX_TAIL(T)                                                                     \
    for (; j < n; j++) {                                                                    \
        T v = x[j];                                                                         \
        nan |= v != v;                                                                      \
        m = v > m ? v : m;                                                                  \
    }                                                                                       \
    return nan ? (T)NAN : m;

static inline float fxt_max_f32(const float* x, ptrdiff_t n) {
    float m = -INFINITY;
    int nan = 0;
    ptrdiff_t j = 0;
#if FXT_STREAM_BYTES == 64
    __m512 m0 = _mm512_set1_ps(-INFINITY), m1 = m0;
    __mmask16 bad = 0;
    for (; j + 32 <= n; j += 32) {
        __m512 v0 = _mm512_loadu_ps(x + j), v1 = _mm512_loadu_ps(x + j + 16);
        m0 = _mm512_max_ps(v0, m0);
        m1 = _mm512_max_ps(v1, m1);
        bad |= _mm512_cmp_ps_mask(v0, v1, _CMP_UNORD_Q);
    }
    m = _mm512_reduce_max_ps(_mm512_max_ps(m0, m1));
    nan = bad != 0;
#elif FXT_STREAM_BYTES == 32
    __m256 m0 = _mm256_set1_ps(-INFINITY), m1 = m0, bad = _mm256_setzero_ps();
    for (; j + 16 <= n; j += 16) {
        __m256 v0 = _mm256_loadu_ps(x + j), v1 = _mm256_loadu_ps(x + j + 8);
        m0 = _mm256_max_ps(v0, m0);
        m1 = _mm256_max_ps(v1, m1);
        bad = _mm256_or_ps(bad, _mm256_cmp_ps(v0, v1, _CMP_UNORD_Q));
    }
    {
        float lanes[8];
        _mm256_storeu_ps(lanes, _mm256_max_ps(m0, m1));
        for (int l = 0; l < 8; l++) m = lanes[l] > m ? lanes[l] : m;
    }
    nan = _mm256_movemask_ps(bad) != 0;
#endif
    FXT_MAX_TAIL(float)
}

static inline double fxt_max_f64(const double* x, ptrdiff_t n) {
    double m = -INFINITY;
    int nan = 0;
    ptrdiff_t j = 0;
#if FXT_STREAM_BYTES == 64
    __m512d m0 = _mm512_set1_pd(-INFINITY), m1 = m0;
    __mmask8 bad = 0;
    for (; j + 16 <= n; j += 16) {
        __m512d v0 = _mm512_loadu_pd(x + j), v1 = _mm512_loadu_pd(x + j + 8);
        m0 = _mm512_max_pd(v0, m0);
        m1 = _mm512_max_pd(v1, m1);
        bad |= _mm512_cmp_pd_mask(v0, v1, _CMP_UNORD_Q);
    }
    m = _mm512_reduce_max_pd(_mm512_max_pd(m0, m1));
    nan = bad != 0;
#elif FXT_STREAM_BYTES == 32
    __m256d m0 = _mm256_set1_pd(-INFINITY), m1 = m0, bad = _mm256_setzero_pd();
    for (; j + 8 <= n; j += 8) {
        __m256d v0 = _mm256_loadu_pd(x + j), v1 = _mm256_loadu_pd(x + j + 4);
        m0 = _mm256_max_pd(v0, m0);
        m1 = _mm256_max_pd(v1, m1);
        bad = _mm256_or_pd(bad, _mm256_cmp_pd(v0, v1, _CMP_UNORD_Q));
    }
    {
        double lanes[4];
        _mm256_storeu_pd(lanes, _mm256_max_pd(m0, m1));
        for (int l = 0; l < 4; l++) m = lanes[l] > m ? lanes[l] : m;
    }
    nan = _mm256_movemask_pd(bad) != 0;
#endif
    FXT_MAX_TAIL(double)
}

/* fxt_prefetch_ahead(p, bytes): prefetch the cache lines of [p, p + bytes) moved
 * FXT_PREFETCH_BYTES ahead, for reading (mirror of numba_cpu/_rows.prefetch_ahead and its
 * PREFETCH_BYTES; tests hold the two equal). The addresses are integers, not pointers past an
 * array, and a prefetch never faults. */
#define FXT_PREFETCH_BYTES 2048
static inline void fxt_prefetch_at(const void* p, size_t bytes, size_t ahead) {
#if defined(__GNUC__)
    uintptr_t a = (uintptr_t)p + ahead;
    for (size_t o = 0; o < bytes; o += 64)
        __builtin_prefetch((const void*)(a + o), 0, 3);
#else
    (void)p;
    (void)bytes;
    (void)ahead;
#endif
}
/* the same, ``ahead`` bytes ahead (the sparse sigmoid pass: _config.SPARSE_SIGMOID_STORES) */
static inline void fxt_prefetch_ahead(const void* p, size_t bytes) {
    fxt_prefetch_at(p, bytes, FXT_PREFETCH_BYTES);
}

#ifdef _OPENMP
#  define FXT_HAVE_OPENMP 1
#else
#  define FXT_HAVE_OPENMP 0
#endif

#endif
