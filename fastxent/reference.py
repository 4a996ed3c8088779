"""Float64 NumPy oracle for every fastxent loss.

This module implements ``docs/losses.md`` (the contract) literally and is the yardstick every
backend is tested against. It is deliberately slow and simple:

* everything is computed in float64, whatever the input dtype;
* targets of every form (class indices, dense, sparse) are densified into an N x C array;
* the softmax family uses a max-shifted log-sum-exp and ``-log p = (max - x) + log1p(...)``
  (never ``log(softmax)``, never ``lse - x`` by subtraction);
* the sigmoid family uses ``softplus(t) = max(t, 0) + log1p(exp(-|t|))`` and a two-branch
  logistic function, so logits of +-1e4 give finite, exact results;
* gradients are written analytically (see each function's docstring); no finite differences.

Inputs are assumed to be validated by the caller (the public API). Each public function returns
the loss, or ``(loss, grad)`` with ``return_grad=True``; the loss is a Python float for the
``"sum"``, ``"mean"`` and ``"batchmean"`` reductions and a float64 array [N] for ``"none"``;
``grad`` is a float64 array [N, C] holding d(returned loss)/d(logits) (for ``"none"``, row n holds
d loss_n / d logits_n).
"""

import math

import numpy as np

__all__ = [
    "softmax_cross_entropy",
    "sigmoid_binary_cross_entropy",
    "sigmoid_focal_loss",
    "softmax_focal_loss",
]

_REDUCTIONS = ("none", "sum", "mean", "batchmean")


# --------------------------------------------------------------------------------------------
# primitives
# --------------------------------------------------------------------------------------------

def _softplus(t):
    """softplus(t) = log(1 + exp(t)) = max(t, 0) + log1p(exp(-|t|)), exact for large |t|."""
    return np.maximum(t, 0.0) + np.log1p(np.exp(-np.abs(t)))


def _sigmoid(t):
    """Logistic function with full relative accuracy in both tails."""
    out = np.empty_like(t)
    pos = t >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-t[pos]))
    e = np.exp(t[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def _log_softmax_parts(x):
    """``(lse, nlp)`` for every row of x [N, C]: ``lse_n = log sum_c exp(x_nc)`` and
    ``nlp_nc = lse_n - x_nc = -log p_nc >= 0``.

    Max-shifted, with the max's own term (exactly 1) taken out of the sum::

        m = max_c x_c,  s = sum_{c != argmax} exp(x_c - m),  lse = m + log1p(s),
        nlp_c = (m - x_c) + log1p(s)

    so ``nlp`` never comes from subtracting two large numbers: it is exact for logits of
    +-1e4 and keeps full relative accuracy when the loss is tiny (``p_t`` close to 1).
    """
    n, c = x.shape
    if n == 0 or c == 0:
        return np.zeros(n), np.zeros((n, c))
    j = np.argmax(x, axis=1)
    m = x[np.arange(n), j]
    e = np.exp(x - m[:, None])
    e[np.arange(n), j] = 0.0
    l1 = np.log1p(np.sum(e, axis=1))
    return m + l1, (m[:, None] - x) + l1[:, None]


def _as_logits(logits):
    x = np.asarray(logits, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"logits must be 2-D [N, C], got shape {x.shape}")
    return x


def _check_reduction(reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _row_vector(v, n, name):
    """sample_weight -> float64 [N] (None -> ones)."""
    if v is None:
        return np.ones(n)
    v = np.asarray(v, dtype=np.float64)
    return np.broadcast_to(v, (n,)).astype(np.float64)


def _class_vector(v, c, name):
    """class_weight / pos_weight / alpha -> float64 [C] (None -> ones; a scalar broadcasts)."""
    if v is None:
        return np.ones(c)
    v = np.asarray(v, dtype=np.float64)
    return np.broadcast_to(v, (c,)).astype(np.float64)


# --------------------------------------------------------------------------------------------
# targets
# --------------------------------------------------------------------------------------------

def _sparse_parts(targets):
    """(indptr, indices, values or None) for a sparse target object, else None.

    Accepts a scipy.sparse matrix (converted with ``.tocsr()``, ``data`` used as values) or any
    object with ``indptr``, ``indices`` and ``values`` attributes (``fastxent.targets.MultiLabel``).
    """
    try:
        import scipy.sparse as sp
    except ImportError:  # pragma: no cover - scipy is a dependency of the test environment
        sp = None
    if sp is not None and sp.issparse(targets):
        csr = targets.tocsr()
        return np.asarray(csr.indptr), np.asarray(csr.indices), np.asarray(csr.data)
    if hasattr(targets, "indptr") and hasattr(targets, "indices"):
        return (np.asarray(targets.indptr), np.asarray(targets.indices),
                getattr(targets, "values", None))
    return None


def _densify_sparse(parts, n, c):
    """Dense float64 [N, C] array of a sparse target (values default 1; duplicates add up)."""
    indptr, indices, values = parts
    indptr = np.asarray(indptr, dtype=np.int64)
    indices = np.asarray(indices, dtype=np.int64)
    counts = np.diff(indptr)
    rows = np.repeat(np.arange(n, dtype=np.int64), counts)
    nnz = int(indptr[-1] - indptr[0]) if indptr.size else 0
    if values is None:
        vals = np.ones(nnz)
    else:
        vals = np.asarray(values, dtype=np.float64)
    y = np.zeros((n, c))
    start = int(indptr[0]) if indptr.size else 0
    np.add.at(y, (rows, indices[start:start + nnz]), vals[start:start + nnz])
    return y


def _softmax_targets(targets, n, c, ignore_index):
    """Target distribution of the softmax family, before smoothing.

    Returns ``(y, counted, kind)``: y float64 [N, C] (zero on rows not counted), counted bool [N],
    kind in {"index", "dense", "sparse"}.
    """
    parts = _sparse_parts(targets)
    if parts is not None:
        v = _densify_sparse(parts, n, c)
        total = v.sum(axis=1)
        counted = total > 0
        y = np.zeros((n, c))
        y[counted] = v[counted] / total[counted, None]
        return y, counted, "sparse"
    t = np.asarray(targets)
    if t.ndim == 1:
        t = t.astype(np.int64)
        counted = t != ignore_index
        y = np.zeros((n, c))
        rows = np.nonzero(counted)[0]
        y[rows, t[rows]] = 1.0
        return y, counted, "index"
    if t.ndim == 2:
        return t.astype(np.float64), np.ones(n, dtype=bool), "dense"
    raise ValueError(f"unsupported target shape {t.shape}")


def _sigmoid_targets(targets, n, c):
    """Dense float64 [N, C] targets of the sigmoid family (sparse: v at positives, 0 elsewhere)."""
    parts = _sparse_parts(targets)
    if parts is not None:
        return _densify_sparse(parts, n, c)
    t = np.asarray(targets, dtype=np.float64)
    if t.ndim != 2:
        raise ValueError(f"sigmoid targets must be 2-D [N, C] or sparse, got shape {t.shape}")
    return t


# --------------------------------------------------------------------------------------------
# reductions
# --------------------------------------------------------------------------------------------

def _reduce(rows, grad, reduction, denominator, return_grad):
    """Apply a reduction to per-row losses ``rows`` [N] and per-row gradients ``grad`` [N, C].

    ``denominator`` is the "mean" denominator; when it is 0 the "mean" is 0.0 with a zero
    gradient (docs/losses.md: D = 0 policy). ``"batchmean"`` divides by N (0.0 when N = 0).
    """
    n = rows.shape[0]
    if reduction == "none":
        loss = rows.astype(np.float64)
    else:
        if reduction == "sum":
            scale = 1.0
        elif reduction == "mean":
            scale = 0.0 if denominator == 0 else 1.0 / denominator
        else:  # batchmean
            scale = 0.0 if n == 0 else 1.0 / n
        if scale == 0.0:
            loss = 0.0
            grad = None if grad is None else np.zeros_like(grad)
        else:
            loss = float(np.sum(rows) * scale)
            grad = None if grad is None else grad * scale
    if return_grad:
        return loss, grad
    return loss


# --------------------------------------------------------------------------------------------
# softmax family
# --------------------------------------------------------------------------------------------

def _softmax_row_grad(p, omp, a, extra):
    """``p_j * coef_n - a_nj`` with ``coef_n = sum_c a_nc + extra_n``, without cancellation.

    This is the shape of every softmax-family gradient (``a >= 0``). Evaluated literally it
    loses all relative accuracy on the class with ``p_j`` close to 1 (e.g. ``p_t - 1`` for a
    confident correct prediction), so on that class (at most one per row has ``p_j > 1/2``) it
    is evaluated as ``(sum_{c != j} a_nc + extra_n) - (1 - p_j) * coef_n`` with ``1 - p_j``
    from ``expm1`` and the sum over the other classes taken directly.
    """
    coef = np.sum(a, axis=1) + extra
    grad = p * coef[:, None] - a
    n, c = p.shape
    if n == 0 or c == 0:
        return grad
    j = np.argmax(p, axis=1)
    rows = np.nonzero(p[np.arange(n), j] > 0.5)[0]
    if rows.size:
        jj = j[rows]
        others = a[rows].copy()
        others[np.arange(rows.size), jj] = 0.0
        grad[rows, jj] = (np.sum(others, axis=1) + extra[rows]) - omp[rows, jj] * coef[rows]
    return grad


def _softmax_setup(logits, targets, class_weight, sample_weight, ignore_index, label_smoothing):
    x = _as_logits(logits)
    n, c = x.shape
    y, counted, kind = _softmax_targets(targets, n, c, ignore_index)
    w = _class_vector(class_weight, c, "class_weight")
    sw = _row_vector(sample_weight, n, "sample_weight")
    eps = float(label_smoothing)
    # smoothing: y' = (1 - eps) * y + eps / C on counted rows only
    ys = np.where(counted[:, None], (1.0 - eps) * y + (eps / c if c else 0.0), 0.0)
    if kind == "index":
        # D = sum over non-ignored rows of sw_n * w_{t_n}; on counted rows sum_c w_c y_c = w_{t_n}
        denominator = float(np.sum(sw[counted] * (y[counted] @ w)))
    elif kind == "dense":
        denominator = float(n)
    else:
        denominator = float(np.count_nonzero(counted))
    lse, nlp = _log_softmax_parts(x)      # nlp = lse - x = -log p >= 0, no cancellation
    p = np.exp(-nlp)
    return x, n, c, ys, counted, w, sw, lse, nlp, p, denominator


def softmax_cross_entropy(logits, targets, *, class_weight=None, sample_weight=None,
                          ignore_index=-100, label_smoothing=0.0, z_loss=0.0, reduction="mean",
                          return_grad=False):
    """Softmax cross-entropy (docs/losses.md, "Softmax cross-entropy").

    With ``lse_n = log sum_c exp(x_nc)``, ``p = softmax(x)``, ``y'`` the smoothed target
    distribution, ``w`` the class weights and ``sw`` the sample weights, for a counted row::

        loss_n = sw_n * ( sum_c w_c y'_nc (lse_n - x_nc) + z_loss * lse_n**2 )

    and ``loss_n = 0`` for ignored / uncounted rows. The gradient (analytic) is::

        d loss_n / d x_nj = sw_n * ( p_nj * (sum_c w_c y'_nc + 2 z_loss lse_n) - w_j y'_nj )

    (using ``d lse / d x_j = p_j``), zero on uncounted rows, then divided by the reduction's
    denominator. On the class with ``p_j > 1/2`` it is evaluated as
    ``sw_n * (sum_{c != j} w_c y'_nc + 2 z_loss lse_n - (1 - p_nj) * coef_n)`` (same value,
    no cancellation; see ``_softmax_row_grad``).
    """
    _check_reduction(reduction)
    x, n, c, ys, counted, w, sw, lse, nlp, p, den = _softmax_setup(
        logits, targets, class_weight, sample_weight, ignore_index, label_smoothing)
    z = float(z_loss)
    wy = ys * w[None, :]                                    # w_c y'_nc
    # a class without target mass adds 0 whatever its -log p (inf for a -inf masked logit)
    rows = sw * (np.sum(np.where(wy != 0, wy * nlp, 0.0), axis=1) + z * lse ** 2)
    rows = np.where(counted, rows, 0.0)
    grad = None
    if return_grad:
        # p_j (sum_c w_c y'_c + 2 z lse) - w_j y'_j, evaluated stably near p_j = 1
        grad = sw[:, None] * _softmax_row_grad(p, -np.expm1(-nlp), wy, 2.0 * z * lse)
        grad = np.where(counted[:, None], grad, 0.0)
    return _reduce(rows, grad, reduction, den, return_grad)


def softmax_focal_loss(logits, targets, *, gamma=2.0, alpha=None, class_weight=None,
                       sample_weight=None, ignore_index=-100, label_smoothing=0.0,
                       reduction="mean", return_grad=False):
    """Softmax focal loss (docs/losses.md, "Softmax focal loss").

    With ``L_c = lse - x_c = -log p_c``, ``1 - p_c = -expm1(-L_c)`` (stable),
    ``f_c = (1 - p_c)**gamma`` (``0**0 = 1``) and ``k_c = a_c w_c y'_c``::

        loss_n = sw_n * sum_c k_c f_c L_c

    Gradient: ``d L_c / d x_j = p_j - delta_cj`` and
    ``d f_c / d x_j = -gamma (1 - p_c)**(gamma - 1) p_c (delta_cj - p_j)``, hence::

        d loss_n / d x_j = sw_n * ( p_j * sum_c k_c h_c - k_j h_j ),
        h_c = f_c + gamma (1 - p_c)**(gamma - 1) p_c L_c
            = f_c * (1 + gamma p_c L_c / (1 - p_c))

    where ``L_c / (1 - p_c)`` is taken as its limit 1 when ``p_c = 1`` (``L_c = 0``); on the
    class with ``p_j > 1/2`` the gradient is evaluated without cancellation as
    ``sw_n * (sum_{c != j} k_c h_c - (1 - p_j) sum_c k_c h_c)`` (see ``_softmax_row_grad``).
    The focal factor is not detached. ``gamma = 0, alpha = None`` is softmax cross-entropy
    exactly.
    """
    _check_reduction(reduction)
    x, n, c, ys, counted, w, sw, lse, nlp, p, den = _softmax_setup(
        logits, targets, class_weight, sample_weight, ignore_index, label_smoothing)
    a = _class_vector(alpha, c, "alpha")
    g = float(gamma)
    omp = -np.expm1(-nlp)                                   # 1 - p, accurate near p = 1
    f = omp ** g
    k = ys * (a * w)[None, :]
    # a class without target mass adds 0 whatever its -log p (inf for a -inf masked logit)
    rows = sw * np.sum(np.where(k != 0, k * f * nlp, 0.0), axis=1)
    rows = np.where(counted, rows, 0.0)
    grad = None
    if return_grad:
        safe = np.where(nlp > 0, omp, 1.0)
        ratio = np.where(nlp > 0, nlp / safe, 1.0)           # L / (1 - p) -> 1 as p -> 1
        p_ratio = np.where(p > 0, p * ratio, 0.0)             # p L / (1 - p) -> 0 as p -> 0
        h = f * (1.0 + g * p_ratio)
        kh = np.where(k != 0, k * h, 0.0)
        # p_j sum_c k_c h_c - k_j h_j, evaluated stably near p_j = 1
        grad = sw[:, None] * _softmax_row_grad(p, omp, kh, np.zeros(n))
        grad = np.where(counted[:, None], grad, 0.0)
    return _reduce(rows, grad, reduction, den, return_grad)


# --------------------------------------------------------------------------------------------
# sigmoid family
# --------------------------------------------------------------------------------------------

def _sigmoid_setup(logits, targets, class_weight, sample_weight, label_smoothing):
    x = _as_logits(logits)
    n, c = x.shape
    y = _sigmoid_targets(targets, n, c)
    eps = float(label_smoothing)
    ys = y * (1.0 - eps) + 0.5 * eps        # Keras binary smoothing, implicit zeros included
    w = _class_vector(class_weight, c, "class_weight")
    sw = _row_vector(sample_weight, n, "sample_weight")
    scale = sw[:, None] * w[None, :]        # sw_n * w_c
    return x, n, c, ys, scale


def sigmoid_binary_cross_entropy(logits, targets, *, pos_weight=None, class_weight=None,
                                 sample_weight=None, label_smoothing=0.0, reduction="mean",
                                 return_grad=False):
    """Sigmoid binary cross-entropy (docs/losses.md, "Sigmoid binary cross-entropy").

    With ``y'`` the smoothed targets and ``q`` the pos_weight::

        l_nc = sw_n w_c ( q_c y' softplus(-x) + (1 - y') softplus(x) ),   loss_n = sum_c l_nc
        d l_nc / d x = sw_n w_c ( (1 - y') sigma(x) - q_c y' sigma(-x) )

    (using ``softplus'(t) = sigma(t)``). "mean" divides by N * C.
    """
    _check_reduction(reduction)
    x, n, c, ys, scale = _sigmoid_setup(logits, targets, class_weight, sample_weight,
                                        label_smoothing)
    q = _class_vector(pos_weight, c, "pos_weight")[None, :]
    el = scale * (q * ys * _softplus(-x) + (1.0 - ys) * _softplus(x))
    rows = np.sum(el, axis=1)
    grad = None
    if return_grad:
        grad = scale * ((1.0 - ys) * _sigmoid(x) - q * ys * _sigmoid(-x))
    return _reduce(rows, grad, reduction, float(n * c), return_grad)


def sigmoid_focal_loss(logits, targets, *, gamma=2.0, alpha=0.25, gamma_neg=None, clip=0.0,
                       class_weight=None, sample_weight=None, label_smoothing=0.0,
                       reduction="mean", return_grad=False):
    """Sigmoid focal loss, with the ASL options gamma_neg and clip (docs/losses.md).

    With ``s = sigma(x)``, ``u = 1 - s = sigma(-x)`` (computed directly), ``m = clip``::

        p_m = max(s - m, 0)                           (as s (1 - m) (1 - exp(-(x - logit(m)))))
        q   = y' u + (1 - y') p_m                     (= 1 - p_t)
        g   = gamma y' + gamma_neg (1 - y')
        ce  = y' softplus(-x) - (1 - y') log(1 - p_m)
        a_t = alpha y' + (1 - alpha)(1 - y')          (1 if alpha is None or negative)
        l   = sw w a_t q**g ce                        (0**0 = 1),   loss_n = sum_c l_nc

    where ``-log(1 - p_m)`` is ``softplus(x)`` when m = 0 and ``-log(min(u + m, 1))`` when m > 0
    (both finite for any logit). Gradient (the focal factor is not detached), with
    ``ind = [s > m]``::

        dq/dx  = s u ( (1 - y') ind - y' )
        dce/dx = -y' u + (1 - y') ind s u / (1 - p_m)      (= -y' u + (1 - y') s when m = 0)
        dl/dx  = sw w a_t ( q**g dce/dx + g q**g (dq/dx / q) ce )

    The second term is written with ``q**g / q`` so it stays finite; where ``q = 0`` it is
    taken as 0 (that happens only for a hard positive with ``u`` underflowing to 0, where the
    exact value is ~ -(g+1) u**(g+1), or for a hard negative with ``s <= m``, where ``q`` is
    identically 0 nearby).
    """
    _check_reduction(reduction)
    x, n, c, ys, scale = _sigmoid_setup(logits, targets, class_weight, sample_weight,
                                        label_smoothing)
    g_pos = float(gamma)
    g_neg = g_pos if gamma_neg is None else float(gamma_neg)
    m = float(clip)
    s = _sigmoid(x)
    u = _sigmoid(-x)
    if m == 0.0:
        p_m = s
        ind = np.ones_like(s)
        neg_log = _softplus(x)                      # -log(1 - s)
        dneg_log = s                                # d/dx of -log(1 - s)
    else:
        # s - m cancels for a logit near the threshold logit(m): p_m from d = x - logit(m)
        d = x - (math.log(m) - math.log1p(-m))
        with np.errstate(invalid="ignore"):
            shifted = d > 0.0
            near = s * (1.0 - m) * -np.expm1(-np.where(shifted, d, 0.0))
            p_m = np.where(shifted, np.where(d < math.log(2.0), near, s - m), 0.0)
        ind = shifted.astype(np.float64)
        one_minus_pm = np.minimum(u + m, 1.0)       # 1 - p_m without cancellation
        small = p_m <= one_minus_pm                 # -log(1 - p_m) = log1p(p_m / (1 - p_m))
        neg_log = np.where(small, np.log1p(np.where(small, p_m, 0.0) / one_minus_pm),
                           -np.log(one_minus_pm))
        dneg_log = ind * s * u / one_minus_pm
    q = ys * u + (1.0 - ys) * p_m
    # (the blend would turn g = 2 into 1.9999999999999998 for targets outside [0, 1], which
    # fastxent.compat accepts, and q < 0 there: q**g NaN instead of q**2)
    g = np.full_like(ys, g_pos) if g_pos == g_neg else g_pos * ys + g_neg * (1.0 - ys)
    ce = ys * _softplus(-x) + (1.0 - ys) * neg_log
    if alpha is None or float(alpha) < 0:
        a_t = np.ones_like(x)
    else:
        al = float(alpha)
        a_t = al * ys + (1.0 - al) * (1.0 - ys)
    qg = q ** g
    el = scale * a_t * qg * ce
    rows = np.sum(el, axis=1)
    grad = None
    if return_grad:
        dq = s * u * ((1.0 - ys) * ind - ys)
        dce = -ys * u + (1.0 - ys) * dneg_log
        nonzero = q != 0                          # (q < 0 only for targets outside [0, 1])
        dq_over_q = np.where(nonzero, dq / np.where(nonzero, q, 1.0), 0.0)
        grad = scale * a_t * (qg * dce + g * qg * dq_over_q * ce)
    return _reduce(rows, grad, reduction, float(n * c), return_grad)
