"""Tests of the float64 NumPy oracle ``fastxent.reference`` itself.

(a) golden vectors (``../shared/reference/golden_vectors.json``, embedded below as ``GOLDEN``
    so the suite is self-contained; ``test_embedded_golden_vectors_match_shared_json`` checks the
    copy against the shared file when it is present). Every one of the 42 vectors is either used
    here or listed in ``LEFT_OUT`` with the reason.
(b) analytic gradients against 4th-order central finite differences of the reference loss, for
    every family, target form, option and reduction.
(c) identities between the losses, target forms, shift invariance and extreme logits.

The sparse targets are built with ``types.SimpleNamespace`` (the attributes of
``fastxent.targets.MultiLabel``) or scipy.sparse; ``fastxent.targets`` is not imported on purpose.
"""

import json
import os
import types
import zlib

import numpy as np
import pytest
import scipy.sparse as sp

from fastxent import reference as R

# the project's shared reference folder sits beside the repository (../shared), in CI too
GOLDEN_JSON = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "shared", "reference", "golden_vectors.json")
REDUCTIONS = ("none", "sum", "mean", "batchmean")


# ============================================================================================
# helpers
# ============================================================================================

def assert_close(actual, expected, rtol=1e-6, atol=0.0):
    """rtol 1e-6 against the float64 golden values (never the float32 quoted ones)."""
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64),
                               np.asarray(expected, dtype=np.float64), rtol=rtol, atol=atol)


def ns_sparse(indptr, indices, n_classes, values=None):
    """A stand-in for fastxent.targets.MultiLabel (same attributes)."""
    indptr = np.asarray(indptr, dtype=np.int64)
    return types.SimpleNamespace(
        indptr=indptr,
        indices=np.asarray(indices, dtype=np.int64),
        values=None if values is None else np.asarray(values, dtype=np.float64),
        n_classes=int(n_classes),
        n_rows=int(indptr.size - 1),
    )


def dense_to_sparse(y, form, with_values=True):
    """Sparse target (``"sparse"``: namespace, ``"scipy"``: csr_matrix) holding the non-zeros
    of the dense array ``y``; without values the non-zeros must all be 1."""
    y = np.asarray(y, dtype=np.float64)
    csr = sp.csr_matrix(y)
    csr.sort_indices()
    if not with_values:
        assert np.all(csr.data == 1.0)
    if form == "scipy":
        return csr
    return ns_sparse(csr.indptr, csr.indices, y.shape[1],
                     csr.data.copy() if with_values else None)


def golden(name):
    return GOLDEN[name]


def fd_gradient(loss_of_x, x, h=1e-3):
    """4th-order central finite differences of sum(loss_of_x(x)), one logit at a time."""
    x = np.asarray(x, dtype=np.float64)
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        f = []
        for k in (2.0, 1.0, -1.0, -2.0):
            xp = x.copy()
            xp[idx] += k * h
            f.append(float(np.sum(loss_of_x(xp))))
        g[idx] = (-f[0] + 8.0 * f[1] - 8.0 * f[2] + f[3]) / (12.0 * h)
    return g


# ============================================================================================
# (a) golden vectors
# ============================================================================================

# Vectors NOT expressible in our API, and why (each name is checked against the JSON below).
LEFT_OUT = {
    "keras3_bce_saturated_probabilities_test_value":
        "Keras BCE on probabilities equal to 0/1, clipped to [1e-7, 1-2^-23] in float32: the "
        "clip is a Keras artefact; our API takes logits and saturating inputs give exact values",
    "keras_bce_predictions_outside_0_1_are_clipped":
        "probabilities outside [0, 1] have no logit; only Keras's clip gives them a meaning",
    "zlpr_multilabel_categorical_crossentropy":
        "ZLPR (multilabel categorical CE with a threshold class) is not one of our losses",
    "zlpr_sparse_bert4keras_equivalence":
        "ZLPR (bert4keras sparse form) is not one of our losses",
    "xmc_metrics_precision_ndcg_at_k_toy":
        "P@k / nDCG@k are metrics, not losses",
}
# Parts of used vectors that are left out (the rest of the vector is tested):
# * every *_quoted* / float32 key: float32 artefacts of the quoting framework; we compare with
#   the float64 values (only Keras's 4-digit quoted sample-weight results, which have no float64
#   key, are compared with rtol 1e-3).
# * keras_bce_probability_y1_p0.1_keras3_vs_tfkeras2: "keras3" (float32 -log(float32(0.1))) and
#   "tf_keras_2_legacy" (log(p + 1e-7)); only "exact" is ours.
# * sigmoid_bce_extreme_logits_pm1000: "keras3_numpy_backend_elementwise_float32" (sigmoid then
#   clip saturates at 15.94/16.12; we are exact).
# * keras_focal_losses_extreme_logits_saturation: the keras3_* saturated values (Keras focal
#   goes through clipped probabilities); the exact values and the stable CE are tested.
# * asl_reference_*: "grad_logits_focal_weight_detached": AsymmetricLoss's default detaches the
#   focal weight; our gradient is the exact derivative (docs/losses.md), which is
#   "grad_logits_full". ASL also clamps log(p) at log(1e-8): for a positive with x < -18.42 ASL's
#   loss saturates at 18.42 (zero gradient) while ours is the exact softplus(-x); the vectors'
#   logits (>= -3, and 1 - p_m >= clip = 0.05) never reach the clamp, so they agree exactly.
# * optax_poly_loss_cross_entropy_eps2: Poly-1 is not ours; its "cross_entropy" part is tested.
# * csr_multilabel_batch_all_families: "zlpr_per_row" (not ours); row 1 of PAL-N is "undefined"
#   in the JSON and our policy (not counted: loss 0, excluded from the mean) is tested instead.
# * integer_label_out_of_range_behaviours: out-of-range labels are rejected by the caller's
#   validation (the reference assumes validated input); only "-100 is the default ignore_index
#   -> 0.0" is ours.
# * torch_cross_entropy_all_targets_ignored: torch's "mean" is NaN, ours is 0.0 (policy); the
#   Keras value (0.0) agrees with ours.


def test_every_golden_vector_is_used_or_left_out_with_a_reason():
    assert not set(GOLDEN) & set(LEFT_OUT)
    assert len(GOLDEN) + len(LEFT_OUT) == 42
    for reason in LEFT_OUT.values():
        assert len(reason) > 20


def test_embedded_golden_vectors_match_shared_json():
    if not os.path.exists(GOLDEN_JSON):
        pytest.skip(f"{GOLDEN_JSON} not present: only the embedded copy is used")
    with open(GOLDEN_JSON) as fh:
        vectors = {v["name"]: v for v in json.load(fh)}
    assert set(vectors) == set(GOLDEN) | set(LEFT_OUT)
    for name, vec in GOLDEN.items():
        for key in ("parameters", "inputs", "expected"):
            assert vec[key] == vectors[name][key], (name, key)


# ---------------------------------------------------------------------- softmax CE ---------

def test_golden_tf_sparse_softmax_ce_doc_example():
    v = golden("tf_sparse_softmax_ce_doc_example")
    x = np.array(v["inputs"]["logits"])
    t = np.array(v["inputs"]["labels"])
    loss, grad = R.softmax_cross_entropy(x, t, reduction="none", return_grad=True)
    # row 3: the exact loss is log1p(3 exp(-200)) = 4.15e-87, which the reference keeps (it
    # computes -log p_t as log1p(sum of the other exp(x_c - max))); the JSON's 0.0 is the
    # same value rounded at the scale of the logits (lse - x_t = 100 - 100)
    assert_close(loss, v["expected"]["per_sample"], atol=1e-80)
    assert loss[2] == pytest.approx(3 * np.exp(-200.0), rel=1e-14)
    # exp(-200) = 1.38e-87 in the gradient must come out exactly, not as 0; likewise the
    # target's p_t - 1 = -(1 - p_t) = -3 exp(-200) (the JSON has 0.0: p_t - 1 rounded)
    exp_grad = np.array(v["expected"]["grad_logits_reduction_none_sum_of_outputs"])
    assert exp_grad[2, 1] == 0.0
    exp_grad[2, 1] = -3 * np.exp(-200.0)
    assert_close(grad, exp_grad)


def test_golden_tf_softmax_ce_soft_labels_doc_example():
    v = golden("tf_softmax_ce_soft_labels_doc_example")
    x = np.array(v["inputs"]["logits"])
    y = np.array(v["inputs"]["labels"])
    for targets in (y, dense_to_sparse(y, "sparse"), dense_to_sparse(y, "scipy")):
        # each row sums to 1, so the sparse form (y / sum y) is the same distribution
        loss, grad = R.softmax_cross_entropy(x, targets, reduction="none", return_grad=True)
        assert_close(loss, v["expected"]["per_sample"])
        assert_close(grad, v["expected"]["grad_logits"])


def test_golden_optax_softmax_ce_doc_example():
    v = golden("optax_softmax_ce_doc_example")
    x = np.array(v["inputs"]["logits"])
    onehot = np.array(v["inputs"]["labels_onehot"])
    for targets in (onehot, np.array(v["inputs"]["labels_int"]),
                    dense_to_sparse(onehot, "sparse", with_values=False)):
        loss, grad = R.softmax_cross_entropy(x, targets, reduction="none", return_grad=True)
        assert_close(loss, v["expected"]["per_sample"])
        assert_close(grad, v["expected"]["grad_logits"])
        assert_close(R.softmax_cross_entropy(x, targets), v["expected"]["mean"])
        assert_close(R.softmax_cross_entropy(x, targets, reduction="batchmean"),
                     v["expected"]["mean"])


def test_golden_optax_poly_loss_cross_entropy_part():
    v = golden("optax_poly_loss_cross_entropy_eps2")
    x = np.array(v["inputs"]["logits"])
    y = np.array(v["inputs"]["labels"])
    assert_close(R.softmax_cross_entropy(x, y, reduction="none"),
                 v["expected"]["cross_entropy"])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_golden_softmax_ce_extreme_logits_pm1000(dtype):
    v = golden("softmax_ce_extreme_logits_pm1000")
    x = np.array(v["inputs"]["logits"], dtype=dtype)
    t = np.array(v["inputs"]["labels"])
    loss, grad = R.softmax_cross_entropy(x, t, reduction="none", return_grad=True)
    assert loss.dtype == np.float64 and grad.dtype == np.float64
    assert_close(loss, v["expected"]["per_sample"])
    assert_close(grad, v["expected"]["grad_logits"])


def _log_probs(p, zero_logit=-1e4):
    """Logits whose softmax is p / sum(p) (Keras renormalises probability inputs first); a zero
    probability gets the logit -1e4 (exp underflows to exactly 0 against O(1) logits)."""
    p = np.asarray(p, dtype=np.float64)
    return np.where(p > 0, np.log(np.where(p > 0, p, 1.0)), zero_logit)


def test_golden_keras_categorical_ce_probabilities_via_log_probabilities():
    # Keras's probability-input CE renormalises p, then clips it to [1e-7, 1 - 1e-7]. When the
    # clip is not active on the target classes this is exactly our CE on logits log(p).
    v = golden("keras_categorical_ce_probability_renormalisation")
    x = _log_probs([v["inputs"]["y_pred"]])
    y = np.array([v["inputs"]["y_true"]], dtype=np.float64)
    # "per_sample" is Keras's float32 result; "per_sample_float64" is log(11)
    assert_close(R.softmax_cross_entropy(x, y, reduction="none"),
                 [v["expected"]["per_sample_float64"]])
    for name in ("keras_categorical_ce_renormalisation_equivalence_probs",
                 "keras_categorical_ce_renormalisation_equivalence_unnormalised_scores"):
        v = golden(name)
        x = _log_probs([v["inputs"]["y_pred"]])
        y = np.array([v["inputs"]["y_true"]], dtype=np.float64)
        assert_close(R.softmax_cross_entropy(x, y, reduction="none"),
                     [v["expected"]["per_sample"]])


def test_golden_keras_categorical_ce_class_doc_example():
    v = golden("keras_categorical_ce_class_doc_example")
    x = _log_probs(v["inputs"]["y_pred"])       # row 0 has p = 0 for a non-target class
    y = np.array(v["inputs"]["y_true"])
    exp = v["expected"]
    for targets in (y, np.argmax(y, axis=1)):
        assert_close(R.softmax_cross_entropy(x, targets, reduction="none"), exp["per_sample"])
        assert_close(R.softmax_cross_entropy(x, targets, reduction="sum"), exp["sum"])
        assert_close(R.softmax_cross_entropy(x, targets, reduction="mean"),
                     exp["sum_over_batch_size"])
        # Keras: sum(sw * loss) / N (not / sum(sw)) = our "batchmean" with sample_weight
        sw = np.array(v["parameters"]["sample_weight"])
        assert_close(R.softmax_cross_entropy(x, targets, sample_weight=sw,
                                             reduction="batchmean"),
                     exp["sum_over_batch_size_with_sample_weight"])


def test_golden_torch_cross_entropy_weight_ignore_index_mean():
    v = golden("torch_cross_entropy_weight_ignore_index_mean")
    x = np.array(v["inputs"]["input"])
    t = np.array(v["inputs"]["target"])
    w = np.array(v["parameters"]["weight"])
    kw = dict(class_weight=w, ignore_index=v["parameters"]["ignore_index"])
    assert_close(R.softmax_cross_entropy(x, t, reduction="none", **kw), v["expected"]["none"])
    assert_close(R.softmax_cross_entropy(x, t, reduction="sum", **kw), v["expected"]["sum"])
    assert_close(R.softmax_cross_entropy(x, t, reduction="mean", **kw), v["expected"]["mean"])
    # the mean denominator is sum of w[t_n] over non-ignored rows (= 4), not N
    assert_close(R.softmax_cross_entropy(x, t, reduction="sum", **kw)
                 / R.softmax_cross_entropy(x, t, reduction="mean", **kw),
                 v["expected"]["mean_denominator"])


def test_golden_torch_cross_entropy_all_targets_ignored():
    v = golden("torch_cross_entropy_all_targets_ignored")
    x = np.array(v["inputs"]["input"])
    t = np.array(v["inputs"]["target"])
    loss, grad = R.softmax_cross_entropy(x, t, reduction="none", return_grad=True)
    assert_close(loss, v["expected"]["none"])
    assert not grad.any()
    assert R.softmax_cross_entropy(x, t, reduction="sum") == v["expected"]["sum"] == 0.0
    assert v["expected"]["mean"] == "nan"          # PyTorch; our policy is 0.0
    loss, grad = R.softmax_cross_entropy(x, t, reduction="mean", return_grad=True)
    assert loss == 0.0 and isinstance(loss, float)
    assert not grad.any()
    keras_key = "keras_sparse_categorical_crossentropy_ignore_class_sum_over_batch_size"
    assert loss == v["expected"][keras_key]


def test_golden_torch_cross_entropy_label_smoothing_class_index():
    v = golden("torch_cross_entropy_label_smoothing_class_index")
    x = np.array(v["inputs"]["input"])
    t = np.array(v["inputs"]["target"])
    eps = v["parameters"]["label_smoothing"]
    loss, grad = R.softmax_cross_entropy(x, t, label_smoothing=eps, return_grad=True)
    assert_close(loss, v["expected"]["loss"])
    assert_close(grad, [v["expected"]["grad_logits"]])
    # the equivalent dense target, without smoothing
    dense = np.array([v["expected"]["equivalent_dense_target"]])
    loss, grad = R.softmax_cross_entropy(x, dense, return_grad=True)
    assert_close(loss, v["expected"]["loss"])
    assert_close(grad, [v["expected"]["grad_logits"]])


def test_golden_torch_cross_entropy_label_smoothing_weight_ignore():
    v = golden("torch_cross_entropy_label_smoothing_weight_ignore")
    p = v["parameters"]
    loss = R.softmax_cross_entropy(np.array(v["inputs"]["input"]), np.array(v["inputs"]["target"]),
                                   class_weight=p["weight"], ignore_index=p["ignore_index"],
                                   label_smoothing=p["label_smoothing"], reduction=p["reduction"])
    assert_close(loss, v["expected"]["mean"])


def test_golden_torch_cross_entropy_probability_targets_weight():
    v = golden("torch_cross_entropy_probability_targets_weight")
    x = np.array(v["inputs"]["input"])
    y = np.array(v["inputs"]["target"])
    w = v["parameters"]["weight"]
    assert_close(R.softmax_cross_entropy(x, y, class_weight=w, reduction="none"),
                 v["expected"]["none"])
    # dense targets: "mean" divides by N, not by the weights
    assert_close(R.softmax_cross_entropy(x, y, class_weight=w, reduction="mean"),
                 v["expected"]["mean"])


def test_golden_keras_categorical_ce_from_logits_label_smoothing():
    v = golden("keras_categorical_ce_from_logits_label_smoothing")
    x = np.array(v["inputs"]["y_pred_logits"])
    y = np.array(v["inputs"]["y_true"])
    eps = v["parameters"]["label_smoothing"]
    for targets in (y, np.array([2]), dense_to_sparse(y, "sparse", with_values=False)):
        loss, grad = R.softmax_cross_entropy(x, targets, label_smoothing=eps, reduction="none",
                                             return_grad=True)
        assert_close(loss, v["expected"]["per_sample"])
        assert_close(grad, v["expected"]["grad_logits"])
    smoothed = np.array(v["expected"]["smoothed_targets"])
    assert_close(R.softmax_cross_entropy(x, smoothed, reduction="none"),
                 v["expected"]["per_sample"])


def test_golden_keras_sparse_ce_ignore_class_test():
    v = golden("keras_sparse_ce_ignore_class_test")
    x = np.array(v["inputs"]["y_pred_logits"]).reshape(-1, 3)      # [1, 2, 3] -> [2, 3]
    t = np.array(v["inputs"]["y_true"]).reshape(-1)
    ign = v["parameters"]["ignore_class"]
    assert_close(R.softmax_cross_entropy(x, t, ignore_index=ign, reduction="none"),
                 np.array(v["expected"]["none"]).reshape(-1))
    # masked mean: / number of non-ignored rows
    assert_close(R.softmax_cross_entropy(x, t, ignore_index=ign, reduction="mean"),
                 v["expected"]["sum_over_batch_size"])


def test_golden_integer_label_minus_100_is_ignored_by_default():
    v = golden("integer_label_out_of_range_behaviours")
    x = np.array(v["inputs"]["logits"])
    assert -100 in v["inputs"]["labels_tried"]
    assert "-100 is the default ignore_index -> 0.0" in v["expected"]["torch_F.cross_entropy"]
    loss, grad = R.softmax_cross_entropy(x, np.array([-100]), reduction="none", return_grad=True)
    assert_close(loss, [0.0])
    assert not grad.any()


def test_golden_multilabel_softmax_PAL_N():
    v = golden("multilabel_softmax_normalised_PAL_N")
    x = np.array([v["inputs"]["logits"]])
    pos = v["inputs"]["positive_indices"]
    c = x.shape[1]
    target = ns_sparse([0, len(pos)], pos, c)
    loss, grad = R.softmax_cross_entropy(x, target, reduction="sum", return_grad=True)
    assert_close(loss, v["expected"]["loss_PAL_N"])
    assert_close(grad, [v["expected"]["grad_PAL_N"]])
    # PAL (sum over positives) = dense 0/1 target, which need not sum to 1
    y = np.zeros((1, c))
    y[0, pos] = 1.0
    loss, grad = R.softmax_cross_entropy(x, y, reduction="sum", return_grad=True)
    assert_close(loss, v["expected"]["loss_PAL_unnormalised_sum_over_positives"])
    assert_close(grad, [v["expected"]["grad_PAL"]])
    # empty positive row: our policy is "skip" (loss 0, excluded from the mean denominator)
    assert v["expected"]["empty_positive_row"].startswith("undefined")
    two = ns_sparse([0, len(pos), len(pos)], pos, c)
    xx = np.vstack([x, x])
    loss, grad = R.softmax_cross_entropy(xx, two, reduction="none", return_grad=True)
    assert_close(loss, [v["expected"]["loss_PAL_N"], 0.0])
    assert not grad[1].any()
    assert_close(R.softmax_cross_entropy(xx, two, reduction="mean"), v["expected"]["loss_PAL_N"])


# ---------------------------------------------------------------------- sigmoid BCE --------

def _elementwise_bce(x, y, **kw):
    """Elementwise BCE through the row API: shape [K, 1] makes every element its own row."""
    x = np.asarray(x, dtype=np.float64).reshape(-1, 1)
    y = np.asarray(y, dtype=np.float64).reshape(-1, 1)
    return R.sigmoid_binary_cross_entropy(x, y, reduction="none", **kw)


@pytest.mark.parametrize("name", ["tf_sigmoid_ce_doc_example", "sigmoid_bce_extreme_logits_pm1000"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_golden_sigmoid_bce_elementwise(name, dtype):
    v = golden(name)
    x = np.array(v["inputs"]["logits"], dtype=dtype)
    y = np.array(v["inputs"]["labels"])
    assert_close(_elementwise_bce(x, y), v["expected"]["elementwise"])
    # one row of K classes: the row loss is the SUM of the elementwise losses
    loss, grad = R.sigmoid_binary_cross_entropy(x[None, :], y[None, :], reduction="none",
                                                return_grad=True)
    assert_close(loss, [np.sum(v["expected"]["elementwise"])])
    assert_close(grad, [v["expected"]["grad_logits"]])


def test_golden_keras_bce_from_logits_doc_example():
    v = golden("keras_bce_from_logits_doc_example")
    x = np.array(v["inputs"]["y_pred_logits"])
    y = np.array(v["inputs"]["y_true"])
    c = x.shape[1]
    exp = v["expected"]
    assert_close(_elementwise_bce(x, y), np.ravel(exp["elementwise"]))
    # Keras's per-sample value is the MEAN over classes = our row loss / C
    assert_close(R.sigmoid_binary_cross_entropy(x, y, reduction="none") / c,
                 exp["per_sample(mean over axis -1)"])
    assert_close(R.sigmoid_binary_cross_entropy(x, y, reduction="mean"), exp["sum_over_batch_size"])
    assert_close(R.sigmoid_binary_cross_entropy(x, y, reduction="sum") / c, exp["sum"])
    # Keras: sum_n sw_n mean_c(l) / N = our "mean" (/ N C) with sample_weight
    sw = v["parameters"]["sample_weight"]
    assert_close(R.sigmoid_binary_cross_entropy(x, y, sample_weight=sw, reduction="mean"),
                 exp["sum_over_batch_size_with_sample_weight"])


def test_golden_keras_bce_label_smoothing_test():
    v = golden("keras_bce_label_smoothing_test")
    x = np.array(v["inputs"]["y_pred_logits"])
    y = np.array(v["inputs"]["y_true"])
    eps = v["parameters"]["label_smoothing"]
    assert_close(_elementwise_bce(x, y, label_smoothing=eps),
                 np.ravel(v["expected"]["elementwise"]))
    assert_close(R.sigmoid_binary_cross_entropy(x, y, label_smoothing=eps, reduction="none")
                 / x.shape[1], v["expected"]["per_sample"])
    # the smoothed targets without smoothing give the same
    assert_close(R.sigmoid_binary_cross_entropy(x, np.array(v["expected"]["smoothed_targets"]),
                                                reduction="none") / x.shape[1],
                 v["expected"]["per_sample"])
    # sparse form: smoothing also applies to the implicit zeros
    assert_close(R.sigmoid_binary_cross_entropy(x, dense_to_sparse(y, "sparse", False),
                                                label_smoothing=eps, reduction="none")
                 / x.shape[1], v["expected"]["per_sample"])


def test_golden_keras_bce_from_logits_test_unweighted():
    v = golden("keras_bce_from_logits_test_unweighted")
    x = np.array(v["inputs"]["y_pred_logits"])
    y = np.array(v["inputs"]["y_true"])
    c = x.shape[1]
    exp = v["expected"]
    rows = R.sigmoid_binary_cross_entropy(x, y, reduction="none") / c
    assert_close(rows, exp["per_sample"])
    assert_close(R.sigmoid_binary_cross_entropy(x, y), exp["sum_over_batch_size"])
    # Keras sample_weight results are only quoted to 4-5 digits: rtol 1e-3
    assert_close(R.sigmoid_binary_cross_entropy(x, y, sample_weight=[4.0, 3.0]),
                 exp["quoted_sample_weight_[4,3]"], rtol=1e-3)
    assert_close(R.sigmoid_binary_cross_entropy(x, y, sample_weight=[4.0, 3.0]),
                 (4.0 * exp["per_sample"][0] + 3.0 * exp["per_sample"][1]) / 2)
    assert_close(R.sigmoid_binary_cross_entropy(x, y, sample_weight=[2.3, 2.3]),
                 exp["quoted_scalar_weight_2.3"], rtol=1e-3)


@pytest.mark.parametrize("name", ["tf_weighted_ce_pos_weight_1.5_doc_example",
                                  "tf_weighted_ce_pos_weight_0.5_doc_example"])
def test_golden_tf_weighted_ce_pos_weight(name):
    v = golden(name)
    x = np.array(v["inputs"]["logits"])
    y = np.array(v["inputs"]["labels"])
    q = v["parameters"]["pos_weight"]
    # "elementwise_exact" (the float32 quoted 3rd value is a cancellation artefact of TF)
    assert_close(_elementwise_bce(x, y, pos_weight=q), v["expected"]["elementwise_exact"])
    loss, grad = R.sigmoid_binary_cross_entropy(x[None, :], y[None, :], pos_weight=q,
                                                reduction="sum", return_grad=True)
    assert_close(loss, np.sum(v["expected"]["elementwise_exact"]))
    assert_close(grad, [v["expected"]["grad_logits"]])
    # pos_weight as an array [C] is the same
    loss = R.sigmoid_binary_cross_entropy(x[None, :], y[None, :], pos_weight=np.full(3, q),
                                          reduction="sum")
    assert_close(loss, np.sum(v["expected"]["elementwise_exact"]))


def test_golden_torch_bce_with_logits_pos_weight_broadcast_last_dim():
    v = golden("torch_bce_with_logits_pos_weight_broadcast_last_dim")
    x = np.array(v["inputs"]["input"])
    y = np.array(v["inputs"]["target"])
    q = np.array(v["parameters"]["pos_weight"])
    exp = v["expected"]
    for c in range(x.shape[1]):       # column c alone, with its own pos_weight
        assert_close(R.sigmoid_binary_cross_entropy(x[:, [c]], y[:, [c]], pos_weight=q[[c]],
                                                    reduction="none"),
                     np.array(exp["elementwise"])[:, c])
    assert_close(R.sigmoid_binary_cross_entropy(x, y, pos_weight=q, reduction="none"),
                 np.sum(exp["elementwise"], axis=1))
    assert_close(R.sigmoid_binary_cross_entropy(x, y, pos_weight=q, reduction="sum"), exp["sum"])
    loss, grad = R.sigmoid_binary_cross_entropy(x, y, pos_weight=q, return_grad=True)
    assert_close(loss, exp["mean"])
    assert_close(grad, exp["grad_logits_reduction_mean"])
    # the documentation example: target ones(10, 64), logits 1.5, pos_weight ones(64)
    loss = R.sigmoid_binary_cross_entropy(np.full((10, 64), 1.5), np.ones((10, 64)),
                                          pos_weight=np.ones(64))
    assert_close(loss, exp["doc_example_all_ones_target_pos_weight_ones"])


def test_golden_torch_multilabel_soft_margin_loss():
    v = golden("torch_multilabel_soft_margin_loss")
    x = np.array(v["inputs"]["input"])
    y = np.array(v["inputs"]["target"])
    c = x.shape[1]
    assert v["parameters"]["weight"][0] is None
    assert_close(R.sigmoid_binary_cross_entropy(x, y, reduction="none") / c,
                 v["expected"]["per_sample_no_weight"])
    w = v["parameters"]["weight"][1]
    assert_close(R.sigmoid_binary_cross_entropy(x, y, class_weight=w, reduction="none") / c,
                 v["expected"]["per_sample_weight"])
    # torch 'mean' (average over N of the per-sample values) = our 'mean' (/ N C)
    assert_close(R.sigmoid_binary_cross_entropy(x, y, class_weight=w, reduction="mean"),
                 np.mean(v["expected"]["per_sample_weight"]))


def test_golden_keras_bce_probability_exact_value():
    # only the "exact" key is ours: probability 0.1 is the logit log(0.1 / 0.9)
    v = golden("keras_bce_probability_y1_p0.1_keras3_vs_tfkeras2")
    p = v["inputs"]["y_pred"][0]
    x = np.array([[np.log(p / (1.0 - p))]])
    y = np.array([v["inputs"]["y_true"]], dtype=np.float64)
    assert_close(R.sigmoid_binary_cross_entropy(x, y), v["expected"]["exact"])


# ---------------------------------------------------------------------- focal losses -------

def _elementwise_sigmoid_focal(x, y, **kw):
    x = np.asarray(x, dtype=np.float64).reshape(-1, 1)
    y = np.asarray(y, dtype=np.float64).reshape(-1, 1)
    return R.sigmoid_focal_loss(x, y, reduction="none", **kw)


def test_golden_torchvision_sigmoid_focal_loss():
    v = golden("torchvision_sigmoid_focal_loss_alpha0.25_gamma2")
    x = np.array(v["inputs"]["inputs"])
    y = np.array(v["inputs"]["targets"])
    kw = dict(alpha=v["parameters"]["alpha"], gamma=v["parameters"]["gamma"])
    exp = v["expected"]
    assert_close(_elementwise_sigmoid_focal(x, y, **kw), exp["elementwise"])
    for shape in ((1, -1), (-1, 1)):
        xs, ys = x.reshape(shape), y.reshape(shape)
        assert_close(R.sigmoid_focal_loss(xs, ys, reduction="mean", **kw), exp["mean"])
        loss, grad = R.sigmoid_focal_loss(xs, ys, reduction="sum", return_grad=True, **kw)
        assert_close(loss, exp["sum"])
        assert_close(grad.ravel(), exp["grad_logits_reduction_sum_analytic"])
        assert_close(grad.ravel()[:4], exp["grad_logits_first4_reduction_sum_numeric"])


def test_golden_optax_sigmoid_focal_loss_default_alpha_none():
    v = golden("optax_sigmoid_focal_loss_default_alpha_none")
    x = np.array(v["inputs"]["logits"])
    y = np.array(v["inputs"]["labels"])
    assert v["parameters"]["alpha"] is None
    for alpha in (None, -1.0):   # torchvision's alpha = -1 also disables the weighting
        assert_close(_elementwise_sigmoid_focal(x, y, alpha=alpha, gamma=2.0),
                     v["expected"]["elementwise"])


def test_golden_focal_loss_gradient_paper_formula():
    v = golden("focal_loss_gradient_paper_formula_gamma2")
    x = np.array(v["inputs"]["logits"])
    y = np.array(v["inputs"]["targets"])
    assert_close(_elementwise_sigmoid_focal(x, y, alpha=None, gamma=2.0), v["expected"]["loss"])
    loss, grad = R.sigmoid_focal_loss(x[None, :], y[None, :], alpha=None, gamma=2.0,
                                      reduction="sum", return_grad=True)
    assert_close(grad, [v["expected"]["grad_logits_analytic"]])
    assert_close(grad, [v["expected"]["grad_logits_numeric"]])


def test_golden_keras_binary_focal_ce_doc_example():
    # Keras's binary focal loss goes through clipped probabilities; on this input the clip
    # binds only on the x = -18.6, y = 0 element, whose loss is ~1e-24: the values are ours.
    v = golden("keras_binary_focal_ce_doc_example")
    exp = v["expected"]
    alpha = v["parameters"]["alpha"]
    x = np.array([v["inputs"]["y_pred_logits"]])
    y = np.array([v["inputs"]["y_true"]])
    # per-sample value = mean over the class axis = our "mean" on one row
    assert_close(R.sigmoid_focal_loss(x, y, gamma=2, alpha=None), exp["gamma2_mean"])
    assert_close(R.sigmoid_focal_loss(x, y, gamma=2, alpha=alpha), exp["gamma2_balanced_mean"])
    x2 = np.array(v["inputs"]["y_pred_logits_2x2"])
    y2 = np.array(v["inputs"]["y_true_2x2"])
    c = x2.shape[1]
    assert_close(R.sigmoid_focal_loss(x2, y2, gamma=3, alpha=None),
                 exp["gamma3_2x2_sum_over_batch_size"])
    assert_close(R.sigmoid_focal_loss(x2, y2, gamma=3, alpha=alpha), exp["gamma3_2x2_balanced"])
    assert_close(R.sigmoid_focal_loss(x2, y2, gamma=4, alpha=None, reduction="sum") / c,
                 exp["gamma4_2x2_sum"])
    assert_close(R.sigmoid_focal_loss(x2, y2, gamma=5, alpha=None, reduction="none") / c,
                 exp["gamma5_2x2_none"])
    assert_close(R.sigmoid_focal_loss(x2, y2, gamma=5, alpha=alpha, reduction="none") / c,
                 exp["gamma5_2x2_none_balanced"])


def test_golden_keras_categorical_focal_ce_doc_example():
    # Keras's categorical focal loss multiplies every class by the scalar alpha (our softmax
    # focal alpha); it renormalises the probabilities (softmax of log p) and clips them, but
    # the clip does not bind on the target classes here (0.95 and 0.8).
    v = golden("keras_categorical_focal_ce_doc_example")
    x = _log_probs(v["inputs"]["y_pred"])
    y = np.array(v["inputs"]["y_true"])
    kw = dict(alpha=v["parameters"]["alpha"], gamma=v["parameters"]["gamma"])
    exp = v["expected"]
    for targets in (y, np.argmax(y, axis=1), dense_to_sparse(y, "sparse", False)):
        assert_close(R.softmax_focal_loss(x, targets, reduction="none", **kw), exp["per_sample"])
        assert_close(R.softmax_focal_loss(x, targets, reduction="sum", **kw), exp["sum"])
        assert_close(R.softmax_focal_loss(x, targets, reduction="mean", **kw),
                     exp["sum_over_batch_size"])
        # alpha as a per-class array of the same value
        assert_close(R.softmax_focal_loss(x, targets, reduction="none", gamma=kw["gamma"],
                                          alpha=np.full(3, kw["alpha"])), exp["per_sample"])


def test_golden_keras_focal_losses_extreme_logits_exact_values():
    v = golden("keras_focal_losses_extreme_logits_saturation")
    exp = v["expected"]
    cat = v["inputs"]["categorical"]
    x = np.array([cat["logits"]])
    y = np.array([cat["y_true"]], dtype=np.float64)
    assert_close(R.softmax_focal_loss(x, y, gamma=2.0, alpha=0.25, reduction="sum"),
                 exp["exact_categorical_focal_alpha0.25"])
    assert_close(R.softmax_cross_entropy(x, y, reduction="sum"),
                 exp["keras3_categorical_ce_from_logits (stable path)"])
    b = v["inputs"]["binary"]
    assert_close(R.sigmoid_focal_loss(np.array([b["logits"]]), np.array([b["y_true"]]),
                                      gamma=2.0, alpha=None, reduction="sum"),
                 exp["exact_binary_focal"])


@pytest.mark.parametrize("name", ["asl_reference_gamma_neg4_gamma_pos1_clip0.05",
                                  "asl_reference_gamma_neg4_gamma_pos0_clip0.05"])
def test_golden_asl_reference(name):
    v = golden(name)
    p = v["parameters"]
    x = np.array(v["inputs"]["logits"])
    y = np.array(v["inputs"]["targets"])
    # ASL: no alpha; gamma_pos -> gamma; the reference returns the total sum
    kw = dict(gamma=p["gamma_pos"], gamma_neg=p["gamma_neg"], clip=p["clip"], alpha=None)
    exp = v["expected"]
    assert_close(_elementwise_sigmoid_focal(x, y, **kw), np.ravel(exp["elementwise"]))
    loss, grad = R.sigmoid_focal_loss(x, y, reduction="sum", return_grad=True, **kw)
    assert_close(loss, exp["sum"])
    assert_close(grad, exp["grad_logits_full (AsymmetricLossOptimized default)"])
    # (the detached-focal-weight gradient is a different quantity: it must NOT match)
    detached = np.array(exp["grad_logits_focal_weight_detached "
                            "(AsymmetricLoss default disable_torch_grad_focal_loss=True)"])
    assert not np.allclose(grad, detached, rtol=1e-3)


def test_golden_csr_multilabel_batch_all_families():
    v = golden("csr_multilabel_batch_all_families")
    inp = v["inputs"]
    exp = v["expected"]
    x = np.array(inp["logits"])
    n, c = x.shape
    assert c == v["parameters"]["num_classes"]
    dense = np.array(exp["dense_targets"])
    ns = ns_sparse(inp["indptr"], inp["indices"], c)
    sci = sp.csr_matrix((np.ones(len(inp["indices"])), inp["indices"], inp["indptr"]),
                        shape=(n, c))
    assert np.array_equal(sci.toarray(), dense)
    ew = np.array(exp["ova_bce_elementwise"])
    for j in range(c):
        assert_close(_elementwise_bce(x[:, j], dense[:, j]), ew[:, j])
    for targets in (ns, sci, dense):
        assert_close(R.sigmoid_binary_cross_entropy(x, targets, reduction="none"),
                     exp["ova_bce_per_row_sum"])
        assert_close(R.sigmoid_binary_cross_entropy(x, targets, reduction="none") / c,
                     exp["ova_bce_per_row_mean_keras_style"])
        assert_close(R.sigmoid_binary_cross_entropy(x, targets, reduction="sum"),
                     exp["ova_bce_sum"])
        loss, grad = R.sigmoid_binary_cross_entropy(x, targets, reduction="mean",
                                                    return_grad=True)
        assert_close(loss, exp["ova_bce_mean_over_all_elements_torch_style"])
        assert_close(grad, exp["grad_ova_bce_reduction_mean_all_elements"])
        fk = dict(alpha=v["parameters"]["focal"]["alpha"], gamma=v["parameters"]["focal"]["gamma"])
        assert_close(R.sigmoid_focal_loss(x, targets, reduction="none", **fk),
                     exp["sigmoid_focal_per_row_sum"])
        assert_close(R.sigmoid_focal_loss(x, targets, reduction="mean", **fk),
                     exp["sigmoid_focal_mean_all_elements"])
    # PAL-N = sparse softmax CE; row 1 is empty: "undefined" in the JSON, not counted by us
    pal = list(exp["softmax_PAL_N_per_row"])
    assert isinstance(pal[1], str) and pal[1].startswith("undefined")
    pal[1] = 0.0
    for targets in (ns, sci):
        assert_close(R.softmax_cross_entropy(x, targets, reduction="none"), pal)
        assert_close(R.softmax_cross_entropy(x, targets, reduction="sum"), sum(pal))
        assert_close(R.softmax_cross_entropy(x, targets, reduction="mean"), sum(pal) / 3)
        assert_close(R.softmax_cross_entropy(x, targets, reduction="batchmean"), sum(pal) / 4)
    # the dense y/k form counts the empty row (dense targets: D = N)
    yk = dense / np.maximum(dense.sum(axis=1, keepdims=True), 1)
    assert_close(R.softmax_cross_entropy(x, yk, reduction="none"), pal)
    assert_close(R.softmax_cross_entropy(x, yk, reduction="mean"), sum(pal) / 4)


# ============================================================================================
# (b) analytic gradients against finite differences
# ============================================================================================

def _shape(seed):
    """Small random shapes (N in 1..7, C in 2..9); seed 2 gives C = 1."""
    rng = np.random.default_rng(1000 + seed)
    if seed == 2:
        return int(rng.integers(1, 8)), 1
    return int(rng.integers(1, 8)), int(rng.integers(2, 10))


def _softmax_targets(rng, form, n, c, ignore_index):
    if form == "index":
        t = rng.integers(0, c, size=n)
        ign = rng.random(n) < 0.3
        if n > 1:
            ign[0] = False      # keep a counted row, so the test can fail
        t[ign] = ignore_index
        return t
    if form == "dense":
        y = rng.uniform(0.0, 1.0, (n, c)) * (rng.random((n, c)) < 0.7)
        return y                # rows need not sum to 1
    y = np.zeros((n, c))
    for i in range(n):
        k = int(rng.integers(0 if i > 0 else 1, min(c, 3) + 1))   # empty rows allowed
        y[i, rng.choice(c, size=k, replace=False)] = 1.0
    with_values = bool(rng.random() < 0.5)
    if with_values:
        y *= rng.uniform(0.1, 2.0, (n, c))
    return dense_to_sparse(y, form, with_values)


def _sigmoid_targets(rng, form, n, c):
    if form == "dense":
        y = rng.uniform(0.0, 1.0, (n, c))
        y[rng.random((n, c)) < 0.3] = 0.0
        y[rng.random((n, c)) < 0.3] = 1.0
        return y
    y = (rng.random((n, c)) < 0.35).astype(np.float64)
    with_values = bool(rng.random() < 0.5)
    if with_values:
        y *= rng.uniform(0.05, 1.0, (n, c))
    return dense_to_sparse(y, form, with_values)


def _rand_w(rng, size):
    return rng.uniform(0.2, 2.0, size)


SOFTMAX_CE_OPTIONS = {
    "plain": lambda rng, n, c: {},
    "class_weight": lambda rng, n, c: {"class_weight": _rand_w(rng, c)},
    "sample_weight": lambda rng, n, c: {"sample_weight": _rand_w(rng, n)},
    "ignore_index": lambda rng, n, c: {"ignore_index": -1},
    "label_smoothing": lambda rng, n, c: {"label_smoothing": 0.15},
    "z_loss": lambda rng, n, c: {"z_loss": 0.3},
    "all": lambda rng, n, c: {"class_weight": _rand_w(rng, c), "sample_weight": _rand_w(rng, n),
                              "ignore_index": -7, "label_smoothing": 0.2, "z_loss": 0.05},
}

SOFTMAX_FOCAL_OPTIONS = {
    "plain": lambda rng, n, c: {},
    "gamma0": lambda rng, n, c: {"gamma": 0.0},
    "gamma0.5": lambda rng, n, c: {"gamma": 0.5},
    "gamma3.5": lambda rng, n, c: {"gamma": 3.5},
    "alpha_scalar": lambda rng, n, c: {"alpha": 0.3},
    "alpha_array": lambda rng, n, c: {"alpha": rng.uniform(0.1, 1.0, c)},
    "class_weight": lambda rng, n, c: {"class_weight": _rand_w(rng, c)},
    "sample_weight": lambda rng, n, c: {"sample_weight": _rand_w(rng, n)},
    "ignore_index": lambda rng, n, c: {"ignore_index": -1},
    "label_smoothing": lambda rng, n, c: {"label_smoothing": 0.15},
    "all": lambda rng, n, c: {"gamma": 1.5, "alpha": rng.uniform(0.1, 1.0, c),
                              "class_weight": _rand_w(rng, c), "sample_weight": _rand_w(rng, n),
                              "ignore_index": -7, "label_smoothing": 0.2},
}

BCE_OPTIONS = {
    "plain": lambda rng, n, c: {},
    "pos_weight_scalar": lambda rng, n, c: {"pos_weight": 2.5},
    "pos_weight_array": lambda rng, n, c: {"pos_weight": _rand_w(rng, c) * 2},
    "class_weight": lambda rng, n, c: {"class_weight": _rand_w(rng, c)},
    "sample_weight": lambda rng, n, c: {"sample_weight": _rand_w(rng, n)},
    "label_smoothing": lambda rng, n, c: {"label_smoothing": 0.1},
    "all": lambda rng, n, c: {"pos_weight": _rand_w(rng, c) * 2, "class_weight": _rand_w(rng, c),
                              "sample_weight": _rand_w(rng, n), "label_smoothing": 0.2},
}

SIGMOID_FOCAL_OPTIONS = {
    "plain": lambda rng, n, c: {},
    "gamma0": lambda rng, n, c: {"gamma": 0.0},
    "gamma0.5": lambda rng, n, c: {"gamma": 0.5},
    "gamma3.5": lambda rng, n, c: {"gamma": 3.5},
    "alpha_none": lambda rng, n, c: {"alpha": None},
    "alpha_negative": lambda rng, n, c: {"alpha": -1.0},
    "alpha0.7": lambda rng, n, c: {"alpha": 0.7},
    "gamma_neg4": lambda rng, n, c: {"gamma": 1.0, "gamma_neg": 4.0},
    "gamma_neg0.5": lambda rng, n, c: {"gamma": 2.0, "gamma_neg": 0.5},
    "clip": lambda rng, n, c: {"clip": 0.05},
    "clip_gamma_neg": lambda rng, n, c: {"gamma": 0.0, "gamma_neg": 4.0, "clip": 0.2},
    "class_weight": lambda rng, n, c: {"class_weight": _rand_w(rng, c)},
    "sample_weight": lambda rng, n, c: {"sample_weight": _rand_w(rng, n)},
    "label_smoothing": lambda rng, n, c: {"label_smoothing": 0.1},
    "all": lambda rng, n, c: {"gamma": 1.5, "gamma_neg": 3.0, "clip": 0.1, "alpha": 0.4,
                              "class_weight": _rand_w(rng, c), "sample_weight": _rand_w(rng, n),
                              "label_smoothing": 0.1},
}

FAMILIES = {
    "softmax_ce": (R.softmax_cross_entropy, SOFTMAX_CE_OPTIONS,
                   ("index", "dense", "sparse", "scipy")),
    "softmax_focal": (R.softmax_focal_loss, SOFTMAX_FOCAL_OPTIONS,
                      ("index", "dense", "sparse", "scipy")),
    "bce": (R.sigmoid_binary_cross_entropy, BCE_OPTIONS, ("dense", "sparse", "scipy")),
    "sigmoid_focal": (R.sigmoid_focal_loss, SIGMOID_FOCAL_OPTIONS, ("dense", "sparse", "scipy")),
}

GRAD_CASES = [
    pytest.param(fam, form, opt, red, seed, id=f"{fam}-{form}-{opt}-{red}-s{seed}")
    for fam, (_, options, forms) in FAMILIES.items()
    for form in forms
    for opt in options
    for red in REDUCTIONS
    for seed in (0, 1, 2)
]


def make_case(family, form, option, seed):
    fn, options, _ = FAMILIES[family]
    n, c = _shape(seed)
    rng = np.random.default_rng(zlib.crc32(f"{family}/{form}/{option}/{seed}".encode()))
    kwargs = options[option](rng, n, c)
    x = rng.normal(0.0, 2.5, (n, c))
    if family.startswith("softmax"):
        targets = _softmax_targets(rng, form, n, c, kwargs.get("ignore_index", -100))
    else:
        targets = _sigmoid_targets(rng, form, n, c)
    return fn, x, targets, kwargs


@pytest.mark.parametrize("family, form, option, reduction, seed", GRAD_CASES)
def test_gradient_matches_finite_differences(family, form, option, reduction, seed):
    fn, x, targets, kwargs = make_case(family, form, option, seed)
    loss, grad = fn(x, targets, reduction=reduction, return_grad=True, **kwargs)
    assert grad.shape == x.shape and grad.dtype == np.float64
    assert np.all(np.isfinite(grad))
    fd = fd_gradient(lambda z: fn(z, targets, reduction=reduction, **kwargs), x)
    scale = max(1.0, float(np.max(np.abs(fd))))
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8 * scale)
    # the loss returned with the gradient is the loss returned without it
    np.testing.assert_array_equal(loss, fn(x, targets, reduction=reduction, **kwargs))


def test_finite_differences_detect_a_wrong_gradient():
    # guard for the harness itself: a gradient off by 1e-4 in one entry must fail
    fn, x, targets, kwargs = make_case("softmax_focal", "index", "all", 0)
    _, grad = fn(x, targets, reduction="sum", return_grad=True, **kwargs)
    fd = fd_gradient(lambda z: fn(z, targets, reduction="sum", **kwargs), x)
    grad[0, 0] += 1e-4
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(grad, fd, rtol=1e-6,
                                   atol=1e-8 * max(1.0, float(np.max(np.abs(fd)))))


@pytest.mark.parametrize("family", list(FAMILIES))
def test_gradient_near_kinks_and_saturation(family):
    """Logits of moderate-to-large size (|x| up to 30), checked with a smaller step."""
    fn, _, forms = FAMILIES[family]
    rng = np.random.default_rng(7)
    x = rng.normal(0.0, 12.0, (5, 6))
    if family.startswith("softmax"):
        targets = np.array([0, 5, 2, 3, 1])
        kw = {"label_smoothing": 0.1}
    else:
        targets = (rng.random((5, 6)) < 0.4).astype(float)
        kw = {"gamma_neg": 3.0, "clip": 0.05} if family == "sigmoid_focal" else {}
    _, grad = fn(x, targets, reduction="sum", return_grad=True, **kw)
    fd = fd_gradient(lambda z: fn(z, targets, reduction="sum", **kw), x, h=1e-4)
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-7 * max(1.0, np.max(np.abs(fd))))


# ============================================================================================
# (c) identities, policies and edge cases
# ============================================================================================

def _both(fn, x, targets, **kw):
    return fn(x, targets, return_grad=True, **kw)


def _assert_same(a, b, rtol=1e-12, atol=1e-14):
    (la, ga), (lb, gb) = a, b
    np.testing.assert_allclose(la, lb, rtol=rtol, atol=atol)
    np.testing.assert_allclose(ga, gb, rtol=rtol, atol=atol)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("form", ["dense", "sparse", "scipy"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sigmoid_focal_gamma0_alpha_none_is_bce(reduction, form, seed):
    n, c = _shape(seed)
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 3.0, (n, c))
    y = _sigmoid_targets(rng, form, n, c)
    kw = dict(class_weight=_rand_w(rng, c), sample_weight=_rand_w(rng, n), label_smoothing=0.1,
              reduction=reduction)
    _assert_same(_both(R.sigmoid_focal_loss, x, y, gamma=0.0, alpha=None, **kw),
                 _both(R.sigmoid_binary_cross_entropy, x, y, **kw))
    # and alpha = 0.5 is exactly half of it
    la, ga = _both(R.sigmoid_focal_loss, x, y, gamma=0.0, alpha=0.5, **kw)
    lb, gb = _both(R.sigmoid_binary_cross_entropy, x, y, **kw)
    np.testing.assert_allclose(la, 0.5 * np.asarray(lb), rtol=1e-12)
    np.testing.assert_allclose(ga, 0.5 * gb, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("form", ["index", "dense", "sparse", "scipy"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_softmax_focal_gamma0_alpha_none_is_softmax_ce(reduction, form, seed):
    n, c = _shape(seed)
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 3.0, (n, c))
    t = _softmax_targets(rng, form, n, c, -3)
    kw = dict(class_weight=_rand_w(rng, c), sample_weight=_rand_w(rng, n), ignore_index=-3,
              label_smoothing=0.1, reduction=reduction)
    _assert_same(_both(R.softmax_focal_loss, x, t, gamma=0.0, alpha=None, **kw),
                 _both(R.softmax_cross_entropy, x, t, **kw))
    # and a per-class alpha acts like a class weight in the row losses, but (class indices,
    # "mean") the denominator D = sum sw_n w_{t_n} holds the class weight only, not alpha
    a = _rand_w(rng, c)
    kw2 = dict(kw, class_weight=kw["class_weight"] * a)
    if form == "index" and reduction == "mean":
        counted = t != -3
        d = np.sum(kw["sample_weight"][counted] * kw["class_weight"][t[counted]])
        lf, gf = _both(R.softmax_focal_loss, x, t, gamma=0.0, alpha=a, **kw)
        lc, gc = _both(R.softmax_cross_entropy, x, t, **dict(kw2, reduction="sum"))
        _assert_same((lf, gf), (lc / d if d else 0.0, gc / d if d else 0 * gc))
    else:
        _assert_same(_both(R.softmax_focal_loss, x, t, gamma=0.0, alpha=a, **kw),
                     _both(R.softmax_cross_entropy, x, t, **kw2))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_two_class_softmax_ce_is_bce_on_the_logit_difference(reduction, seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 8))
    x = rng.normal(0.0, 3.0, (n, 2))
    y = rng.uniform(0.0, 1.0, n)
    sw = _rand_w(rng, n)
    # softmax smoothing eps/C with C = 2 is the binary smoothing 0.5 eps
    kw = dict(sample_weight=sw, label_smoothing=0.1, reduction=reduction)
    ls, gs = R.softmax_cross_entropy(x, np.stack([1 - y, y], axis=1), return_grad=True, **kw)
    d = (x[:, 1] - x[:, 0])[:, None]
    lb, gb = R.sigmoid_binary_cross_entropy(d, y[:, None], return_grad=True, **kw)
    np.testing.assert_allclose(ls, lb, rtol=1e-12)
    np.testing.assert_allclose(gs[:, 1], gb[:, 0], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(gs[:, 0], -gb[:, 0], rtol=1e-12, atol=1e-15)
    # class indices: hard 0/1 targets, with confident rows (|d| up to 40) where the loss and
    # the gradient are tiny: both must keep their relative accuracy
    x = np.vstack([x, [[3.0, 28.0], [28.0, 3.0], [-5.0, 35.0], [35.0, -5.0]]])
    d = (x[:, 1] - x[:, 0])[:, None]
    t = np.concatenate([(y > 0.5), [1, 0, 1, 0]]).astype(np.int64)
    sw = _rand_w(rng, t.size)
    ls, gs = R.softmax_cross_entropy(x, t, sample_weight=sw, reduction=reduction,
                                     return_grad=True)
    lb, gb = R.sigmoid_binary_cross_entropy(d, t[:, None].astype(float), sample_weight=sw,
                                            reduction=reduction, return_grad=True)
    if reduction == "mean":     # softmax D = sum sw, sigmoid D = N
        ls, gs, lb, gb = ls * np.sum(sw), gs * np.sum(sw), lb * t.size, gb * t.size
    np.testing.assert_allclose(ls, lb, rtol=1e-12)
    np.testing.assert_allclose(gs[:, 1], gb[:, 0], rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(gs[:, 0], -gb[:, 0], rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 3.0])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_two_class_softmax_focal_is_sigmoid_focal_on_the_logit_difference(gamma, reduction):
    # hard targets: (1 - p_t)^gamma (-log p_t) with p_t = sigma(+-d), d = x1 - x0. The logit
    # differences reach +-40, where 1 - p_t ~ 4e-18: this checks that 1 - p is computed
    # stably (1 - exp(log p) would lose every digit) on both sides.
    rng = np.random.default_rng(11)
    d = np.concatenate([rng.normal(0.0, 3.0, 6), [25.0, -25.0, 40.0, -40.0, 0.0]])
    x = np.stack([rng.normal(0.0, 2.0, d.size), np.zeros(d.size)], axis=1)
    x[:, 1] = x[:, 0] + d
    t = np.array([1, 0] * (d.size // 2) + [1])
    sw = _rand_w(rng, d.size)
    ls, gs = R.softmax_focal_loss(x, t, gamma=gamma, alpha=None, sample_weight=sw,
                                  reduction=reduction, return_grad=True)
    lb, gb = R.sigmoid_focal_loss(d[:, None], t[:, None].astype(float), gamma=gamma, alpha=None,
                                  sample_weight=sw, reduction=reduction, return_grad=True)
    if reduction == "mean":
        # softmax, class indices: D = sum sw_n; sigmoid: D = N * C = N
        ls, gs = ls * np.sum(sw), gs * np.sum(sw)
        lb, gb = lb * d.size, gb * d.size
    np.testing.assert_allclose(ls, lb, rtol=1e-12, atol=0)
    np.testing.assert_allclose(gs[:, 1], gb[:, 0], rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(gs[:, 0], -gb[:, 0], rtol=1e-12, atol=1e-300)
    if reduction == "none" and gamma == 2.0:
        # closed form for the confident-correct rows: sigma(-25)^2 * softplus(-25)
        u = np.exp(-25.0) / (1.0 + np.exp(-25.0))
        np.testing.assert_allclose(lb[6], sw[6] * u ** 2 * np.log1p(np.exp(-25.0)), rtol=1e-13)
        assert 0.0 < ls[8] < 1e-50


@pytest.mark.parametrize("fn", [R.softmax_cross_entropy, R.softmax_focal_loss])
@pytest.mark.parametrize("form", ["index", "dense", "sparse", "scipy"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_softmax_losses_invariant_to_a_per_row_constant(fn, form, seed):
    n, c = _shape(seed)
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 3.0, (n, c))
    t = _softmax_targets(rng, form, n, c, -100)
    shift = rng.normal(0.0, 50.0, (n, 1))
    kw = dict(class_weight=_rand_w(rng, c), label_smoothing=0.1, reduction="none")
    _assert_same(_both(fn, x, t, **kw), _both(fn, x + shift, t, **kw), rtol=1e-9, atol=1e-12)


def test_z_loss_breaks_shift_invariance():
    x = np.array([[1.0, 2.0, 3.0]])
    t = np.array([1])
    assert (R.softmax_cross_entropy(x, t, z_loss=0.1)
            != pytest.approx(R.softmax_cross_entropy(x + 1.0, t, z_loss=0.1)))
    lse = np.log(np.sum(np.exp(x)))
    assert R.softmax_cross_entropy(x, t, z_loss=0.1) == pytest.approx(
        R.softmax_cross_entropy(x, t) + 0.1 * lse ** 2, rel=1e-14)


@pytest.mark.parametrize("fn", [R.sigmoid_binary_cross_entropy, R.sigmoid_focal_loss])
@pytest.mark.parametrize("form", ["sparse", "scipy"])
@pytest.mark.parametrize("with_values", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_sigmoid_sparse_targets_equal_dense(fn, form, with_values, reduction):
    rng = np.random.default_rng(3)
    n, c = 6, 7
    x = rng.normal(0.0, 3.0, (n, c))
    y = (rng.random((n, c)) < 0.3).astype(float)
    y[2] = 0.0                                  # an empty row
    if with_values:
        y *= rng.uniform(0.1, 1.0, (n, c))
    kw = dict(label_smoothing=0.1, class_weight=_rand_w(rng, c), sample_weight=_rand_w(rng, n),
              reduction=reduction)
    if fn is R.sigmoid_focal_loss:
        kw.update(gamma_neg=3.0, clip=0.05)
    _assert_same(_both(fn, x, dense_to_sparse(y, form, with_values), **kw),
                 _both(fn, x, y, **kw))


@pytest.mark.parametrize("fn", [R.softmax_cross_entropy, R.softmax_focal_loss])
@pytest.mark.parametrize("form", ["sparse", "scipy"])
@pytest.mark.parametrize("with_values", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_softmax_sparse_targets_equal_dense_y_over_k(fn, form, with_values, reduction):
    rng = np.random.default_rng(4)
    n, c = 6, 7
    x = rng.normal(0.0, 3.0, (n, c))
    y = (rng.random((n, c)) < 0.4).astype(float)
    y[np.arange(n), rng.integers(0, c, n)] = 1.0   # every row has a positive
    if with_values:
        y *= rng.uniform(0.1, 3.0, (n, c))
    dense = y / y.sum(axis=1, keepdims=True)
    kw = dict(label_smoothing=0.1, class_weight=_rand_w(rng, c), sample_weight=_rand_w(rng, n),
              reduction=reduction)
    if fn is R.softmax_cross_entropy:
        kw["z_loss"] = 0.05
    _assert_same(_both(fn, x, dense_to_sparse(y, form, with_values), **kw),
                 _both(fn, x, dense, **kw))


@pytest.mark.parametrize("fn", [R.softmax_cross_entropy, R.softmax_focal_loss])
def test_sparse_rows_without_positives_are_not_counted(fn):
    rng = np.random.default_rng(5)
    x = rng.normal(0.0, 3.0, (4, 5))
    y = np.zeros((4, 5))
    y[0, [1, 3]] = 1.0
    y[2, 4] = 2.0
    # row 3 has a stored positive whose value is 0: no target distribution either
    t = ns_sparse([0, 2, 2, 3, 4], [1, 3, 4, 0], 5, [1.0, 1.0, 2.0, 0.0])
    kw = dict(label_smoothing=0.2, sample_weight=[1.0, 2.0, 3.0, 4.0])
    if fn is R.softmax_cross_entropy:
        kw["z_loss"] = 0.1
    rows, grad = fn(x, t, reduction="none", return_grad=True, **kw)
    assert rows[1] == 0.0 and rows[3] == 0.0 and rows[0] > 0 and rows[2] > 0
    assert not grad[[1, 3]].any()
    assert fn(x, t, reduction="mean", **kw) == pytest.approx((rows[0] + rows[2]) / 2, rel=1e-14)
    assert fn(x, t, reduction="batchmean", **kw) == pytest.approx(rows.sum() / 4, rel=1e-14)
    # the dense form of the same target counts every row (D = N), zero rows included; an
    # all-zero dense row still gets the smoothing (and z-loss) terms
    dense = y / np.maximum(y.sum(axis=1, keepdims=True), 1)
    drows = fn(x, dense, reduction="none", **kw)
    np.testing.assert_allclose(drows[[0, 2]], rows[[0, 2]], rtol=1e-12)
    assert drows[1] > 0 and drows[3] > 0


@pytest.mark.parametrize("fn", [R.softmax_cross_entropy, R.softmax_focal_loss])
def test_ignored_rows_contribute_nothing(fn):
    rng = np.random.default_rng(6)
    x = rng.normal(0.0, 3.0, (5, 4))
    t = np.array([0, 9, 3, 9, 1])
    kw = dict(ignore_index=9, label_smoothing=0.3, class_weight=[1.0, 2.0, 0.5, 3.0],
              sample_weight=[1.0, 2.0, 3.0, 4.0, 5.0])
    if fn is R.softmax_cross_entropy:
        kw["z_loss"] = 0.2
    rows, grad = fn(x, t, reduction="none", return_grad=True, **kw)
    assert rows[1] == 0.0 and rows[3] == 0.0 and np.all(rows[[0, 2, 4]] > 0)
    assert not grad[[1, 3]].any()
    # D = sum of sw_n * w_{t_n} over the non-ignored rows
    d = 1.0 * 1.0 + 3.0 * 3.0 + 5.0 * 2.0
    loss, gmean = fn(x, t, reduction="mean", return_grad=True, **kw)
    assert loss == pytest.approx(rows.sum() / d, rel=1e-14)
    np.testing.assert_allclose(gmean, grad / d, rtol=1e-14)


@pytest.mark.parametrize("fn", [R.softmax_cross_entropy, R.softmax_focal_loss])
def test_zero_mean_denominator_gives_zero(fn):
    x = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]])
    # every row ignored
    loss, grad = fn(x, np.array([-100, -100]), reduction="mean", return_grad=True)
    assert loss == 0.0 and isinstance(loss, float) and not grad.any()
    # every sparse row empty
    loss, grad = fn(x, ns_sparse([0, 0, 0], [], 3), reduction="mean", return_grad=True)
    assert loss == 0.0 and not grad.any()
    # zero sample weights: D = 0
    loss, grad = fn(x, np.array([0, 1]), sample_weight=[0.0, 0.0], reduction="mean",
                    return_grad=True)
    assert loss == 0.0 and not grad.any()
    # D = sum sw w_t = 0 while the smoothed rows are not 0: docs/losses.md says 0.0 (literal)
    kw = dict(class_weight=[0.0, 1.0, 1.0], label_smoothing=0.3)
    assert fn(x, np.array([0, 0]), reduction="sum", **kw) > 0
    loss, grad = fn(x, np.array([0, 0]), reduction="mean", return_grad=True, **kw)
    assert loss == 0.0 and not grad.any()


FN_TARGETS_EMPTY = [
    pytest.param(R.softmax_cross_entropy, lambda c: np.zeros(0, dtype=np.int64), id="ce-index"),
    pytest.param(R.softmax_cross_entropy, lambda c: np.zeros((0, c)), id="ce-dense"),
    pytest.param(R.softmax_cross_entropy, lambda c: ns_sparse([0], [], c), id="ce-sparse"),
    pytest.param(R.softmax_cross_entropy, lambda c: sp.csr_matrix((0, c)), id="ce-scipy"),
    pytest.param(R.softmax_focal_loss, lambda c: np.zeros(0, dtype=np.int64), id="sfocal-index"),
    pytest.param(R.softmax_focal_loss, lambda c: ns_sparse([0], [], c), id="sfocal-sparse"),
    pytest.param(R.sigmoid_binary_cross_entropy, lambda c: np.zeros((0, c)), id="bce-dense"),
    pytest.param(R.sigmoid_binary_cross_entropy, lambda c: ns_sparse([0], [], c), id="bce-sparse"),
    pytest.param(R.sigmoid_focal_loss, lambda c: np.zeros((0, c)), id="focal-dense"),
    pytest.param(R.sigmoid_focal_loss, lambda c: sp.csr_matrix((0, c)), id="focal-scipy"),
]


@pytest.mark.parametrize("fn, make_targets", FN_TARGETS_EMPTY)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_empty_batch(fn, make_targets, reduction):
    c = 4
    x = np.zeros((0, c), dtype=np.float32)
    loss, grad = fn(x, make_targets(c), reduction=reduction, return_grad=True)
    assert grad.shape == (0, c) and grad.dtype == np.float64
    if reduction == "none":
        assert isinstance(loss, np.ndarray) and loss.shape == (0,) and loss.dtype == np.float64
    else:
        assert isinstance(loss, float) and loss == 0.0


@pytest.mark.parametrize("fn, targets", [
    (R.softmax_cross_entropy, np.array([0, 0, -100])),
    (R.softmax_cross_entropy, np.ones((3, 1))),
    (R.softmax_focal_loss, np.array([0, 0, -100])),
    (R.sigmoid_binary_cross_entropy, np.array([[1.0], [0.0], [0.3]])),
    (R.sigmoid_focal_loss, ns_sparse([0, 1, 1, 2], [0, 0], 1)),
])
def test_single_class(fn, targets):
    x = np.array([[2.0], [-1.0], [0.5]])
    loss, grad = fn(x, targets, reduction="none", return_grad=True)
    assert loss.shape == (3,) and grad.shape == (3, 1)
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
    if fn in (R.softmax_cross_entropy, R.softmax_focal_loss):
        # one class: p = 1, the loss is 0 and does not depend on the logit
        assert not loss.any() and not grad.any()
        loss = R.softmax_cross_entropy(x, np.array([0, 0, 0]), z_loss=0.5, reduction="none")
        np.testing.assert_allclose(loss, 0.5 * x[:, 0] ** 2, rtol=1e-15)
    else:
        assert np.all(loss[[0, 1]] > 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_extreme_logits_are_finite_and_exact(dtype, family, reduction):
    fn, _, forms = FAMILIES[family]
    x = np.array([[1e4, -1e4, 0.0, 1e4], [-1e4, -1e4, 1e4, 0.0], [1e4, 1e4, 1e4, 1e4]],
                 dtype=dtype)
    x64 = x.astype(np.float64)
    y = np.array([[1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    if family.startswith("softmax"):
        all_targets = [np.array([0, 1, 3]), y, dense_to_sparse(y, "sparse", False),
                       dense_to_sparse(y, "scipy")]
    else:
        all_targets = [y, dense_to_sparse(y, "sparse", False), dense_to_sparse(y, "scipy")]
    options = [{}, {"label_smoothing": 0.1}]
    if family == "sigmoid_focal":
        options += [{"gamma": 0.5, "gamma_neg": 4.0, "clip": 0.05}, {"gamma": 0.0, "alpha": None}]
    if family == "softmax_focal":
        options += [{"gamma": 0.5}, {"gamma": 0.0, "alpha": [0.5, 1.0, 2.0, 1.0]}]
    if family == "softmax_ce":
        options += [{"z_loss": 1e-4}]
    for t in all_targets:
        for kw in options:
            loss, grad = fn(x, t, reduction=reduction, return_grad=True, **kw)
            assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad)), (t, kw)
            l64, g64 = fn(x64, t, reduction=reduction, return_grad=True, **kw)
            np.testing.assert_array_equal(loss, l64)
            np.testing.assert_array_equal(grad, g64)


def test_extreme_logits_exact_values():
    x = np.array([[1e4, -1e4, 0.0]], dtype=np.float32)
    assert R.softmax_cross_entropy(x, np.array([1]), reduction="sum") == 2e4
    assert R.softmax_cross_entropy(x, np.array([2]), reduction="sum") == 1e4
    assert R.softmax_cross_entropy(x, np.array([0]), reduction="sum") == 0.0
    loss, grad = R.softmax_focal_loss(x, np.array([1]), gamma=2.0, reduction="sum",
                                      return_grad=True)
    assert loss == 2e4
    np.testing.assert_array_equal(grad, [[1.0, -1.0, 0.0]])
    y = np.array([[0.0, 1.0, 1.0]])
    loss, grad = R.sigmoid_binary_cross_entropy(x, y, reduction="none", return_grad=True)
    np.testing.assert_allclose(loss, [2e4 + np.log(2.0)], rtol=1e-15)
    np.testing.assert_array_equal(grad, [[1.0, -1.0, -0.5]])
    loss = R.sigmoid_focal_loss(x[:, :2], y[:, :2], alpha=None, gamma=2.0, reduction="sum")
    assert loss == 2e4
    # ASL probability shifting: a negative at +1e4 costs -p_m^g log(1 - p_m) with p_m = 1 - m
    m = 0.05
    loss = R.sigmoid_focal_loss(np.array([[1e4]]), np.array([[0.0]]), alpha=None, gamma_neg=4.0,
                                clip=m, reduction="sum")
    assert loss == pytest.approx(-((1 - m) ** 4) * np.log(m), rel=1e-14)


@pytest.mark.parametrize("clip", [1e-12, 1e-6, 0.05])
def test_asl_probability_shifting_is_stable_for_confident_negatives(clip):
    # negative at x = 40: 1 - p_m = sigma(-40) + clip must not be computed as 1 - (p - clip)
    u = np.exp(-40.0) / (1.0 + np.exp(-40.0))
    one_minus_pm = u + clip
    p_m = 1.0 - one_minus_pm       # fine as a factor: p_m is close to 1
    loss, grad = R.sigmoid_focal_loss(np.array([[40.0]]), np.array([[0.0]]), alpha=None,
                                      gamma=1.0, gamma_neg=2.0, clip=clip, reduction="sum",
                                      return_grad=True)
    assert loss == pytest.approx(-p_m ** 2 * np.log(one_minus_pm), rel=1e-13)
    # d/dx [-p_m^2 log(1 - p_m)] = s u (-2 p_m log(1 - p_m) + p_m^2 / (1 - p_m))
    s = 1.0 - u
    expected = s * u * (-2.0 * p_m * np.log(one_minus_pm) + p_m ** 2 / one_minus_pm)
    assert grad[0, 0] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_output_types_and_float32_inputs(family):
    fn, options, forms = FAMILIES[family]
    rng = np.random.default_rng(8)
    x = rng.normal(0.0, 2.0, (5, 6))
    t = (np.array([0, 5, 2, 1, 3]) if family.startswith("softmax")
         else (rng.random((5, 6)) < 0.3).astype(float))
    for reduction in REDUCTIONS:
        out = fn(x.astype(np.float32), t, reduction=reduction)
        l64, g64 = fn(x.astype(np.float32).astype(np.float64), t, reduction=reduction,
                      return_grad=True)
        if reduction == "none":
            assert isinstance(out, np.ndarray) and out.dtype == np.float64 and out.shape == (5,)
        else:
            assert type(out) is float
        np.testing.assert_array_equal(out, l64)   # computed in float64 whatever the input
        assert g64.dtype == np.float64


def test_inputs_are_not_modified():
    rng = np.random.default_rng(9)
    x = rng.normal(0.0, 2.0, (4, 5))
    y = (rng.random((4, 5)) < 0.4).astype(float)
    t = np.array([0, -100, 4, 2])
    xs, ys, ts = x.copy(), y.copy(), t.copy()
    for fn, targets in ((R.softmax_cross_entropy, t), (R.softmax_focal_loss, y),
                        (R.sigmoid_binary_cross_entropy, y), (R.sigmoid_focal_loss, y)):
        fn(x, targets, label_smoothing=0.1, return_grad=True)
    assert np.array_equal(x, xs) and np.array_equal(y, ys) and np.array_equal(t, ts)


def test_unknown_reduction_is_rejected():
    with pytest.raises(ValueError):
        R.softmax_cross_entropy(np.zeros((1, 2)), np.array([0]), reduction="avg")


# ============================================================================================
# embedded golden vectors (a copy of the used entries of golden_vectors.json:
# parameters, inputs, expected)
# ============================================================================================

GOLDEN = {
    'tf_sparse_softmax_ce_doc_example': {
        'parameters': {
            'reduction': 'none',
        },
        'inputs': {
            'logits': [[2.0, -5.0, 0.5, -0.1],
                       [0.0, 0.0, 1.9, 1.4],
                       [-100.0, 100.0, -100.0, -100.0]],
            'labels': [0, 3, 1],
        },
        'expected': {
            'per_sample': [0.2975074973, 1.14483255, 0.0],
            'per_sample_quoted_float32': [0.29750752, 1.1448325, 0.0],
            'grad_logits_reduction_none_sum_of_outputs': [[-0.2573329848, 0.0006772246576,
                                                           0.16571141, 0.09094435007],
                                                          [0.07848619341, 0.07848619341,
                                                           0.5247504043, -0.6817227911],
                                                          [1.383896527e-87, 0.0, 1.383896527e-87,
                                                           1.383896527e-87]],
        },
    },
    'tf_softmax_ce_soft_labels_doc_example': {
        'parameters': {
            'reduction': 'none',
        },
        'inputs': {
            'logits': [[4.0, 2.0, 1.0], [0.0, 5.0, 1.0]],
            'labels': [[1.0, 0.0, 0.0], [0.0, 0.8, 0.2]],
        },
        'expected': {
            'per_sample': [0.1698460196, 0.8247448901],
            'per_sample_quoted_float32': [0.16984604, 0.82474494],
            'grad_logits': [[-0.1562052655, 0.1141951994, 0.04201006613],
                            [0.006573263185, 0.1755587549, -0.1821320181]],
        },
    },
    'optax_softmax_ce_doc_example': {
        'parameters': {
            'reduction': 'none (optax never reduces)',
        },
        'inputs': {
            'logits': [[1.2, -0.8, -0.5], [0.9, -1.2, 1.1]],
            'labels_onehot': [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
            'labels_int': [0, 1],
        },
        'expected': {
            'per_sample': [0.2761297055, 2.951798796],
            'per_sample_quoted_4dp': [0.2761, 2.9518],
            'mean': 1.613964251,
            'grad_logits': [[-0.2412854851, 0.1026808438, 0.1386046413],
                            [0.4266467908, -0.9477543579, 0.5211075671]],
        },
    },
    'softmax_ce_extreme_logits_pm1000': {
        'parameters': {
            'reduction': 'none',
        },
        'inputs': {
            'logits': [[1000.0, -1000.0, 0.0],
                       [1000.0, -1000.0, 0.0],
                       [1000.0, -1000.0, 0.0],
                       [-1000.0, -1000.0, -1000.0]],
            'labels': [0, 1, 2, 1],
        },
        'expected': {
            'per_sample': [0.0, 2000.0, 1000.0, 1.098612289],
            'grad_logits': [[0.0, 0.0, 0.0],
                            [1.0, -1.0, 0.0],
                            [1.0, 0.0, -1.0],
                            [0.3333333333, -0.6666666667, 0.3333333333]],
            'notes': ('must be finite: naive log(softmax) gives -inf/NaN. Row 4 (all equal) = '
                      'log(3).'),
        },
    },
    'keras_categorical_ce_probability_renormalisation': {
        'parameters': {
            'from_logits': False,
            'epsilon': 1e-07,
            'dtype': 'float32',
        },
        'inputs': {
            'y_true': [0, 1, 0, 0],
            'y_pred': [0.1, 0.1, 0.8, 0.1],
        },
        'expected': {
            'per_sample': 2.397895336,
            'per_sample_float64': 2.397895273,
            'notes': 'y_pred sums to 1.1 -> renormalised to 0.1/1.1; = -log(1/11) = log(11)',
        },
    },
    'keras_categorical_ce_renormalisation_equivalence_probs': {
        'parameters': {
            'from_logits': False,
        },
        'inputs': {
            'y_true': [0, 1],
            'y_pred': [0.2, 0.8],
        },
        'expected': {
            'per_sample': 0.2231435513,
            'notes': '[0.2,0.8] and [2,8] give the same loss (-log 0.8)',
        },
    },
    'keras_categorical_ce_renormalisation_equivalence_unnormalised_scores': {
        'parameters': {
            'from_logits': False,
        },
        'inputs': {
            'y_true': [0, 1],
            'y_pred': [2.0, 8.0],
        },
        'expected': {
            'per_sample': 0.2231435513,
            'notes': '[0.2,0.8] and [2,8] give the same loss (-log 0.8)',
        },
    },
    'keras_categorical_ce_class_doc_example': {
        'parameters': {
            'from_logits': False,
            'reduction': ['sum_over_batch_size', 'sum', None],
            'sample_weight': [0.3, 0.7],
        },
        'inputs': {
            'y_true': [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
            'y_pred': [[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]],
        },
        'expected': {
            'per_sample': [0.05129329439, 2.302585093],
            'sum_over_batch_size': 1.176939194,
            'sum': 2.353878387,
            'sum_over_batch_size_with_sample_weight': 0.8135987767,
            'quoted': {
                'none': [0.0513, 2.303],
                'sum_over_batch_size': 1.177,
                'sum': 2.354,
                'sample_weight': 0.814,
            },
        },
    },
    'keras_bce_probability_y1_p0.1_keras3_vs_tfkeras2': {
        'parameters': {
            'from_logits': False,
            'epsilon': 1e-07,
            'dtype': 'float32',
        },
        'inputs': {
            'y_true': [1],
            'y_pred': [0.1],
        },
        'expected': {
            'keras3': 2.302585125,
            'tf_keras_2_legacy': 2.302584171,
            'exact': 2.302585093,
            'notes': ('2.3025842 (commonly cited) comes from tf.keras/Keras-2 which computes '
                      'log(output + epsilon) after clipping (keras/src/legacy/backend.py '
                      'binary_crossentropy). Keras 3 only clips: -log(float32(0.1)) = 2.3025851.'),
        },
    },
    'tf_sigmoid_ce_doc_example': {
        'parameters': {
            'reduction': 'none',
        },
        'inputs': {
            'logits': [1.0, -1.0, 0.0, 1.0, -1.0, 0.0, 0.0],
            'labels': [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.5],
        },
        'expected': {
            'elementwise': [1.313261688, 0.3132616875, 0.6931471806, 0.3132616875, 1.313261688,
                            0.6931471806, 0.6931471806],
            'elementwise_quoted_float32': [1.3132617, 0.3132617, 0.6931472, 0.3132617, 1.3132617,
                                           0.6931472, 0.6931472],
            'grad_logits': [0.7310585786, 0.2689414214, 0.5, -0.2689414214, -0.7310585786, -0.5,
                            0.0],
        },
    },
    'sigmoid_bce_extreme_logits_pm1000': {
        'parameters': {
            'reduction': 'none',
        },
        'inputs': {
            'logits': [1000.0, 1000.0, -1000.0, -1000.0, 0.0],
            'labels': [0.0, 1.0, 1.0, 0.0, 1.0],
        },
        'expected': {
            'elementwise': [1000.0, 0.0, 1000.0, 0.0, 0.6931471806],
            'grad_logits': [1.0, 0.0, -1.0, 0.0, -0.5],
            'keras3_numpy_backend_elementwise_float32': [15.942385, 1.1920929e-07, 16.118095,
                                                         1.1920929e-07, 0.6931472],
            'notes': ('Stable form gives exactly |x| for confidently-wrong logits. Keras 3 numpy '
                      'backend (and Keras 3 BinaryFocalCrossentropy on every backend) applies '
                      'sigmoid then clips, so saturates: -log(2^-23)=15.942385 when p rounds to 1'
                      ' and the target is 0, -log(1e-7)=16.118095 when p rounds to 0 and the '
                      'target is 1, and 1.19e-7 (not 0) for confident-correct logits (float32).'),
        },
    },
    'keras_bce_from_logits_doc_example': {
        'parameters': {
            'from_logits': True,
            'axis': -1,
            'reduction': ['sum_over_batch_size', 'sum', None],
            'sample_weight': [0.8, 0.2],
        },
        'inputs': {
            'y_true': [[0.0, 1.0], [0.0, 0.0]],
            'y_pred_logits': [[-18.6, 0.51], [2.94, -12.8]],
        },
        'expected': {
            'elementwise': [[8.358390066e-09, 0.470313318], [2.991515712, 2.760768761e-06]],
            'per_sample(mean over axis -1)': [0.2351566632, 1.495759236],
            'sum_over_batch_size': 0.8654579498,
            'sum': 1.7309159,
            'sum_over_batch_size_with_sample_weight': 0.2436385889,
            'quoted': {
                'sum_over_batch_size': 0.8654,
                'sample_weight': 0.243,
                'sum': 1.73,
                'none': [0.235, 1.496],
            },
        },
    },
    'keras_bce_label_smoothing_test': {
        'parameters': {
            'from_logits': True,
            'label_smoothing': 0.1,
        },
        'inputs': {
            'y_true': [[1.0, 0.0, 1.0]],
            'y_pred_logits': [[10.0, -10.0, -10.0]],
        },
        'expected': {
            'smoothed_targets': [[0.95, 0.05, 0.95]],
            'elementwise': [[0.5000453989, 0.5000453989, 9.500045399]],
            'per_sample': [3.500045399],
            'quoted_formula': '(10 + 5*label_smoothing)/3 = 3.5',
        },
    },
    'keras_bce_from_logits_test_unweighted': {
        'parameters': {
            'from_logits': True,
            'reduction': 'sum_over_batch_size',
        },
        'inputs': {
            'y_true': [[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]],
            'y_pred_logits': [[10.0, -10.0, 10.0], [10.0, 10.0, -10.0]],
        },
        'expected': {
            'per_sample': [4.539889922e-05, 6.666712066],
            'sum_over_batch_size': 3.333378732,
            'quoted': 3.3333,
            'quoted_none': [0.0, 6.666],
            'quoted_sample_weight_[4,3]': 10.0,
            'quoted_scalar_weight_2.3': 7.666,
        },
    },
    'tf_weighted_ce_pos_weight_1.5_doc_example': {
        'parameters': {
            'pos_weight': 1.5,
        },
        'inputs': {
            'logits': [1.5, -0.1, -10.0],
            'labels': [1.0, 0.5, 0.0],
        },
        'expected': {
            'elementwise_exact': [0.302119917, 0.8804958251, 4.539889922e-05],
            'elementwise_quoted_float32': [0.30211994, 0.88049585, 4.5776367e-05],
            'grad_logits': [-0.2736382857, -0.1562239843, 4.53978687e-05],
            'notes': ("Quoted 3rd value 4.5776367e-05 is a float32 cancellation artifact of TF's "
                      '(1-z)*x + l*(log1p(exp(-|x|))+relu(-x)) form (-10 + 10.0000454); exact is '
                      '4.5398899e-05. PyTorch BCEWithLogits(pos_weight) = same math: (1-y)x + '
                      '(1+(pw-1)y)*softplus(-x).'),
        },
    },
    'tf_weighted_ce_pos_weight_0.5_doc_example': {
        'parameters': {
            'pos_weight': 0.5,
        },
        'inputs': {
            'logits': [1.5, -0.1, -10.0],
            'labels': [1.0, 0.5, 0.0],
        },
        'expected': {
            'elementwise_exact': [0.100706639, 0.5082974951, 4.539889922e-05],
            'elementwise_quoted_float32': [0.100706644, 0.508297503, 4.57763672e-05],
            'grad_logits': [-0.0912127619, 0.1062656094, 4.53978687e-05],
            'notes': ("Quoted 3rd value 4.5776367e-05 is a float32 cancellation artifact of TF's "
                      '(1-z)*x + l*(log1p(exp(-|x|))+relu(-x)) form (-10 + 10.0000454); exact is '
                      '4.5398899e-05. PyTorch BCEWithLogits(pos_weight) = same math: (1-y)x + '
                      '(1+(pw-1)y)*softplus(-x).'),
        },
    },
    'torch_bce_with_logits_pos_weight_broadcast_last_dim': {
        'parameters': {
            'pos_weight': [1.0, 2.0, 3.0],
            'reduction': ['none', 'mean', 'sum'],
        },
        'inputs': {
            'input': [[1.5, 1.5, 1.5], [1.5, 1.5, 1.5]],
            'target': [[1.0, 1.0, 0.0], [1.0, 0.0, 1.0]],
        },
        'expected': {
            'elementwise': [[0.201413278, 0.402826556, 1.701413278],
                            [0.201413278, 1.701413278, 0.6042398339]],
            'mean': 0.802119917,
            'sum': 4.812719502,
            'grad_logits_reduction_mean': [[-0.03040425397, -0.06080850794, 0.1362624127],
                                           [-0.03040425397, 0.1362624127, -0.0912127619]],
            'doc_example_all_ones_target_pos_weight_ones': 0.201413278,
            'notes': ('pos_weight has shape [C] and broadcasts against the LAST dim of target; '
                      "'mean' divides by N*C (all elements), independent of pos_weight."),
        },
    },
    'torch_multilabel_soft_margin_loss': {
        'parameters': {
            'weight': [None, [1.0, 2.0, 0.5]],
            'reduction': 'mean',
        },
        'inputs': {
            'input': [[0.5, -1.0, 2.0]],
            'target': [[1.0, 0.0, 1.0]],
        },
        'expected': {
            'per_sample_no_weight': [0.3047555609],
            'per_sample_weight': [0.3880214549],
            'notes': ("per-sample = SUM over classes / C (weights do NOT renormalise); 'mean' "
                      "then averages over N. Equals BCEWithLogits(reduction='mean') when "
                      'unweighted.'),
        },
    },
    'torch_cross_entropy_weight_ignore_index_mean': {
        'parameters': {
            'weight': [1.0, 2.0, 3.0],
            'ignore_index': -100,
            'reduction': ['none', 'sum', 'mean'],
        },
        'inputs': {
            'input': [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [0.5, 0.5, 0.5]],
            'target': [0, 2, -100],
        },
        'expected': {
            'none': [2.407605964, 1.222817893, 0.0],
            'sum': 3.630423858,
            'mean': 0.9076059644,
            'mean_denominator': 4.0,
            'notes': ('mean = sum_n w[y_n]*l_n / sum_n w[y_n] over NON-ignored n (here '
                      '(1*l0+3*l1)/4), not /N.'),
        },
    },
    'torch_cross_entropy_all_targets_ignored': {
        'parameters': {
            'ignore_index': -100,
            'reduction': ['none', 'sum', 'mean'],
        },
        'inputs': {
            'input': [[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]],
            'target': [-100, -100],
        },
        'expected': {
            'none': [0.0, 0.0],
            'sum': 0.0,
            'mean': 'nan',
            'keras_sparse_categorical_crossentropy_ignore_class_sum_over_batch_size': 0.0,
            'notes': ('PyTorch mean = 0/0 = NaN (total_weight 0). Keras 3 '
                      'SparseCategoricalCrossentropy(ignore_class=...) masks and uses '
                      'divide_no_nan -> 0.0. optax '
                      'softmax_cross_entropy_with_integer_labels(where=all False) -> 0.0 per row.'),
        },
    },
    'torch_cross_entropy_label_smoothing_class_index': {
        'parameters': {
            'label_smoothing': 0.1,
            'reduction': 'mean',
        },
        'inputs': {
            'input': [[1.0, 2.0, 3.0]],
            'target': [0],
        },
        'expected': {
            'loss': 2.307605964,
            'equivalent_dense_target': [0.9333333333, 0.03333333333, 0.03333333333],
            'grad_logits': [-0.8433027602, 0.2113951377, 0.6319076224],
            'notes': ('(1-eps)*nll + (eps/C)*sum_c(-log p_c). Same value as Keras '
                      'CategoricalCrossentropy(from_logits=True,label_smoothing=0.1) with one-hot'
                      ' [1,0,0], and optax softmax_cross_entropy(logits, '
                      'optax.smooth_labels(onehot, 0.1)).'),
        },
    },
    'torch_cross_entropy_label_smoothing_weight_ignore': {
        'parameters': {
            'label_smoothing': 0.1,
            'weight': [1.0, 2.0, 3.0],
            'ignore_index': -100,
            'reduction': 'mean',
        },
        'inputs': {
            'input': [[1.0, 2.0, 3.0], [3.0, 1.0, 0.0]],
            'target': [0, -100],
        },
        'expected': {
            'mean': 2.381699894,
            'notes': ('smooth term = -sum_c w_c log p_c, zeroed for ignored rows, divided by sum '
                      'of w[y_n] over non-ignored rows (same denominator as the nll term).'),
        },
    },
    'torch_cross_entropy_probability_targets_weight': {
        'parameters': {
            'weight': [1.0, 2.0, 3.0],
            'reduction': ['none', 'mean'],
        },
        'inputs': {
            'input': [[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]],
            'target': [[0.25, 0.25, 0.5], [1.0, 0.0, 0.0]],
        },
        'expected': {
            'none': [1.91711342, 1.098612289],
            'mean': 1.507862854,
            'notes': ("with probability targets, 'mean' divides by N (batch elements), NOT by "
                      'weight sums; ignore_index is not allowed.'),
        },
    },
    'keras_categorical_ce_from_logits_label_smoothing': {
        'parameters': {
            'from_logits': True,
            'label_smoothing': 0.2,
        },
        'inputs': {
            'y_true': [[0.0, 0.0, 1.0]],
            'y_pred_logits': [[1.0, 2.0, 3.0]],
        },
        'expected': {
            'smoothed_targets': [[0.06666666667, 0.06666666667, 0.8666666667]],
            'per_sample': [0.6076059644],
            'grad_logits': [[0.0233639065, 0.1780618044, -0.2014257109]],
        },
    },
    'keras_sparse_ce_ignore_class_test': {
        'parameters': {
            'from_logits': True,
            'ignore_class': -1,
            'reduction': [None, 'sum_over_batch_size'],
        },
        'inputs': {
            'y_true': [[-1, 2]],
            'y_pred_logits': [[[0.854, 0.698, 0.598], [0.088, 0.86, 0.018]]],
        },
        'expected': {
            'none': [[0.0, 1.480129027]],
            'quoted_none': [[0.0, 1.480129]],
            'sum_over_batch_size': 1.480129027,
            'notes': ('reduced value divides by the number of NON-ignored entries (mask weight '
                      'total/valid) -> 1.480129/1.'),
        },
    },
    'torchvision_sigmoid_focal_loss_alpha0.25_gamma2': {
        'parameters': {
            'alpha': 0.25,
            'gamma': 2.0,
            'reduction': ['none', 'mean', 'sum'],
        },
        'inputs': {
            'inputs': [2.0, -1.0, 0.5, -3.0, 1000.0, -1000.0],
            'targets': [1.0, 0.0, 0.0, 1.0, 0.0, 0.0],
        },
        'expected': {
            'elementwise': [0.0004508907088, 0.01699354313, 0.2830587006, 0.6915701103, 750.0, 0.0],
            'mean': 125.1653455,
            'sum': 750.9920732,
            'grad_logits_first4_reduction_sum_numeric': [-0.001217735079, 0.03943584748,
                                                         0.3946138664, -0.2816874701],
            'grad_logits_reduction_sum_analytic': [-0.001217735049, 0.03943584748, 0.3946138664,
                                                   -0.2816874702, 0.75, -0.0],
            'notes': ("'mean' is over ALL elements (RetinaNet instead divides the sum by #anchors"
                      ' assigned to GT). x=+1000,t=0 -> 0.75*1000 (focal factor ~1).'),
        },
    },
    'optax_sigmoid_focal_loss_default_alpha_none': {
        'parameters': {
            'alpha': None,
            'gamma': 2.0,
        },
        'inputs': {
            'logits': [2.0, -1.0, 0.5, -3.0, 1000.0, -1000.0],
            'labels': [1.0, 0.0, 0.0, 1.0, 0.0, 0.0],
        },
        'expected': {
            'elementwise': [0.001803562835, 0.02265805751, 0.3774116009, 2.766280441, 1000.0, 0.0],
            'notes': ('optax default alpha=None (no alpha weighting) vs torchvision default '
                      'alpha=0.25; torchvision alpha=-1 also disables weighting and equals this.'),
        },
    },
    'focal_loss_gradient_paper_formula_gamma2': {
        'parameters': {
            'alpha': None,
            'gamma': 2.0,
        },
        'inputs': {
            'logits': [0.5, -0.7, 2.0],
            'targets': [1.0, 0.0, 0.0],
        },
        'expected': {
            'loss': [0.06757349052, 0.04439052374, 1.650078179],
            'grad_logits_analytic': [-0.1379369974, 0.09585472244, 1.07671373],
            'grad_logits_numeric': [-0.1379369974, 0.09585472249, 1.07671373],
            'formula': ('dFL/dx = y_s*(1-p_t)^gamma*(gamma*p_t*log(p_t) + p_t - 1), y_s in '
                        '{+1,-1}; multiply by alpha_t for the alpha-balanced form'),
        },
    },
    'keras_binary_focal_ce_doc_example': {
        'parameters': {
            'from_logits': True,
            'gamma': [2, 3, 4, 5],
            'apply_class_balancing': [False, True],
            'alpha': 0.25,
        },
        'inputs': {
            'y_true': [0.0, 1.0, 0.0, 0.0],
            'y_pred_logits': [-18.6, 0.51, 2.94, -12.8],
            'y_true_2x2': [[0.0, 1.0], [0.0, 0.0]],
            'y_pred_logits_2x2': [[-18.6, 0.51], [2.94, -12.8]],
        },
        'expected': {
            'gamma2_mean': 0.6912120758,
            'gamma2_balanced_mean': 0.5101332955,
            'gamma3_2x2_sum_over_batch_size': 0.6469950119,
            'gamma3_2x2_balanced': 0.4821412468,
            'gamma4_2x2_sum': 1.221880637,
            'gamma5_2x2_none': [0.001748372466, 1.156102513],
            'gamma5_2x2_none_balanced': [0.0004370931166, 0.867076885],
            'quoted': {
                'gamma2': 0.691,
                'gamma2_balanced': 0.51,
                'gamma3': 0.647,
                'gamma3_balanced': 0.482,
                'gamma4_sum': 1.222,
                'gamma5_none': [0.0017, 1.1561],
                'gamma5_none_balanced': [0.0004, 0.867],
            },
            'notes': ('alpha is IGNORED unless apply_class_balancing=True (default False). Per-'
                      'sample = mean over last axis.'),
        },
    },
    'keras_categorical_focal_ce_doc_example': {
        'parameters': {
            'alpha': 0.25,
            'gamma': 2.0,
            'from_logits': False,
        },
        'inputs': {
            'y_true': [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
            'y_pred': [[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]],
        },
        'expected': {
            'per_sample': [3.205830899e-05, 0.4662734813],
            'sum_over_batch_size': 0.2331527698,
            'sum': 0.4663055396,
            'quoted': {
                'none': [3.2058331e-05, 0.46627346],
                'sum_over_batch_size': 0.23315276,
                'sum': 0.46631,
                'sample_weight_[0.3,0.7]': 0.1632,
            },
            'notes': ('alpha multiplies every class (scalar or per-class list); renormalise + '
                      'clip like categorical_crossentropy; modulating factor uses the clipped '
                      'output.'),
        },
    },
    'keras_focal_losses_extreme_logits_saturation': {
        'parameters': {
            'from_logits': True,
            'gamma': 2.0,
            'alpha': 0.25,
            'dtype': 'float32',
        },
        'inputs': {
            'categorical': {
                'y_true': [0, 1, 0],
                'logits': [1000.0, -1000.0, 0.0],
            },
            'binary': {
                'y_true': [0.0],
                'logits': [1000.0],
            },
        },
        'expected': {
            'keras3_categorical_focal': 4.029522896,
            'exact_categorical_focal_alpha0.25': 500.0,
            'keras3_binary_focal_no_balancing': 15.94238472,
            'exact_binary_focal': 1000.0,
            'keras3_categorical_ce_from_logits (stable path)': 2000.0,
            'notes': ('Keras focal losses apply softmax/sigmoid and then the clipped-probability '
                      'path, so losses saturate at alpha*-log(1e-7) (=4.0295) and -log(2^-23) '
                      '(=15.942) in float32; '
                      'CategoricalCrossentropy/BinaryCrossentropy(from_logits=True) use the '
                      'stable logits path (except Keras-3 numpy backend BCE).'),
        },
    },
    'asl_reference_gamma_neg4_gamma_pos1_clip0.05': {
        'parameters': {
            'gamma_neg': 4,
            'gamma_pos': 1,
            'clip': 0.05,
            'eps': 1e-08,
            'reduction': 'sum (reference returns -loss.sum())',
        },
        'inputs': {
            'logits': [[2.0, -1.0, 0.5, -3.0, 0.0]],
            'targets': [[1.0, 0.0, 0.0, 1.0, 0.0]],
        },
        'expected': {
            'elementwise': [[0.0151301898, 0.0005677975179, 0.09125300409, 2.904005434,
                             0.02451505351]],
            'sum': 3.035471479,
            ('grad_logits_focal_weight_detached (AsymmetricLoss default '
             'disable_torch_grad_focal_loss=True)'): (
                [[-0.01420933662, 0.0005784129391, 0.05903041626, -0.9073974671, 0.01863920455]]),
            'grad_logits_full (AsymmetricLossOptimized default)': (
                [[-0.02753596373, 0.002617967843, 0.2088736877, -1.04512246, 0.07311710126]]),
            'notes': ('negatives use shifted prob p_m=max(p-clip,0): loss_neg = '
                      '-p_m^gamma_neg*log(1-p_m). Class defaults gamma_pos=1; train.py uses '
                      'gamma_pos=0.'),
        },
    },
    'asl_reference_gamma_neg4_gamma_pos0_clip0.05': {
        'parameters': {
            'gamma_neg': 4,
            'gamma_pos': 0,
            'clip': 0.05,
            'eps': 1e-08,
            'reduction': 'sum (reference returns -loss.sum())',
        },
        'inputs': {
            'logits': [[2.0, -1.0, 0.5, -3.0, 0.0]],
            'targets': [[1.0, 0.0, 0.0, 1.0, 0.0]],
        },
        'expected': {
            'elementwise': [[0.126928011, 0.0005677975179, 0.09125300409, 3.048587352,
                             0.02451505351]],
            'sum': 3.291851218,
            ('grad_logits_focal_weight_detached (AsymmetricLoss default '
             'disable_torch_grad_focal_loss=True)'): (
                [[-0.119202922, 0.0005784129391, 0.05903041626, -0.9525741268, 0.01863920455]]),
            'grad_logits_full (AsymmetricLossOptimized default)': (
                [[-0.119202922, 0.002617968065, 0.2088736875, -0.9525741269, 0.07311710126]]),
            'notes': ('negatives use shifted prob p_m=max(p-clip,0): loss_neg = '
                      '-p_m^gamma_neg*log(1-p_m). Class defaults gamma_pos=1; train.py uses '
                      'gamma_pos=0.'),
        },
    },
    'multilabel_softmax_normalised_PAL_N': {
        'parameters': {
            'normalisation': '1/|P|',
        },
        'inputs': {
            'logits': [2.0, 1.0, 0.0, -1.0, 3.0],
            'positive_indices': [0, 4],
        },
        'expected': {
            'loss_PAL_N': 0.9519143959,
            'grad_PAL_N': [-0.2658783427, 0.08612854444, 0.0316849208, 0.01165623096, 0.1364086466],
            'loss_PAL_unnormalised_sum_over_positives': 1.903828792,
            'grad_PAL': [-0.5317566855, 0.1722570889, 0.06336984159, 0.02331246191, 0.2728172931],
            'equivalent': ('softmax CE with dense target y/|P| (torch prob-target CE, '
                           'optax.softmax_cross_entropy, tf.nn.softmax_cross_entropy_with_logits)'),
            'empty_positive_row': ('undefined (0/0); choose: skip row (loss 0, excluded from mean'
                                   ' denominator) or NaN'),
        },
    },
    'optax_poly_loss_cross_entropy_eps2': {
        'parameters': {
            'epsilon': 2.0,
        },
        'inputs': {
            'logits': [[1.2, -0.8, -0.5], [0.9, -1.2, 1.1]],
            'labels': [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
        },
        'expected': {
            'per_sample': [0.7587006757, 4.847307512],
            'cross_entropy': [0.2761297055, 2.951798796],
            'p_t': [0.7587145149, 0.05224564213],
            'grad_logits': [[-0.6074190844, 0.2584917369, 0.3489273479],
                            [0.4712276618, -1.046786427, 0.5755587664]],
        },
    },
    'csr_multilabel_batch_all_families': {
        'parameters': {
            'num_classes': 6,
            'focal': {
                'alpha': 0.25,
                'gamma': 2.0,
            },
        },
        'inputs': {
            'logits': [[2.0, -1.0, 0.5, -3.0, 0.0, 1.0],
                       [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
                       [1000.0, -1000.0, 5.0, -5.0, 0.0, 20.0],
                       [-2.0, 3.0, -0.5, 0.25, 4.0, -1.5]],
            'indptr': [0, 2, 2, 3, 6],
            'indices': [0, 4, 1, 1, 3, 4],
            'notes': ('row 1 has an empty positive set; row 2 has +-1000 logits and its positive '
                      '(class 1) at -1000'),
        },
        'expected': {
            'dense_targets': [[1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
                              [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
                              [0.0, 1.0, 0.0, 0.0, 0.0, 0.0],
                              [0.0, 1.0, 0.0, 1.0, 1.0, 0.0]],
            'ova_bce_elementwise': [[0.126928011, 0.3132616875, 0.9740769842, 0.04858735157,
                                     0.6931471806, 1.313261688],
                                    [0.6931471806, 0.6931471806, 0.6931471806, 0.6931471806,
                                     0.6931471806, 0.6931471806],
                                    [1000.0, 1000.0, 5.006715348, 0.006715348489, 0.6931471806,
                                     20.0],
                                    [0.126928011, 0.04858735157, 0.4740769842, 0.5759394199,
                                     0.01814992792, 0.201413278]],
            'ova_bce_per_row_sum': [3.469262902, 4.158883083, 2025.706578, 1.445094973],
            'ova_bce_per_row_mean_keras_style': [0.5782104837, 0.6931471806, 337.617763,
                                                 0.2408491621],
            'ova_bce_mean_over_all_elements_torch_style': 84.78249245,
            'ova_bce_sum': 2034.779819,
            'grad_ova_bce_reduction_mean_all_elements': [[-0.004966788418, 0.01120589256,
                                                          0.02593580547, 0.001976078049,
                                                          -0.02083333333, 0.03046077411],
                                                         [0.02083333333, 0.02083333333,
                                                          0.02083333333, 0.02083333333,
                                                          0.02083333333, 0.02083333333],
                                                         [0.04166666667, -0.04166666667,
                                                          0.04138779788, 0.0002788687885,
                                                          0.02083333333, 0.04166666658],
                                                         [0.004966788418, -0.001976078049,
                                                          0.0157308612, -0.0182426458,
                                                          -0.0007494254151, 0.007601063492]],
            'softmax_PAL_N_per_row': [1.578224369, 'undefined (empty positive set)', 2000.0,
                                      1.926264457],
            'zlpr_per_row': [2.513834923, 1.945910149, 2000.0, 1.28900071],
            'sigmoid_focal_per_row_sum': [0.8703080233, 0.7797905781, 1018.834906, 0.08468908675],
            'sigmoid_focal_mean_all_elements': 42.52373724,
        },
    },
    'integer_label_out_of_range_behaviours': {
        'parameters': {
            'num_classes': 3,
            'from_logits': True,
            'reduction': 'none',
        },
        'inputs': {
            'logits': [[1.0, 2.0, 3.0]],
            'labels_tried': [5, 3, -100],
        },
        'expected': {
            'torch_F.cross_entropy': ("IndexError 'Target k is out of bounds' (CPU) / device-side"
                                      ' assert (CUDA); -100 is the default ignore_index -> 0.0'),
            'tf.nn.sparse_softmax_cross_entropy_with_logits': ('InvalidArgumentError on CPU; NaN '
                                                               'loss and grad rows on GPU '
                                                               '(documented)'),
            'optax.softmax_cross_entropy_with_integer_labels': {
                '5': 'nan',
                '-100': 'nan',
            },
            'keras3_jax_backend_SparseCategoricalCrossentropy': {
                '5': 0.0,
                '3': 0.0,
                '-100': 0.0,
            },
            'keras3_numpy_backend_SparseCategoricalCrossentropy': {
                '5': 'IndexError',
                '3': 'IndexError',
                '-100': 0.0,
            },
            'notes': ('No common behaviour: fastxent should validate CSR/int labels up front and '
                      'raise ValueError by default.'),
        },
    },
}
