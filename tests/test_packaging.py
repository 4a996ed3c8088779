"""Packaging promises and the synthetic batch generator (``fastxent._synthetic``)."""

import importlib.metadata
import os
import sys
from pathlib import Path

import numpy as np
import pytest

import fastxent
from fastxent import _version
from fastxent._synthetic import POSITIVE_BUMP, make_batch

ROOT = Path(__file__).resolve().parents[1]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    tomllib = None


# ============================================================================================
# packaging
# ============================================================================================

def test_version_is_the_single_source():
    assert fastxent.__version__ == _version.__version__
    assert isinstance(_version.__version__, str) and _version.__version__[0].isdigit()


def _installed_distribution():
    try:
        return importlib.metadata.distribution("fastxent")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("fastxent is not installed (running from a bare source tree); "
                    "`make install` installs it")


def test_installed_metadata_matches_the_source():
    dist = _installed_distribution()
    assert dist.version == _version.__version__
    scripts = {ep.name: ep.value for ep in dist.entry_points if ep.group == "console_scripts"}
    assert scripts.get("fastxent") == "fastxent.cli:main"


@pytest.mark.skipif(tomllib is None, reason="tomllib is in the standard library from 3.11")
def test_pyproject_declares_the_build_and_dependencies():
    with open(ROOT / "pyproject.toml", "rb") as f:
        pyproject = tomllib.load(f)
    requires = pyproject["build-system"]["requires"]
    assert "setuptools>=70.1" in requires and "wheel" in requires and "Cython>=3" in requires
    project = pyproject["project"]
    assert project["name"] == "fastxent"
    assert project["dynamic"] == ["version"]
    assert set(project["dependencies"]) == {"numpy>=1.24", "scipy>=1.10", "numba>=0.60"}
    extras = project["optional-dependencies"]
    # dask/distributed: fastxent.dask's tests (a LocalCluster too); scikit-learn: the digits
    # training loops of the PyTorch integration tests
    assert set(extras["test"]) == {"pytest", "hypothesis", "dask[array]", "distributed",
                                   "scikit-learn"}
    # torch must never be an extra: an unpinned torch pulls a multi-GB CUDA build; the Makefile
    # installs the exact CPU wheel.
    assert not any(req.startswith("torch") for reqs in extras.values() for req in reqs)
    assert project["scripts"]["fastxent"] == "fastxent.cli:main"
    version_attr = pyproject["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert version_attr == "fastxent._version.__version__"


def test_metadata_lives_only_in_pyproject():
    # With [project] in pyproject.toml, setuptools silently ignores [metadata]/[options] here.
    import configparser

    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    assert not [s for s in config.sections() if s == "metadata" or s.startswith("options")]
    assert config.has_section("tool:pytest")


def test_sdist_manifest_keeps_cython_sources():
    text = (ROOT / "MANIFEST.in").read_text()
    assert "*.pyx" in text and "*.pxd" in text
    for folder in ("docs", "tests", "asv_bench"):
        assert f"graft {folder}" in text


# ============================================================================================
# make_batch
# ============================================================================================

def _rows_of(indptr):
    return np.repeat(np.arange(indptr.size - 1), np.diff(indptr))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_make_batch_shapes_dtypes_and_csr(dtype):
    n, c = 300, 2000
    logits, indptr, indices, labels_int = make_batch(n, c, avg_positives=4.0, dtype=dtype,
                                                     seed=3)
    assert logits.shape == (n, c) and logits.dtype == dtype and logits.flags.c_contiguous
    assert indptr.shape == (n + 1,) and indptr.dtype == np.int64
    assert indices.dtype == np.int64 and indices.shape == (indptr[-1],)
    assert labels_int.shape == (n,) and labels_int.dtype == np.int64
    assert indptr[0] == 0
    counts = np.diff(indptr)
    assert counts.min() >= 1 and counts.max() <= c
    assert indices.min() >= 0 and indices.max() < c
    # unique and sorted within each row: strictly increasing except at row starts
    step = np.diff(indices)
    row_start = np.zeros(indices.size, dtype=bool)
    row_start[indptr[:-1]] = True
    assert np.all(step[~row_start[1:]] > 0)
    # labels_int is the first positive of each row
    np.testing.assert_array_equal(labels_int, indices[indptr[:-1]])
    assert np.all(np.isfinite(logits))


def test_make_batch_is_seeded():
    a = make_batch(64, 512, seed=7)
    b = make_batch(64, 512, seed=7)
    c = make_batch(64, 512, seed=8)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])
    assert not (np.array_equal(a[1], c[1]) and np.array_equal(a[2], c[2]))


def test_make_batch_does_not_depend_on_the_thread_count(monkeypatch):
    # 2 * 2**22 elements: more than one generator block, so threads really split the work.
    shape = (64, 131072)
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    one = make_batch(*shape, seed=1)[0]
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    four = make_batch(*shape, seed=1)[0]
    np.testing.assert_array_equal(one, four)


def test_logits_are_standard_normal_plus_a_bump_at_positives():
    logits, indptr, indices, _ = make_batch(512, 4096, seed=0)
    rows = _rows_of(indptr)
    positive = np.zeros(logits.shape, dtype=bool)
    positive[rows, indices] = True
    negatives = logits[~positive].astype(np.float64)
    assert abs(negatives.mean()) < 0.01
    assert abs(negatives.std() - 1.0) < 0.01
    kurtosis = np.mean(((negatives - negatives.mean()) / negatives.std()) ** 4)
    assert abs(kurtosis - 3.0) < 0.05
    assert abs(logits[positive].mean() - POSITIVE_BUMP) < 0.15


def test_positives_per_row_follow_the_requested_mean():
    _, indptr, _, _ = make_batch(4000, 5000, avg_positives=20.0, seed=2)
    assert abs(np.diff(indptr).mean() - 20.0) < 0.5


def test_label_frequencies_are_zipf_skewed_and_spread_over_classes():
    n_classes = 1000
    _, indptr, indices, _ = make_batch(4000, n_classes, avg_positives=5.0, zipf_exponent=1.1,
                                       seed=0)
    freq = np.bincount(indices, minlength=n_classes)
    # the most frequent class appears much more often than the median one
    assert freq.max() > 20 * max(np.median(freq), 1)
    # a random permutation puts the frequent classes anywhere, not all at the start
    top10 = np.argsort(freq)[-10:]
    assert not set(top10) <= set(range(50))
    # frequency against rank is close to the power law (slope -1.1 on a log-log scale),
    # over the ranks whose counts are not capped by "once per row"
    ranked = np.sort(freq)[::-1][10:300].astype(np.float64)
    slope = np.polyfit(np.log(np.arange(11, 301)), np.log(ranked), 1)[0]
    assert -1.35 < slope < -0.85


def test_uniform_labels_with_zero_exponent():
    _, _, indices, _ = make_batch(2000, 100, avg_positives=5.0, zipf_exponent=0.0, seed=0)
    freq = np.bincount(indices, minlength=100)
    assert freq.max() < 2 * freq.mean()


def test_rows_can_hold_every_class_even_under_heavy_skew():
    # k is clipped to C; heavy skew makes the rare classes nearly impossible to draw by
    # rejection, which exercises the exact fallback.
    logits, indptr, indices, _ = make_batch(20, 3, avg_positives=50.0, zipf_exponent=30.0,
                                            seed=0)
    np.testing.assert_array_equal(np.diff(indptr), 3)
    np.testing.assert_array_equal(indices, np.tile(np.arange(3), 20))
    assert logits.shape == (20, 3)


def test_tiny_and_empty_batches():
    logits, indptr, indices, labels_int = make_batch(0, 5)
    assert logits.shape == (0, 5) and indptr.tolist() == [0] and indices.size == 0
    assert labels_int.size == 0
    logits, indptr, indices, labels_int = make_batch(1, 1, avg_positives=0.0)
    assert indptr.tolist() == [0, 1] and indices.tolist() == [0] and labels_int.tolist() == [0]
    assert make_batch(3, 7, dtype=np.float16)[0].dtype == np.float16


@pytest.mark.parametrize("kwargs", [
    {"n_rows": -1}, {"n_classes": 0}, {"n_rows": 2.5}, {"avg_positives": -1.0},
    {"zipf_exponent": -0.5}, {"dtype": np.int32}, {"avg_positives": float("nan")},
])
def test_make_batch_rejects_bad_arguments(kwargs):
    args = {"n_rows": 4, "n_classes": 8, **kwargs}
    with pytest.raises(ValueError):
        make_batch(**args)


def test_make_batch_is_memory_frugal():
    # Beyond the logits themselves, only small per-thread pieces and the CSR arrays are live.
    import tracemalloc

    tracemalloc.start()
    try:
        logits = make_batch(256, 65536, seed=0)[0]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - logits.nbytes < 16 << 20


# ============================================================================================
# Numba's on-disk cache follows every source the kernels compile from
# ============================================================================================

_CACHE_PROBE = """
import json, os
from fastxent.backends.numba_cpu import _cache, _rows
_rows.row_buf_width(1000)                  # a cached jitted function of the backend
stats = _rows.row_buf_width.stats
print(json.dumps({"hits": sum(stats.cache_hits.values()),
                  "misses": sum(stats.cache_misses.values()),
                  "dir": _cache.cache_dir(), "digest": _cache.sources_digest()}))
"""


def _probe_cache(cache_root):
    import json
    import subprocess
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_root))
    run = subprocess.run([sys.executable, "-c", _CACHE_PROBE], env=env, capture_output=True,
                         text=True, timeout=600, cwd=str(ROOT))
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_numba_cache_is_dropped_when_any_kernel_source_changes(tmp_path):
    """Numba keys a cached function on its own file only, while a kernel also compiles in code
    from ``_rows.py``, ``_primitives.py`` and ``fastxent/_math.py``: the backend keeps a digest of
    all of them beside the cache and removes its cache files when the digest differs (checked
    here by altering the stamp, as a changed source would), so no kernel runs stale code."""
    pytest.importorskip("numba")
    first = _probe_cache(tmp_path)
    assert first["misses"] == 1 and first["hits"] == 0            # compiled, then cached
    cache = Path(first["dir"])
    stamp = cache / "fastxent-numba-sources.stamp"
    assert stamp.read_text().strip() == first["digest"]
    assert any(p.name.startswith("_rows.row_buf_width") and p.suffix == ".nbi"
               for p in cache.iterdir())
    second = _probe_cache(tmp_path)
    assert second["hits"] == 1 and second["misses"] == 0          # same sources: reused
    foreign = cache / "not_fastxent.f-1.py311.nbi"                # another module's: kept
    foreign.write_text("")
    stamp.write_text("digest of other sources\n")
    third = _probe_cache(tmp_path)
    assert third["misses"] == 1 and third["hits"] == 0            # dropped and recompiled
    assert stamp.read_text().strip() == first["digest"]
    assert foreign.exists()
