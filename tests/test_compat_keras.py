"""fastxent.compat.keras against Keras 3's numbers: the seeds' worked values, the Keras 3 golden
vectors, finite differences and PyTorch autograd for every gradient, axis, ignore_class, bad input.
"""
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

import fastxent
from fastxent.compat import keras

GOLDEN_JSON = Path(__file__).resolve().parents[2] / "shared/reference/golden_vectors.json"
F32_EPS = np.float32(1e-7)
MAX_NEG = -np.log(np.float32(2.0) ** -23)      # 15.942385: float32 1 - 1e-7 = 1 - 2**-23
MAX_POS = -np.log(1e-7)                        # 16.118095


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
    """Central differences of sum(fun(x)) (float64)."""
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        grad[idx] = (np.sum(fun(xp)) - np.sum(fun(xm))) / (2 * h)
    return grad


# ============================================================================================
# the seeds' worked numbers
# ============================================================================================

SEED_VALUES = [
    # (function, y_true, y_pred, kwargs, expected per sample)
    ("categorical_crossentropy", [0, 1, 0, 0], [0.25, 0.25, 0.25, 0.25], {}, 1.3862944),
    ("categorical_crossentropy", [0, 1, 0, 0], [0.1, 0.1, 0.8, 0.1], {}, 2.3978953),
    ("categorical_crossentropy", [0, 1, 0, 0], [0.1, 0.7, 0.1, 0.1], {}, 0.35667497),
    ("categorical_crossentropy", [0, 1, 0, 0], [0.01, 0.97, 0.01, 0.01], {}, 0.030459179),
    ("categorical_crossentropy", [1, 0, 0, 0, 0], [0.4, 0.3, 0.05, 0.05, 0.2], {}, -np.log(0.4)),
    ("categorical_crossentropy", [1, 0, 0, 0, 0], [0.98, 0.01, 0, 0, 0.01], {}, -np.log(0.98)),
    ("binary_crossentropy", [1], [0.1], {"legacy": True}, 2.3025842),     # tf.keras 2 (seed)
    ("binary_crossentropy", [1], [0.1], {}, 2.3025851),                   # Keras 3
    # seed 001: CE(y, y_hat) per sample -ln 0.5, -ln 0.8 (mean 0.458), BCE the same here
    ("categorical_crossentropy", [[0, 1], [1, 0]], [[0.5, 0.5], [0.8, 0.2]], {},
     [-np.log(0.5), -np.log(0.8)]),
    ("binary_crossentropy", [[0, 1], [1, 0]], [[0.5, 0.5], [0.8, 0.2]], {},
     [-np.log(0.5), -np.log(0.8)]),
    ("categorical_crossentropy", [0, 1], [2.0, 8.0], {}, -np.log(0.8)),     # [2, 8] == [.2, .8]
    ("binary_crossentropy", [1, 0], [8.0, 2.0], {}, (np.float32(1.19209e-7) + MAX_NEG) / 2),
    # seed 001: BCE prefers [.8, .1, .1] to [.8, .2, 0] for the target [1, 0, 0]; CE does not
    ("binary_crossentropy", [1, 0, 0], [0.8, 0.1, 0.1], {}, -(np.log(.8) + 2 * np.log(.9)) / 3),
    ("binary_crossentropy", [1, 0, 0], [0.8, 0.2, 0.0], {},
     -(2 * np.log(.8) + np.log(1 - 1e-7)) / 3),
    # seed 003: five binary problems; the seed's sums are C * Keras's mean
    ("binary_crossentropy", [1, 0, 0, 0, 0], [0.1, 0.5, 0.1, 0.1, 0.2], {},
     -(np.log(.1) + np.log(.5) + 2 * np.log(.9) + np.log(.8)) / 5),
    ("binary_crossentropy", [1, 0, 0, 0, 1], [0.1, 0.5, 0.1, 0.1, 0.9], {},
     -(np.log(.1) + np.log(.5) + 3 * np.log(.9)) / 5),
]


@pytest.mark.parametrize("fn, y_true, y_pred, kwargs, expected", SEED_VALUES)
def test_seed_worked_numbers(fn, y_true, y_pred, kwargs, expected):
    got = getattr(keras, fn)(y_true, y_pred, **kwargs)
    assert got.dtype == np.float32            # lists are float32, as in Keras
    close(got, expected, rtol=2e-7)


def test_seed_bce_prefers_low_negatives_where_ce_does_not_care():
    assert keras.binary_crossentropy([1, 0, 0], [.8, .1, .1]) < \
        keras.binary_crossentropy([1, 0, 0], [.8, .2, 0])
    assert keras.categorical_crossentropy([1, 0, 0], [.8, .1, .1]) == \
        keras.categorical_crossentropy([1, 0, 0], [.8, .2, 0])


def test_seed_thousand_classes_negatives_and_focal():
    y = np.zeros(1000)
    y[[0, 7]] = 1
    p = np.where(y == 1, 0.8, 0.1)
    positives, negatives = -2 * np.log(0.8), -998 * np.log(0.9)
    close(positives, 0.44, rtol=0.02)
    close(negatives, 105, rtol=0.002)
    close(keras.binary_crossentropy(y, p) * 1000, positives + negatives, rtol=1e-12)
    close(0.0001 * negatives, 0.0105, rtol=0.002)    # the seed's down-weighting by 0.0001
    focal = 2 * 0.2 ** 2 * -np.log(0.8) + 998 * 0.1 ** 2 * -np.log(0.9)
    close(keras.binary_focal_crossentropy(y, p, gamma=2.0) * 1000, focal, rtol=1e-12)
    logits = np.log(p / (1 - p))
    close(keras.binary_crossentropy(y, logits, from_logits=True) * 1000,
          positives + negatives, rtol=1e-10)


# ============================================================================================
# Keras 3 golden vectors
# ============================================================================================

def test_golden_categorical_renormalisation():
    v = golden("keras_categorical_ce_probability_renormalisation")
    close(keras.categorical_crossentropy(v["inputs"]["y_true"], v["inputs"]["y_pred"]),
          v["expected"]["per_sample"], rtol=1e-7)
    close(keras.categorical_crossentropy(v["inputs"]["y_true"],
                                         np.array(v["inputs"]["y_pred"], np.float64)),
          v["expected"]["per_sample_float64"], rtol=1e-12)
    for name in ("keras_categorical_ce_renormalisation_equivalence_probs",
                 "keras_categorical_ce_renormalisation_equivalence_unnormalised_scores"):
        v = golden(name)
        close(keras.categorical_crossentropy(v["inputs"]["y_true"], v["inputs"]["y_pred"]),
              v["expected"]["per_sample"])


def test_golden_categorical_class_doc_example_and_sparse_twin():
    v = golden("keras_categorical_ce_class_doc_example")
    y, p, e = v["inputs"]["y_true"], v["inputs"]["y_pred"], v["expected"]
    loss = keras.categorical_crossentropy(y, p)
    close(loss, e["per_sample"])
    close(loss.mean(), e["sum_over_batch_size"])
    close(loss.sum(), e["sum"])
    close(np.sum(loss * [0.3, 0.7]) / 2, e["sum_over_batch_size_with_sample_weight"])
    # the same numbers for SparseCategoricalCrossentropy with y_true=[1, 2] (TensorFlow order:
    # clip then renormalise, +1e-7 on the first sample)
    close(keras.sparse_categorical_crossentropy([1, 2], p), e["per_sample"], rtol=3e-6)


def test_golden_bce_keras3_vs_tf_keras2():
    v = golden("keras_bce_probability_y1_p0.1_keras3_vs_tfkeras2")
    e = v["expected"]
    close(keras.binary_crossentropy([1], [0.1]), e["keras3"], rtol=1e-7)
    close(keras.binary_crossentropy([1], [0.1], legacy=True), e["tf_keras_2_legacy"], rtol=1e-7)
    close(keras.binary_crossentropy([1], np.array([0.1])), e["exact"], rtol=1e-12)


def test_golden_bce_saturated_probabilities():
    v = golden("keras3_bce_saturated_probabilities_test_value")
    y, p, e = v["inputs"]["y_true"], v["inputs"]["y_pred"], v["expected"]
    loss = keras.binary_crossentropy(y, p)
    close(loss, e["per_sample(mean over last axis)"])
    close(loss.mean(), e["sum_over_batch_size"])
    close(loss.mean(), e["quoted"], rtol=2e-6)
    # elementwise: a class axis of size 1 makes the mean the element itself
    elem = keras.binary_crossentropy(np.array(y)[..., None], np.array(p)[..., None])
    close(elem, e["elementwise"])


def test_golden_bce_predictions_outside_0_1_are_clipped():
    v = golden("keras_bce_predictions_outside_0_1_are_clipped")
    y = np.array(v["inputs"]["y_true"])[:, None]
    p = np.array(v["inputs"]["y_pred"], np.float32)[:, None]
    e = v["expected"]
    close(keras.binary_crossentropy(y, p), e["keras3_elementwise"])
    close(keras.binary_crossentropy(y, p, legacy=True), e["tf_keras_2_legacy_elementwise"])
    close(keras.binary_crossentropy(y[:, 0], p[:, 0]), 8.015119553, rtol=1e-6)


def test_golden_bce_from_logits_doc_example():
    v = golden("keras_bce_from_logits_doc_example")
    y, x, e = v["inputs"]["y_true"], v["inputs"]["y_pred_logits"], v["expected"]
    loss = keras.binary_crossentropy(y, x, from_logits=True)
    close(loss, e["per_sample(mean over axis -1)"])
    close(loss.mean(), e["sum_over_batch_size"])
    close(loss.sum(), e["sum"])
    close(np.sum(loss * [0.8, 0.2]) / 2, e["sum_over_batch_size_with_sample_weight"])
    elem = keras.binary_crossentropy(np.array(y, np.float64)[..., None],
                                     np.array(x, np.float64)[..., None], from_logits=True)
    close(elem, e["elementwise"], rtol=1e-10, atol=0)


def test_golden_bce_from_logits_unweighted_and_smoothing():
    v = golden("keras_bce_from_logits_test_unweighted")
    loss = keras.binary_crossentropy(v["inputs"]["y_true"], v["inputs"]["y_pred_logits"],
                                     from_logits=True)
    close(loss, v["expected"]["per_sample"], rtol=1e-6, atol=1e-9)
    close(loss.mean(), v["expected"]["sum_over_batch_size"])
    v = golden("keras_bce_label_smoothing_test")
    loss = keras.binary_crossentropy(v["inputs"]["y_true"], v["inputs"]["y_pred_logits"],
                                     from_logits=True, label_smoothing=0.1)
    close(loss, v["expected"]["per_sample"])


def test_golden_sigmoid_extreme_logits_and_numpy_backend_numbers():
    v = golden("sigmoid_bce_extreme_logits_pm1000")
    x = np.array(v["inputs"]["logits"], np.float32)[:, None]
    y = np.array(v["inputs"]["labels"])[:, None]
    e = v["expected"]
    loss, grad = keras.binary_crossentropy(y, x, from_logits=True, return_grad=True)
    close(loss, e["elementwise"])
    close(grad[:, 0], e["grad_logits"])
    # the Keras NumPy backend's numbers: sigmoid, then the clipped probability path
    with np.errstate(over="ignore"):
        probs = (1 / (1 + np.exp(-x.astype(np.float64)))).astype(np.float32)
    close(keras.binary_crossentropy(y, probs), e["keras3_numpy_backend_elementwise_float32"],
          rtol=1e-6)


def test_golden_categorical_from_logits_label_smoothing():
    v = golden("keras_categorical_ce_from_logits_label_smoothing")
    y = np.array(v["inputs"]["y_true"], np.float64)
    x = np.array(v["inputs"]["y_pred_logits"], np.float64)
    loss, grad = keras.categorical_crossentropy(y, x, from_logits=True, label_smoothing=0.2,
                                                return_grad=True)
    close(loss, v["expected"]["per_sample"], rtol=1e-9)
    close(grad, v["expected"]["grad_logits"], rtol=1e-8)
    close(keras.categorical_crossentropy(y.astype(np.float32), x.astype(np.float32),
                                         from_logits=True, label_smoothing=0.2),
          v["expected"]["per_sample"])


def test_golden_sparse_ignore_class():
    v = golden("keras_sparse_ce_ignore_class_test")
    y, x = v["inputs"]["y_true"], v["inputs"]["y_pred_logits"]
    loss, grad = keras.sparse_categorical_crossentropy(y, x, from_logits=True, ignore_class=-1,
                                                       return_grad=True)
    close(loss, v["expected"]["none"])
    assert loss.shape == (1, 2)
    assert np.all(grad[0, 0] == 0) and np.any(grad[0, 1] != 0)
    valid = np.array(y) != -1
    close(loss.sum() / valid.sum(), v["expected"]["sum_over_batch_size"])   # masked mean


def test_golden_all_targets_ignored_give_zero():
    v = golden("torch_cross_entropy_all_targets_ignored")
    x = np.array(v["inputs"]["input"], np.float32)
    for from_logits in (True, False):
        probs = x if from_logits else np.full_like(x, 1 / 3)
        loss, grad = keras.sparse_categorical_crossentropy(
            [-100, -100], probs, from_logits=from_logits, ignore_class=-100, return_grad=True)
        assert np.all(loss == 0) and np.all(grad == 0)
    key = "keras_sparse_categorical_crossentropy_ignore_class_sum_over_batch_size"
    assert v["expected"][key] == 0.0      # Keras's masked mean: 0 / 0 valid -> 0.0


@pytest.mark.parametrize("gamma, balanced, key", [
    (2, False, "gamma2_mean"), (2, True, "gamma2_balanced_mean")])
def test_golden_binary_focal_doc_example_1d(gamma, balanced, key):
    v = golden("keras_binary_focal_ce_doc_example")
    loss = keras.binary_focal_crossentropy(v["inputs"]["y_true"], v["inputs"]["y_pred_logits"],
                                           apply_class_balancing=balanced, gamma=gamma,
                                           from_logits=True)
    close(loss, v["expected"][key])
    close(loss, v["expected"]["quoted"][key.replace("_mean", "")], rtol=2e-3)


def test_golden_binary_focal_doc_example_2x2():
    v = golden("keras_binary_focal_ce_doc_example")
    y, x, e = v["inputs"]["y_true_2x2"], v["inputs"]["y_pred_logits_2x2"], v["expected"]
    f = keras.binary_focal_crossentropy
    close(f(y, x, gamma=3, from_logits=True).mean(), e["gamma3_2x2_sum_over_batch_size"])
    close(f(y, x, gamma=3, from_logits=True, apply_class_balancing=True).mean(),
          e["gamma3_2x2_balanced"])
    close(f(y, x, gamma=4, from_logits=True).sum(), e["gamma4_2x2_sum"])
    close(f(y, x, gamma=5, from_logits=True), e["gamma5_2x2_none"])
    close(f(y, x, gamma=5, from_logits=True, apply_class_balancing=True),
          e["gamma5_2x2_none_balanced"])


def test_golden_categorical_focal_doc_example():
    v = golden("keras_categorical_focal_ce_doc_example")
    y, p, e = v["inputs"]["y_true"], v["inputs"]["y_pred"], v["expected"]
    loss = keras.categorical_focal_crossentropy(y, p)
    close(loss, e["per_sample"], rtol=1e-6, atol=0)
    close(loss, e["quoted"]["none"], rtol=1e-6, atol=0)
    close(loss.mean(), e["sum_over_batch_size"])
    close(np.sum(loss * [0.3, 0.7]) / 2, e["quoted"]["sample_weight_[0.3,0.7]"], rtol=1e-3)


def test_golden_focal_extreme_logits():
    v = golden("keras_focal_losses_extreme_logits_saturation")
    c, b, e = v["inputs"]["categorical"], v["inputs"]["binary"], v["expected"]
    close(keras.categorical_focal_crossentropy(c["y_true"], c["logits"], from_logits=True),
          e["keras3_categorical_focal"])
    close(keras.categorical_crossentropy(c["y_true"], c["logits"], from_logits=True),
          e["keras3_categorical_ce_from_logits (stable path)"])
    # TensorFlow backend (followed): the stable cross-entropy; JAX/NumPy: clipped sigmoid
    close(keras.binary_focal_crossentropy(b["y_true"], b["logits"], from_logits=True),
          e["exact_binary_focal"])
    sig = np.float32(1) / (np.float32(1) + np.exp(-np.float32(b["logits"][0])))
    close(keras.binary_focal_crossentropy(b["y_true"], [sig]),
          e["keras3_binary_focal_no_balancing"])


def test_golden_focal_gradient_paper_formula():
    v = golden("focal_loss_gradient_paper_formula_gamma2")
    x = np.array(v["inputs"]["logits"])[:, None]
    y = np.array(v["inputs"]["targets"])[:, None]
    loss, grad = keras.binary_focal_crossentropy(y, x, gamma=2.0, from_logits=True,
                                                 return_grad=True)
    close(loss, v["expected"]["loss"], rtol=1e-9)
    close(grad[:, 0], v["expected"]["grad_logits_analytic"], rtol=1e-8)


@pytest.mark.parametrize("name, balanced", [
    ("torchvision_sigmoid_focal_loss_alpha0.25_gamma2", True),
    ("optax_sigmoid_focal_loss_default_alpha_none", False)])
def test_golden_focal_from_logits_is_the_stable_focal_loss(name, balanced):
    v = golden(name)
    x = np.array(v["inputs"].get("inputs", v["inputs"].get("logits")))[:, None]
    y = np.array(v["inputs"].get("targets", v["inputs"].get("labels")))[:, None]
    loss = keras.binary_focal_crossentropy(y, x, apply_class_balancing=balanced, alpha=0.25,
                                           gamma=2.0, from_logits=True)
    close(loss, v["expected"]["elementwise"], rtol=1e-9, atol=1e-12)


def test_golden_csr_batch_keras_style_means():
    v = golden("csr_multilabel_batch_all_families")
    x = np.array(v["inputs"]["logits"])
    y = np.array(v["expected"]["dense_targets"])
    close(keras.binary_crossentropy(y, x, from_logits=True),
          v["expected"]["ova_bce_per_row_mean_keras_style"], rtol=1e-10)
    close(keras.binary_focal_crossentropy(y, x, apply_class_balancing=True, alpha=0.25,
                                          from_logits=True) * 6,
          v["expected"]["sigmoid_focal_per_row_sum"], rtol=1e-10)


def test_golden_multilabel_soft_margin_is_keras_bce():
    v = golden("torch_multilabel_soft_margin_loss")
    close(keras.binary_crossentropy(v["inputs"]["target"], np.array(v["inputs"]["input"]),
                                    from_logits=True), v["expected"]["per_sample_no_weight"],
          rtol=1e-10)


# ============================================================================================
# gradients: finite differences (float64) and PyTorch autograd
# ============================================================================================

RNG = np.random.default_rng(1234)
SHAPE = (2, 4, 2)          # the class axis is 1 (size 4) or -1 (size 2)


def _case_inputs(kind, axis):
    """(y_true, y_pred) float64 for a loss kind; probabilities kept away from the clip."""
    shape = SHAPE
    c = shape[axis]
    if kind == "binary":
        y = RNG.random(shape)
        y[0] = np.round(y[0])
        return y, RNG.uniform(0.05, 0.95, shape)
    if kind == "categorical":
        y = RNG.random(shape)
        y /= y.sum(axis=axis, keepdims=True)
        return y, RNG.uniform(0.1, 1.0, shape)
    ids = RNG.integers(0, c, np.delete(np.array(shape), axis % len(shape)))
    return ids, RNG.uniform(0.05, 1.0, shape)


GRAD_CASES = [
    # (function, kind, kwargs)
    ("binary_crossentropy", "binary", {}),
    ("binary_crossentropy", "binary", {"label_smoothing": 0.2}),
    ("binary_crossentropy", "binary", {"legacy": True}),
    ("binary_crossentropy", "binary", {"from_logits": True}),
    ("binary_crossentropy", "binary", {"from_logits": True, "label_smoothing": 0.3}),
    ("categorical_crossentropy", "categorical", {}),
    ("categorical_crossentropy", "categorical", {"label_smoothing": 0.1}),
    ("categorical_crossentropy", "categorical", {"from_logits": True}),
    ("categorical_crossentropy", "categorical", {"from_logits": True, "label_smoothing": 0.1}),
    ("sparse_categorical_crossentropy", "sparse", {}),
    ("sparse_categorical_crossentropy", "sparse", {"from_logits": True}),
    ("sparse_categorical_crossentropy", "sparse", {"from_logits": True, "ignore_class": 1}),
    ("sparse_categorical_crossentropy", "sparse", {"ignore_class": 0}),
    ("binary_focal_crossentropy", "binary", {}),
    ("binary_focal_crossentropy", "binary", {"apply_class_balancing": True, "gamma": 3.0}),
    ("binary_focal_crossentropy", "binary", {"from_logits": True, "label_smoothing": 0.1}),
    ("binary_focal_crossentropy", "binary", {"from_logits": True, "apply_class_balancing": True,
                                             "alpha": 0.3, "gamma": 1.5}),
    ("categorical_focal_crossentropy", "categorical", {}),
    ("categorical_focal_crossentropy", "categorical", {"gamma": 0.0, "alpha": 1.0}),
    ("categorical_focal_crossentropy", "categorical", {"from_logits": True, "gamma": 3.0}),
]


def _scale_logits(kwargs, pred):
    return np.log(pred) * 2 if kwargs.get("from_logits") else pred


@pytest.mark.parametrize("axis", [1, -1])
@pytest.mark.parametrize("fn, kind, kwargs", GRAD_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(GRAD_CASES)])
def test_gradient_matches_finite_differences(fn, kind, kwargs, axis):
    f = getattr(keras, fn)
    y, pred = _case_inputs(kind, axis)
    pred = _scale_logits(kwargs, pred)
    loss, grad = f(y, pred, axis=axis, return_grad=True, **kwargs)
    assert grad.shape == pred.shape and grad.dtype == np.float64
    assert loss.shape == tuple(np.delete(np.array(SHAPE), axis % 3))
    close(grad, fd_grad(lambda p: f(y, p, axis=axis, **kwargs), pred), rtol=1e-5, atol=1e-8)
    close(f(y, pred, axis=axis, **kwargs), loss, rtol=1e-14, atol=0)   # same loss without grad


@pytest.mark.parametrize("fn, kind, kwargs", GRAD_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(GRAD_CASES)])
def test_axis_is_the_class_axis_anywhere(fn, kind, kwargs):
    """axis=1 equals moving the classes last (label smoothing aside: Keras uses shape[-1])."""
    kwargs = {k: v for k, v in kwargs.items() if k != "label_smoothing"}
    f = getattr(keras, fn)
    y, pred = _case_inputs(kind, 1)
    pred = _scale_logits(kwargs, pred)
    loss, grad = f(y, pred, axis=1, return_grad=True, **kwargs)
    y_last = y if kind == "sparse" else np.moveaxis(y, 1, -1)
    loss_last, grad_last = f(y_last, np.moveaxis(pred, 1, -1), return_grad=True, **kwargs)
    close(loss, loss_last, rtol=1e-12, atol=1e-15)
    close(grad, np.moveaxis(grad_last, -1, 1), rtol=1e-12, atol=1e-15)
    # axis=0 on a 2-D array is the transpose
    y2, pred2 = _case_inputs(kind, -1)
    y2, pred2 = y2[0], pred2[0]
    pred2 = _scale_logits(kwargs, pred2)
    close(f(y2 if kind == "sparse" else y2.T, pred2.T, axis=0, **kwargs),
          f(y2, pred2, **kwargs), rtol=1e-12)


def test_categorical_smoothing_uses_the_last_axis_like_keras():
    y = np.eye(3)[[0, 2]].T                       # classes on axis 0: shape (3, 2)
    x = RNG.standard_normal((3, 2))
    got = keras.categorical_crossentropy(y, x, from_logits=True, label_smoothing=0.3, axis=0)
    y_keras = y * 0.7 + 0.3 / 2                   # Keras: C = y_true.shape[-1] = 2
    logp = x - np.log(np.exp(x).sum(axis=0))
    close(got, -(y_keras * logp).sum(axis=0), rtol=1e-12)


def test_clip_kills_the_gradient():
    loss, grad = keras.binary_crossentropy([[1, 1, 0, 0]], [[0.5, 1.5, -0.5, 1e-8]],
                                           return_grad=True)
    close(grad, [[-0.5, 0, 0, 0]])
    loss, grad = keras.categorical_crossentropy([[0, 1, 0]], [[0.5, 0.5, 0.0]], return_grad=True)
    assert grad[0, 2] != 0 and np.isfinite(grad).all()   # o_2 = 0 is clipped, its log is not used
    _, grad = keras.categorical_crossentropy([[0, 0, 1]], [[0.5, 0.5, 0.0]], return_grad=True)
    close(grad[0], [0, 0, 0])    # the only log used is clipped: the loss is locally constant
    _, grad = keras.sparse_categorical_crossentropy([2], [[0.5, 0.5, 0.0]], return_grad=True)
    close(grad[0], np.full(3, 1 / (1 + 1e-7)) * [1, 1, 0], rtol=1e-6)



def _torch():
    return pytest.importorskip("torch", reason="PyTorch is not installed")


def _torch_formula(fn, kwargs, y, pred, axis):
    """The Keras 3 formula written in torch ops (float64), for autograd."""
    t = _torch()
    eps = 1e-7
    ls = kwargs.get("label_smoothing", 0.0)
    if fn in ("binary_crossentropy", "binary_focal_crossentropy"):
        y = y * (1 - ls) + 0.5 * ls
        if kwargs.get("from_logits"):
            p = t.sigmoid(pred)
            bce = t.nn.functional.binary_cross_entropy_with_logits(pred, y, reduction="none")
        else:
            p = pred
            o = t.clamp(pred, eps, 1 - eps)
            shift = eps if kwargs.get("legacy") else 0.0
            bce = -(y * t.log(o + shift) + (1 - y) * t.log(1 - o + shift))
        if fn == "binary_focal_crossentropy":
            p_t = y * p + (1 - y) * (1 - p)
            bce = (1 - p_t) ** kwargs.get("gamma", 2.0) * bce
            if kwargs.get("apply_class_balancing"):
                a = kwargs.get("alpha", 0.25)
                bce = (y * a + (1 - y) * (1 - a)) * bce
        return bce.mean(dim=axis)
    if fn in ("categorical_crossentropy", "categorical_focal_crossentropy"):
        y = y * (1 - ls) + ls / y.shape[-1]
        if fn == "categorical_crossentropy" and kwargs.get("from_logits"):
            return -(y * t.log_softmax(pred, dim=axis)).sum(dim=axis)
        p = t.softmax(pred, dim=axis) if kwargs.get("from_logits") else pred
        o = t.clamp(p / p.sum(dim=axis, keepdim=True), eps, 1 - eps)
        if fn == "categorical_crossentropy":
            return -(y * t.log(o)).sum(dim=axis)
        return (kwargs.get("alpha", 0.25) * (1 - o) ** kwargs.get("gamma", 2.0)
                * -y * t.log(o)).sum(dim=axis)
    # sparse: TensorFlow order (clip, log, sparse softmax CE), or log_softmax with logits
    ids = t.as_tensor(y)
    logits = pred if kwargs.get("from_logits") else t.log(t.clamp(pred, eps, 1 - eps))
    logits = t.movedim(logits, axis, -1)
    ignore = kwargs.get("ignore_class")
    safe = ids if ignore is None else t.where(ids == ignore, 0, ids)
    loss = -t.gather(t.log_softmax(logits, dim=-1), -1, safe[..., None])[..., 0]
    return loss if ignore is None else t.where(ids == ignore, 0.0, loss)


@pytest.mark.torch
@pytest.mark.parametrize("axis", [1, -1])
@pytest.mark.parametrize("fn, kind, kwargs", GRAD_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(GRAD_CASES)])
def test_loss_and_gradient_match_torch_autograd(fn, kind, kwargs, axis):
    t = _torch()
    y, pred = _case_inputs(kind, axis)
    pred = _scale_logits(kwargs, pred)
    if kind != "sparse" and not kwargs.get("from_logits"):
        pred = pred.copy()
        pred.flat[::5] = 1.3 if kind == "binary" else pred.flat[::5]   # some clipped values
    loss, grad = getattr(keras, fn)(y, pred, axis=axis, return_grad=True, **kwargs)
    tp = t.tensor(pred, dtype=t.float64, requires_grad=True)
    ty = t.tensor(y) if kind == "sparse" else t.tensor(y, dtype=t.float64)
    t_loss = _torch_formula(fn, kwargs, ty, tp, axis)
    t_loss.sum().backward()
    close(loss, t_loss.detach().numpy(), rtol=1e-10, atol=1e-12)
    close(grad, tp.grad.numpy(), rtol=1e-9, atol=1e-12)


# ============================================================================================
# engine use, dtypes, fallbacks
# ============================================================================================

@pytest.mark.parametrize("fn, engine_name, kwargs", [
    ("binary_crossentropy", "sigmoid_binary_cross_entropy", {}),
    ("binary_focal_crossentropy", "sigmoid_focal_loss", {}),
    ("categorical_crossentropy", "softmax_cross_entropy", {}),
    ("sparse_categorical_crossentropy", "softmax_cross_entropy", {})])
def test_logits_paths_run_on_the_engine(monkeypatch, fn, engine_name, kwargs):
    calls = []
    real = getattr(fastxent, engine_name)

    def spy(*args, **kw):
        calls.append(kw)
        return real(*args, **kw)
    monkeypatch.setattr(fastxent, engine_name, spy)
    x = RNG.standard_normal((5, 3)).astype(np.float32)
    y = RNG.integers(0, 3, 5) if fn.startswith("sparse") else (RNG.random((5, 3)) < .5) * 1.0
    loss, grad = getattr(keras, fn)(y, x, from_logits=True, return_grad=True, **kwargs)
    assert len(calls) == 1 and calls[0]["reduction"] == "none"
    assert loss.dtype == grad.dtype == np.float32 and loss.shape == (5,)


@pytest.mark.parametrize("fn", ["binary_crossentropy", "binary_focal_crossentropy",
                                "categorical_crossentropy"])
def test_targets_outside_0_1_use_the_same_formula(fn):
    """Keras accepts any target values; the engine does not, so NumPy takes over."""
    x = RNG.standard_normal((4, 3))
    y_in = RNG.random((4, 3))
    y_out = y_in.copy()
    y_out[0, 0] = 1.5
    f = getattr(keras, fn)
    kw = {"apply_class_balancing": True} if "focal" in fn else {}
    loss, grad = f(y_out, x, from_logits=True, return_grad=True, **kw)
    close(grad, fd_grad(lambda p: f(y_out, p, from_logits=True, **kw), x), rtol=1e-5, atol=1e-8)
    # rows without the out-of-range value agree with the engine's result
    close(loss[1:], f(y_in, x, from_logits=True, **kw)[1:], rtol=1e-12)


@pytest.mark.parametrize("y, x", [(-0.9, -3.0), (1.5, 2.0), (1.5, -2.0), (-0.5, 1.0)])
def test_focal_targets_outside_0_1_where_1_minus_p_t_is_negative(y, x):
    """Targets outside [0, 1] can make 1 - p_t negative: Keras's formula stays finite there
    (gamma = 2), and so do fastxent's loss and gradient (the exponent came out as
    1.9999999999999998, which made q**g NaN, and the focal factor's derivative was dropped
    where q < 0)."""
    yy, xx = np.array([[y]]), np.array([[x]])
    p = 1 / (1 + np.exp(-x))
    bce = y * np.logaddexp(0, -x) + (1 - y) * np.logaddexp(0, x)
    p_t = y * p + (1 - y) * (1 - p)
    want = (1 - p_t) ** 2 * bce                  # semantics.md 1.2, alpha balancing off
    loss, grad = keras.binary_focal_crossentropy(yy, xx, from_logits=True, return_grad=True)
    close(loss, [want], rtol=1e-12)
    close(grad, fd_grad(lambda q: keras.binary_focal_crossentropy(yy, q, from_logits=True), xx),
          rtol=1e-6, atol=1e-10)


def test_dtypes():
    x64 = RNG.random((2, 3))
    assert keras.binary_crossentropy(np.ones((2, 3)), x64).dtype == np.float64
    assert keras.binary_crossentropy(np.ones((2, 3)), x64.astype(np.float32)).dtype == np.float32
    assert keras.binary_crossentropy([[1, 0]], [[1, 0]]).dtype == np.float32   # ints -> float32
    assert keras.categorical_crossentropy([1, 0], [0.4, 0.6]).shape == ()


def test_single_class_warns_like_keras():
    with pytest.warns(SyntaxWarning, match="num_classes > 1"):
        keras.categorical_crossentropy([[1.0]], [[0.5]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        keras.categorical_crossentropy([[1.0, 0.0]], [[0.5, 0.5]])


def test_sparse_squeezes_a_trailing_unit_axis_and_accepts_whole_float_ids():
    p = RNG.random((4, 3))
    a = keras.sparse_categorical_crossentropy(np.array([[0], [2], [1], [1]]), p)
    b = keras.sparse_categorical_crossentropy(np.array([0.0, 2.0, 1.0, 1.0]), p)
    close(a, b, rtol=0)
    assert a.shape == (4,)


def test_empty_batch():
    loss, grad = keras.categorical_crossentropy(np.zeros((0, 3)), np.zeros((0, 3)),
                                                from_logits=True, return_grad=True)
    assert loss.shape == (0,) and grad.shape == (0, 3)
    loss = keras.sparse_categorical_crossentropy(np.zeros(0, int), np.zeros((0, 3)),
                                                 from_logits=True)
    assert loss.shape == (0,)
    assert keras.binary_crossentropy(np.zeros((0, 3)), np.zeros((0, 3)),
                                     from_logits=True).shape == (0,)


# ============================================================================================
# bad input
# ============================================================================================

@pytest.mark.parametrize("call, exc, match", [
    (lambda: keras.binary_crossentropy([[1, 0]], [[0.5, 0.5, 0.5]]), ValueError, "y_true"),
    (lambda: keras.categorical_crossentropy([1, 0], [[0.5, 0.5]]), ValueError, "same shape"),
    (lambda: keras.categorical_crossentropy([1, 0], [0.5, 0.5], axis=1), ValueError, "axis=1"),
    (lambda: keras.categorical_crossentropy([1, 0], [0.5, 0.5], axis=True), TypeError, "axis"),
    (lambda: keras.binary_crossentropy([1, 0], [0.5, 0.5], axis=1.0), TypeError, "axis"),
    (lambda: keras.binary_crossentropy(1.0, 0.5), ValueError, "at least 1-D"),
    (lambda: keras.binary_crossentropy([1], ["a"]), TypeError, "y_pred"),
    (lambda: keras.binary_crossentropy(["a"], [0.5]), TypeError, "y_true"),
    (lambda: keras.binary_crossentropy([1], [0.5], label_smoothing=1.5), ValueError,
     "label_smoothing"),
    (lambda: keras.binary_crossentropy([1], [0.5], from_logits="yes"), TypeError, "from_logits"),
    (lambda: keras.sparse_categorical_crossentropy([3], [[0.5, 0.5, 0.0]]), ValueError,
     r"y_true\[0\] = 3 is not a class id in \[0, 3\)"),
    (lambda: keras.sparse_categorical_crossentropy([-1], [[0.5, 0.5]], from_logits=True),
     ValueError, "y_true"),
    (lambda: keras.sparse_categorical_crossentropy([0.5], [[0.5, 0.5]]), ValueError,
     "whole class ids"),
    (lambda: keras.sparse_categorical_crossentropy([0, 1], [[0.5, 0.5]]), ValueError,
     "one class id per sample"),
    (lambda: keras.sparse_categorical_crossentropy([0], [[0.5, 0.5]], ignore_class=0.5),
     TypeError, "ignore_class"),
    (lambda: keras.binary_focal_crossentropy([1], [0.5], gamma=-1), ValueError, "gamma"),
    (lambda: keras.binary_focal_crossentropy([1], [0.5], alpha="x"), TypeError, "alpha"),
    (lambda: keras.binary_focal_crossentropy([1], [0.5], alpha=1.5), ValueError, "alpha"),
    (lambda: keras.categorical_focal_crossentropy([[1, 0]], [[0.5, 0.5]], alpha=[1, 2, 3]),
     ValueError, "alpha"),
    (lambda: keras.binary_focal_crossentropy([1], [0.5], apply_class_balancing=1), TypeError,
     "apply_class_balancing"),
])
def test_bad_input_raises_naming_the_argument(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
