"""Make ``fastxent._math`` callable from CUDA kernels, and the warp primitives the kernels use.

On a GPU (the real CUDA target) every formula of ``_math`` is registered for the CUDA target under
its own name (``numba.cuda.extending``, a registry separate from the CPU one), so kernels call the
one definition, compiled as a device function. The primitives get per-dtype implementations:

* ``exp``, ``exp_nonpos(_num)``, ``log``, ``log1p_unit``, ``neg_expm1``:
  ``math.exp/log/log1p/expm1``
  of the argument's type. For float32 numba-cuda lowers these to libdevice's ``expf``/``logf``/...
  (at most 2 ulp: far inside the contract's 1e-5), not to the ``__expf`` approximations that
  ``fastmath=True`` would select (their error grows with |x|, and fast-math also flushes
  subnormals). The CPU backend's polynomials exist to vectorise; a GPU thread is already a lane,
  and these kernels are bound by memory bandwidth, not by the special-function units.
* ``cast_like(x, c)``: ``c`` in x's type (keeps float32 arithmetic in float32).
* ``fence(x)``: ``x`` (kernels are compiled without fast-math, so nothing reassociates).
* ``recip_unit(d)``: ``1 / d`` in d's type, a correctly rounded division.

Under the simulator (``NUMBA_ENABLE_CUDASIM=1``) kernels run as Python: they call ``_math`` as
is, and nothing is registered. The simulator has no warp shuffles: ``xor_shuffle5`` emulates
``shfl_xor_sync`` there with a shared scratch array, so the same butterfly reductions run. It
moves the five values of a reduction step at once, through one of two scratch halves chosen by
the step's parity (consecutive steps never share a half, so a step needs one barrier, not two):
the simulator runs each thread as a Python thread, and its barriers are most of its run time.
"""
import math

from numba import cuda
from numba.core import config

from ... import _math

#: True under ``NUMBA_ENABLE_CUDASIM=1`` (read once when numba is imported).
SIMULATOR = bool(config.ENABLE_CUDASIM)
#: Every lane of a warp takes part in each shuffle: blocks are whole warps on a GPU.
FULL_MASK = 0xFFFFFFFF
WARP = 32
#: Reduced values per group reduction (m, s1 and three sums) and warps per block (<= 1024 threads).
SLOTS = 5
MAX_WARPS = 32
#: Shared scratch of the emulated shuffle (simulator: two halves of SLOTS slots per thread of a
#: block of at most 1024; GPU: unused).
SCRATCH = 2 * SLOTS * 1024 if SIMULATOR else 1

_PRIMITIVES = {"cast_like", "fence", "rint", "rint_exp2", "exp", "exp_nonpos", "log", "log1p_unit",
               "neg_expm1", "recip_unit", "exp2i", "split_exponent"}
# float32 polynomials of the CPU backend: not used on the GPU (see the module docstring)
_CPU_ONLY = {"exp_poly", "exp_nonpos_poly", "log_poly", "log1p_poly",
             "_atanh_series", "neg_expm1_poly"}


def _register_for_cuda():
    from numba.cuda import types
    from numba.cuda.extending import overload, register_jitable

    @overload(_math.cast_like, inline="always")
    def _cast_like(x, c):
        if isinstance(x, types.Float):
            nbtype = x

            def impl(x, c):
                return nbtype(c)
            return impl

    @overload(_math.fence, inline="always")
    def _fence(x):
        if isinstance(x, types.Float):
            return lambda x: x

    def _same_type(name, impl):
        @overload(getattr(_math, name), inline="always")
        def _ol(x):
            if isinstance(x, types.Float):
                return impl
        return _ol

    _same_type("exp", lambda x: math.exp(x))
    _same_type("exp_nonpos", lambda x: math.exp(x))
    _same_type("log", lambda x: math.log(x))
    _same_type("log1p_unit", lambda x: math.log1p(x))
    _same_type("neg_expm1", lambda x: -math.expm1(-x))
    _same_type("recip_unit", lambda x: _math.cast_like(x, 1.0) / x)      # IEEE division

    for name in dir(_math):
        obj = getattr(_math, name)
        if callable(obj) and getattr(obj, "__module__", None) == _math.__name__ \
                and name not in _PRIMITIVES and name not in _CPU_ONLY:
            register_jitable(obj)


if not SIMULATOR:
    _register_for_cuda()


def device(fn):
    """A device function of the kernels (``cuda.jit(device=True)``; simulated under the
    simulator)."""
    return cuda.jit(device=True)(fn)


if SIMULATOR:
    @device
    def xor_shuffle5(m, s1, a, b, c, offset, scratch):
        """``shfl_xor_sync`` of five values emulated: every thread of the block calls it
        (uniform control flow, as the reductions guarantee) and reads the values of thread
        ``tid ^ offset``. The butterfly's offsets halve at each step, so the parity of
        log2(offset) alternates and a step never overwrites the half whose values a slower
        thread may still be reading (the step before it); the step's one barrier separates the
        writes from the reads. Callers end a reduction with ``syncthreads`` before the next."""
        tid = cuda.threadIdx.x
        width = cuda.blockDim.x
        half = 0
        o = offset
        while o > 1:
            o //= 2
            half ^= 1
        base = half * SLOTS * width
        scratch[base + tid] = m
        scratch[base + width + tid] = s1
        scratch[base + 2 * width + tid] = a
        scratch[base + 3 * width + tid] = b
        scratch[base + 4 * width + tid] = c
        cuda.syncthreads()
        other = base + (tid ^ offset)
        return (scratch[other], scratch[other + width], scratch[other + 2 * width],
                scratch[other + 3 * width], scratch[other + 4 * width])
else:
    @device
    def xor_shuffle5(m, s1, a, b, c, offset, scratch):
        """The five values of lane ``lane ^ offset`` of this warp."""
        return (cuda.shfl_xor_sync(FULL_MASK, m, offset),
                cuda.shfl_xor_sync(FULL_MASK, s1, offset),
                cuda.shfl_xor_sync(FULL_MASK, a, offset),
                cuda.shfl_xor_sync(FULL_MASK, b, offset),
                cuda.shfl_xor_sync(FULL_MASK, c, offset))
