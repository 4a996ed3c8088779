"""fastxent.compat.tf against TensorFlow's documented numbers (golden vectors), finite
differences, PyTorch autograd, the exact softmax gradient where TensorFlow's fused one is wrong,
the class axis, and bad input."""
import json
from pathlib import Path

import numpy as np
import pytest

import fastxent
from fastxent.compat import tf

GOLDEN_JSON = Path(__file__).resolve().parents[2] / "shared/reference/golden_vectors.json"
RNG = np.random.default_rng(7)


def golden(name):
    if not GOLDEN_JSON.exists():
        pytest.skip(f"golden vectors not found at {GOLDEN_JSON} (the shared reference folder "
                    f"is expected beside the repository, as ../shared)")
    vectors = {v["name"]: v for v in json.loads(GOLDEN_JSON.read_text())}
    return vectors[name]


def close(actual, expected, rtol=1e-6, atol=1e-7):
    np.testing.assert_allclose(np.asarray(actual, np.float64), np.asarray(expected, np.float64),
                               rtol=rtol, atol=atol)


def fd_grad(fun, x, h=1e-6):
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        grad[idx] = (np.sum(fun(xp)) - np.sum(fun(xm))) / (2 * h)
    return grad


# ============================================================================================
# golden vectors (TensorFlow's docstrings; float32 as quoted, float64 exact)
# ============================================================================================

def test_golden_sparse_softmax_doc_example():
    v = golden("tf_sparse_softmax_ce_doc_example")
    x, t, e = v["inputs"]["logits"], v["inputs"]["labels"], v["expected"]
    close(tf.sparse_softmax_cross_entropy_with_logits(t, x), e["per_sample_quoted_float32"])
    loss, grad = tf.sparse_softmax_cross_entropy_with_logits(t, np.array(x), return_grad=True)
    close(loss, e["per_sample"], rtol=1e-9, atol=1e-15)
    close(grad, e["grad_logits_reduction_none_sum_of_outputs"], rtol=1e-9, atol=1e-15)


def test_golden_softmax_soft_labels_doc_example():
    v = golden("tf_softmax_ce_soft_labels_doc_example")
    x, y, e = v["inputs"]["logits"], v["inputs"]["labels"], v["expected"]
    close(tf.softmax_cross_entropy_with_logits(y, x), e["per_sample_quoted_float32"])
    loss, grad = tf.softmax_cross_entropy_with_logits(y, np.array(x), return_grad=True)
    close(loss, e["per_sample"], rtol=1e-9)
    close(grad, e["grad_logits"], rtol=1e-9)


def test_golden_softmax_extreme_logits():
    v = golden("softmax_ce_extreme_logits_pm1000")
    for dtype in (np.float32, np.float64):
        x = np.array(v["inputs"]["logits"], dtype)
        loss, grad = tf.sparse_softmax_cross_entropy_with_logits(v["inputs"]["labels"], x,
                                                                 return_grad=True)
        close(loss, v["expected"]["per_sample"])
        close(grad, v["expected"]["grad_logits"])


def test_golden_sigmoid_doc_example():
    v = golden("tf_sigmoid_ce_doc_example")
    x, z, e = v["inputs"]["logits"], v["inputs"]["labels"], v["expected"]
    close(tf.sigmoid_cross_entropy_with_logits(z, x), e["elementwise_quoted_float32"])
    loss, grad = tf.sigmoid_cross_entropy_with_logits(z, np.array(x), return_grad=True)
    close(loss, e["elementwise"], rtol=1e-9)
    close(grad, e["grad_logits"], rtol=1e-9)


def test_golden_sigmoid_extreme_logits():
    v = golden("sigmoid_bce_extreme_logits_pm1000")
    for dtype in (np.float32, np.float64):
        loss, grad = tf.sigmoid_cross_entropy_with_logits(
            v["inputs"]["labels"], np.array(v["inputs"]["logits"], dtype), return_grad=True)
        close(loss, v["expected"]["elementwise"])
        close(grad, v["expected"]["grad_logits"])


@pytest.mark.parametrize("q", ["1.5", "0.5"])
def test_golden_weighted_doc_example(q):
    v = golden(f"tf_weighted_ce_pos_weight_{q}_doc_example")
    x, z, e = v["inputs"]["logits"], v["inputs"]["labels"], v["expected"]
    loss32 = tf.weighted_cross_entropy_with_logits(z, x, float(q))
    close(loss32[:2], e["elementwise_quoted_float32"][:2])
    close(loss32, e["elementwise_exact"])           # not TensorFlow's cancelled 4.5776367e-05
    assert abs(loss32[2] - 4.5776367e-05) > 3e-7
    loss, grad = tf.weighted_cross_entropy_with_logits(z, np.array(x), float(q), return_grad=True)
    close(loss, e["elementwise_exact"], rtol=1e-9)
    close(grad, e["grad_logits"], rtol=1e-8)


def test_golden_multilabel_softmax_and_the_exact_gradient():
    """PAL (multi-hot labels, rows summing to |P|) is where TF's fused gradient p - y is wrong."""
    v = golden("multilabel_softmax_normalised_PAL_N")
    x = np.array(v["inputs"]["logits"])[None]
    multi_hot = np.zeros_like(x)
    multi_hot[0, v["inputs"]["positive_indices"]] = 1
    e = v["expected"]
    loss, grad = tf.softmax_cross_entropy_with_logits(multi_hot / 2, x, return_grad=True)
    close(loss, [e["loss_PAL_N"]], rtol=1e-9)
    close(grad[0], e["grad_PAL_N"], rtol=1e-8)
    loss, grad = tf.softmax_cross_entropy_with_logits(multi_hot, x, return_grad=True)
    close(loss, [e["loss_PAL_unnormalised_sum_over_positives"]], rtol=1e-9)
    close(grad[0], e["grad_PAL"], rtol=1e-8)
    p = np.exp(x) / np.exp(x).sum()
    assert not np.allclose(grad, p - multi_hot)       # what TensorFlow's kernel would return


def test_golden_csr_batch_elementwise():
    v = golden("csr_multilabel_batch_all_families")
    x = np.array(v["inputs"]["logits"])
    y = np.array(v["expected"]["dense_targets"])
    loss, grad = tf.sigmoid_cross_entropy_with_logits(y, x, return_grad=True)
    close(loss, v["expected"]["ova_bce_elementwise"], rtol=1e-9)
    close(grad / x.size, v["expected"]["grad_ova_bce_reduction_mean_all_elements"], rtol=1e-8)


def test_golden_out_of_range_ids_raise():
    v = golden("integer_label_out_of_range_behaviours")
    x = np.array(v["inputs"]["logits"])
    for label in v["inputs"]["labels_tried"]:
        with pytest.raises(ValueError, match=rf"labels\[0\] = {label} is not a class id"):
            tf.sparse_softmax_cross_entropy_with_logits([label], x)


# ============================================================================================
# gradients, axis, soft labels
# ============================================================================================

def _inputs(shape, soft=True):
    x = RNG.standard_normal(shape) * 2
    y = RNG.random(shape)
    if not soft:
        y = np.round(y)
    return y, x


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_softmax_gradient_and_axis(axis):
    y, x = _inputs((3, 4, 5))
    loss, grad = tf.softmax_cross_entropy_with_logits(y, x, axis=axis, return_grad=True)
    assert loss.shape == tuple(np.delete(np.array(x.shape), axis % 3))
    close(grad, fd_grad(lambda z: tf.softmax_cross_entropy_with_logits(y, z, axis=axis), x),
          rtol=1e-6, atol=1e-8)
    loss_last, grad_last = tf.softmax_cross_entropy_with_logits(
        np.moveaxis(y, axis, -1), np.moveaxis(x, axis, -1), return_grad=True)
    close(loss, loss_last, rtol=1e-12)
    close(grad, np.moveaxis(grad_last, -1, axis), rtol=1e-12, atol=1e-15)


def test_sparse_gradient_nd():
    x = RNG.standard_normal((2, 3, 4))
    t = RNG.integers(0, 4, (2, 3))
    loss, grad = tf.sparse_softmax_cross_entropy_with_logits(t, x, return_grad=True)
    assert loss.shape == (2, 3)
    close(grad, fd_grad(lambda z: tf.sparse_softmax_cross_entropy_with_logits(t, z), x),
          rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("pos_weight", [1.0, 3.0, "per_class", "per_element"])
def test_sigmoid_and_weighted_gradients(pos_weight):
    y, x = _inputs((3, 4))
    if pos_weight == "per_class":
        pos_weight = RNG.random(4) * 3
    elif pos_weight == "per_element":
        pos_weight = RNG.random((3, 4)) * 3

    def f(z):
        return tf.weighted_cross_entropy_with_logits(y, z, pos_weight)
    loss, grad = tf.weighted_cross_entropy_with_logits(y, x, pos_weight, return_grad=True)
    assert loss.shape == x.shape
    close(grad, fd_grad(f, x), rtol=1e-6, atol=1e-8)
    if np.ndim(pos_weight) == 0 and pos_weight == 1.0:
        close(loss, tf.sigmoid_cross_entropy_with_logits(y, x), rtol=1e-15)


def test_labels_outside_0_1_are_accepted_like_tensorflow():
    y, x = _inputs((2, 3))
    y[0, 0] = 2.0                         # TF accepts it; the engine would refuse
    loss, grad = tf.softmax_cross_entropy_with_logits(y, x, return_grad=True)
    logp = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
    close(loss, -(y * logp).sum(axis=1), rtol=1e-12)
    close(grad, fd_grad(lambda z: tf.softmax_cross_entropy_with_logits(y, z), x), rtol=1e-6,
          atol=1e-8)


def test_softmax_runs_on_the_engine(monkeypatch):
    calls = []
    real = fastxent.softmax_cross_entropy

    def spy(*args, **kw):
        calls.append(kw)
        return real(*args, **kw)
    monkeypatch.setattr(fastxent, "softmax_cross_entropy", spy)
    y, x = _inputs((4, 3))
    tf.softmax_cross_entropy_with_logits(y, x.astype(np.float32))
    tf.sparse_softmax_cross_entropy_with_logits([0, 1, 2, 0], x)
    assert len(calls) == 2 and all(c["reduction"] == "none" for c in calls)


@pytest.mark.torch
def test_against_torch_autograd():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    y, x = _inputs((3, 5))
    q = RNG.random(5) * 2
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.tensor(y)
    for ours, theirs in [
        (lambda: tf.softmax_cross_entropy_with_logits(y, x, return_grad=True),
         lambda: -(ty * torch.log_softmax(tx, dim=-1)).sum(dim=-1)),
        (lambda: tf.softmax_cross_entropy_with_logits(y, x, axis=0, return_grad=True),
         lambda: -(ty * torch.log_softmax(tx, dim=0)).sum(dim=0)),
        (lambda: tf.sigmoid_cross_entropy_with_logits(y, x, return_grad=True),
         lambda: torch.nn.functional.binary_cross_entropy_with_logits(tx, ty,
                                                                      reduction="none")),
        (lambda: tf.weighted_cross_entropy_with_logits(y, x, q, return_grad=True),
         lambda: torch.nn.functional.binary_cross_entropy_with_logits(
             tx, ty, pos_weight=torch.tensor(q), reduction="none")),
    ]:
        tx.grad = None
        loss, grad = ours()
        t_loss = theirs()
        t_loss.sum().backward()
        close(loss, t_loss.detach().numpy(), rtol=1e-12, atol=1e-15)
        close(grad, tx.grad.numpy(), rtol=1e-10, atol=1e-15)
    t = RNG.integers(0, 5, 3)
    tx.grad = None
    loss, grad = tf.sparse_softmax_cross_entropy_with_logits(t, x, return_grad=True)
    t_loss = torch.nn.functional.cross_entropy(tx, torch.tensor(t), reduction="none")
    t_loss.sum().backward()
    close(loss, t_loss.detach().numpy(), rtol=1e-12)
    close(grad, tx.grad.numpy(), rtol=1e-10, atol=1e-15)


def test_dtypes_and_name_argument():
    y, x = _inputs((2, 3))
    assert tf.sigmoid_cross_entropy_with_logits(y, x).dtype == np.float64
    assert tf.sigmoid_cross_entropy_with_logits(y, x.astype(np.float32)).dtype == np.float32
    assert tf.sigmoid_cross_entropy_with_logits([[0, 1]], [[1, 2]]).dtype == np.float32
    loss, grad = tf.softmax_cross_entropy_with_logits(y.astype(np.float32),
                                                      x.astype(np.float32), name="xent",
                                                      return_grad=True)
    assert loss.dtype == grad.dtype == np.float32


# ============================================================================================
# bad input
# ============================================================================================

@pytest.mark.parametrize("call, exc, match", [
    (lambda: tf.softmax_cross_entropy_with_logits([[1, 0]], [[1.0, 2.0, 3.0]]), ValueError,
     "labels and logits must have the same shape"),
    (lambda: tf.softmax_cross_entropy_with_logits([1, 0], [1.0, 2.0], axis=1), ValueError,
     "axis=1 is out of range"),
    (lambda: tf.softmax_cross_entropy_with_logits([1, 0], [1.0, 2.0], axis=None), TypeError,
     "axis"),
    (lambda: tf.softmax_cross_entropy_with_logits([1, 0], ["a", "b"]), TypeError, "logits"),
    (lambda: tf.softmax_cross_entropy_with_logits(1.0, 2.0), ValueError, "at least 1-D"),
    (lambda: tf.sparse_softmax_cross_entropy_with_logits([0, 1], [[1.0, 2.0]]), ValueError,
     r"labels must have shape logits.shape\[:-1\]"),
    (lambda: tf.sparse_softmax_cross_entropy_with_logits([0.5], [[1.0, 2.0]]), ValueError,
     "whole class ids"),
    (lambda: tf.sparse_softmax_cross_entropy_with_logits(["a"], [[1.0, 2.0]]), TypeError,
     "labels"),
    (lambda: tf.sigmoid_cross_entropy_with_logits([1, 0, 1], [1.0, 2.0]), ValueError, "labels"),
    (lambda: tf.weighted_cross_entropy_with_logits([1, 0], [1.0, 2.0], [1, 2, 3]), ValueError,
     "pos_weight"),
    (lambda: tf.weighted_cross_entropy_with_logits([1, 0], [1.0, 2.0], "x"), TypeError,
     "pos_weight"),
])
def test_bad_input_raises_naming_the_argument(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("pos_weight", [None, 2.5, "per_class"])
def test_elementwise_sigmoid_runs_on_the_engine(monkeypatch, dtype, pos_weight):
    """The elementwise sigmoid helpers use the engine's fused kernel when Numba is there, and
    it agrees with the float64 reference formula (soft and out-of-range labels included)."""
    import fastxent
    from fastxent import api
    if "numba" not in fastxent.available_backends():
        pytest.skip("the Numba backend is not available: the NumPy path is the only one")
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((3, 5, 33)) * 8).astype(dtype)
    z = rng.random((3, 5, 33)).astype(dtype)
    z[0, 0, :3] = [1.5, -0.5, 0.0]
    calls = []
    original = api._sigmoid_elements
    monkeypatch.setattr(api, "_sigmoid_elements",
                        lambda *a, **k: calls.append(1) or original(*a, **k))
    q = {None: 1.0, 2.5: 2.5, "per_class": np.linspace(0.5, 3.0, 33)}[pos_weight]
    if pos_weight is None:
        loss, grad = tf.sigmoid_cross_entropy_with_logits(z, x, return_grad=True)
    else:
        loss, grad = tf.weighted_cross_entropy_with_logits(z, x, q, return_grad=True)
    assert calls, "the engine path was not taken"
    assert loss.dtype == dtype and grad.dtype == dtype and loss.shape == x.shape
    xd, zd, qd = x.astype(np.float64), z.astype(np.float64), np.asarray(q, np.float64)
    sp = np.logaddexp(0.0, xd)
    sp_neg = np.logaddexp(0.0, -xd)
    want = qd * zd * sp_neg + (1 - zd) * sp
    want_grad = (1 - zd) / (1 + np.exp(-xd)) - qd * zd / (1 + np.exp(xd))
    rtol = 1e-12 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(loss, want, rtol=rtol, atol=rtol * 1e-3)
    np.testing.assert_allclose(grad, want_grad, rtol=rtol, atol=rtol * np.abs(want_grad).max())


def test_return_grad_must_be_a_bool_and_masked_entries_are_refused():
    """Both compat modules refuse a truthy non-bool return_grad ("no" returned a gradient)
    and arrays with masked entries (their masked numbers were computed with)."""
    from fastxent.compat import keras
    z = np.array([[0.0, 1.0, 1.0]])
    x = np.array([[0.5, -1.0, 2.0]])
    calls = [lambda **kw: tf.sigmoid_cross_entropy_with_logits(labels=z, logits=x, **kw),
             lambda **kw: tf.softmax_cross_entropy_with_logits(z / 2, x, **kw),
             lambda **kw: keras.binary_crossentropy(z, 1 / (1 + np.exp(-x)), **kw),
             lambda **kw: keras.binary_focal_crossentropy(z, x, from_logits=True, **kw)]
    for call in calls:
        with pytest.raises(TypeError, match="return_grad"):
            call(return_grad="no")
    masked = np.ma.masked_array(x, mask=[[False, True, False]])
    with pytest.raises(TypeError, match="logits is a masked array"):
        tf.sigmoid_cross_entropy_with_logits(labels=z, logits=masked)
    with pytest.raises(TypeError, match="masked array"):
        keras.binary_crossentropy(np.ma.masked_array(z, mask=[[True, False, False]]), x * 0 + .5)
