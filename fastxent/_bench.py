"""``fastxent bench``: time every loss family on every backend next to its peers.

For each point of a run (one batch shape, dtype, positives per row and thread count; a sweep
makes several points) and each family of :data:`fastxent.cli.FAMILIES`, this module times

* every available fastxent backend but the NumPy reference ("fastxent-numba",
  "fastxent-cython", ...; "fastxent-cuda" with ``--device cuda``), the gradient written into a
  reused buffer;
* the peers: the float64 NumPy reference ("numpy-reference", backend "numpy") and PyTorch
  ("torch", forward + backward), each on the largest slice of rows that fits a time budget and
  the memory, scaled linearly to the whole batch;
* a streaming copy of the logits (``np.copyto`` on the same threads), the bandwidth bound.

It reports the median and spread of the runs, the effective bandwidth (the bytes a fused pass
must move: logits read, gradient written, targets read), its fraction of the copy's bandwidth,
the speed-up over each peer and the memory a call adds (see :func:`peak_memory`), as text tables
(one per family), a JSON list, or a plot (matplotlib).
"""

from __future__ import annotations

import ctypes
import dataclasses
import gc
import math
import os
import statistics
import sys
import time
import tracemalloc
from dataclasses import dataclass, field

import numpy as np

from . import cli

__all__ = ["Measurement", "run_bench", "peak_memory", "Progress", "format_tables", "plot"]

PEERS = ("numpy-reference", "torch")

#: What a sweep varies, its column label, and its default values (full run, ``--quick``).
SWEEPS = {
    "classes": ("C", (2**10, 2**12, 2**14, 2**16, 2**18, 2**20), (2**10, 2**14, 2**18)),
    "rows": ("N", (64, 256, 1024, 4096), (64, 1024)),
    "positives": ("positives", (1, 4, 16, 64), (1, 16)),
    "threads": ("threads", None, None),  # 1 .. numba's NUMBA_NUM_THREADS
}


@dataclass(frozen=True)
class Budget:
    """Timed runs and seconds allowed per measurement."""

    repeats: int
    fastxent_s: float
    numpy_s: float
    torch_s: float
    peer_repeats: int
    #: a peer gets up to this many timed runs while they fit in its seconds (at least
    #: ``peer_repeats``): PyTorch's times vary by 10-20% from run to run here, and a median of
    #: three moved the speed-up across its target from one run to the next
    peer_max_repeats: int = 0


QUICK = Budget(repeats=3, fastxent_s=1.0, numpy_s=0.3, torch_s=0.6, peer_repeats=2)
FULL = Budget(repeats=10, fastxent_s=10.0, numpy_s=4.0, torch_s=8.0, peer_repeats=3,
              peer_max_repeats=15)


@dataclass
class Point:
    """One batch configuration of a run."""

    n_rows: int
    n_classes: int
    positives: float
    dtype: str
    threads: int


@dataclass
class Measurement:
    """One family timed on one implementation at one point (a row of the JSON output)."""

    family: str
    implementation: str
    backend: str
    device: str
    N: int
    C: int
    dtype: str
    positives: float  # mean positives per row of the batch actually made
    threads: int
    times: list
    rows_timed: int
    bytes_per_call: int
    limited_by: str = ""
    peak_rss_bytes: int | None = None
    peak_traced_bytes: int | None = None
    memory_rows: int = 0
    copy_gbps: float = math.nan
    speedup: dict = field(default_factory=dict)

    @property
    def median_s(self):
        return statistics.median(self.times)

    @property
    def scaled(self):
        return self.rows_timed < self.N

    @property
    def spread(self):
        """Half the range of the runs relative to the median."""
        return (max(self.times) - min(self.times)) / 2 / max(self.median_s, 1e-12)

    @property
    def gbps(self):
        return self.bytes_per_call / self.median_s / 1e9

    @property
    def peer(self):
        return self.implementation in PEERS

    def to_json(self):
        return {
            "family": self.family, "implementation": self.implementation,
            "backend": self.backend, "device": self.device, "N": self.N, "C": self.C,
            "dtype": self.dtype, "positives": self.positives, "threads": self.threads,
            "median_s": self.median_s, "min_s": min(self.times), "max_s": max(self.times),
            "spread": self.spread, "runs": len(self.times), "gbps": self.gbps,
            "bytes_per_call": self.bytes_per_call,
            "fraction_of_copy": self.gbps / self.copy_gbps if self.copy_gbps > 0 else None,
            "rows_timed": self.rows_timed, "scaled": self.scaled,
            "limited_by": self.limited_by or None,
            "peak_rss_bytes": self.peak_rss_bytes, "peak_traced_bytes": self.peak_traced_bytes,
            "memory_rows": self.memory_rows,
            "speedup": dict(self.speedup),
        }


# --------------------------------------------------------------------------------------------
# Bytes, memory, progress


def bytes_per_call(family, batch, grad=True):
    """Bytes a fused pass must move: logits read (+ gradient written) + targets read."""
    logits = batch.logits.nbytes
    if family.targets == "dense":
        targets = logits
    elif family.targets == "multilabel":
        targets = batch.indptr.nbytes + batch.indices.nbytes
    else:
        targets = batch.labels_int.nbytes
    return (2 if grad else 1) * logits + targets


def _status_bytes(key):
    """A ``Vm*`` line of /proc/self/status in bytes (None where there is no such file)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_peak_rss():
    """Reset the kernel's high-water mark of the resident set (VmHWM) to the current RSS."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def _malloc_trim():
    """Give the C heap's free memory back to the system, so that reuse does not hide growth."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def peak_memory(call):
    """(RSS growth, traced peak) in bytes over one call of ``call()``.

    * RSS growth: the process's resident-set high-water mark during the call minus the resident
      set before it (Linux: VmHWM after resetting it through /proc/self/clear_refs, with the C
      heap trimmed first). It sees every allocation (NumPy, Numba, PyTorch, threads) that needs
      new pages; None where the kernel offers no reset.
    * traced peak: the peak of the allocations ``tracemalloc`` sees during the call (Python
      objects and NumPy arrays; not PyTorch's or Numba's own allocators).
    """
    gc.collect()
    _malloc_trim()
    before = _status_bytes("VmRSS")
    reset = _reset_peak_rss()
    tracemalloc.start()
    try:
        call()
        traced = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    peak = _status_bytes("VmHWM")
    rss = max(0, peak - before) if reset and peak is not None and before is not None else None
    return rss, traced


class Progress:
    """A progress bar on stderr, shown once a run has lasted ``delay`` seconds.

    On a terminal the bar is redrawn in place; otherwise a line is printed at most every
    ``interval`` seconds.
    """

    def __init__(self, total, stream=None, enabled=True, delay=2.0, interval=5.0, width=24):
        self.total, self.done = max(1, total), 0
        self.stream = stream if stream is not None else sys.stderr
        self.enabled, self.delay, self.interval, self.width = enabled, delay, interval, width
        self.start = time.perf_counter()
        self.last_line = -math.inf
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.shown = False

    def update(self, label, advance=0):
        self.done = min(self.total, self.done + advance)
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        if elapsed < self.delay:
            return
        filled = round(self.width * self.done / self.total)
        text = (f"[{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total} "
                f"{elapsed:5.0f} s  {label}")
        if self.tty:
            self.stream.write("\r" + text[:119].ljust(119))
            self.stream.flush()
            self.shown = True
        elif elapsed - self.last_line >= self.interval or self.done == self.total:
            self.stream.write(text + "\n")
            self.stream.flush()
            self.last_line = elapsed

    def close(self):
        if self.enabled and self.tty and self.shown:
            self.stream.write("\r" + " " * 119 + "\r")
            self.stream.flush()


# --------------------------------------------------------------------------------------------
# Devices


def check_device(fx, device):
    """Raise SystemExit with the reason when ``device`` cannot be benchmarked here."""
    if device == "cpu":
        return
    from . import _dispatch

    if "cuda" not in getattr(_dispatch, "_DESCRIPTIONS", {}):
        raise SystemExit("--device cuda: this fastxent has no CUDA backend")
    ok, why = _dispatch._probe("cuda")
    if not ok:
        raise SystemExit(f"--device cuda: the CUDA backend is not available: {why}")
    try:
        import numba.core.config
        from numba import cuda
    except ImportError as exc:
        raise SystemExit(f"--device cuda: numba.cuda is not importable ({exc})")
    if numba.core.config.ENABLE_CUDASIM:
        raise SystemExit("--device cuda: NUMBA_ENABLE_CUDASIM=1 selects the CUDA simulator, "
                         "which is far too slow to benchmark; unset it")
    if not cuda.is_available():
        raise SystemExit("--device cuda: no CUDA GPU found (numba.cuda.is_available() is "
                         "False); use --device cpu")


def _device_call(family, fx, batch, backend, device, grad):
    """The fastxent call on ``device`` and the gradient buffer it writes."""
    if device == "cpu":
        grad_out = np.empty_like(batch.logits)
        return family.fastxent_call(fx, batch.logits, family.make_targets(batch), grad_out,
                                    backend=backend, grad=grad), grad_out
    from numba import cuda

    logits = cuda.to_device(batch.logits)
    grad_out = cuda.device_array_like(logits)
    inner = family.fastxent_call(fx, logits, family.make_targets(batch), grad_out,
                                 backend=backend, grad=grad)

    def call():
        result = inner()
        cuda.synchronize()
        return result

    return call, grad_out


# --------------------------------------------------------------------------------------------
# The run


def implementations(fx, device, backends=None, peers=True):
    """(fastxent backends to time, peers to time) for ``device``."""
    available = fx.available_backends()
    if device == "cuda":
        names = ["cuda"]
    else:
        names = [name for name in available if name not in ("numpy", "cuda")]
    if backends:
        from . import _dispatch

        for name in backends:
            if name not in available:
                why = _dispatch._probe(name)[1] if name in _dispatch._DESCRIPTIONS \
                    else f"unknown backend; known: {', '.join(_dispatch._DESCRIPTIONS)}"
                raise SystemExit(f"--backend {name}: not available ({why})")
        names = [name for name in dict.fromkeys(backends) if name != "numpy"]
        wrong = [name for name in names if (name == "cuda") != (device == "cuda")]
        if wrong:
            raise SystemExit(f"--backend {wrong[0]} does not run on --device {device}"
                             + (" (use --device cuda)" if wrong[0] == "cuda" else ""))
    if not names and not peers:
        raise SystemExit("nothing to time: no fastxent backend (the NumPy reference is timed "
                         "as the peer 'numpy-reference') and --no-peers")
    peer_names = []
    if peers:
        if device == "cpu":
            peer_names.append("numpy-reference")
        peer_names.append("torch")
    return names, peer_names


def check_memory(point, families, peers):
    """SystemExit when the batch, its gradient and dense targets would not fit in memory."""
    itemsize = np.dtype(point.dtype).itemsize
    logits = point.n_rows * point.n_classes * itemsize
    dense = any(family.targets == "dense" for family in families)
    need = logits * (2 + (1 if dense else 0)) + (logits if peers else 0)
    available = cli.available_memory_bytes()
    if need > 0.7 * available:
        raise SystemExit(
            f"the batch {point.n_rows} x {point.n_classes} {point.dtype} needs about "
            f"{need / 2**30:.1f} GiB (logits, gradient buffer{', dense targets' if dense else ''}"
            f"{', peer slices' if peers else ''}) but only {available / 2**30:.1f} GiB is "
            f"available: lower --rows or --classes")


def _measure_peer(name, family, fx, torch, batch, grad_out, budget, device):
    """A peer's Timing and its (rss, traced, rows) memory on the timed slice, or raise."""
    row_bytes = batch.n_classes * batch.logits.itemsize
    if name == "numpy-reference":
        max_rows = int(0.4 * cli.available_memory_bytes() / (family.numpy_memory * row_bytes))

        def make_call(rows):
            return family.fastxent_call(fx, batch.logits[:rows], family.make_targets(batch, rows),
                                        grad_out[:rows], backend="numpy")
        seconds, repeats = budget.numpy_s, budget.peer_repeats
    else:
        max_rows = int(0.4 * cli.available_memory_bytes() / (family.torch_memory * row_bytes))

        def make_call(rows):
            return family.torch_call(torch, batch, rows, device=device)
        seconds, repeats = budget.torch_s, budget.peer_repeats
    timing = cli.time_on_rows(make_call, batch.n_rows, batch.n_classes, budget_s=seconds,
                              max_rows=max_rows, repeats=repeats,
                              max_repeats=budget.peer_max_repeats)
    call = make_call(timing.rows)
    call()
    rss, traced = peak_memory(call)
    return timing, rss, traced


def run_point(fx, point, families, backend_names, peer_names, budget, device, progress,
              seed=0):
    """Measurements of every family and implementation at ``point``, and the copy's GB/s."""
    n_threads = cli._set_threads(point.threads)
    torch = cli._import_torch() if "torch" in peer_names else None
    if torch is not None:
        torch.set_num_threads(n_threads)
    progress.update(f"making a {point.n_rows} x {point.n_classes} {point.dtype} batch")
    batch = cli.Batch.make(point.n_rows, point.n_classes, point.positives, np.dtype(point.dtype),
                           seed)
    base = dict(device=device, N=batch.n_rows, C=batch.n_classes, dtype=str(batch.logits.dtype),
                positives=batch.indices.size / max(1, batch.n_rows), threads=n_threads)
    measurements, notes = [], []
    host_grad = np.empty_like(batch.logits)
    # the copy's bound is measured before and after the families; the faster of the two counts
    copy_runs = [cli.copy_bandwidth(batch.logits, host_grad, n_threads, repeats=budget.repeats)]
    # every fastxent backend of every family first, then the peers: right after a peer (the
    # NumPy reference frees GBs; PyTorch leaves its thread pool) the next family's kernels
    # measured up to 40-50% slower (Numba BCE and sigmoid focal at 1024 x 32768 on the AMD
    # machine: 13.3 and 17.1 ms in the bench against 9.5-10.2 and 11.2-11.3 ms alone)
    for family in families:
        nbytes = bytes_per_call(family, batch)
        for backend in backend_names:
            label = f"{family.name} fastxent-{backend}"
            progress.update(f"{label}: compiling / warming up")
            call, grad_out = _device_call(family, fx, batch, backend, device, grad=True)
            call()
            progress.update(label)
            times = cli.sample_seconds(call, budget.repeats, warmup=0, budget_s=budget.fastxent_s)
            rss, traced = peak_memory(call) if device == "cpu" else (None, None)
            del call, grad_out
            measurements.append(Measurement(
                family.name, f"fastxent-{backend}", backend, times=times, rows_timed=batch.n_rows,
                bytes_per_call=nbytes, peak_rss_bytes=rss, peak_traced_bytes=traced,
                memory_rows=batch.n_rows, **base))
            progress.update(label, advance=1)
    for family in families:
        nbytes = bytes_per_call(family, batch)
        for name in peer_names:
            label = f"{family.name} {name}"
            progress.update(label)
            if name == "torch" and torch is None:
                notes.append(f"{label}: torch is not importable")
            else:
                try:
                    timing, rss, traced = _measure_peer(name, family, fx, torch, batch,
                                                        host_grad, budget, device)
                except Exception as exc:  # a peer failing is reported, not fatal
                    notes.append(f"{label}: {type(exc).__name__}: {exc}")
                else:
                    scale = batch.n_rows / timing.rows
                    measurements.append(Measurement(
                        family.name, name, "numpy" if name == "numpy-reference" else "torch",
                        times=timing.times, rows_timed=timing.rows, bytes_per_call=nbytes,
                        limited_by=timing.limited_by,
                        peak_rss_bytes=None if rss is None else int(rss * scale),
                        peak_traced_bytes=int(traced * scale), memory_rows=timing.rows, **base))
            progress.update(label, advance=1)
    progress.update("stream copy")
    copy_runs.append(cli.copy_bandwidth(batch.logits, host_grad, n_threads,
                                        repeats=budget.repeats))
    copy_gbps, copy_seconds = max(copy_runs)
    for m in measurements:
        m.copy_gbps = copy_gbps
        if not m.peer:
            for peer in measurements:
                if peer.peer and peer.family == m.family:
                    m.speedup[peer.implementation] = peer.median_s / m.median_s
    copy = {"family": "stream_copy", "implementation": "numpy.copyto", "backend": None,
            "median_s": copy_seconds, "gbps": copy_gbps,
            "bytes_per_call": 2 * batch.logits.nbytes, "rows_timed": batch.n_rows,
            "scaled": False, **base}
    return measurements, copy, notes


def sweep_points(args, quick):
    """The points of a run: one, or one per value of ``args.sweep``."""
    point = Point(args.rows, args.classes, args.positives, args.dtype, args.threads)
    if not args.sweep:
        return [point]
    values = args.values
    if not values:
        if args.sweep == "threads":
            import numba

            values = tuple(range(1, numba.config.NUMBA_NUM_THREADS + 1))
        else:
            values = SWEEPS[args.sweep][2 if quick else 1]
    field_of = {"classes": "n_classes", "rows": "n_rows", "positives": "positives",
                "threads": "threads"}[args.sweep]
    points = []
    for value in values:
        kwargs = dict(point.__dict__)
        kwargs[field_of] = float(value) if args.sweep == "positives" else int(value)
        points.append(Point(**kwargs))
    return points


def run_bench(fx, args):
    """Run every point; returns (measurements, copy rows, notes, points)."""
    budget = QUICK if args.quick else FULL
    if args.repeat is not None:
        budget = dataclasses.replace(budget, repeats=args.repeat)
    families = cli.FAMILIES if not args.family \
        else tuple(cli.family_by_name(name) for name in args.family)
    check_device(fx, args.device)
    backend_names, peer_names = implementations(fx, args.device, args.backend,
                                                peers=not args.no_peers)
    points = sweep_points(args, args.quick)
    for point in points:
        check_memory(point, families, bool(peer_names))
    progress = Progress(len(points) * len(families) * (len(backend_names) + len(peer_names)),
                        enabled=not args.no_progress)
    measurements, copies, notes = [], [], []
    try:
        for point in points:
            m, copy, point_notes = run_point(fx, point, families, backend_names, peer_names,
                                             budget, args.device, progress, seed=args.seed)
            measurements += m
            copies.append(copy)
            notes += point_notes
            gc.collect()
    finally:
        progress.close()
    return measurements, copies, notes


# --------------------------------------------------------------------------------------------
# Output


def _mib(value):
    if value is None:
        return "n/a"
    mib = value / 2**20
    return f"{mib:,.0f}" if mib >= 100 else f"{mib:.3g}" if mib >= 0.01 else "0"


def _table(header, lines):
    widths = [max(len(str(line[i])) for line in [header, *lines]) for i in range(len(header))]
    out = []
    for k, line in enumerate([header, *lines]):
        cells = [str(line[0]).ljust(widths[0])] + [str(c).rjust(w) for c, w
                                                   in zip(line[1:], widths[1:])]
        out.append("  ".join(cells).rstrip())
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return out


def format_tables(measurements, copies, sweep=None):
    """One text table per family: implementations (and sweep values) as rows."""
    column = SWEEPS[sweep][0] if sweep else None
    peers = [p for p in PEERS if any(m.implementation == p for m in measurements)]
    text = []
    for family in dict.fromkeys(m.family for m in measurements):
        rows = [m for m in measurements if m.family == family]
        first = rows[0]
        title = f"{family}: "
        described = {"C": f"{first.N} x {first.C}" if column not in ("N", "C") else
                     (f"N = {first.N}" if column == "C" else f"C = {first.C}"),
                     "dtype": first.dtype,
                     "positives": f"{first.positives:.2f} positives/row",
                     "threads": f"{first.threads} threads", "device": first.device}
        if column == "positives":
            del described["positives"]
        if column == "threads":
            del described["threads"]
        title += ", ".join(described.values())
        if not sweep:
            title += f"; stream copy {first.copy_gbps:.1f} GB/s"
        header = ["implementation"] + ([column] if column else []) + \
            ["median ms", "spread", "GB/s", "of copy", "peak MiB"] + [f"vs {p}" for p in peers]
        lines = []
        for m in rows:
            star = "*" if m.scaled else ""
            value = {"C": m.C, "N": m.N, "positives": f"{m.positives:.3g}",
                     "threads": m.threads}.get(column)
            line = [m.implementation] + ([value] if column else []) + [
                cli._ms(m.median_s) + star, f"±{m.spread:.0%}", f"{m.gbps:.2f}",
                f"{m.gbps / m.copy_gbps:.0%}" if m.copy_gbps > 0 else "n/a",
                _mib(m.peak_rss_bytes) + ("*" if m.memory_rows < m.N else "")]
            line += [f"{m.speedup[p]:.1f}x" if p in m.speedup else "-" for p in peers]
            lines.append(line)
        text += [title, *_table(header, lines), ""]
    if sweep:
        text.append("stream copy (np.copyto, read + write): " + "; ".join(
            f"{column} = {c[column]:.3g}: {c['gbps']:.1f} GB/s" if column == "positives"
            else f"{column} = {c[column]}: {c['gbps']:.1f} GB/s" for c in copies))
    return "\n".join(text).rstrip()


NOTES = """\
median ms: median wall time of one call over the timed runs; fastxent: loss (reduction='mean') and
  gradient into a reused buffer; PyTorch: forward + backward (CPU; F.cross_entropy,
  F.binary_cross_entropy_with_logits, torchvision's sigmoid focal formula in torch ops, softmax
  focal in torch ops; multi-label families on dense targets, PyTorch has no sparse ones).
spread: half the range of the runs relative to the median.
GB/s: effective bandwidth, the bytes a fused pass must move (logits read, gradient written,
  targets read) per second; of copy: that over the bandwidth of np.copyto (read + write) of the
  same logits on the same threads in this run (the faster of a copy before and one after).
peak MiB: growth of the process's resident memory during one warm call (Linux VmHWM after a
  reset); fastxent writes into a caller's buffer, so this is what a call allocates.
vs X: X's median over this median (how many times faster).
* timed (or measured) on the first rows of the batch and scaled linearly to all rows."""


def format_notes(measurements, notes):
    lines = [NOTES]
    for m in measurements:
        if m.scaled:
            lines.append(f"  {m.family} {m.implementation} (N = {m.N}, C = {m.C}): "
                         f"{m.rows_timed} rows timed ({m.limited_by})")
    lines += notes
    return "\n".join(lines)


def plot(measurements, copies, path, sweep=None, metric="gbps"):
    """Save a figure: ``metric`` ("gbps" or "time") against the swept quantity (default C),
    one panel per family, one line per implementation (and the stream copy for GB/s)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key = {"classes": "C", "rows": "N", "positives": "positives", "threads": "threads"}
    x_key = key.get(sweep, "C")
    families = list(dict.fromkeys(m.family for m in measurements))
    n_cols = min(3, len(families))
    n_rows = -(-len(families) // n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(5.2 * n_cols, 3.8 * n_rows),
                             squeeze=False)
    impls = list(dict.fromkeys(m.implementation for m in measurements))
    for ax, family in zip(axes.flat, families):
        for impl in impls:
            rows = sorted((m for m in measurements if m.family == family
                           and m.implementation == impl), key=lambda m: getattr(m, x_key))
            if not rows:
                continue
            xs = [getattr(m, x_key) for m in rows]
            ys = [m.gbps if metric == "gbps" else m.median_s * 1e3 for m in rows]
            ax.plot(xs, ys, marker="o", linestyle="--" if impl in PEERS else "-", label=impl)
        if metric == "gbps" and copies:
            ordered = sorted(copies, key=lambda c: c[x_key])
            ax.plot([c[x_key] for c in ordered], [c["gbps"] for c in ordered], color="grey",
                    linestyle=":", marker=".", label="stream copy")
        ax.set_title(family)
        if x_key in ("C", "N", "positives"):
            ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel({"C": "classes C", "N": "rows N", "positives": "positives per row",
                       "threads": "threads"}[x_key])
        ax.set_ylabel("effective GB/s" if metric == "gbps" else "ms per call")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    for ax in list(axes.flat)[len(families):]:
        ax.set_visible(False)
    first = measurements[0]
    fixed = {"C": f"N = {first.N}", "N": f"C = {first.C}"}.get(
        x_key, f"{first.N} x {first.C}")
    fig.suptitle(f"fastxent bench: {fixed}, {first.dtype}, {first.threads} threads, "
                 f"{first.device}; loss + gradient")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def require_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise SystemExit("--plot needs matplotlib, which is not installed: "
                         "pip install matplotlib (or pip install 'fastxent[bench]')")


def environment_line():
    try:
        import numba

        layer = numba.threading_layer()
    except (ImportError, ValueError):
        layer = "not started"
    torch = sys.modules.get("torch")
    return (f"fastxent {_version()}, numpy {np.__version__}, "
            f"torch {getattr(torch, '__version__', 'not used')}, numba threading layer {layer}, "
            f"load average {_load()}")


def _version():
    from . import _version as v

    return v.__version__


def _load():
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"
