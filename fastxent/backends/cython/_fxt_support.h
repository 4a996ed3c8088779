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

#ifdef _OPENMP
#  define FXT_HAVE_OPENMP 1
#else
#  define FXT_HAVE_OPENMP 0
#endif

#endif
