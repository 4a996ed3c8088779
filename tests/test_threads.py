"""Many Python threads calling fastxent at once get the single-thread results.

8 threads x 200 calls of mixed losses (four families, class-index / dense / sparse targets,
float32 and float64, with gradients into per-thread buffers), each compared with the result of
the same call made by one thread beforehand. The kernels release the GIL, so the calls really
overlap; the kernels are deterministic per row, so the results must be identical.
"""
import threading

import numpy as np
import pytest

import fastxent

N_THREADS, CALLS_PER_THREAD = 8, 200
#: compiled CPU backends (the NumPy reference is exact but slow; CUDA has its own tests)
CPU_BACKENDS = [name for name in fastxent.available_backends() if name not in ("numpy", "cuda")]


def _calls():
    rng = np.random.default_rng(0)
    calls = []
    for i, dtype in enumerate([np.float32, np.float64] * 3):
        n, c = 24 + 5 * i, 40 + 7 * i
        x = (3 * rng.standard_normal((n, c))).astype(dtype)
        labels = rng.integers(0, c, n)
        labels[::6] = -100
        multi = fastxent.MultiLabel.from_dense((rng.random((n, c)) < 0.1).astype(np.float64))
        dense = rng.random((n, c)).astype(dtype)
        calls += [
            ("softmax_cross_entropy", x, labels, dict(label_smoothing=0.1)),
            ("softmax_cross_entropy", x, multi, dict(reduction="none")),
            ("softmax_focal_loss", x, labels, dict(gamma=2.0, reduction="sum")),
            ("sigmoid_binary_cross_entropy", x, multi, dict(pos_weight=2.0)),
            ("sigmoid_binary_cross_entropy", x, dense, dict(reduction="batchmean")),
            ("sigmoid_focal_loss", x, multi, dict(gamma=2.0, alpha=0.25, reduction="none")),
        ]
    return calls


def _run(call, grad_out=None, backend="auto"):
    name, x, targets, options = call
    return getattr(fastxent, name)(x, targets, return_grad=True, grad_out=grad_out,
                                   backend=backend, **options)


@pytest.mark.parametrize("backend", CPU_BACKENDS or [
    pytest.param("none", marks=pytest.mark.skip(reason="no compiled CPU backend available"))])
def test_threads_match_single_thread_results(backend):
    calls = _calls()
    expected = [_run(call, backend=backend) for call in calls]   # one thread; compiles kernels
    errors, barrier = [], threading.Barrier(N_THREADS)

    def worker(index):
        try:
            rng = np.random.default_rng(index)
            buffers = [np.empty_like(call[1]) for call in calls]
            barrier.wait()                             # start together: maximal overlap
            for _ in range(CALLS_PER_THREAD):
                k = int(rng.integers(len(calls)))
                loss, grad = _run(calls[k], buffers[k], backend)
                want_loss, want_grad = expected[k]
                np.testing.assert_array_equal(loss, want_loss)
                np.testing.assert_array_equal(grad, want_grad)
                assert grad is buffers[k]
        except BaseException as exc:  # noqa: BLE001 - reported below with the thread index
            errors.append((index, exc))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(N_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not errors, f"{len(errors)} threads failed; first (thread {errors[0][0]}): " \
                       f"{errors[0][1]!r}"


def test_inputs_are_left_intact_under_threads():
    """Shared inputs read by all threads at once are never written."""
    calls = _calls()[:6]
    snapshots = [(call[1].copy(), np.copy(call[2]) if isinstance(call[2], np.ndarray) else None)
                 for call in calls]

    def worker():
        for call in calls * 10:
            _run(call)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for call, (x, y) in zip(calls, snapshots):
        np.testing.assert_array_equal(call[1], x)
        if y is not None:
            np.testing.assert_array_equal(call[2], y)


def test_thread_count_per_call_is_controllable():
    if not hasattr(fastxent, "set_num_threads"):
        pytest.skip("fastxent.set_num_threads is not available")
    call = _calls()[0]
    try:
        fastxent.set_num_threads(1)
        assert fastxent.get_num_threads() == 1
        one = _run(call)
    finally:
        fastxent.set_num_threads(None)          # back to the default
    both = _run(call)
    assert one[0] == both[0]
    np.testing.assert_array_equal(one[1], both[1])


def test_num_threads_block_is_per_python_thread(monkeypatch):
    """``with fastxent.num_threads(n)`` sets the kernel thread count of the calling Python
    thread only, reaches the kernel (the count handed to the backend), and is undone after."""
    seen = []
    from fastxent import _dispatch

    real_kernels = _dispatch.kernels

    class Spy:
        def __init__(self, module):
            self.module = module

        def run(self, job):
            seen.append(job.extra.get("n_threads"))
            return self.module.run(job)

        def __getattr__(self, name):
            return getattr(self.module, name)

    monkeypatch.setattr(_dispatch, "kernels", lambda name: Spy(real_kernels(name)))
    default = fastxent.get_num_threads()
    call = _calls()[0]
    results = {}

    def other():
        results["other"] = fastxent.get_num_threads()

    with fastxent.num_threads(1):
        assert fastxent.get_num_threads() == 1
        t = threading.Thread(target=other)
        t.start()
        t.join()
        one = _run(call)
        with fastxent.num_threads(2):
            assert fastxent.get_num_threads() == 2
        assert fastxent.get_num_threads() == 1
    assert results["other"] == default
    assert fastxent.get_num_threads() == default
    both = _run(call)
    assert seen and seen[0] == 1 and seen[-1] == default
    assert one[0] == both[0]
    np.testing.assert_array_equal(one[1], both[1])
    with pytest.raises(ValueError, match="n_threads"):
        with fastxent.num_threads(0):
            pass


def test_workqueue_layer_is_serialised():
    """Numba's workqueue layer aborts on concurrent launches: fastxent takes a lock for it (and
    for the first launch, before the layer is known), and none for omp/tbb."""
    pytest.importorskip("numba")
    import contextlib
    from unittest import mock
    from fastxent import _threads
    with mock.patch("numba.threading_layer", return_value="workqueue"):
        assert _threads.numba_layer_guard() is _threads._serial_layer_lock
    with mock.patch("numba.threading_layer", side_effect=ValueError("not initialised")):
        assert _threads.numba_layer_guard() is _threads._serial_layer_lock
    with mock.patch("numba.threading_layer", return_value="omp"):
        assert isinstance(_threads.numba_layer_guard(), contextlib.nullcontext)


def test_threads_on_the_workqueue_layer():
    """8 Python threads calling the Numba backend at once under NUMBA_THREADING_LAYER=workqueue
    finish with the single-thread results (without the lock the process aborts)."""
    import subprocess
    import sys
    if "numba" not in fastxent.available_backends():
        pytest.skip("the Numba backend is not available")
    script = (
        "import threading, numpy as np, fastxent\n"
        "x = np.random.default_rng(0).standard_normal((64, 257)).astype(np.float32)\n"
        "t = np.arange(64) % 257\n"
        "want = fastxent.softmax_cross_entropy(x, t, return_grad=True)\n"
        "bad = []\n"
        "def work():\n"
        "    for _ in range(25):\n"
        "        got = fastxent.softmax_cross_entropy(x, t, return_grad=True)\n"
        "        if got[0] != want[0] or not np.array_equal(got[1], want[1]): bad.append(1)\n"
        "ts = [threading.Thread(target=work) for _ in range(8)]\n"
        "[th.start() for th in ts]; [th.join() for th in ts]\n"
        "import numba; assert numba.threading_layer() == 'workqueue', numba.threading_layer()\n"
        "print('ok', len(bad))\n")
    env = dict(__import__("os").environ, NUMBA_THREADING_LAYER="workqueue")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["ok", "0"], out.stdout
