"""fastxent.pipeline: the accumulator and chunked evaluation equal one call; memory maps are
read without copies and with bounded memory; docs/integrations.md's examples run."""
import pathlib
import re
import tracemalloc

import numpy as np
import pytest

import fastxent
from fastxent import api
from fastxent.pipeline import row_slice

LOSSES = ("softmax_cross_entropy", "softmax_focal_loss", "sigmoid_binary_cross_entropy",
          "sigmoid_focal_loss")
SOFTMAX = LOSSES[:2]
N, C = 53, 11
DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs" / "integrations.md"


def _case(loss, kind, seed=0):
    """(logits, targets, options, sample_weight) for a loss and a target kind."""
    rng = np.random.default_rng(seed)
    logits = 4 * rng.standard_normal((N, C))
    sample_weight = rng.random(N) + 0.25
    options = {}
    if kind == "indices":
        targets = rng.integers(0, C, N)
        targets[::5] = -100
        options["class_weight"] = rng.random(C) + 0.5
    elif kind == "dense":
        raw = rng.random((N, C))
        targets = raw / raw.sum(1, keepdims=True) if loss in SOFTMAX else raw
    else:
        dense = rng.random((N, C)) < 0.2
        dense[::7] = False                      # rows without positives (skipped by softmax)
        targets = fastxent.MultiLabel.from_dense(dense.astype(np.float64))
        if kind == "scipy":
            targets = targets.to_scipy()
    if loss in SOFTMAX:
        options["label_smoothing"] = 0.1
    elif loss == "sigmoid_binary_cross_entropy":
        options["pos_weight"] = 1.5
    return logits, targets, options, sample_weight


def _kinds(loss):
    return ("indices", "dense", "sparse") if loss in SOFTMAX else ("dense", "sparse")


CASES = [(loss, kind) for loss in LOSSES for kind in _kinds(loss)]


@pytest.mark.parametrize("loss, kind", CASES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "batchmean"])
def test_accumulator_equals_one_call(loss, kind, reduction):
    logits, targets, options, sample_weight = _case(loss, kind)
    expected = getattr(fastxent, loss)(logits, targets, reduction=reduction,
                                       sample_weight=sample_weight, **options)
    acc = fastxent.LossAccumulator(loss, reduction=reduction, **options)
    for start, stop in [(0, 1), (1, 20), (20, 20), (20, 47), (47, N)]:     # uneven, one empty
        acc.update(logits[start:stop], row_slice(targets, start, stop),
                   sample_weight=sample_weight[start:stop])
    assert acc.n_rows == N and acc.n_batches == 5
    np.testing.assert_allclose(acc.result(), expected, rtol=1e-13)


def test_accumulator_merge_and_function_argument():
    logits, targets, options, _ = _case("softmax_cross_entropy", "indices")
    parts = [fastxent.LossAccumulator(fastxent.softmax_cross_entropy, **options)
             for _ in range(2)]
    parts[0].update(logits[:30], targets[:30])
    parts[1].update(logits[30:], targets[30:])
    merged = parts[0].merge(parts[1])
    np.testing.assert_allclose(merged.result(),
                               fastxent.softmax_cross_entropy(logits, targets, **options),
                               rtol=1e-13)
    assert "n_rows=53" in repr(merged)
    # the docstring's "same options" is checked: a merge across options summed different losses
    other = fastxent.LossAccumulator(fastxent.softmax_cross_entropy,
                                     **dict(options, label_smoothing=0.5))
    with pytest.raises(ValueError, match="different options"):
        merged.merge(other)
    weights = dict(options, class_weight=options["class_weight"] * 2)
    with pytest.raises(ValueError, match="different options"):
        merged.merge(fastxent.LossAccumulator(fastxent.softmax_cross_entropy, **weights))
    same = fastxent.LossAccumulator(fastxent.softmax_cross_entropy,
                                    **{k: np.array(v, copy=True) for k, v in options.items()})
    merged.merge(same)                           # equal values in other arrays: fine


def test_accumulator_all_ignored_is_zero_like_the_api():
    acc = fastxent.LossAccumulator("softmax_cross_entropy")
    acc.update(np.zeros((3, 4)), np.full(3, -100))
    assert acc.result() == 0.0 == fastxent.softmax_cross_entropy(np.zeros((3, 4)),
                                                                np.full(3, -100))


def test_accumulator_rejects_bad_arguments():
    with pytest.raises(ValueError, match="loss must be one of"):
        fastxent.LossAccumulator("hinge")
    with pytest.raises(ValueError, match="reduction"):
        fastxent.LossAccumulator("softmax_cross_entropy", reduction="none")
    with pytest.raises(TypeError, match="sample_weight"):
        fastxent.LossAccumulator("softmax_cross_entropy", sample_weight=np.ones(3))


@pytest.mark.parametrize("loss, kind", CASES + [("softmax_cross_entropy", "scipy")])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_evaluate_chunked_equals_one_call(loss, kind, reduction):
    logits, targets, options, sample_weight = _case(loss, kind)
    expected, expected_grad = getattr(fastxent, loss)(
        logits, targets, reduction=reduction, sample_weight=sample_weight, return_grad=True,
        **options)
    got, grad = fastxent.evaluate_chunked(loss, logits, targets, reduction=reduction,
                                          sample_weight=sample_weight, return_grad=True,
                                          chunk_rows=8, **options)
    np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-13,
                               atol=1e-15 * np.abs(expected_grad).max())
    without_grad = fastxent.evaluate_chunked(loss, logits, targets, reduction=reduction,
                                             sample_weight=sample_weight, chunk_rows=8,
                                             **options)
    np.testing.assert_allclose(without_grad, expected, rtol=1e-13, atol=1e-15)


@pytest.fixture
def memmapped(tmp_path):
    """float32 logits [4000, 250] (4 MB) saved as .npy and opened read-only as a memory map."""
    rng = np.random.default_rng(1)
    path = tmp_path / "logits.npy"
    np.save(path, rng.standard_normal((4000, 250), dtype=np.float32))
    labels = rng.integers(0, 250, 4000)
    np.save(tmp_path / "labels.npy", labels)
    return (np.load(path, mmap_mode="r"), np.load(tmp_path / "labels.npy", mmap_mode="r"),
            tmp_path)


def test_memmap_chunks_are_views_and_gradient_goes_to_a_memmap(memmapped, monkeypatch):
    logits, labels, tmp_path = memmapped
    assert not logits.flags.writeable
    seen = []
    original = api.softmax_cross_entropy

    def spy(x, y, **kwargs):
        seen.append((np.shares_memory(x, logits), np.shares_memory(y, labels),
                     kwargs.get("grad_out")))
        return original(x, y, **kwargs)

    spy.__name__ = "softmax_cross_entropy"
    grad_out = np.lib.format.open_memmap(tmp_path / "grad.npy", mode="w+", dtype=np.float32,
                                         shape=logits.shape)
    loss, grad = fastxent.evaluate_chunked(spy, logits, labels, return_grad=True,
                                           grad_out=grad_out, chunk_rows=512)
    assert grad is grad_out and len(seen) == 8
    assert all(x_view and y_view for x_view, y_view, _ in seen)
    assert all(np.shares_memory(g, grad_out) for _, _, g in seen)
    grad_out.flush()
    expected, expected_grad = fastxent.softmax_cross_entropy(np.asarray(logits), labels,
                                                             return_grad=True)
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    np.testing.assert_allclose(np.load(tmp_path / "grad.npy"), expected_grad,
                               atol=1e-6 * np.abs(expected_grad).max())


def test_chunked_memory_is_bounded(memmapped):
    logits, labels, _ = memmapped
    fastxent.evaluate_chunked("sigmoid_focal_loss", logits[:64],
                              fastxent.MultiLabel.from_lists([[1]] * 64, 250))     # warm up
    targets = fastxent.MultiLabel(np.arange(4001), labels, 250)
    tracemalloc.start()
    try:
        loss = fastxent.evaluate_chunked("sigmoid_focal_loss", logits, targets,
                                         max_chunk_bytes=64 << 10)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"peak {peak} bytes for 4 MB of logits in 64 KB chunks"
    np.testing.assert_allclose(loss, fastxent.sigmoid_focal_loss(np.asarray(logits), targets),
                               rtol=1e-6)


def test_evaluate_chunked_rejects_bad_arguments():
    x = np.zeros((4, 3))
    with pytest.raises(ValueError, match="rows"):
        fastxent.evaluate_chunked("softmax_cross_entropy", x, np.zeros(5, dtype=int))
    with pytest.raises(ValueError, match="grad_out"):
        fastxent.evaluate_chunked("softmax_cross_entropy", x, np.zeros(4, dtype=int),
                                  return_grad=True, grad_out=np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match="chunk_rows"):
        fastxent.evaluate_chunked("softmax_cross_entropy", x, np.zeros(4, dtype=int),
                                  chunk_rows=0)
    # a weight per row, whole: too many were silently dropped, too few named a chunk's shape
    for bad in (np.ones(5), np.ones(3), np.ones((4, 1))):
        with pytest.raises(ValueError, match=r"sample_weight must have shape \(4,\)"):
            fastxent.evaluate_chunked("softmax_cross_entropy", x, np.zeros(4, dtype=int),
                                      sample_weight=bad, chunk_rows=2)
    for reduction in ("mean", "none"):
        with pytest.raises(TypeError, match="return_grad"):
            fastxent.evaluate_chunked("softmax_cross_entropy", x, np.zeros(4, dtype=int),
                                      reduction=reduction, return_grad="no")
    with pytest.raises(TypeError, match="return_grad"):
        fastxent.LossAccumulator("softmax_cross_entropy").update(x, np.zeros(4, dtype=int),
                                                                 return_grad="no")


@pytest.mark.parametrize("case", ["masked classes + smoothing", "overflowing sum"])
def test_infinite_losses_stay_infinite(case):
    """An infinite loss stays inf through the compensated sums of the accumulator and of
    evaluate_chunked, as in one call (the compensation made it inf - inf = NaN)."""
    rng = np.random.default_rng(3)
    if case == "masked classes + smoothing":
        x = rng.standard_normal((10, 6))
        x[:, 3:] = -np.inf
        loss, targets, options = "softmax_cross_entropy", rng.integers(0, 3, 10), \
            {"label_smoothing": 0.1}
    else:
        x = np.full((10, 6), 1e308)
        loss, targets, options = "sigmoid_binary_cross_entropy", np.zeros((10, 6)), {}
    one_call = getattr(fastxent, loss)(x, targets, reduction="sum", **options)
    assert one_call == np.inf
    assert fastxent.evaluate_chunked(loss, x, targets, reduction="sum", chunk_rows=4,
                                     **options) == np.inf
    acc = fastxent.LossAccumulator(loss, reduction="sum", **options)
    acc.update(x, targets)
    acc.update(x[:3], row_slice(targets, 0, 3))
    assert acc.result() == np.inf


def test_evaluate_chunked_grad_out_overlap():
    """grad_out is checked whole against the whole inputs, as by the plain API: a buffer one
    row ahead of the logits (chunk k's gradient would overwrite chunk k + 1's logits before they
    are read) or over the dense targets is refused; grad_out = logits (in place) is exact."""
    rng = np.random.default_rng(0)
    buf = rng.standard_normal((7, 5))
    labels = rng.integers(0, 5, 6)
    logits = buf[:-1]
    with pytest.raises(ValueError, match="grad_out partially overlaps logits"):
        fastxent.evaluate_chunked("softmax_cross_entropy", logits, labels, reduction="sum",
                                  return_grad=True, grad_out=buf[1:], chunk_rows=1)
    dense = rng.uniform(0.0, 1.0, (6, 5))
    with pytest.raises(ValueError, match="grad_out overlaps targets"):
        fastxent.evaluate_chunked("sigmoid_binary_cross_entropy", logits, dense,
                                  return_grad=True, grad_out=dense, chunk_rows=2)
    want_loss, want_grad = fastxent.softmax_cross_entropy(logits.copy(), labels, reduction="sum",
                                                          return_grad=True)
    x = logits.copy()
    loss, grad = fastxent.evaluate_chunked("softmax_cross_entropy", x, labels, reduction="sum",
                                           return_grad=True, grad_out=x, chunk_rows=1)
    assert grad is x
    np.testing.assert_allclose(loss, want_loss, rtol=1e-12)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("loss, bad", [("sigmoid_binary_cross_entropy", "target above 1"),
                                       ("softmax_cross_entropy", "label out of range")])
def test_evaluate_chunked_in_place_leaves_logits_untouched_on_bad_input(loss, bad, reduction):
    """In place (grad_out=logits), bad input in a later chunk is refused before any chunk's
    gradient overwrites its logits (rows 0-5 were already gradients when chunk 4 raised)."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((9, 4))
    if loss == "softmax_cross_entropy":
        targets = rng.integers(0, 4, 9)
        targets[7] = 4
    else:
        targets = rng.uniform(0.0, 1.0, (9, 4))
        targets[7, 0] = 1.5
    before = x.copy()
    with pytest.raises(ValueError, match="targets"):
        fastxent.evaluate_chunked(loss, x, targets, reduction=reduction, return_grad=True,
                                  grad_out=x, chunk_rows=2)
    np.testing.assert_array_equal(x, before)


# ============================================================================================
# docs/integrations.md: every Python block runs (blocks needing a missing extra are skipped)
# ============================================================================================

def _doc_blocks():
    return re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.S)


def test_integration_docs_have_examples():
    assert len(_doc_blocks()) >= 4


@pytest.mark.parametrize("index", range(len(_doc_blocks())))
def test_integration_docs_examples_run(index, tmp_path, monkeypatch):
    block = _doc_blocks()[index]
    for module in ("torch", "dask", "distributed"):
        if re.search(rf"^\s*(import|from) {module}\b", block, flags=re.M):
            pytest.importorskip(module, reason=f"{module} not installed")
    monkeypatch.chdir(tmp_path)
    exec(compile(block, f"{DOCS}:block{index}", "exec"), {"__name__": "__docs__"})


def test_api_reads_a_read_only_memmap_without_copying(memmapped, monkeypatch):
    """The main API hands a read-only .npy memory map (and its labels) to the kernel as is."""
    import types

    from fastxent import _dispatch

    compiled = [name for name in fastxent.available_backends() if name not in ("numpy", "cuda")]
    if not compiled:
        pytest.skip("no compiled CPU backend available")
    logits, labels, _ = memmapped
    seen = []
    real_kernels = _dispatch.kernels

    def spy_kernels(name):
        module = real_kernels(name)

        def run(job):
            seen.append(np.shares_memory(job.logits, logits))
            return module.run(job)
        return types.SimpleNamespace(run=run)

    monkeypatch.setattr(_dispatch, "kernels", spy_kernels)
    loss, grad = fastxent.softmax_cross_entropy(logits[:300], labels[:300], return_grad=True,
                                                backend=compiled[0])
    assert seen == [True]
    assert not logits.flags.writeable and grad.flags.writeable


def test_evaluate_chunked_takes_torch_cpu_tensors():
    """LossAccumulator.update took torch CPU tensors; evaluate_chunked failed on their dtype."""
    torch = pytest.importorskip("torch", reason="PyTorch not installed")
    x = torch.randn(10, 5, dtype=torch.float64)
    y = torch.randint(0, 5, (10,))
    want, want_grad = fastxent.softmax_cross_entropy(x.numpy(), y.numpy(), return_grad=True)
    got, grad = fastxent.evaluate_chunked("softmax_cross_entropy", x, y, chunk_rows=3,
                                          return_grad=True)
    assert got == pytest.approx(want, rel=1e-13)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-13, atol=1e-16)
