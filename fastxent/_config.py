"""Every tunable of fastxent in one place, with its environment override.

Kernels never read these globals (cached Numba functions freeze globals): the API passes what a
kernel needs as arguments.
"""
import os


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _env_int(name: str, default: int) -> int:
    """A non-negative integer from the environment variable ``name`` (``default`` when unset
    or empty); anything else raises a ValueError that names the variable."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(f"environment variable {name}={text!r}: expected a non-negative "
                         f"integer; unset it to use the default ({default})")
    return value


#: ``FASTXENT_DISABLE_NUMBA=1``: never import numba; ``backend="auto"`` falls back.
DISABLE_NUMBA = _env_flag("FASTXENT_DISABLE_NUMBA")

#: Backends the API knows, in the order ``"auto"`` tries them for host (CPU) arrays.
AUTO_ORDER = ("numba", "cython", "numpy")

#: Elements per block of the online row statistics (see backends/numba_cpu/_rows.py, BLOCK).
ROW_BLOCK = 2048

REDUCTIONS = ("none", "sum", "mean", "batchmean")


def _l2_bytes(default: int = 1 << 20, base: str = "/sys/devices/system/cpu/cpu0/cache") -> int:
    """One core's L2 cache in bytes (Linux sysfs ``index*/level`` and ``size``, e.g. "2048K";
    ``default`` where it cannot be read)."""
    try:
        for entry in sorted(os.listdir(base)):
            with open(os.path.join(base, entry, "level")) as f:
                if f.read().strip() != "2":
                    continue
            with open(os.path.join(base, entry, "size")) as f:
                text = f.read().strip().upper()
            scale = {"K": 1 << 10, "M": 1 << 20}.get(text[-1:], 1)
            return int(text.rstrip("KM")) * scale
    except (OSError, ValueError):
        pass
    return default


#: Softmax CE rows (class indices or CSR targets with a gradient and no smoothing; dense targets
#: with a gradient) of at most this many bytes are taken to stay in a core's L2 between passes:
#: the CPU kernels then compute the gradient in two passes over the row (the online statistics,
#: each block's exp stored into a per-thread row buffer; that scaled into the gradient with
#: non-temporal stores), one exp per element, instead of the online form's two. Half of one
#: core's L2 (the row buffer needs the other half); measured on a 2 MiB L2: 1 MiB rows
#: (256 x 262144 float32) 45.6 -> 39.1 ms (with a separate max pass, before the streamed stores).
#: Passed to the kernels as an argument (a module global would be frozen into Numba's cache).
CACHED_ROW_BYTES = _env_int("FASTXENT_CACHED_ROW_BYTES", 0) or _l2_bytes() // 2

def _cpuinfo_field(name: str, path: str) -> str:
    """The first CPU's ``name`` field of Linux ``/proc/cpuinfo`` ("" where it cannot be read)."""
    try:
        with open(path) as f:
            for line in f:
                key, sep, value = line.partition(":")
                if sep and key.strip() == name:
                    return value.strip()
    except OSError:
        pass
    return ""


def _cpu_vendor(path: str = "/proc/cpuinfo") -> str:
    """The CPU's vendor string ("GenuineIntel", "AuthenticAMD", ...; "" where it cannot be
    read: Linux ``/proc/cpuinfo``)."""
    return _cpuinfo_field("vendor_id", path)


def _cpu_family(path: str = "/proc/cpuinfo") -> int:
    """The CPU's family number (AMD: 25 for Zen 3 and 4, 26 for Zen 5; 0 where it cannot be
    read)."""
    family = _cpuinfo_field("cpu family", path)
    return int(family) if family.isdigit() else 0


def _stores(vendor: str, family: int = 0) -> tuple:
    """``(stream, prefetch_bytes)`` of the sparse sigmoid kernels (BCE and focal with CSR
    targets): whether their gradient goes out through non-temporal stores (staged per block)
    and how far ahead they prefetch the logits. ``FASTXENT_STREAM_STORES`` (0 or 1) and
    ``FASTXENT_PREFETCH_BYTES`` override the CPU's default. Measured (2 threads, float32,
    forward + gradient, out of place):

    - Intel Xeon (this project's machine until 2026-12-04, 512-bit FMA on two ports): streamed
      and prefetched 2 KiB ahead, BCE 11.8 -> 9.9 ms and focal 12.5 -> 10.7 ms at
      1024 x 32768 (against plain stores), prefetching 10-15% faster than not;
    - AMD EPYC (Zen 4, since then): plain stores and no prefetch, BCE 11.0 -> 9.1 ms and focal
      12.7 -> 11.1 ms at 1024 x 32768, BCE 21.3 -> 17.4 ms and focal 24.4 -> 21.2 ms at
      256 x 262144. There the fused loops are bound by arithmetic (512-bit operations take two
      passes through 256-bit units): the staging's extra store and load cost more than the
      memory traffic plain stores add, and the hardware prefetcher keeps up;
    - AMD EPYC Zen 5 (family 26, since 2026-12-05; full-width 512-bit units): plain stores,
      prefetched 2 KiB ahead. Through the API, three rounds: Cython BCE 9.1-9.2 -> 6.6-6.8 ms
      and focal 9.5-10.0 -> 7.7-7.9 ms at 1024 x 32768, 17.3-18.6 -> 12.7-12.9 and 18.5-18.6
      -> 14.1-14.5 ms at 256 x 262144; Numba within its noise (BCE 6.5-6.8 -> 6.2-6.8, focal
      6.7-7.0 -> 6.2-6.6); 1 or 4 KiB as good as 2; streamed stores 5-15% slower for focal.
    """
    amd = vendor == "AuthenticAMD"
    prefetch = 0 if amd and family < 26 else 2048
    stream = os.environ.get("FASTXENT_STREAM_STORES", "").strip()
    if stream not in ("", "0", "1"):
        raise ValueError(f"environment variable FASTXENT_STREAM_STORES={stream!r}: expected "
                         f"0 or 1; unset it to use the default ({0 if amd else 1})")
    return ((not amd) if not stream else stream == "1",
            _env_int("FASTXENT_PREFETCH_BYTES", prefetch))


#: ``(stream, prefetch_bytes)`` of the sparse sigmoid kernels of both CPU backends (``_stores``).
SPARSE_SIGMOID_STORES = _stores(_cpu_vendor(), _cpu_family())

# CUDA backend (fastxent/backends/numba_cuda). Read by the launcher at each call, passed to the
# kernels as launch configuration and arguments (never read inside a kernel).
#: Threads per block; a multiple of 32 (whole warps) on a GPU. With the register caps below,
#: 256 keeps 3 (float32) or 2 (float64) blocks resident per SM: few rows in flight, so a long
#: row's second read (the gradient pass) still finds it in L2.
CUDA_THREADS_PER_BLOCK = _env_int("FASTXENT_CUDA_THREADS_PER_BLOCK", 256)
#: Registers per thread the loss kernels may use (0: the compiler's choice), for float32 and
#: float64 logits. An SM has 65536: at most 80 lets 3 blocks of 256 threads share it (about 96
#: uncapped: 2 blocks), 128 lets 2 (and a 512-thread block launch). More resident threads keep
#: more loads in flight (README, "Expected performance"); what the caps cost in spills is
#: printed by ``python -m fastxent.backends.numba_cuda.launch`` and bounded by a test.
CUDA_MAX_REGISTERS_F32 = _env_int("FASTXENT_CUDA_MAX_REGISTERS_F32", 80)
CUDA_MAX_REGISTERS_F64 = _env_int("FASTXENT_CUDA_MAX_REGISTERS_F64", 128)
#: Softmax rows longer than CUDA_LONG_ROW_BYTES get blocks of CUDA_LONG_ROW_THREADS threads,
#: one row each (0: never). The gradient pass re-reads its row, from L2 while the rows in
#: flight fit: 3 blocks x 132 SMs of an H100 hold 396 rows, 25 MB (half its L2) at 64 KB each;
#: one 512-thread block per SM holds 132 rows, up to 190 KB (47k float32 classes) each.
#: The sigmoid families read rows once and keep the default blocks.
CUDA_LONG_ROW_BYTES = _env_int("FASTXENT_CUDA_LONG_ROW_BYTES", 65536)
CUDA_LONG_ROW_THREADS = _env_int("FASTXENT_CUDA_LONG_ROW_THREADS", 512)
#: Threads per row = the smallest power of two >= C / this (at most a block): short rows share a
#: block (rows per block = threads per block / threads per row), long rows get a whole block.
CUDA_ELEMENTS_PER_THREAD = _env_int("FASTXENT_CUDA_ELEMENTS_PER_THREAD", 8)
#: At most this many blocks per launch; the kernels' grid-stride loops cover the other rows.
CUDA_MAX_BLOCKS = _env_int("FASTXENT_CUDA_MAX_BLOCKS", 65536)
#: Threads of the one-block kernel that sums the row losses (fixed order: deterministic).
CUDA_SUM_THREADS = 256
