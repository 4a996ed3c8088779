"""Make ``fastxent._math`` callable from Numba CPU kernels.

Every function of ``_math`` is registered as jitable under its own name (inlined), so kernels call
the one definition. The primitives get per-dtype implementations: float64 keeps libm's exact
functions; float32 uses the polynomial versions defined in ``_math`` (they vectorise; libm's
``expf`` called from Numba does not) and two bit casts for the exponent field.

Registering overloads changes no Numba configuration.
"""
import math
import platform

from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload, register_jitable

from ... import _math

# Kernels use a subset of fast-math flags that keeps inf/NaN semantics (no nnan, ninf):
# reassociation lets LLVM vectorise the long sums; contraction gives FMAs.
FASTMATH = {"nsz", "arcp", "contract", "reassoc"}
#: Options of every kernel: float division without Python's ZeroDivisionError check (which
#: blocks vectorisation); 0/0 gives NaN and x/0 gives inf as in IEEE arithmetic.
JIT_OPTIONS = dict(nogil=True, cache=True, fastmath=FASTMATH, error_model="numpy")


@intrinsic
def _f32_from_bits(typingctx, bits):
    if bits != types.int32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.int32), codegen


@intrinsic
def _bits_from_f32(typingctx, value):
    if value != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))
    return types.int32(types.float32), codegen


@intrinsic
def _arithmetic_fence(typingctx, value):
    if not isinstance(value, types.Float):
        return None

    def codegen(context, builder, signature, args):
        llty = args[0].type
        fn = builder.module.declare_intrinsic("llvm.arithmetic.fence", [llty],
                                              ir.FunctionType(llty, [llty]))
        return builder.call(fn, [args[0]])
    return value(value), codegen


@intrinsic
def maximum(typingctx, a, b):
    """``llvm.maximum``: the larger of two floats, NaN if either is NaN. Unlike ``a if a > b
    else b`` (which LLVM does not vectorise as a reduction without the no-NaN flag), a loop
    reducing with it vectorises: a row's max runs at memory speed."""
    if not isinstance(a, types.Float) or a != b:
        return None

    def codegen(context, builder, signature, args):
        llty = args[0].type
        fn = builder.module.declare_intrinsic("llvm.maximum", [llty],
                                              ir.FunctionType(llty, [llty, llty]))
        return builder.call(fn, list(args))
    return a(a, b), codegen


#: Bytes written by one ``stream_scaled`` (a cache line; 16 float32 or 8 float64).
STREAM_BYTES = 64


@intrinsic
def address_of(typingctx, arr):
    """The address of ``arr``'s first element, as an int64."""
    if not isinstance(arr, types.Array):
        return None

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        return builder.ptrtoint(data, ir.IntType(64))
    return types.int64(arr), codegen


@intrinsic
def stream_scaled(typingctx, dst, d0, src, s0, a):
    """``dst[d0:d0+L] = a * src[s0:s0+L]`` for one cache line (``L = STREAM_BYTES / itemsize``)
    with a non-temporal store: the line goes to memory without being read first (a plain store
    reads the line it writes: a third of a kernel's memory traffic). ``dst[d0]`` must be
    ``STREAM_BYTES``-aligned (the caller checks); ``src`` may be unaligned. Follow a run of them
    with ``store_fence()``."""
    if not (isinstance(dst, types.Array) and isinstance(src, types.Array)
            and dst.dtype == src.dtype == a and isinstance(a, types.Float)):
        return None
    lanes = STREAM_BYTES * 8 // a.bitwidth

    def codegen(context, builder, signature, args):
        d = context.make_array(signature.args[0])(context, builder, args[0])
        s = context.make_array(signature.args[2])(context, builder, args[2])
        vty = ir.VectorType(args[4].type, lanes)
        dp = builder.bitcast(builder.gep(d.data, [args[1]]), vty.as_pointer())
        sp = builder.bitcast(builder.gep(s.data, [args[3]]), vty.as_pointer())
        v = builder.load(sp, align=a.bitwidth // 8)
        av = builder.insert_element(ir.Constant(vty, ir.Undefined), args[4], ir.IntType(32)(0))
        av = builder.shuffle_vector(av, ir.Constant(vty, ir.Undefined),
                                    ir.Constant(ir.VectorType(ir.IntType(32), lanes),
                                                [0] * lanes))
        store = builder.store(builder.fmul(v, av), dp, align=STREAM_BYTES)
        store.set_metadata("nontemporal", builder.module.add_metadata([ir.IntType(32)(1)]))
        return context.get_dummy_value()
    return types.none(dst, d0, src, s0, a), codegen


@intrinsic
def prefetch(typingctx, arr, i, write):
    """Hint that ``arr[i]``'s cache line will be read (``write`` False) or written (True) soon
    (``llvm.prefetch``: ``prefetcht0`` / ``prefetchw`` on x86). ``i`` may lie past the array's
    end: the address is computed without a bounds check or ``inbounds``, and a prefetch never
    faults; results are unaffected."""
    if not (isinstance(arr, types.Array) and isinstance(i, types.Integer)
            and isinstance(write, types.BooleanLiteral)):
        return None
    rw = 1 if write.literal_value else 0

    def codegen(context, builder, signature, args):
        a = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = builder.bitcast(builder.gep(a.data, [args[1]]), ir.IntType(8).as_pointer())
        i32 = ir.IntType(32)
        fn = builder.module.declare_intrinsic(
            "llvm.prefetch", [ptr.type],
            ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32]))
        builder.call(fn, [ptr, i32(rw), i32(3), i32(1)])
        return context.get_dummy_value()
    return types.none(arr, i, write), codegen


#: x86 has a store fence (``sfence``), which is all non-temporal stores need.
_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


@intrinsic
def store_fence(typingctx):
    """Orders the non-temporal stores before it (they are weakly ordered) before every store
    after it, so a thread that synchronises with this one later sees them: ``sfence`` on x86
    (what C code writes after streaming stores; the full fence it replaced, an ``mfence``,
    also waited for the loads in flight: softmax CE 2.5-7% slower), a full fence elsewhere."""
    def codegen(context, builder, signature, args):
        if _X86:
            fn = builder.module.declare_intrinsic("llvm.x86.sse.sfence", (),
                                                  ir.FunctionType(ir.VoidType(), ()))
            builder.call(fn, ())
        else:
            builder.fence("seq_cst")
        return context.get_dummy_value()
    return types.none(), codegen


#: The LLVM function attribute ``wide_vectors()`` sets (see there).
WIDE_VECTORS_ATTRIBUTE = '"prefer-vector-width"="512"'


@intrinsic
def wide_vectors(typingctx):
    """Mark the calling jitted function ``"prefer-vector-width"="512"``: its loops vectorise
    with the widest registers the CPU has. LLVM's tuning for many Intel CPUs (Skylake-SP to
    Sapphire Rapids) prefers 256-bit vectors even with AVX-512 (older parts lowered their clock
    for 512-bit code); these kernels are arithmetic-bound, and 512-bit vectors measured 22%
    (BCE) to 35% (sigmoid focal) faster per element on this project's Intel machine. On CPUs
    without AVX-512 the attribute changes nothing (the width is capped by what exists); AMD's
    Zen 4/5 tuning already prefers 512. It sets an attribute of the function being compiled,
    not Numba's configuration. Calls compile to nothing."""
    def codegen(context, builder, signature, args):
        # llvmlite's FunctionAttributes only accepts its list of keyword attributes; a string
        # attribute is added to the underlying set and printed as written.
        set.add(builder.function.attributes, WIDE_VECTORS_ATTRIBUTE)
        return context.get_dummy_value()
    return types.none(), codegen


def _is32(ty):
    return ty == types.float32


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
        return lambda x: _arithmetic_fence(x)


@intrinsic
def _strict_sub(typingctx, a, b):
    """``a - b`` as an ``fsub`` without ``reassoc``: LLVM may not reassociate it with the
    operations around it (an ``llvm.arithmetic.fence`` does the same for one value but kept the
    loops around it from vectorising: sigmoid focal's general loop 2.8x slower)."""
    if not (isinstance(a, types.Float) and a == b):
        return None

    def codegen(context, builder, signature, args):
        # Numba's fast-math pass flags every float operation that has no flag yet: ``arcp``
        # (reciprocal approximations, meaningless for a subtraction) keeps it from adding
        # ``reassoc`` here
        return builder.fsub(args[0], args[1], flags=("arcp",))
    return a(a, b), codegen


@overload(_math.sub_exact, inline="always")
def _sub_exact(a, b):
    if isinstance(a, types.Float) and a == b:
        return lambda a, b: _strict_sub(a, b)


@intrinsic
def _llvm_rint(typingctx, value):
    if not isinstance(value, types.Float):
        return None

    def codegen(context, builder, signature, args):
        llty = args[0].type
        fn = builder.module.declare_intrinsic("llvm.rint", [llty], ir.FunctionType(llty, [llty]))
        return builder.call(fn, [args[0]])
    return value(value), codegen


@overload(_math.rint, inline="always")
def _rint(t):
    if _is32(t):
        # llvm.rint (nearest, ties to even): one vroundps / vrndscaleps where the half-away
        # int32 round trip took a compare, a blend, an add and two conversions
        return lambda t: _llvm_rint(t)
    if isinstance(t, types.Float):
        return lambda t: float(round(t))


#: ``1.5 * 2**23 + 126``: adding it to a float32 ``t`` (|t| < 2**21) rounds ``t`` to an integer
#: ``k`` and leaves ``k + 126``, 2**(k-1)'s biased exponent, in the low mantissa bits (the sum
#: rounds to even, so a tie takes the even ``k``).
_ROUND_BIAS = 12583038.0


@intrinsic
def _bias_round(typingctx, t, sign):
    """``t + sign * _ROUND_BIAS`` (float32) with no fast-math flag but ``contract``: the
    multiply feeding ``t`` may fuse into it, while nothing reassociates across it (fast-math
    would fold ``(t + B) - B`` into ``t`` and distribute ``x - k ln2`` over ``k = j - B``).
    An ``llvm.arithmetic.fence`` would do the same but stops the loop vectorising."""
    if t != types.float32 or not isinstance(sign, types.IntegerLiteral):
        return None
    bias = _ROUND_BIAS * sign.literal_value

    def codegen(context, builder, signature, args):
        return builder.fadd(args[0], ir.Constant(ir.FloatType(), bias), flags=("contract",))
    return types.float32(types.float32, sign), codegen


@intrinsic
def _exp2_of_rounded(typingctx, j):
    """``2**(k-1)`` from ``j = t + _ROUND_BIAS``: the low mantissa bits shifted into the
    exponent field, which is 0 (the float 0) for k = -126 (for a NaN ``j``, some value that a
    NaN times it keeps NaN)."""
    if j != types.float32:
        return None

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        bits = builder.shl(builder.bitcast(args[0], i32), i32(23))
        return builder.bitcast(bits, ir.FloatType())
    return types.float32(types.float32), codegen


@overload(_math.rint_exp2, inline="always")
def _rint_exp2(t):
    if _is32(t):
        def impl(t):
            j = _bias_round(t, 1)
            return _bias_round(j, -1), _exp2_of_rounded(j)
        return impl
    if isinstance(t, types.Float):
        def impl64(t):
            if t != t:
                return t, t
            k = float(round(t))
            return k, (0.0 if k <= -126.0 else math.ldexp(1.0, int(k) - 1))
        return impl64


@overload(_math.exp2i, inline="always")
def _exp2i(k, like):
    if _is32(like):
        def impl(k, like):
            # (k + 127) * 2**23 is exact in float32: the biased exponent moved into place
            return _f32_from_bits(types.int32((k + types.float32(127.0))
                                              * types.float32(8388608.0)))
        return impl
    if isinstance(like, types.Float):
        return lambda k, like: math.ldexp(1.0, int(k))


@overload(_math.split_exponent, inline="always")
def _split_exponent(x):
    if _is32(x):
        def impl(x):
            bits = _bits_from_f32(x)
            wide = types.int64(bits)
            e = types.float32((wide >> 23) - 127)
            m = _f32_from_bits(types.int32((wide & 0x007FFFFF) | 0x3F800000))
            big = m > types.float32(1.4142135623730951)
            m = m * types.float32(0.5) if big else m
            e = e + types.float32(1.0) if big else e
            return m, e
        return impl


@intrinsic
def _recip_estimate(typingctx, value):
    """``1 / value`` as an ``fdiv`` with the ``arcp`` and ``ninf`` flags (float32): in a
    vectorised loop LLVM's x86 backend then emits a reciprocal estimate (``vrcp14ps``, 14 bits)
    and one Newton step instead of ``vdivps`` (whose 512-bit form occupies a port for about 10
    cycles); scalar code keeps the exact division. ``ninf`` is true for ``_math.recip_unit``'s
    domain [1, 2]; NaN still propagates (the flags do not include ``nnan``)."""
    if value != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.fdiv(ir.Constant(ir.FloatType(), 1.0), args[0], flags=("arcp", "ninf", "contract"))
    return types.float32(types.float32), codegen


def _dtype_dispatch(name, f32_impl, f64_impl):
    @overload(getattr(_math, name), inline="always")
    def _ol(x):
        if _is32(x):
            return f32_impl
        if isinstance(x, types.Float):
            return f64_impl
    return _ol


_dtype_dispatch("exp", lambda x: _math.exp_poly(x), lambda x: math.exp(x))
_dtype_dispatch("exp_nonpos", lambda x: _math.exp_nonpos_poly(x), lambda x: math.exp(x))
_dtype_dispatch("log", lambda x: _math.log_poly(x), lambda x: math.log(x))
_dtype_dispatch("log1p_unit", lambda x: _math.log1p_poly(x), lambda x: math.log1p(x))
_dtype_dispatch("neg_expm1", lambda x: _math.neg_expm1_poly(x), lambda x: -math.expm1(-x))
_dtype_dispatch("recip_unit", lambda x: _recip_estimate(x), lambda x: 1.0 / x)

_PRIMITIVES = {"cast_like", "fence", "sub_exact", "rint", "rint_exp2", "exp", "exp_nonpos", "log",
               "log1p_unit", "neg_expm1", "recip_unit", "exp2i", "split_exponent"}
# The polynomial leaves are inlined into every loop that calls them by Numba (so the loops
# vectorise). The formulas are compiled once per signature and inlined by LLVM (``forceinline``):
# Numba-level inlining of whole formulas made compile times explode (minutes per kernel), while
# LLVM inlining costs about what a call does and lets the element loops vectorise.
_INLINED = {"exp_poly", "exp_nonpos_poly", "log_poly", "log1p_poly",
            "_atanh_series", "neg_expm1_poly"}
_CALLEE_OPTIONS = dict(fastmath=FASTMATH, error_model="numpy")
for _name in dir(_math):
    _obj = getattr(_math, _name)
    if callable(_obj) and getattr(_obj, "__module__", None) == _math.__name__ \
            and _name not in _PRIMITIVES:
        if _name in _INLINED:
            register_jitable(inline="always", **_CALLEE_OPTIONS)(_obj)
        else:
            register_jitable(forceinline=True, **_CALLEE_OPTIONS)(_obj)
