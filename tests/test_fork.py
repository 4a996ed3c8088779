"""Processes forked after fastxent ran its OpenMP kernels still compute (fastxent._threads).

GNU OpenMP is not fork-safe: a forked child's next parallel region of more than one thread hangs,
and Numba's ``omp`` layer terminates the child at its first parallel kernel. Each scenario runs in
a fresh interpreter (the parent), which calls fastxent and then maps work over a "fork"
``multiprocessing`` pool with a timeout: a hung or killed child fails the test instead of hanging
it. Skipped where the platform has no fork (Windows).
"""
import json
import multiprocessing
import os
import subprocess
import sys
import textwrap

import pytest

import fastxent

pytestmark = pytest.mark.skipif(
    not hasattr(os, "fork") or "fork" not in multiprocessing.get_all_start_methods(),
    reason="this platform cannot fork processes")

COMPILED = [name for name in ("numba", "cython") if name in fastxent.available_backends()]

SCRIPT = textwrap.dedent("""
    import json, multiprocessing, sys
    import numpy as np
    import fastxent

    parent_backend, child_backend = sys.argv[1], sys.argv[2]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 300)).astype(np.float32)
    labels = rng.integers(0, 300, 64)
    targets = fastxent.MultiLabel.from_lists([[i, 100 + i] for i in range(64)], 300)

    def losses(backend):
        return [fastxent.softmax_cross_entropy(x, labels, backend=backend),
                fastxent.sigmoid_focal_loss(x, targets, backend=backend)]

    def child(_):
        fastxent.set_num_threads(2)
        out = {"threads": fastxent.get_num_threads(),
               "available": list(fastxent.available_backends())}
        try:
            out["losses"] = losses(child_backend)
        except RuntimeError as exc:
            out["error"] = str(exc)
        return out

    if parent_backend == "numba-layer-only":
        import numba
        numba.get_num_threads()          # starts Numba's threading layer, no fastxent kernel
    elif parent_backend != "none":
        with fastxent.num_threads(2):
            want = losses(parent_backend)
    want = losses("numpy")
    with multiprocessing.get_context("fork").Pool(2) as pool:
        got = pool.map_async(child, range(2)).get(timeout=120)
    print(json.dumps({"want": want, "children": got}))
""")


def _run(parent_backend, child_backend):
    proc = subprocess.run([sys.executable, "-c", SCRIPT, parent_backend, child_backend],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _numba_layer():
    import numba
    import numpy as np

    fastxent.softmax_cross_entropy(np.zeros((2, 3), np.float32), np.zeros(2, np.int64),
                                   backend="numba")
    return numba.threading_layer()


@pytest.mark.parametrize("parent", COMPILED or [
    pytest.param("none", marks=pytest.mark.skip(reason="no compiled CPU backend is built"))])
def test_auto_in_a_child_forked_after_the_kernels_ran(parent):
    result = _run(parent, "auto")
    for child in result["children"]:
        assert "error" not in child, child
        assert child["threads"] == 1                # more than one would hang in GNU OpenMP
        assert child["losses"] == pytest.approx(result["want"], rel=1e-5)
        if parent == "numba" and _numba_layer() == "omp":
            assert "numba" not in child["available"]


@pytest.mark.skipif("numba" not in COMPILED, reason="the Numba backend is not available")
def test_explicit_numba_in_a_forked_child_says_why():
    if _numba_layer() != "omp":
        pytest.skip("Numba's threading layer here is not GNU OpenMP: its children can run it")
    result = _run("numba", "numba")
    for child in result["children"]:
        assert "losses" not in child
        assert "forked" in child["error"] and "spawn" in child["error"]


@pytest.mark.skipif("cython" not in COMPILED, reason="the Cython backend is not built")
def test_cython_in_a_child_of_a_multithreaded_cython_parent():
    result = _run("cython", "cython")
    for child in result["children"]:
        assert child["threads"] == 1
        assert child["losses"] == pytest.approx(result["want"], rel=1e-5)


def test_a_child_forked_before_any_kernel_keeps_its_threads():
    result = _run("none", "auto")
    for child in result["children"]:
        assert child["threads"] == 2
        assert child["losses"] == pytest.approx(result["want"], rel=1e-5)


@pytest.mark.skipif("numba" not in COMPILED, reason="the Numba backend is not available")
def test_numba_layer_started_outside_fastxent():
    """Numba's omp layer started by the parent's own code (here numba.get_num_threads(); user
    prange code does the same) also keeps Numba out of the child: it would be terminated."""
    if _numba_layer() != "omp":
        pytest.skip("Numba's threading layer here is not GNU OpenMP: its children can run it")
    result = _run("numba-layer-only", "auto")
    for child in result["children"]:
        assert "error" not in child, child
        assert "numba" not in child["available"] and child["threads"] == 1
        assert child["losses"] == pytest.approx(result["want"], rel=1e-5)
