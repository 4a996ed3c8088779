"""asv benchmarks: every loss family on every backend, next to its peers, and how they scale.

Quick run in the current environment (nothing is built; `asv machine --yes` once per machine,
else `asv run` exits 1; `make asv` does the same):

    cd asv_bench && asv machine --yes && asv run --python=same --quick

One sample of every benchmark; about 4 minutes on a 2-core machine once the Numba kernels are
in the on-disk cache (a cold cache compiles each kernel once, up to a minute each). A regex on
``name(param, ...)`` selects, e.g. one family, or the Numba backend alone:

    asv run --python=same --quick -b "softmax_ce\\[int\\]"
    asv run --python=same --quick -b "'numba'"

The full, isolated run builds a wheel of each commit into a fresh virtualenv (asv.conf.json):

    cd asv_bench && asv machine --yes && asv run            # the latest commit of main
    asv continuous main HEAD                               # compare two commits
    asv publish && asv preview                             # HTML report

What is measured (the families and the PyTorch formulas are those of ``fastxent.cli``; the batch
is ``fastxent._synthetic.make_batch``: Zipf-distributed labels, normal logits):

* ``Losses``: every family x implementation (each fastxent backend, and PyTorch CPU), float32,
  at one shape: ``time_forward`` (the loss alone), ``time_forward_grad`` (loss + gradient into a
  reused buffer; PyTorch: forward + backward), ``peakmem_forward_grad`` (the process's peak RSS,
  setup included), ``track_gbps_forward_grad`` (effective GB/s: logits read + gradient written
  + targets read, over the median of a few calls). ``Float64``: the same in float64.
* ``ScaleClasses``, ``ScaleRows``, ``ScalePositives``, ``Threads``: the compiled backends over C
  (up to 2**20), N, positives per row and threads (time, and peak memory over C and N).
* ``CompileTime``: the Numba JIT compile time of a family's kernel in a fresh interpreter with an
  empty ``NUMBA_CACHE_DIR``, and the first call of a fresh interpreter with the cache in place.
* ``Import``: ``import fastxent`` in a fresh interpreter.

A backend that is not available here (not built, no GPU) or a peer that is not installed is
skipped: ``setup`` raises NotImplementedError. The JIT warm-up happens in ``setup``.
"""

import os
import statistics
import subprocess
import sys
import tempfile

import numpy as np

# asv runs every benchmark and parameter combination in a new interpreter that imports this
# module: import only what every run needs (numba and torch are imported by the runs using them).
try:
    import fastxent
    from fastxent import _bench, cli
except ImportError:  # an old commit or a broken install: every setup skips
    fastxent = _bench = cli = None

FAMILIES = (
    "softmax_ce[int]",
    "softmax_ce[dense]",
    "softmax_ce[multilabel]",
    "bce[dense]",
    "bce[multilabel]",
    "sigmoid_focal[multilabel]",
    "softmax_focal[int]",
)
#: fastxent backends: the known ones, and whatever the dispatcher registers besides
KNOWN_BACKENDS = ("numba", "cython", "cuda", "numpy")
try:
    from fastxent._dispatch import _DESCRIPTIONS
    BACKENDS = tuple(dict.fromkeys(KNOWN_BACKENDS + tuple(_DESCRIPTIONS)))
except ImportError:
    BACKENDS = KNOWN_BACKENDS
COMPILED = tuple(b for b in BACKENDS if b != "numpy")
PEERS = ("torch",)
# Families of the scaling classes: one per loss, the sparse targets of extreme classification
SCALE_FAMILIES = ("softmax_ce[int]", "bce[multilabel]", "sigmoid_focal[multilabel]")
COMPILE_FAMILIES = ("softmax_ce[int]", "bce[multilabel]")


def _skip_unless_ready(family):
    if cli is None:
        raise NotImplementedError("fastxent (with fastxent.cli and fastxent._bench) is not "
                                  "importable")
    if family not in cli.FAMILY_NAMES:
        raise NotImplementedError(f"this fastxent has no family {family!r}")


def _torch():
    try:
        import torch
    except ImportError:
        raise NotImplementedError("torch is not installed")
    return torch


class _Setup:
    """Builds the batch and the calls; subclasses choose the parameters and the methods."""

    timeout = 300  # the NumPy reference and PyTorch's focal formula take seconds per call
    # params/param_names: (family, implementation, N, C, positives, dtype)

    def setup(self, family, implementation, n_rows, n_classes, positives, dtype):
        _skip_unless_ready(family)
        spec = cli.family_by_name(family)
        device = "cpu"
        if implementation == "torch":
            torch = _torch()
            import numba

            torch.set_num_threads(numba.get_num_threads())
        elif implementation not in fastxent.available_backends():
            raise NotImplementedError(f"backend {implementation!r} is not available here")
        elif implementation == "cuda":
            device = "cuda"
            try:
                _bench.check_device(fastxent, "cuda")
            except SystemExit as exc:
                raise NotImplementedError(str(exc))
        batch = cli.Batch.make(n_rows, n_classes, avg_positives=positives, dtype=np.dtype(dtype),
                               seed=0)
        self.bytes_forward_grad = _bench.bytes_per_call(spec, batch, grad=True)
        if implementation == "torch":
            self.forward = spec.torch_call(torch, batch, n_rows, grad=False)
            self.forward_grad = spec.torch_call(torch, batch, n_rows, grad=True)
        else:
            self.forward, _ = _bench._device_call(spec, fastxent, batch, implementation, device,
                                                  grad=False)
            self.forward_grad, self.grad_out = _bench._device_call(
                spec, fastxent, batch, implementation, device, grad=True)
        # JIT compilation (or loading from the cache) of both kernels; first-call allocations
        # of PyTorch's forward + backward. The NumPy reference needs no warm-up.
        if implementation != "numpy":
            if implementation != "torch":
                self.forward()
            self.forward_grad()


class _ForwardGrad:
    def time_forward_grad(self, *params):
        self.forward_grad()

    def peakmem_forward_grad(self, *params):
        self.forward_grad()

    def track_gbps_forward_grad(self, *params):
        times = cli.sample_seconds(self.forward_grad, repeats=3, warmup=0, budget_s=1.0)
        return self.bytes_forward_grad / statistics.median(times) / 1e9

    track_gbps_forward_grad.unit = "GB/s"


class Losses(_Setup, _ForwardGrad):
    """Every family on every implementation (float32) at one shape."""

    params = (FAMILIES, BACKENDS + PEERS, [128], [16384], [5.0], ["float32"])
    param_names = ("family", "implementation", "N", "C", "positives", "dtype")

    def time_forward(self, *params):
        self.forward()


class Float64(_Setup):
    """Every family in float64 on the compiled backends and PyTorch (the NumPy reference
    computes in float64 whatever its input: see ``Losses``)."""

    params = (FAMILIES, COMPILED + PEERS, [128], [16384], [5.0], ["float64"])
    param_names = Losses.param_names

    def time_forward_grad(self, *params):
        self.forward_grad()


class _TimeAndMemory:
    def time_forward_grad(self, *params):
        self.forward_grad()

    def peakmem_forward_grad(self, *params):
        self.forward_grad()


class ScaleClasses(_Setup, _TimeAndMemory):
    """Compiled backends over the number of classes, up to 2**20 (32 rows)."""

    params = (SCALE_FAMILIES, COMPILED, [32], [2**12, 2**16, 2**20], [5.0], ["float32"])
    param_names = Losses.param_names


class ScaleRows(_Setup, _TimeAndMemory):
    """Compiled backends over the number of rows (4096 classes)."""

    params = (SCALE_FAMILIES, COMPILED, [16, 512, 8192], [4096], [5.0], ["float32"])
    param_names = Losses.param_names


class ScalePositives(_Setup):
    """Sparse-target families over the mean number of positives per row."""

    params = (("softmax_ce[multilabel]", "bce[multilabel]", "sigmoid_focal[multilabel]"),
              COMPILED, [128], [16384], [1.0, 16.0, 256.0], ["float32"])
    param_names = Losses.param_names

    def time_forward_grad(self, *params):
        self.forward_grad()


class Threads(_Setup):
    """Compiled CPU backends (and PyTorch) on 1 and 2 threads."""

    params = (SCALE_FAMILIES, tuple(b for b in COMPILED if b != "cuda") + PEERS, [128],
              [65536], [5.0], ["float32"], [1, 2])
    param_names = Losses.param_names + ("threads",)

    def setup(self, family, implementation, n_rows, n_classes, positives, dtype, threads):
        _skip_unless_ready(family)
        import numba

        if threads > numba.config.NUMBA_NUM_THREADS:
            raise NotImplementedError(f"only {numba.config.NUMBA_NUM_THREADS} threads here")
        numba.set_num_threads(threads)
        fastxent.set_num_threads(threads)      # fastxent sets numba's count around each kernel
        super().setup(family, implementation, n_rows, n_classes, positives, dtype)
        if implementation == "torch":
            _torch().set_num_threads(threads)

    def time_forward_grad(self, *params):
        self.forward_grad()


_FIRST_CALL = """
import sys, time
import numpy as np
import fastxent
from fastxent import cli
family = cli.family_by_name(sys.argv[1])
batch = cli.Batch.make(64, 1024, seed=0)
call = family.fastxent_call(fastxent, batch.logits, family.make_targets(batch),
                            np.empty_like(batch.logits), backend="numba")
start = time.perf_counter()
call()
print(time.perf_counter() - start)
"""


def _first_call_seconds(family, cache_dir=None):
    env = dict(os.environ)
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = cache_dir
    out = subprocess.run([sys.executable, "-c", _FIRST_CALL, family], env=env, check=True,
                         capture_output=True, text=True, timeout=900).stdout
    return float(out.split()[-1])


class CompileTime:
    """Numba JIT: compile time of a family's kernel (loss + gradient, float32) in a fresh
    interpreter with an empty cache, and the first call of a fresh interpreter with the cache
    in place (what a user pays at each start)."""

    params = (COMPILE_FAMILIES,)
    param_names = ("family",)
    timeout = 900
    number = 1
    repeat = 1

    def setup(self, family):
        _skip_unless_ready(family)
        if "numba" not in fastxent.available_backends():
            raise NotImplementedError("the numba backend is not available here")

    def track_compile_seconds(self, family):
        with tempfile.TemporaryDirectory(prefix="fastxent-numba-cache-") as cache_dir:
            return _first_call_seconds(family, cache_dir)

    track_compile_seconds.unit = "seconds"

    def track_cached_first_call_seconds(self, family):
        _first_call_seconds(family)  # fills the package's cache if it is empty or stale
        return _first_call_seconds(family)

    track_cached_first_call_seconds.unit = "seconds"


class Import:
    """``import fastxent`` in a fresh interpreter (no kernel is compiled or loaded)."""

    def timeraw_import_fastxent(self):
        return "import fastxent"

