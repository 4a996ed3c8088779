/* Small C helpers of the Cython backend (fastxent/backends/cython).
 *
 * - float32 <-> int32 bit casts through memcpy (no aliasing UB; compilers turn them into moves,
 *   and they vectorise);
 * - FXT_FENCE(x): x itself, but the compiler may not reassociate arithmetic across it (the
 *   kernels are built with -fassociative-math so that long sums vectorise; the fence keeps
 *   Cody-Waite range reductions and (m - x) + log_s exact, like _math.fence in Numba);
 * - FXT_HAVE_OPENMP: 1 when compiled with OpenMP.
 */
#ifndef FXT_SUPPORT_H
#define FXT_SUPPORT_H

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

#ifdef _OPENMP
#  define FXT_HAVE_OPENMP 1
#else
#  define FXT_HAVE_OPENMP 0
#endif

#endif
