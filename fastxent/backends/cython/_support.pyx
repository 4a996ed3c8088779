# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Build facts and a Python view of the scalar functions of ``_scalar.pxd``.

* ``openmp_enabled()`` / ``openmp_max_threads()``: whether the extension was compiled with OpenMP
  (``fastxent info`` reports it);
* ``cpu_level()``: the x86-64 level of the running CPU (which CPU variant ``kernels`` imports);
* ``apply(name, *arrays_and_scalars)``: evaluates the ``_scalar.pxd`` function ``name`` elementwise
  on float32 or float64 arrays, so ``tests/test_cython.py`` can hold it to ``fastxent._math`` and
  to the Numba build of the same function.
"""
import numpy as np

from cython cimport floating

from . cimport _scalar as S
from . cimport _rows as R

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    static int fxt_omp_max_threads(void) { return omp_get_max_threads(); }
    #else
    static int fxt_omp_max_threads(void) { return 1; }
    #endif
    """
    int fxt_omp_max_threads() nogil

cdef extern from "_fxt_support.h":
    int fxt_cpu_level()


def openmp_enabled():
    """Whether the Cython kernels were compiled with OpenMP (else they run on one thread)."""
    return bool(S.FXT_HAVE_OPENMP)


def openmp_max_threads():
    return fxt_omp_max_threads()


def cpu_level():
    """The x86-64 level this CPU and OS run: 4 (x86-64-v4, AVX-512), 3 (x86-64-v3, AVX2 + FMA),
    1 (baseline x86-64), 0 (another architecture, or unknown)."""
    return fxt_cpu_level()


def prefetch_bytes():
    """How far ahead ``fxt_prefetch_ahead`` prefetches (_fxt_support.h)."""
    return R.PREFETCH_BYTES


def arithmetic_fence():
    """Whether the compiler provided an arithmetic fence (see _fxt_support.h)."""
    return bool(S.FXT_HAVE_FENCE)


cdef void _unary(str name, const floating[::1] x, floating[::1] out):
    cdef Py_ssize_t i, n = x.shape[0]
    if name == "exp":
        for i in range(n):
            out[i] = S.exp(x[i])
    elif name == "exp_nonpos":
        for i in range(n):
            out[i] = S.exp_nonpos(x[i])
    elif name == "log":
        for i in range(n):
            out[i] = S.log(x[i])
    elif name == "log1p_unit":
        for i in range(n):
            out[i] = S.log1p_unit(x[i])
    elif name == "neg_expm1":
        for i in range(n):
            out[i] = S.neg_expm1(x[i])
    else:
        raise ValueError(f"unknown unary function {name!r}")


cdef void _softplus_pair(const floating[::1] x, floating[:, ::1] out):
    cdef Py_ssize_t i
    for i in range(x.shape[0]):
        S.softplus_pair(x[i], &out[0, i], &out[1, i], &out[2, i], &out[3, i])


cdef void _bce_term(const floating[::1] x, const floating[::1] y, const floating[::1] pw,
                    floating[:, ::1] out):
    cdef Py_ssize_t i
    for i in range(x.shape[0]):
        S.bce_term(x[i], y[i], pw[i], &out[0, i], &out[1, i])


cdef void _bce_negative_term(const floating[::1] x, floating[:, ::1] out):
    cdef Py_ssize_t i
    for i in range(x.shape[0]):
        S.bce_negative_term(x[i], &out[0, i], &out[1, i])


cdef void _focal_negative_term(const floating[::1] x, const floating[::1] gamma_neg,
                               const floating[::1] alpha, floating[:, ::1] out):
    cdef Py_ssize_t i
    for i in range(x.shape[0]):
        S.focal_negative_term(x[i], gamma_neg[i], alpha[i], &out[0, i], &out[1, i])


cdef void _focal_negative_term_sq(const floating[::1] x, const floating[::1] alpha,
                                  floating[:, ::1] out):
    cdef Py_ssize_t i
    for i in range(x.shape[0]):
        S.focal_negative_term_sq(x[i], alpha[i], &out[0, i], &out[1, i])


cdef void _focal_pow(const floating[::1] q, const floating[::1] g, floating[:, ::1] out):
    cdef Py_ssize_t i
    for i in range(q.shape[0]):
        out[0, i] = S.focal_pow(q[i], g[i])


cdef void _focal_term(const floating[::1] x, const floating[::1] y, const floating[::1] gamma,
                      const floating[::1] gamma_neg, const floating[::1] clip,
                      const floating[::1] alpha, const floating[::1] clip_hi,
                      const floating[::1] clip_lo, floating[:, ::1] out):
    cdef Py_ssize_t i
    for i in range(x.shape[0]):
        S.focal_term(x[i], y[i], gamma[i], gamma_neg[i], clip[i], alpha[i], clip_hi[i],
                     clip_lo[i], &out[0, i], &out[1, i])


cdef void _softmax_focal_term(const floating[::1] gap, const floating[::1] gamma,
                              floating[:, ::1] out):
    cdef Py_ssize_t i
    for i in range(gap.shape[0]):
        S.softmax_focal_term(gap[i], gamma[i], &out[0, i], &out[1, i])


_N_OUT = {"softplus_pair": 4, "bce_term": 2, "bce_negative_term": 2, "focal_negative_term": 2,
          "focal_negative_term_sq": 2,
          "focal_pow": 1, "focal_term": 2, "softmax_focal_term": 2}


def apply(str name, *args, dtype=np.float64):
    """``_scalar.<name>`` elementwise over the broadcast arguments, in ``dtype``
    (float32 or float64). Returns one array, or a tuple for functions with several results."""
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError("dtype must be float32 or float64")
    arrays = [np.ascontiguousarray(a, dtype=dtype).ravel()
              for a in np.broadcast_arrays(*[np.asarray(a, dtype=dtype) for a in args])]
    shape = np.broadcast_shapes(*[np.shape(a) for a in args])
    if name not in _N_OUT:
        out1 = np.empty_like(arrays[0])
        if dtype == np.float32:
            _unary[float](name, arrays[0], out1)
        else:
            _unary[double](name, arrays[0], out1)
        return out1.reshape(shape)
    out = np.empty((_N_OUT[name], arrays[0].size), dtype=dtype)
    if name == "softplus_pair":
        if dtype == np.float32:
            _softplus_pair[float](arrays[0], out)
        else:
            _softplus_pair[double](arrays[0], out)
    elif name == "bce_term":
        if dtype == np.float32:
            _bce_term[float](arrays[0], arrays[1], arrays[2], out)
        else:
            _bce_term[double](arrays[0], arrays[1], arrays[2], out)
    elif name == "bce_negative_term":
        if dtype == np.float32:
            _bce_negative_term[float](arrays[0], out)
        else:
            _bce_negative_term[double](arrays[0], out)
    elif name == "focal_negative_term":
        if dtype == np.float32:
            _focal_negative_term[float](arrays[0], arrays[1], arrays[2], out)
        else:
            _focal_negative_term[double](arrays[0], arrays[1], arrays[2], out)
    elif name == "focal_negative_term_sq":
        if dtype == np.float32:
            _focal_negative_term_sq[float](arrays[0], arrays[1], out)
        else:
            _focal_negative_term_sq[double](arrays[0], arrays[1], out)
    elif name == "focal_pow":
        if dtype == np.float32:
            _focal_pow[float](arrays[0], arrays[1], out)
        else:
            _focal_pow[double](arrays[0], arrays[1], out)
    elif name == "focal_term":
        if dtype == np.float32:
            _focal_term[float](arrays[0], arrays[1], arrays[2], arrays[3], arrays[4],
                               arrays[5], arrays[6], arrays[7], out)
        else:
            _focal_term[double](arrays[0], arrays[1], arrays[2], arrays[3], arrays[4],
                                arrays[5], arrays[6], arrays[7], out)
    else:
        if dtype == np.float32:
            _softmax_focal_term[float](arrays[0], arrays[1], out)
        else:
            _softmax_focal_term[double](arrays[0], arrays[1], out)
    results = tuple(row.reshape(shape) for row in out)
    return results[0] if len(results) == 1 else results
