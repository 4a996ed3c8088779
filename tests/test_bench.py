"""``fastxent bench``: JSON schema, tables, options, sweeps, plots, memory and progress helpers.

Correctness of the machinery only: tiny batches, no assertion on any timing.
"""

import io
import json
import math

import numpy as np
import pytest

from fastxent import _bench, cli

pytestmark = pytest.mark.cli

TINY = ["--rows", "16", "--classes", "128", "--no-progress", "--repeat", "2"]
JSON_KEYS = {"family", "implementation", "backend", "device", "N", "C", "dtype", "positives",
             "threads", "median_s", "min_s", "max_s", "spread", "gbps", "fraction_of_copy",
             "rows_timed", "scaled", "peak_rss_bytes", "peak_traced_bytes", "speedup"}


def bench(capsys, *args):
    """Run ``fastxent bench`` in this process (kernels compiled once); returns stdout."""
    assert cli.main(["bench", *args]) == 0
    return capsys.readouterr().out


@pytest.fixture(autouse=True)
def _keep_numba_threads():
    import numba

    before = numba.get_num_threads()
    yield
    numba.set_num_threads(before)


# --------------------------------------------------------------------------------------------
# JSON and tables


def test_json_has_one_row_per_family_and_implementation(capsys):
    rows = json.loads(bench(capsys, "--quick", "--json", *TINY))
    assert isinstance(rows, list)
    copies = [r for r in rows if r["family"] == "stream_copy"]
    assert len(copies) == 1 and copies[0]["gbps"] > 0
    results = [r for r in rows if r["family"] != "stream_copy"]
    import fastxent

    backends = [b for b in fastxent.available_backends() if b not in ("numpy", "cuda")]
    expected = {f"fastxent-{b}" for b in backends} | {"numpy-reference"}
    try:
        import torch  # noqa: F401
        expected.add("torch")
    except ImportError:
        pass
    for family in cli.FAMILY_NAMES:
        assert {r["implementation"] for r in results if r["family"] == family} == expected
    for row in results:
        assert JSON_KEYS <= set(row), row
        assert (row["N"], row["C"], row["dtype"], row["device"]) == (16, 128, "float32", "cpu")
        assert 0 < row["min_s"] <= row["median_s"] <= row["max_s"]
        assert math.isfinite(row["gbps"]) and row["gbps"] > 0 and row["fraction_of_copy"] > 0
        assert row["peak_rss_bytes"] is None or row["peak_rss_bytes"] >= 0
        if row["implementation"].startswith("fastxent-"):
            assert set(row["speedup"]) == expected - {row["implementation"]} - \
                {f"fastxent-{b}" for b in backends}
            assert all(v > 0 for v in row["speedup"].values())
            assert not row["scaled"] and row["rows_timed"] == 16
        else:
            assert row["speedup"] == {}


def test_fastxent_is_timed_for_every_family_before_any_peer(capsys, monkeypatch):
    """The peers (which free gigabytes or leave a thread pool behind) come after every
    family's fastxent backends, so that no kernel is timed right after one."""
    order = []
    device_call, measure_peer = _bench._device_call, _bench._measure_peer

    def traced_device_call(family, *args, **kwargs):
        order.append(("fastxent", family.name))
        return device_call(family, *args, **kwargs)

    def traced_measure_peer(name, family, *args, **kwargs):
        order.append((name, family.name))
        return measure_peer(name, family, *args, **kwargs)

    monkeypatch.setattr(_bench, "_device_call", traced_device_call)
    monkeypatch.setattr(_bench, "_measure_peer", traced_measure_peer)
    bench(capsys, "--quick", "--family", "softmax_ce[int]", "--family", "bce[multilabel]",
          *TINY)
    kinds = [kind for kind, _ in order]
    first_peer = kinds.index("numpy-reference")
    assert set(kinds[:first_peer]) == {"fastxent"} and "fastxent" not in kinds[first_peer:]
    assert {fam for kind, fam in order[:first_peer]} == {"softmax_ce[int]", "bce[multilabel]"}
    assert {fam for kind, fam in order[first_peer:]} == {"softmax_ce[int]", "bce[multilabel]"}


def test_table_per_family_with_every_column(capsys):
    out = bench(capsys, "--quick", "--family", "softmax_ce[int]", "--family", "bce[dense]",
                *TINY)
    lines = out.splitlines()
    assert lines[0].startswith("fastxent ") and "load average" in lines[0]
    assert "stream copy (np.copyto" in out
    for family in ("softmax_ce[int]", "bce[dense]"):
        title = next(i for i, line in enumerate(lines) if line.startswith(family + ":"))
        assert "16 x 128" in lines[title] and "float32" in lines[title]
        header = lines[title + 1].split()
        for column in ("implementation", "median", "spread", "GB/s", "of", "copy", "peak",
                       "MiB", "vs", "numpy-reference"):
            assert column in header, column
        assert set(lines[title + 2]) <= {"-", " "}
        rows = lines[title + 3:]
        rows = rows[:next(i for i, line in enumerate(rows) if not line.strip())]
        names = [row.split()[0] for row in rows]
        assert "numpy-reference" in names and any(n.startswith("fastxent-") for n in names)
        for row in rows:
            assert "±" in row and "%" in row
    assert "softmax_ce[multilabel]:" not in out
    assert "peak MiB: growth of the process's resident memory" in out


def test_no_peers_and_backend_selection(capsys):
    rows = json.loads(bench(capsys, "--json", "--no-peers", "--backend", "numba",
                            "--family", "sigmoid_focal[multilabel]", *TINY))
    impls = {r["implementation"] for r in rows if r["family"] != "stream_copy"}
    assert impls == {"fastxent-numba"}


def test_sweep_over_classes_and_threads(capsys):
    rows = json.loads(bench(capsys, "--json", "--no-peers", "--family", "bce[multilabel]",
                            "--sweep", "classes", "--values", "64,256", *TINY))
    assert sorted(r["C"] for r in rows if r["family"] == "stream_copy") == [64, 256]
    assert sorted(r["C"] for r in rows if r["family"] == "bce[multilabel]"
                  and r["implementation"] == "fastxent-numba") == [64, 256]
    rows = json.loads(bench(capsys, "--json", "--no-peers", "--family", "softmax_ce[int]",
                            "--sweep", "threads", "--values", "1", *TINY))
    assert {r["threads"] for r in rows} == {1}


def test_sweep_table_has_the_swept_column(capsys):
    out = bench(capsys, "--no-peers", "--family", "softmax_ce[int]", "--sweep", "positives",
                "--values", "1,3", *TINY)
    header = next(line for line in out.splitlines() if line.startswith("implementation"))
    assert header.split()[1] == "positives"
    assert "stream copy (np.copyto, read + write): positives = " in out


def test_plot_file_is_written(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    for metric in ("gbps", "time"):
        path = tmp_path / f"bench-{metric}.png"
        bench(capsys, "--no-peers", "--family", "bce[dense]",
              "--sweep", "classes", "--values", "64,128", "--plot", str(path),
              "--plot-metric", metric, *TINY)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)
    with pytest.raises(SystemExit) as excinfo:
        cli.main(["bench", "--plot", str(tmp_path / "x.png"), *TINY])
    assert "matplotlib" in str(excinfo.value) and "pip install" in str(excinfo.value)
    assert not (tmp_path / "x.png").exists()


def test_cuda_device_fails_clearly_without_a_gpu():
    numba_cuda = pytest.importorskip("numba.cuda")
    if numba_cuda.is_available() and not __import__("numba").core.config.ENABLE_CUDASIM:
        pytest.skip("a GPU is present")
    with pytest.raises(SystemExit) as excinfo:
        cli.main(["bench", "--device", "cuda", *TINY])
    assert "--device cuda" in str(excinfo.value)


def test_unknown_backend_and_oversized_batch_are_refused():
    with pytest.raises(SystemExit, match="--backend nope"):
        cli.main(["bench", "--backend", "nope", *TINY])
    import fastxent

    if "cuda" in fastxent.available_backends():
        with pytest.raises(SystemExit, match="use --device cuda"):
            cli.main(["bench", "--backend", "cuda", *TINY])
    point = _bench.Point(1 << 20, 1 << 20, 5.0, "float32", 1)
    with pytest.raises(SystemExit, match="lower --rows or --classes"):
        _bench.check_memory(point, cli.FAMILIES, True)


# --------------------------------------------------------------------------------------------
# Helpers


def test_bytes_per_call_counts_logits_gradient_and_targets():
    batch = cli.Batch.make(8, 32, seed=3)
    logits = batch.logits.nbytes
    by_name = {f.targets: f for f in cli.FAMILIES}
    assert _bench.bytes_per_call(by_name["dense"], batch) == 3 * logits
    assert _bench.bytes_per_call(by_name["int"], batch) == 2 * logits + 8 * 8
    assert _bench.bytes_per_call(by_name["multilabel"], batch, grad=False) == \
        logits + batch.indptr.nbytes + batch.indices.nbytes


def test_peak_memory_sees_a_fresh_array():
    size = 64 << 20

    def allocate():
        block = np.ones(size, dtype=np.uint8)
        return int(block[::4096].sum())

    rss, traced = _bench.peak_memory(allocate)
    assert traced >= size
    if rss is not None:  # Linux with /proc/self/clear_refs
        assert rss >= size // 2
    rss_idle, traced_idle = _bench.peak_memory(lambda: None)
    assert traced_idle < 1 << 20


def test_progress_bar_writes_to_its_stream_only_when_enabled():
    stream = io.StringIO()
    progress = _bench.Progress(4, stream=stream, delay=0.0, interval=0.0)
    for k in range(4):
        progress.update(f"step {k}", advance=1)
    progress.close()
    lines = stream.getvalue().splitlines()
    assert lines[-1].startswith("[" + "#" * 24 + "] 4/4") and "step 3" in lines[-1]
    quiet = io.StringIO()
    progress = _bench.Progress(4, stream=quiet, enabled=False, delay=0.0)
    progress.update("x", advance=1)
    progress.close()
    assert quiet.getvalue() == ""


@pytest.mark.parametrize("dense_name, sparse_name", [
    ("softmax_ce[dense]", "softmax_ce[multilabel]"), ("bce[dense]", "bce[multilabel]")])
def test_dense_families_compute_what_the_sparse_ones_do(dense_name, sparse_name):
    # The dense families time the same loss on dense targets (row-normalised for softmax).
    import fastxent

    batch = cli.Batch.make(12, 40, dtype=np.float64, seed=2)
    losses = []
    for name in (dense_name, sparse_name):
        family = cli.family_by_name(name)
        grad = np.empty_like(batch.logits)
        loss, _ = family.fastxent_call(fastxent, batch.logits, family.make_targets(batch), grad,
                                       backend="numpy")()
        losses.append(loss)
    assert losses[0] == pytest.approx(losses[1], rel=1e-12)


def test_forward_only_calls_return_the_same_loss():
    import fastxent

    batch = cli.Batch.make(8, 64, seed=4)
    for family in cli.FAMILIES:
        targets = family.make_targets(batch)
        grad = np.empty_like(batch.logits)
        with_grad = family.fastxent_call(fastxent, batch.logits, targets, grad)()[0]
        alone = family.fastxent_call(fastxent, batch.logits, targets, grad, grad=False)()
        assert alone == pytest.approx(with_grad, rel=1e-6), family.name


def test_threads_option_reaches_the_kernels():
    """``--threads n`` sets fastxent's own thread count (which fastxent applies to Numba around
    every kernel); setting only Numba's would be overridden and time 2 threads as 1."""
    pytest.importorskip("numba")
    import fastxent
    from fastxent import cli
    try:
        assert cli._set_threads(1) == 1
        assert fastxent.get_num_threads() == 1
    finally:
        fastxent.set_num_threads(None)
