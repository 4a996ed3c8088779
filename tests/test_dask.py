"""fastxent.dask: losses and gradients over row-chunked dask arrays equal one in-memory call,
on the threaded scheduler and on a dask.distributed LocalCluster of processes (loopback)."""
import numpy as np
import pytest

dask = pytest.importorskip("dask", reason="dask not installed (pip install 'dask[array]')")
da = pytest.importorskip("dask.array", reason="dask.array not installed (dask[array])")

import fastxent  # noqa: E402
import fastxent.dask as fd  # noqa: E402

LOSSES = ("softmax_cross_entropy", "softmax_focal_loss", "sigmoid_binary_cross_entropy",
          "sigmoid_focal_loss")
SOFTMAX = LOSSES[:2]
N, C = 61, 13
ROW_CHUNKS = (10, 25, 1, 25)


def _case(loss, kind, seed=0):
    rng = np.random.default_rng(seed)
    logits = 3 * rng.standard_normal((N, C))
    options = {}
    if kind == "indices":
        targets = rng.integers(0, C, N)
        targets[::4] = -100
        options["class_weight"] = rng.random(C) + 0.5
    elif kind == "dense":
        raw = rng.random((N, C))
        targets = raw / raw.sum(1, keepdims=True) if loss in SOFTMAX else raw
    else:
        dense = rng.random((N, C)) < 0.25
        dense[::6] = False
        targets = fastxent.MultiLabel.from_dense(dense.astype(np.float64))
        if kind == "scipy":
            targets = targets.to_scipy()
    if loss == "sigmoid_focal_loss":
        options.update(gamma=1.5, alpha=0.3)
    elif loss == "softmax_focal_loss":
        options.update(gamma=2.0, label_smoothing=0.05)
    return logits, targets, options, rng.random(N) + 0.5


def _kinds(loss):
    return ("indices", "dense", "sparse") if loss in SOFTMAX else ("dense", "sparse")


CASES = [(loss, kind) for loss in LOSSES for kind in _kinds(loss)]


def _lazy(value, dask_input):
    """targets/sample weights as a dask array chunked differently (rechunked inside)."""
    if not dask_input or not isinstance(value, np.ndarray):
        return value
    return da.from_array(value, chunks=(17,) + value.shape[1:])


def _check(loss, logits, targets, options, sample_weight, reduction, scheduler,
           dask_input=True):
    expected, expected_grad = getattr(fastxent, loss)(
        logits, targets, reduction=reduction, sample_weight=sample_weight, return_grad=True,
        **options)
    lazy_loss, lazy_grad = getattr(fd, loss)(
        da.from_array(logits, chunks=(ROW_CHUNKS, C)), _lazy(targets, dask_input),
        reduction=reduction, sample_weight=_lazy(sample_weight, dask_input), return_grad=True,
        **options)
    assert isinstance(lazy_loss, da.Array) and isinstance(lazy_grad, da.Array)
    assert lazy_grad.chunks == (ROW_CHUNKS, (C,))
    got, grad = dask.compute(lazy_loss, lazy_grad, scheduler=scheduler)
    np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-13,
                               atol=1e-15 * np.abs(expected_grad).max())
    alone = getattr(fd, loss)(da.from_array(logits, chunks=(ROW_CHUNKS, C)), targets,
                              reduction=reduction, sample_weight=sample_weight, **options)
    np.testing.assert_allclose(alone.compute(scheduler=scheduler), expected, rtol=1e-13,
                               atol=1e-15)


@pytest.mark.parametrize("loss, kind", CASES + [("sigmoid_binary_cross_entropy", "scipy")])
@pytest.mark.parametrize("reduction", ["mean", "sum", "batchmean", "none"])
def test_threaded_scheduler_equals_one_call(loss, kind, reduction):
    logits, targets, options, sample_weight = _case(loss, kind)
    _check(loss, logits, targets, options, sample_weight, reduction, "threads")


def test_numpy_inputs_and_chunked_class_axis():
    logits, targets, options, _ = _case("softmax_cross_entropy", "indices")
    expected = fastxent.softmax_cross_entropy(logits, targets, **options)
    from_numpy = fd.softmax_cross_entropy(logits, targets, **options)
    split_classes = fd.softmax_cross_entropy(da.from_array(logits, chunks=(20, 5)),
                                             da.from_array(targets, chunks=7), **options)
    np.testing.assert_allclose(dask.compute(from_numpy, split_classes, scheduler="sync"),
                               [expected, expected], rtol=1e-13)


def test_float32_blocks_keep_dtype():
    logits, targets, _, _ = _case("sigmoid_focal_loss", "sparse")
    x = logits.astype(np.float32)
    rows, grad = fd.sigmoid_focal_loss(da.from_array(x, chunks=(20, C)), targets,
                                       reduction="none", return_grad=True)
    assert rows.dtype == np.float32 and grad.dtype == np.float32
    expected_rows, expected_grad = fastxent.sigmoid_focal_loss(x, targets, reduction="none",
                                                               return_grad=True)
    got_rows, got_grad = dask.compute(rows, grad, scheduler="threads")
    np.testing.assert_array_equal(got_rows, expected_rows)
    np.testing.assert_array_equal(got_grad, expected_grad)


def test_bad_arguments():
    x = da.zeros((4, 3), chunks=2)
    with pytest.raises(ValueError, match="da.store"):
        fd.softmax_cross_entropy(x, np.zeros(4, dtype=int), grad_out=np.zeros((4, 3)))
    with pytest.raises(ValueError, match="rows"):
        fd.softmax_cross_entropy(x, np.zeros(5, dtype=int))
    with pytest.raises(ValueError, match="reduction"):
        fd.sigmoid_focal_loss(x, np.zeros((4, 3)), reduction="elementwise")
    with pytest.raises(TypeError, match="return_grad"):          # at once, not at compute()
        fd.softmax_cross_entropy(x, np.zeros(4, dtype=int), return_grad="no")


def test_distributed_local_cluster_processes():
    distributed = pytest.importorskip("distributed",
                                      reason="dask.distributed not installed")
    cases = [("softmax_cross_entropy", "sparse", "mean"),
             ("sigmoid_binary_cross_entropy", "dense", "sum"),
             ("softmax_focal_loss", "indices", "none")]
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster, \
            distributed.Client(cluster):
        for loss, kind, reduction in cases:
            logits, targets, options, sample_weight = _case(loss, kind, seed=3)
            _check(loss, logits, targets, options, sample_weight, reduction, None)
