"""The ``fastxent`` command line: ``demo``, ``bench`` and ``info``.

``python -m fastxent demo`` builds a synthetic extreme multi-label batch, runs every loss family
with its gradient into one reused buffer, checks a sample of rows against the float64 oracle
(``fastxent.reference``) and prints a timing table next to the NumPy reference and PyTorch.
``bench`` prints the same table plus the machine's streaming-copy bandwidth (or JSON), and
``info`` describes the installation.

The loss functions are imported inside the commands, so this module imports (and ``info`` runs)
even in a broken or partial installation. The family table (:data:`FAMILIES`) and the timing
helpers are shared with the asv suite in ``asv_bench/``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

__all__ = ["main", "FAMILIES", "Family", "Batch"]

# Float tolerances of the contract (docs/losses.md): per-row relative error of the row losses,
# and gradient error relative to the row's largest |gradient|.
TOLERANCES = {
    np.dtype(np.float32): (1e-5, 1e-6),
    np.dtype(np.float64): (1e-12, 1e-12),
}
CHECK_ROWS = 8


# --------------------------------------------------------------------------------------------
# Data


@dataclass
class Batch:
    """A synthetic batch and the target forms the families use."""

    logits: np.ndarray
    indptr: np.ndarray
    indices: np.ndarray
    labels_int: np.ndarray

    @classmethod
    def make(cls, n_rows, n_classes, avg_positives=5.0, dtype=np.float32, seed=0):
        from ._synthetic import make_batch

        return cls(*make_batch(n_rows, n_classes, avg_positives=avg_positives, dtype=dtype,
                               seed=seed))

    @property
    def n_rows(self):
        return self.logits.shape[0]

    @property
    def n_classes(self):
        return self.logits.shape[1]

    def rows_of(self, rows):
        """(indptr, indices) of the given rows: an int ``r`` means the first r rows."""
        if isinstance(rows, (int, np.integer)):
            return self.indptr[: rows + 1], self.indices[: self.indptr[rows]]
        rows = np.asarray(rows, dtype=np.int64)
        starts, stops = self.indptr[rows], self.indptr[rows + 1]
        indptr = np.zeros(rows.size + 1, dtype=np.int64)
        np.cumsum(stops - starts, out=indptr[1:])
        indices = np.concatenate([self.indices[a:b] for a, b in zip(starts, stops)]
                                 or [np.zeros(0, np.int64)])
        return indptr, indices

    def targets(self, kind, rows=None, normalise=False):
        """Targets of ``kind`` for all rows, the first r, or a list of rows.

        ``kind``: "int" (class indices [r]), "multilabel" (a CSR ``MultiLabel``) or "dense"
        (float [r, C] in the logits' dtype, 0/1, or row-normalised if ``normalise``).
        """
        rows = self.n_rows if rows is None else rows
        if kind == "int":
            return self.labels_int[:rows] if isinstance(rows, (int, np.integer)) \
                else self.labels_int[np.asarray(rows)]
        if kind == "dense":
            return self.dense_targets(rows, self.logits.dtype, normalise=normalise)
        import fastxent

        indptr, indices = self.rows_of(rows)
        return fastxent.MultiLabel(indptr, indices, self.n_classes)

    def dense_targets(self, rows, dtype, normalise=False):
        """Dense [r, C] 0/1 targets of the first r rows or of a list of rows (row-normalised,
        i.e. 1/|P| at the positives, if ``normalise``)."""
        indptr, indices = self.rows_of(rows)
        n_rows = indptr.size - 1
        dense = np.zeros((n_rows, self.n_classes), dtype=dtype)
        counts = np.diff(indptr)
        row_ids = np.repeat(np.arange(n_rows), counts)
        dense[row_ids, indices] = (1.0 / counts[row_ids]) if normalise else 1.0
        return dense


# --------------------------------------------------------------------------------------------
# Families: what each one calls in fastxent and in PyTorch


@dataclass(frozen=True)
class Family:
    name: str
    function: str  # name in fastxent and fastxent.reference
    targets: str  # "int", "dense" or "multilabel" (CSR)
    kwargs: dict = field(default_factory=dict)
    # Peak extra memory of the PyTorch forward + backward, in units of the logits' size, and of
    # the NumPy reference backend (float64 work arrays): used to pick the slice that fits.
    torch_memory: float = 6.0
    numpy_memory: float = 16.0

    @property
    def normalise_dense(self):
        """Dense softmax targets are row-normalised (what sparse softmax targets mean, PAL-N)."""
        return self.function.startswith("softmax")

    def make_targets(self, batch, rows=None):
        """This family's targets for all rows of ``batch``, the first r, or a list of rows."""
        return batch.targets(self.targets, rows, normalise=self.normalise_dense)

    def fastxent_call(self, fx, logits, targets, grad_out, backend="auto", reduction="mean",
                      grad=True):
        """A zero-argument callable: the loss and its gradient into ``grad_out`` (the loss alone
        if ``grad`` is false)."""
        function = getattr(fx, self.function)

        if not grad:
            def call():
                return function(logits, targets, backend=backend, reduction=reduction,
                                **self.kwargs)
            return call

        def call():
            return function(logits, targets, return_grad=True, grad_out=grad_out,
                            backend=backend, reduction=reduction, **self.kwargs)

        return call

    def reference_rows(self, fx, batch, rows):
        """float64 oracle on the listed rows: (row losses, gradient rows)."""
        function = getattr(fx.reference, self.function)
        return function(batch.logits[rows].astype(np.float64), self.make_targets(batch, rows),
                        reduction="none", return_grad=True, **self.kwargs)

    def torch_call(self, torch, batch, rows, grad=True, device="cpu"):
        """A zero-argument callable: the PyTorch forward + backward on the first ``rows`` rows
        (the forward alone, under ``torch.no_grad()``, if ``grad`` is false)."""
        functional = torch.nn.functional
        x = torch.from_numpy(batch.logits[:rows]).to(device).requires_grad_(grad)
        if self.targets == "int":
            target = torch.from_numpy(batch.labels_int[:rows])
        else:  # PyTorch has no sparse targets: CSR families are timed on dense targets
            target = torch.from_numpy(batch.dense_targets(rows, batch.logits.dtype,
                                                          normalise=self.normalise_dense))
        target = target.to(device)
        loss_of = _TORCH_LOSSES[(self.function, self.targets)]
        synchronize = torch.cuda.synchronize if str(device).startswith("cuda") else None

        if not grad:
            def call():
                with torch.no_grad():
                    loss = loss_of(torch, functional, x, target, **self.kwargs)
                if synchronize:
                    synchronize()
                return loss
            return call

        def call():
            x.grad = None
            loss = loss_of(torch, functional, x, target, **self.kwargs)
            loss.backward()
            if synchronize:
                synchronize()
            return loss

        return call


def _torch_softmax_ce(torch, functional, x, target):
    # int labels: class indices; multilabel: dense probability targets (1/|P| at positives),
    # which is what fastxent's sparse softmax CE computes.
    return functional.cross_entropy(x, target)


def _torch_bce(torch, functional, x, target):
    return functional.binary_cross_entropy_with_logits(x, target)


def _torch_sigmoid_focal(torch, functional, x, target, gamma=2.0, alpha=0.25):
    # torchvision.ops.sigmoid_focal_loss, written out in torch ops, reduced with the mean.
    p = torch.sigmoid(x)
    ce = functional.binary_cross_entropy_with_logits(x, target, reduction="none")
    p_t = p * target + (1 - p) * (1 - target)
    loss = ce * ((1 - p_t) ** gamma)
    if alpha >= 0:
        loss = (alpha * target + (1 - alpha) * (1 - target)) * loss
    return loss.mean()


def _torch_softmax_focal(torch, functional, x, target, gamma=2.0):
    # The usual softmax focal loss for class indices: -(1 - p_t)**gamma * log p_t, mean over rows.
    log_p_t = functional.log_softmax(x, dim=1).gather(1, target[:, None]).squeeze(1)
    return (-((1 - log_p_t.exp()) ** gamma) * log_p_t).mean()


_TORCH_LOSSES = {
    ("softmax_cross_entropy", "int"): _torch_softmax_ce,
    ("softmax_cross_entropy", "dense"): _torch_softmax_ce,
    ("softmax_cross_entropy", "multilabel"): _torch_softmax_ce,
    ("sigmoid_binary_cross_entropy", "dense"): _torch_bce,
    ("sigmoid_binary_cross_entropy", "multilabel"): _torch_bce,
    ("sigmoid_focal_loss", "multilabel"): _torch_sigmoid_focal,
    ("softmax_focal_loss", "int"): _torch_softmax_focal,
}

# "[multilabel]": sparse (CSR) targets, never densified by fastxent; "[dense]": float [N, C].
FAMILIES = (
    Family("softmax_ce[int]", "softmax_cross_entropy", "int", torch_memory=4.0),
    Family("softmax_ce[dense]", "softmax_cross_entropy", "dense", torch_memory=6.0,
           numpy_memory=17.0),
    Family("softmax_ce[multilabel]", "softmax_cross_entropy", "multilabel", torch_memory=6.0),
    Family("bce[dense]", "sigmoid_binary_cross_entropy", "dense", torch_memory=6.0,
           numpy_memory=17.0),
    Family("bce[multilabel]", "sigmoid_binary_cross_entropy", "multilabel", torch_memory=6.0),
    Family("sigmoid_focal[multilabel]", "sigmoid_focal_loss", "multilabel",
           {"gamma": 2.0, "alpha": 0.25}, torch_memory=14.0),
    Family("softmax_focal[int]", "softmax_focal_loss", "int", {"gamma": 2.0}, torch_memory=6.0),
)
FAMILY_NAMES = tuple(family.name for family in FAMILIES)


def family_by_name(name):
    for family in FAMILIES:
        if family.name == name:
            return family
    raise KeyError(f"unknown family {name!r}; known: {', '.join(FAMILY_NAMES)}")


# --------------------------------------------------------------------------------------------
# Timing


@dataclass
class Timing:
    """Median seconds per call for the whole batch (scaled when ``rows`` < the batch's rows)."""

    seconds: float
    rows: int
    n_rows: int
    limited_by: str = ""  # "memory" or "time budget" when a slice was timed
    times: list = field(default_factory=list)  # every timed run, scaled like ``seconds``

    @property
    def scaled(self):
        return self.rows < self.n_rows


def sample_seconds(call, repeats, warmup=1, budget_s=math.inf, min_repeats=1):
    """Wall times of ``repeats`` runs of ``call()`` after ``warmup`` untimed runs.

    Stops early (after at least ``min_repeats`` timed runs) once the timed runs add up to
    ``budget_s``.
    """
    for _ in range(warmup):
        call()
    times = []
    while len(times) < max(1, repeats) and (len(times) < max(1, min_repeats)
                                             or sum(times) < budget_s):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


def median_seconds(call, repeats, warmup=1, budget_s=math.inf):
    """Median of :func:`sample_seconds`."""
    return statistics.median(sample_seconds(call, repeats, warmup, budget_s))


def time_on_rows(make_call, n_rows, n_classes, *, budget_s, max_rows, repeats,
                 max_repeats=None):
    """Time ``make_call(r)()`` on the first r rows, r as large as the budget and memory allow.

    A probe on a small slice estimates the cost per row; the slice timed then fits
    ``(1 + repeats)`` calls in ``budget_s`` and at most ``max_rows`` rows. At least ``repeats``
    runs are timed, and more, up to ``max_repeats``, while the timed runs fit in ``budget_s``
    (a fast peer's median then rests on more runs than a slow one's). The median is scaled
    linearly to ``n_rows`` (these peers are linear in the rows).
    """
    most = max(repeats, max_repeats or repeats)
    cap = max(1, min(n_rows, max_rows))
    rows = max(1, min(cap, (1 << 20) // max(1, n_classes)))
    probe = make_call(rows)
    probe()  # first call: allocations, lazy initialisation
    start = time.perf_counter()
    probe()
    per_row = (time.perf_counter() - start) / rows
    fit = int(budget_s / ((1 + repeats) * max(per_row, 1e-12)))
    chosen = max(rows, min(cap, fit))
    if chosen == rows:
        times = sample_seconds(probe, most, warmup=0, budget_s=budget_s, min_repeats=repeats)
    else:
        del probe  # frees the probe's inputs (dense targets) before the larger slice
        times = sample_seconds(make_call(chosen), most, warmup=1, budget_s=budget_s,
                               min_repeats=repeats)
    limited_by = "" if chosen >= n_rows else ("memory" if chosen == cap and fit > cap
                                              else "time budget")
    scale = n_rows / chosen
    return Timing(statistics.median(times) * scale, chosen, n_rows, limited_by,
                  [t * scale for t in times])


def available_memory_bytes():
    """MemAvailable from /proc/meminfo (Linux), else a conservative 4 GiB."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 << 30


def copy_bandwidth(src, dst, n_threads, repeats=5):
    """Streaming copy GB/s (bytes read + written) with np.copyto over ``n_threads`` row chunks."""
    n_threads = max(1, min(n_threads, src.shape[0]))
    bounds = np.linspace(0, src.shape[0], n_threads + 1).astype(int)
    chunks = [(dst[a:b], src[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    if n_threads == 1:
        def call():
            np.copyto(dst, src)
        seconds = median_seconds(call, repeats)
    else:
        with ThreadPoolExecutor(max_workers=n_threads) as pool:
            def call():
                list(pool.map(lambda pair: np.copyto(*pair), chunks))
            seconds = median_seconds(call, repeats)
    return 2 * src.nbytes / seconds / 1e9, seconds


# --------------------------------------------------------------------------------------------
# The run shared by demo and bench


@dataclass
class Result:
    family: Family
    fastxent: float = math.nan
    numpy: Timing | None = None
    torch: Timing | None = None
    numpy_note: str = ""
    torch_note: str = ""
    loss_error: float = math.nan
    grad_error: float = math.nan
    passed: bool | None = None


def _import_api():
    try:
        import fastxent
        import fastxent.reference

        for family in FAMILIES:
            getattr(fastxent, family.function)
            getattr(fastxent.reference, family.function)
        fastxent.MultiLabel
    except (ImportError, AttributeError) as exc:
        raise SystemExit(f"fastxent: the loss API is not importable in this installation "
                         f"({exc})")
    return fastxent


def _import_torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def _set_threads(n_threads):
    """The CPU backends' thread count (``fastxent.set_num_threads``: fastxent sets Numba's
    count itself around each kernel, so ``numba.set_num_threads`` alone would be overridden)."""
    import numba

    from . import _threads

    if n_threads is not None:
        if not 1 <= n_threads <= numba.config.NUMBA_NUM_THREADS:
            raise SystemExit(f"--threads must be in [1, {numba.config.NUMBA_NUM_THREADS}] "
                             f"(numba's NUMBA_NUM_THREADS), got {n_threads}")
        numba.set_num_threads(n_threads)
        _threads.set_num_threads(n_threads)
    return min(_threads.get_num_threads(), int(numba.config.NUMBA_NUM_THREADS))


def check_rows(fx, family, batch, grad_out, rows):
    """Max errors of the row losses and gradient rows against ``fastxent.reference``."""
    losses = family.fastxent_call(fx, batch.logits, family.make_targets(batch), grad_out,
                                  reduction="none")()[0]
    ref_losses, ref_grad = family.reference_rows(fx, batch, rows)
    losses = np.asarray(losses, dtype=np.float64)[rows]
    grad = grad_out[rows].astype(np.float64)
    loss_error = float(np.max(np.abs(losses - ref_losses)
                              / np.maximum(np.abs(ref_losses), np.finfo(np.float64).tiny)))
    scale = np.maximum(np.max(np.abs(ref_grad), axis=1), np.finfo(np.float64).tiny)
    grad_error = float(np.max(np.max(np.abs(grad - ref_grad), axis=1) / scale))
    return loss_error, grad_error


def run_families(fx, batch, families, *, repeats, check, fastxent_budget, numpy_budget,
                 torch_budget, peer_repeats, n_threads, log):
    torch = _import_torch() if torch_budget > 0 else None
    if torch is not None:
        torch.set_num_threads(n_threads)
    grad_out = np.empty_like(batch.logits)
    rng = np.random.default_rng(12345)
    rows = np.sort(rng.choice(batch.n_rows, size=min(CHECK_ROWS, batch.n_rows), replace=False))
    loss_tol, grad_tol = TOLERANCES.get(batch.logits.dtype, (1e-5, 1e-6))
    row_bytes = batch.n_classes * batch.logits.itemsize
    results = []
    for family in families:
        result = Result(family)
        targets = family.make_targets(batch)
        call = family.fastxent_call(fx, batch.logits, targets, grad_out)
        log(f"  {family.name}: compiling / warming up ...")
        call()
        if check:
            result.loss_error, result.grad_error = check_rows(fx, family, batch, grad_out, rows)
            result.passed = result.loss_error <= loss_tol and result.grad_error <= grad_tol
        result.fastxent = median_seconds(call, repeats, warmup=0, budget_s=fastxent_budget)

        if numpy_budget > 0:
            max_rows = int(0.4 * available_memory_bytes() / (family.numpy_memory * row_bytes))
            try:
                result.numpy = time_on_rows(
                    lambda r: family.fastxent_call(fx, batch.logits[:r],
                                                   family.make_targets(batch, r),
                                                   grad_out[:r], backend="numpy"),
                    batch.n_rows, batch.n_classes, budget_s=numpy_budget, max_rows=max_rows,
                    repeats=peer_repeats)
            except Exception as exc:  # a peer failing is reported, not fatal
                result.numpy_note = f"{type(exc).__name__}: {exc}"
        if torch is None:
            result.torch_note = "torch not importable" if torch_budget > 0 else "skipped"
        else:
            max_rows = int(0.4 * available_memory_bytes() / (family.torch_memory * row_bytes))
            try:
                result.torch = time_on_rows(
                    lambda r: family.torch_call(torch, batch, r), batch.n_rows, batch.n_classes,
                    budget_s=torch_budget, max_rows=max_rows, repeats=peer_repeats)
            except Exception as exc:
                result.torch_note = f"{type(exc).__name__}: {exc}"
        results.append(result)
    return results, grad_out


# --------------------------------------------------------------------------------------------
# Output


def _gbps(batch, seconds):
    return 2 * batch.logits.nbytes / seconds / 1e9


def _ms(seconds):
    ms = seconds * 1e3
    return f"{ms:,.0f}" if ms >= 100 else f"{ms:.3g}"


def _peer_cells(timing, fastxent_seconds, note):
    if timing is None:
        return ("-", "-") if note == "skipped" else ("n/a", "n/a")
    mark = "*" if timing.scaled else ""
    return f"{_ms(timing.seconds)}{mark}", f"{timing.seconds / fastxent_seconds:.1f}x"


def format_table(batch, results, copy_gbps=None):
    header = ["family", "fastxent ms", "GB/s"]
    if copy_gbps:
        header.append("of copy")
    header += ["NumPy ref ms", "vs NumPy", "PyTorch ms", "vs PyTorch"]
    lines = [header]
    for r in results:
        gbps = _gbps(batch, r.fastxent)
        row = [r.family.name, _ms(r.fastxent), f"{gbps:.1f}"]
        if copy_gbps:
            row.append(f"{gbps / copy_gbps:.0%}")
        row += [*_peer_cells(r.numpy, r.fastxent, r.numpy_note),
                *_peer_cells(r.torch, r.fastxent, r.torch_note)]
        lines.append(row)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = []
    for k, line in enumerate(lines):
        cells = [line[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(line[1:], widths[1:])]
        text.append("  ".join(cells))
        if k == 0:
            text.append("  ".join("-" * w for w in widths))
    return "\n".join(text)


def format_notes(batch, results, n_threads):
    notes = [f"time: median per call of the loss + gradient (reduction='mean', gradient into a "
             f"reused buffer); GB/s counts the logits read + the gradient written "
             f"({2 * batch.logits.nbytes / 1e9:.2f} GB per call)."]
    slices = []
    for r in results:
        for label, timing in (("NumPy ref", r.numpy), ("PyTorch", r.torch)):
            if timing is not None and timing.scaled:
                slices.append(f"{r.family.name} {label}: {timing.rows} rows "
                              f"({timing.limited_by})")
    if slices:
        notes.append(f"* timed on the first rows of the batch and scaled linearly to "
                     f"{batch.n_rows} rows: " + "; ".join(slices) + ".")
    try:
        import numba

        layer = numba.threading_layer()
    except (ImportError, ValueError):
        layer = "unknown"
    notes.append(f"fastxent: backend='auto', {n_threads} threads (numba threading layer "
                 f"{layer}). NumPy ref: backend='numpy' (the float64 NumPy reference). "
                 f"PyTorch: CPU, {n_threads} threads, forward + backward (F.cross_entropy; "
                 "F.binary_cross_entropy_with_logits with dense targets; torchvision's sigmoid "
                 "focal formula in torch ops; softmax focal in torch ops).")
    for r in results:
        for label, note in (("NumPy ref", r.numpy_note), ("PyTorch", r.torch_note)):
            if note and note != "skipped":
                notes.append(f"{r.family.name} {label}: {note}")
    return "\n".join(notes)


# --------------------------------------------------------------------------------------------
# Commands


def _describe_batch(batch, seconds, n_threads):
    return (f"batch: {batch.n_rows} x {batch.n_classes} {batch.logits.dtype} "
            f"({batch.logits.nbytes / 2**30:.3g} GiB of logits), "
            f"{batch.indices.size} positives ({batch.indices.size / max(1, batch.n_rows):.2f} "
            f"per row, Zipf labels), made in {seconds:.2f} s; {n_threads} threads")


def cmd_demo(args):
    from . import _bench

    fx = _import_api()
    n_threads = _set_threads(args.threads)
    # a batch that cannot fit says so (it ended in NumPy's allocation traceback)
    _bench.check_memory(_bench.Point(args.rows, args.classes, args.positives, args.dtype,
                                     n_threads), FAMILIES, peers=True)
    start = time.perf_counter()
    batch = Batch.make(args.rows, args.classes, args.positives, np.dtype(args.dtype), args.seed)
    made = time.perf_counter() - start
    print(f"fastxent {fx.__version__} demo")
    print(_describe_batch(batch, made, n_threads), flush=True)
    results, _ = run_families(
        fx, batch, FAMILIES, repeats=5, check=True, fastxent_budget=2.0, numpy_budget=1.5,
        torch_budget=3.0, peer_repeats=3, n_threads=n_threads, log=lambda m: print(m, flush=True))
    print()
    print(f"check: {CHECK_ROWS} sampled rows, reduction='none', against fastxent.reference "
          f"(float64); tolerance: loss rtol {TOLERANCES[batch.logits.dtype][0]:g}, gradient "
          f"{TOLERANCES[batch.logits.dtype][1]:g} of the row's max |grad|")
    for r in results:
        verdict = "PASS" if r.passed else "FAIL"
        print(f"{verdict} {r.family.name}: max rel err loss {r.loss_error:.2e}, "
              f"grad {r.grad_error:.2e}")
    print()
    print(format_table(batch, results))
    print()
    print(format_notes(batch, results, n_threads))
    print(f"total {time.perf_counter() - start:.1f} s")
    return 0 if all(r.passed for r in results) else 1


def cmd_bench(args):
    from . import _bench

    if args.plot:
        _bench.require_matplotlib()  # before the run, not after it
    fx = _import_api()
    _set_threads(args.threads)  # validates --threads
    start = time.perf_counter()
    measurements, copies, notes = _bench.run_bench(fx, args)
    if args.plot:
        _bench.plot(measurements, copies, args.plot, sweep=args.sweep, metric=args.plot_metric)
    if args.json:
        print(json.dumps(copies + [m.to_json() for m in measurements], indent=1))
        if args.plot:
            print(f"plot written to {args.plot}", file=sys.stderr)
        return 0
    print(_bench.environment_line())
    if not args.sweep and copies:
        print(f"stream copy (np.copyto, {copies[0]['threads']} threads, read + write): "
              f"{copies[0]['gbps']:.1f} GB/s")
    print()
    print(_bench.format_tables(measurements, copies, sweep=args.sweep))
    print()
    print(_bench.format_notes(measurements, notes))
    if args.plot:
        print(f"plot written to {args.plot}")
    print(f"total {time.perf_counter() - start:.1f} s")
    return 0


def _version_of(module_name):
    try:
        module = __import__(module_name)
    except ImportError:
        return "not installed"
    except Exception as exc:  # a broken install should not break `info`
        return f"import failed ({type(exc).__name__}: {exc})"
    return getattr(module, "__version__", "unknown")


def cmd_info(args):
    from . import _version

    print(f"fastxent {_version.__version__} ({os.path.dirname(os.path.abspath(__file__))})")
    print(f"python {platform.python_version()} ({sys.executable}) on {platform.platform()}")
    for name in ("numpy", "scipy", "numba", "llvmlite", "torch", "matplotlib"):
        print(f"{name}: {_version_of(name)}")
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    print(f"CPUs: {os.cpu_count()} (usable by this process: {affinity or 'unknown'})")
    print(f"CPU features: {_cpu_features()}")
    try:
        import numba

        print(f"numba threads: {numba.get_num_threads()} (NUMBA_NUM_THREADS="
              f"{numba.config.NUMBA_NUM_THREADS}), threading layer: {_threading_layer(numba)}")
    except ImportError:
        print("numba threads: numba not installed")
    try:
        from . import _dispatch
    except Exception as exc:
        print(f"backends: unknown (fastxent._dispatch not importable: {exc})")
    else:
        if hasattr(_dispatch, "available_backends"):
            backends = _dispatch.available_backends()
            if isinstance(backends, dict):
                shown = ", ".join(f"{k} ({v})" for k, v in backends.items())
            else:
                shown = ", ".join(map(str, backends))
            print(f"backends available: {shown or 'none'}")
            missing = [name for name in getattr(_dispatch, "_DESCRIPTIONS", ())
                       if name not in backends and hasattr(_dispatch, "_probe")]
            for name in missing:
                print(f"backend {name} not available: {_dispatch._probe(name)[1]}")
        else:
            print("backends: unknown (fastxent._dispatch has no available_backends())")
    print(f"numba cache: {_numba_cache()}")
    print(f"cython extension: {_cython_build()}")
    print(f"kernel tuning: {_tuning()}")
    try:
        from . import _threads

        print(f"fastxent threads: {_threads.get_num_threads()} (fastxent.set_num_threads or "
              f"FASTXENT_NUM_THREADS; used by the numba and cython kernels)")
    except Exception as exc:  # pragma: no cover - partial installation
        print(f"fastxent threads: unknown ({exc})")
    print(f"GPU: {_gpu()}")
    return 0


def _tuning():
    """The CPU kernels' machine-dependent settings (``fastxent._config``) and their overrides."""
    from . import _config

    stream, prefetch = _config.SPARSE_SIGMOID_STORES
    return (f"sparse sigmoid gradient through {'non-temporal' if stream else 'plain'} stores, "
            f"logits prefetched {f'{prefetch} bytes ahead' if prefetch else 'not at all'} "
            f"(FASTXENT_STREAM_STORES, FASTXENT_PREFETCH_BYTES); softmax rows of up to "
            f"{_config.CACHED_ROW_BYTES} bytes kept in L2 between passes "
            f"(FASTXENT_CACHED_ROW_BYTES)")


def _cython_build():
    """Whether the Cython backend's extension modules are built, with OpenMP or serial."""
    try:
        from .backends.cython import _support
        from .backends.cython import kernels  # noqa: F401 (every kernel module importable)
    except ImportError as exc:
        return f"not built ({exc})"
    omp = (f"with OpenMP (max {_support.openmp_max_threads()} threads)"
           if _support.openmp_enabled() else "without OpenMP (serial)")
    return f"built, {omp}, {os.path.dirname(_support.__file__)}"


def _cpu_features():
    """Model and SIMD flags from /proc/cpuinfo (Linux), and the CPU LLVM compiles for."""
    flags, model = set(), platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        return f"{model} (no /proc/cpuinfo)"
    simd = ", ".join(f"{flag} {'yes' if flag in flags else 'no'}"
                     for flag in ("avx2", "fma", "avx512f", "avx512vl"))
    try:
        import llvmlite.binding

        llvm = f"; LLVM targets {llvmlite.binding.get_host_cpu_name()}"
    except Exception:  # llvmlite missing or too old
        llvm = ""
    return f"{model}: {simd}{llvm}"


def _numba_cache():
    """Whether compiled Numba kernels of fastxent are cached on disk (and fresh)."""
    source_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "backends",
                              "numba_cpu")
    if not os.path.isdir(source_dir):
        return "no Numba backend in this installation"
    stems = {name[:-3] for name in os.listdir(source_dir) if name.endswith(".py")}
    try:
        import numba
    except ImportError:
        return "numba not installed"
    cache_dir = numba.config.CACHE_DIR
    roots = [cache_dir] if cache_dir else [os.path.join(source_dir, "__pycache__")]
    indexes = []
    for root in roots:
        for folder, _, files in os.walk(root):
            indexes += [os.path.join(folder, name) for name in files
                        if name.endswith(".nbi") and name.split(".")[0] in stems]
    where = cache_dir or roots[0]
    if not indexes:
        return (f"empty ({where}): the first call of each kernel compiles it "
                "(seconds to a minute each), later processes load it")
    stale = sum(os.path.getmtime(index) < os.path.getmtime(
        os.path.join(source_dir, os.path.basename(index).split(".")[0] + ".py"))
        for index in indexes)
    fresh = f"{stale} older than their source (those recompile)" if stale else "all fresh"
    return f"{len(indexes)} kernel indexes in {where} ({fresh})"


def _gpu():
    """GPUs that numba.cuda and torch see."""
    found, how = [], []
    try:
        import numba.core.config
        from numba import cuda

        if numba.core.config.ENABLE_CUDASIM:
            how.append("numba.cuda: the simulator (NUMBA_ENABLE_CUDASIM=1)")
        elif cuda.is_available():
            names = [gpu.name.decode() if isinstance(gpu.name, bytes) else str(gpu.name)
                     for gpu in cuda.gpus]
            found += names
            how.append(f"numba.cuda: {', '.join(names)}")
        else:
            how.append("numba.cuda: no GPU")
    except Exception as exc:  # numba-cuda missing or broken
        how.append(f"numba.cuda not importable ({type(exc).__name__})")
    torch = sys.modules.get("torch")
    if torch is not None:
        if torch.cuda.is_available():
            names = [torch.cuda.get_device_name(k) for k in range(torch.cuda.device_count())]
            found += names
            how.append(f"torch: {', '.join(names)}")
        else:
            how.append("torch: no CUDA device")
    verdict = "found" if found else "none found"
    return f"{verdict} ({'; '.join(how)})"


def _threading_layer(numba):
    """The layer numba really uses; a tiny parallel function must run once to know it."""
    try:
        return numba.threading_layer()
    except ValueError:
        pass

    @numba.njit(parallel=True)
    def _touch(n):
        total = 0
        for i in numba.prange(n):
            total += i
        return total

    try:
        _touch(4)
        return numba.threading_layer()
    except Exception as exc:
        return f"unknown ({type(exc).__name__}: {exc})"


# --------------------------------------------------------------------------------------------
# Argument parsing


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _non_negative_float(text):
    value = float(text)
    if not (value >= 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _sweep_values(text):
    """``V1,V2,...``: numbers > 0 (integers stay integers)."""
    values = []
    for item in text.split(","):
        value = float(item)
        if not (value > 0 and value < float("inf")):
            raise argparse.ArgumentTypeError(f"values must be finite numbers > 0, got {item}")
        values.append(int(value) if value.is_integer() else value)
    return values


def _add_batch_options(parser, rows, classes):
    parser.add_argument("--rows", type=_positive_int, default=rows,
                        help=f"rows N of the synthetic batch (default {rows})")
    parser.add_argument("--classes", type=_positive_int, default=classes,
                        help=f"classes C (default {classes})")
    parser.add_argument("--positives", type=_non_negative_float, default=5.0,
                        help="mean positives per row (default 5)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--threads", type=_positive_int, default=None,
                        help="threads for numba and torch (default: numba's default)")
    parser.add_argument("--seed", type=_non_negative_int, default=0)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="fastxent", description="Fused classification losses and gradients: demo, "
        "benchmark and installation info.")
    sub = parser.add_subparsers(dest="command", metavar="{demo,bench,info}")
    sub.required = True

    demo = sub.add_parser("demo", help="check every loss family against the reference and "
                          "time it next to NumPy and PyTorch")
    _add_batch_options(demo, 2048, 131072)
    demo.set_defaults(handler=cmd_demo)

    bench = sub.add_parser(
        "bench", help="time every family on every backend next to NumPy and PyTorch, with the "
        "machine's copy bandwidth; sweeps and plots",
        description="Time each loss family (loss + gradient) on every available fastxent "
        "backend, the float64 NumPy reference and PyTorch, on a synthetic extreme multi-label "
        "batch; print a table per family (median, spread, effective GB/s, fraction of the "
        "streaming-copy bandwidth measured in the same run, peak memory, speed-ups), or JSON, "
        "or a plot.")
    _add_batch_options(bench, 1024, 32768)
    bench.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                       help="cpu (default) or cuda (needs fastxent's CUDA backend and a GPU)")
    bench.add_argument("--backend", action="append", default=None, metavar="NAME",
                       help="time only this fastxent backend (repeatable; default: every "
                       "available one)")
    bench.add_argument("--repeat", type=_positive_int, default=None,
                       help="timed calls per measurement (default 10; 3 with --quick)")
    bench.add_argument("--quick", action="store_true",
                       help="fewer runs and small time budgets (the default run: < 2 minutes)")
    bench.add_argument("--no-peers", action="store_true",
                       help="time fastxent only (no NumPy reference, no PyTorch)")
    bench.add_argument("--family", action="append", choices=FAMILY_NAMES,
                       help="time only this family (repeatable)")
    bench.add_argument("--sweep", choices=("classes", "rows", "positives", "threads"),
                       help="repeat the run over several values of this quantity (the others "
                       "fixed): classes 2**10..2**20, rows 64..4096, positives 1..64, threads "
                       "1..NUMBA_NUM_THREADS (fewer with --quick)")
    bench.add_argument("--values", type=_sweep_values, default=None, metavar="V1,V2,...",
                       help="the values of --sweep (e.g. 1024,65536,1048576)")
    bench.add_argument("--json", action="store_true",
                       help="print a JSON list of measurements on stdout (progress on stderr)")
    bench.add_argument("--plot", metavar="FILE.png", default=None,
                       help="save a figure of the results against the swept quantity "
                       "(default: C); needs matplotlib")
    bench.add_argument("--plot-metric", choices=("gbps", "time"), default="gbps",
                       help="what --plot shows: effective GB/s (default) or ms per call")
    bench.add_argument("--no-progress", action="store_true",
                       help="no progress bar on stderr")
    bench.set_defaults(handler=cmd_bench)

    info = sub.add_parser("info", help="versions, threads and available backends")
    info.set_defaults(handler=cmd_info)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    values = getattr(args, "values", None)
    if values is not None:
        if not args.sweep:
            parser.error("--values needs --sweep (which quantity the values are for)")
        if args.sweep != "positives" and not all(isinstance(v, int) and v >= 1 for v in values):
            parser.error(f"--values for --sweep {args.sweep} must be whole numbers >= 1, got "
                         f"{','.join(str(v) for v in values)}")
    return args.handler(args)
