"""The command line (``python -m fastxent demo|bench|info``) and the peers it times."""

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fastxent import cli

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--rows", "64", "--classes", "512"]
JSON_KEYS = {"family", "implementation", "N", "C", "dtype", "median_s", "gbps"}

pytestmark = pytest.mark.cli


def run_cli(*args, timeout=600, env=None):
    env = {**os.environ, **(env or {})}
    # the tree under test wins over any other installed copy
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "fastxent", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_demo_small_passes_every_check():
    proc = run_cli("demo", *SMALL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    passed = [line for line in lines if line.startswith("PASS ")]
    assert len(passed) == len(cli.FAMILIES), proc.stdout
    assert not [line for line in lines if line.startswith("FAIL")]
    for family in cli.FAMILIES:
        assert any(line.startswith(family.name) for line in lines), family.name
    assert "fastxent ms" in proc.stdout and "GB/s" in proc.stdout


def test_bench_quick_json():
    # the console entry point end to end (tests/test_bench.py covers bench in-process)
    families = ("softmax_ce[int]", "bce[multilabel]")
    proc = run_cli("bench", "--quick", "--json", "--family", families[0], "--family", families[1],
                   *SMALL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = json.loads(proc.stdout)
    assert isinstance(rows, list) and rows
    for row in rows:
        assert JSON_KEYS <= set(row), row
        assert row["N"] == 64 and row["C"] == 512 and row["dtype"] == "float32"
        assert row["median_s"] > 0 and math.isfinite(row["gbps"]) and row["gbps"] > 0
    fastxent_families = {r["family"] for r in rows if r["implementation"] == "fastxent-numba"}
    assert fastxent_families == set(families)
    assert any(r["family"] == "stream_copy" for r in rows)
    for row in rows:
        if row["implementation"].startswith("fastxent-"):
            assert row["fraction_of_copy"] > 0


def test_bench_table_reports_the_copy_bandwidth():
    proc = run_cli("bench", "--quick", "--no-peers", "--family", "softmax_ce[int]", *SMALL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "stream copy (np.copyto" in proc.stdout
    assert "of copy" in proc.stdout and "softmax_ce[int]" in proc.stdout
    assert "fastxent-numba" in proc.stdout


def test_info():
    proc = run_cli("info")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    for word in ("fastxent", "numpy", "numba", "scipy", "torch", "threading layer", "CPUs",
                 "backends", "CPU features:", "avx2", "avx512f", "numba cache:", "GPU:"):
        assert word in out, word
    assert "numba" in out.split("backends", 1)[1]


def test_info_reports_the_kernel_tuning_and_its_overrides():
    env = {"FASTXENT_STREAM_STORES": "1", "FASTXENT_PREFETCH_BYTES": "4096",
           "FASTXENT_CACHED_ROW_BYTES": "65536"}
    proc = run_cli("info", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ("kernel tuning: sparse sigmoid gradient through non-temporal stores, logits "
            "prefetched 4096 bytes ahead") in proc.stdout
    assert "softmax rows of up to 65536 bytes kept in L2" in proc.stdout
    env = {"FASTXENT_STREAM_STORES": "0", "FASTXENT_PREFETCH_BYTES": "0"}
    proc = run_cli("info", env=env)
    assert "through plain stores, logits prefetched not at all" in proc.stdout


def test_bad_arguments_exit_with_usage_errors():
    for args in (["demo", "--rows", "0"], ["bench", "--dtype", "int8"], ["nope"], [],
                 ["bench", "--sweep", "nope"], ["bench", "--device", "tpu"],
                 ["bench", "--plot-metric", "nope"],
                 ["demo", "--rows", "4", "--classes", "10", "--positives", "-1"],
                 ["demo", "--rows", "4", "--classes", "10", "--positives", "nan"],
                 ["demo", "--rows", "4", "--classes", "10", "--seed", "-1"],
                 ["bench", "--rows", "2", "--classes", "8", "--sweep", "classes", "--values",
                  "0"],
                 ["bench", "--rows", "2", "--classes", "8", "--sweep", "classes", "--values",
                  "4,-8"],
                 ["bench", "--rows", "2", "--classes", "8", "--sweep", "classes", "--values",
                  "0.5"],
                 ["bench", "--rows", "2", "--classes", "8", "--sweep", "rows", "--values",
                  "64,2.5"],
                 ["bench", "--rows", "2", "--classes", "8", "--values", "3"]):
        proc = run_cli(*args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert "usage" in proc.stderr and "Traceback" not in proc.stderr


def test_demo_too_large_for_memory_is_refused():
    """A demo batch that cannot fit says so and which options to lower, before allocating
    anything (it ended in NumPy's allocation traceback)."""
    with pytest.raises(SystemExit, match="lower --rows or --classes"):
        cli.main(["demo", "--rows", "100000", "--classes", "100000000"])


def test_threads_out_of_range_is_refused(capsys):
    import numba

    with pytest.raises(SystemExit) as excinfo:
        cli.main(["demo", "--rows", "4", "--classes", "8", "--threads",
                  str(numba.config.NUMBA_NUM_THREADS + 1)])
    assert "--threads" in str(excinfo.value)


# ============================================================================================
# the helpers behind the table
# ============================================================================================

def test_batch_targets_of_listed_rows_match_the_slices():
    batch = cli.Batch.make(20, 50, seed=1)
    rows = np.array([0, 3, 19])
    indptr, indices = batch.rows_of(rows)
    for k, row in enumerate(rows):
        np.testing.assert_array_equal(indices[indptr[k]:indptr[k + 1]],
                                      batch.indices[batch.indptr[row]:batch.indptr[row + 1]])
    first_indptr, first_indices = batch.rows_of(5)
    np.testing.assert_array_equal(first_indptr, batch.indptr[:6])
    dense = batch.dense_targets(5, np.float32, normalise=True)
    np.testing.assert_allclose(dense.sum(axis=1), 1.0, rtol=1e-6)
    assert np.count_nonzero(dense) == first_indptr[-1]


def test_time_on_rows_scales_a_slice_and_says_why():
    calls = []

    def make_call(rows):
        return lambda: calls.append(rows)

    timing = cli.time_on_rows(make_call, 1000, 4096, budget_s=1.0, max_rows=100, repeats=2)
    assert timing.rows == 100 and timing.scaled and timing.limited_by == "memory"
    full = cli.time_on_rows(make_call, 50, 4096, budget_s=1.0, max_rows=10**6, repeats=2)
    assert full.rows == 50 and not full.scaled and full.limited_by == ""


def test_time_on_rows_times_more_runs_while_they_fit_in_the_budget():
    timed = []

    def make_call(rows):
        return lambda: timed.append(rows)

    quick = cli.time_on_rows(make_call, 50, 4096, budget_s=1.0, max_rows=10**6, repeats=2,
                             max_repeats=9)
    assert len(quick.times) == 9
    # a call that takes the whole budget is timed the minimum number of times, no more
    slow = cli.time_on_rows(lambda rows: (lambda: time.sleep(0.02)), 50, 4096, budget_s=0.01,
                            max_rows=10**6, repeats=2, max_repeats=9)
    assert len(slow.times) == 2


def test_sample_seconds_takes_at_least_min_repeats():
    count = []
    times = cli.sample_seconds(lambda: count.append(1), repeats=10, warmup=0, budget_s=0.0,
                               min_repeats=4)
    assert len(times) == len(count) == 4


def test_median_seconds_respects_the_budget():
    count = []
    cli.median_seconds(lambda: count.append(1), repeats=1000, warmup=2, budget_s=0.0)
    assert len(count) == 3  # two warm-up calls and one timed call


@pytest.mark.parametrize("name", cli.FAMILY_NAMES)
def test_torch_peers_compute_the_same_loss(name):
    # The speed-up column is only meaningful if PyTorch computes the same loss.
    torch = pytest.importorskip("torch")
    import fastxent.reference

    family = cli.family_by_name(name)
    batch = cli.Batch.make(16, 40, dtype=np.float64, seed=5)
    torch_loss = family.torch_call(torch, batch, batch.n_rows)().item()
    ref = getattr(fastxent.reference, family.function)(
        batch.logits, family.make_targets(batch), reduction="mean", **family.kwargs)
    assert torch_loss == pytest.approx(ref, rel=1e-10)
