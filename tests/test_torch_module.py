"""fastxent.torch: autograd Functions and modules against PyTorch's own losses.

PyTorch is the oracle (F.cross_entropy, F.binary_cross_entropy_with_logits, torchvision's focal
formula in torch ops); plus gradcheck, no_grad, half precision, sparse torch targets, zero-copy
CPU paths, and real training loops on scikit-learn's digits.
"""
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch not installed: fastxent.torch needs it")
F = torch.nn.functional

import fastxent  # noqa: E402
import fastxent.torch as ft  # noqa: E402
from fastxent import api  # noqa: E402

pytestmark = pytest.mark.torch
REDUCTIONS = ("none", "mean", "sum")


def torchvision_sigmoid_focal_loss(inputs, targets, alpha=0.25, gamma=2.0, reduction="none"):
    """torchvision.ops.sigmoid_focal_loss as documented (torchvision is not installed here)."""
    p = torch.sigmoid(inputs)
    ce_loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce_loss * ((1 - p_t) ** gamma)
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _data(n=7, c=5, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (3 * torch.randn(n, c, generator=g, dtype=dtype)).requires_grad_(True)
    labels = torch.randint(0, c, (n,), generator=g)
    labels[1] = -100
    multi_hot = (torch.rand(n, c, generator=g) < 0.3).to(dtype)
    multi_hot[0] = 0
    weight = torch.rand(c, generator=g, dtype=dtype) + 0.5
    return x, labels, multi_hot, weight


def _loss_and_grad(fn, x, upstream_seed=1):
    x = x.detach().clone().requires_grad_(True)
    loss = fn(x)
    g = torch.randn(loss.shape, generator=torch.Generator().manual_seed(upstream_seed),
                    dtype=loss.dtype)
    (grad,) = torch.autograd.grad(loss, x, g)
    return loss.detach(), grad


def _assert_same(fast, torch_fn, x, rtol=1e-12, atol=1e-13):
    loss_a, grad_a = _loss_and_grad(fast, x)
    loss_b, grad_b = _loss_and_grad(torch_fn, x)
    assert loss_a.shape == loss_b.shape and loss_a.dtype == loss_b.dtype
    torch.testing.assert_close(loss_a, loss_b, rtol=rtol, atol=atol)
    torch.testing.assert_close(grad_a, grad_b, rtol=rtol, atol=atol)


# ============================================================================================
# parity with PyTorch (float64: values within rounding)
# ============================================================================================

@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy_class_indices(reduction, weighted, smoothing):
    x, labels, _, weight = _data()
    w = weight if weighted else None
    _assert_same(lambda z: ft.cross_entropy(z, labels, weight=w, reduction=reduction,
                                            label_smoothing=smoothing),
                 lambda z: F.cross_entropy(z, labels, weight=w, reduction=reduction,
                                           label_smoothing=smoothing), x)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_probabilities_and_module(reduction):
    x, _, _, weight = _data()
    probs = torch.softmax(torch.randn(x.shape, dtype=x.dtype), dim=1)
    module = ft.CrossEntropyLoss(weight=weight, reduction=reduction, label_smoothing=0.1)
    reference = torch.nn.CrossEntropyLoss(weight=weight, reduction=reduction, label_smoothing=0.1)
    _assert_same(lambda z: module(z, probs), lambda z: reference(z, probs), x)


def test_cross_entropy_sparse_targets_are_pal_n():
    """Sparse torch / MultiLabel targets = probability targets spread over the positives."""
    x, _, multi_hot, _ = _data()
    rows = multi_hot.sum(1) > 0
    x_counted, y_counted = x[rows], multi_hot[rows]
    probs = y_counted / y_counted.sum(1, keepdim=True)
    for target in (y_counted.to_sparse_csr(), y_counted.to_sparse(),
                   fastxent.MultiLabel.from_dense(y_counted.numpy())):
        _assert_same(lambda z: ft.cross_entropy(z, target),
                     lambda z: F.cross_entropy(z, probs), x_counted)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weight_kind", [None, "class", "row", "scalar"])
def test_bce_with_logits(reduction, weight_kind):
    x, _, multi_hot, weight = _data()
    n, c = x.shape
    w = {None: None, "class": weight, "row": torch.rand(n, 1, dtype=x.dtype) + 0.5,
         "scalar": torch.tensor(0.7, dtype=x.dtype)}[weight_kind]
    pos_weight = torch.tensor(1.7, dtype=x.dtype) if reduction == "none" else weight.flip(0)
    _assert_same(lambda z: ft.binary_cross_entropy_with_logits(z, multi_hot, weight=w,
                                                               reduction=reduction,
                                                               pos_weight=pos_weight),
                 lambda z: F.binary_cross_entropy_with_logits(z, multi_hot, weight=w,
                                                              reduction=reduction,
                                                              pos_weight=pos_weight), x)


@pytest.mark.parametrize("layout", ["csr", "coo", "multilabel", "scipy"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_module_sparse_targets(layout, reduction):
    x, _, multi_hot, weight = _data()
    target = {"csr": lambda: multi_hot.to_sparse_csr(), "coo": lambda: multi_hot.to_sparse(),
              "multilabel": lambda: fastxent.MultiLabel.from_dense(multi_hot.numpy()),
              "scipy": lambda: fastxent.MultiLabel.from_dense(multi_hot.numpy()).to_scipy()}
    module = ft.BCEWithLogitsLoss(weight=weight, reduction=reduction)
    reference = torch.nn.BCEWithLogitsLoss(weight=weight, reduction=reduction)
    _assert_same(lambda z: module(z, target[layout]()), lambda z: reference(z, multi_hot), x)


def test_sparse_coo_with_values_and_row_reduction():
    x, _, multi_hot, _ = _data()
    soft = multi_hot * 0.75
    loss_row, grad_row = _loss_and_grad(
        lambda z: ft.binary_cross_entropy_with_logits(z, soft.to_sparse(), reduction="row"), x)
    loss_ref, grad_ref = _loss_and_grad(
        lambda z: F.binary_cross_entropy_with_logits(z, soft, reduction="none").sum(1), x)
    torch.testing.assert_close(loss_row, loss_ref)
    torch.testing.assert_close(grad_row, grad_ref)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("alpha", [0.25, -1.0])
def test_sigmoid_focal_matches_torchvision(reduction, alpha):
    x, _, multi_hot, _ = _data()
    soft = multi_hot * 0.8 + 0.1
    _assert_same(lambda z: ft.sigmoid_focal_loss(z, soft, alpha=alpha, gamma=2.0,
                                                 reduction=reduction),
                 lambda z: torchvision_sigmoid_focal_loss(z, soft, alpha=alpha, gamma=2.0,
                                                          reduction=reduction), x)
    module = ft.SigmoidFocalLoss(alpha=alpha, reduction=reduction)
    _assert_same(lambda z: module(z, fastxent.MultiLabel.from_dense(multi_hot.numpy())),
                 lambda z: torchvision_sigmoid_focal_loss(z, multi_hot, alpha=alpha,
                                                          reduction=reduction), x)


def test_defaults_follow_pytorch_and_torchvision():
    x, labels, multi_hot, _ = _data()
    assert ft.sigmoid_focal_loss(x, multi_hot).shape == x.shape        # torchvision: "none"
    assert ft.SigmoidFocalLoss()(x, multi_hot).dim() == 0               # modules: "mean"
    assert ft.CrossEntropyLoss().ignore_index == -100
    torch.testing.assert_close(ft.cross_entropy(x, labels), F.cross_entropy(x, labels))


# ============================================================================================
# autograd behaviour
# ============================================================================================

@pytest.mark.parametrize("reduction", ["none", "mean", "sum", "row"])
def test_gradcheck(reduction):
    x, labels, multi_hot, weight = _data(n=4, c=3)
    ce_reduction = "none" if reduction == "row" else reduction
    checks = [
        lambda z: ft.cross_entropy(z, labels, weight=weight, reduction=ce_reduction,
                                   label_smoothing=0.1),
        lambda z: ft.binary_cross_entropy_with_logits(z, multi_hot, reduction=reduction,
                                                      pos_weight=torch.tensor(2.0,
                                                                              dtype=z.dtype)),
        lambda z: ft.sigmoid_focal_loss(z, multi_hot.to_sparse_csr(), reduction=reduction),
    ]
    for fn in checks:
        assert torch.autograd.gradcheck(fn, (x.detach().requires_grad_(True),))


def _spy(monkeypatch, name):
    calls = []
    original = getattr(api, name)

    def spy(logits, targets, **kwargs):
        calls.append(dict(kwargs, logits=logits, targets=targets))
        return original(logits, targets, **kwargs)

    spy.__name__ = name
    monkeypatch.setattr(api, name, spy)
    return calls


def test_no_gradient_under_no_grad_or_without_requires_grad(monkeypatch):
    calls = _spy(monkeypatch, "softmax_cross_entropy")
    x, labels, _, _ = _data()
    with torch.no_grad():
        loss = ft.cross_entropy(x, labels)
    assert loss.grad_fn is None and not loss.requires_grad
    loss = ft.cross_entropy(x.detach(), labels)
    assert loss.grad_fn is None
    assert [c["return_grad"] for c in calls] == [False, False]
    ft.cross_entropy(x, labels).backward()
    assert calls[-1]["return_grad"] is True


def test_backward_scales_by_grad_output_and_retains():
    x, labels, _, _ = _data()
    loss = ft.cross_entropy(x, labels)
    (g1,) = torch.autograd.grad(loss, x, retain_graph=True)
    (g3,) = torch.autograd.grad(3.0 * loss, x, retain_graph=True)
    (g1_again,) = torch.autograd.grad(loss, x)
    torch.testing.assert_close(g3, 3.0 * g1)
    torch.testing.assert_close(g1_again, g1)        # the kept gradient was not scaled in place
    x.grad = None
    (ft.cross_entropy(x, labels) + ft.cross_entropy(x, labels)).backward()
    torch.testing.assert_close(x.grad, 2.0 * g1)


def test_zero_copy_cpu(monkeypatch):
    calls = _spy(monkeypatch, "sigmoid_binary_cross_entropy")
    x, _, multi_hot, _ = _data(dtype=torch.float32)
    loss = ft.binary_cross_entropy_with_logits(x, multi_hot)
    loss.backward()
    received = calls[0]["logits"]
    assert isinstance(received, np.ndarray)
    assert received.ctypes.data == x.data_ptr()               # the tensor's own memory
    assert np.shares_memory(calls[0]["targets"], multi_hot.numpy())
    assert calls[0]["grad_out"] is None                       # fresh buffer, caller's kept intact
    torch.testing.assert_close(x.grad, torch.autograd.grad(
        F.binary_cross_entropy_with_logits(x, multi_hot), x)[0], rtol=1e-5, atol=1e-7)


def test_non_contiguous_logits_are_copied_then_overwritten_by_the_gradient(monkeypatch):
    calls = _spy(monkeypatch, "softmax_cross_entropy")
    base = torch.randn(5, 8, dtype=torch.float64)
    x = base[:, ::2].requires_grad_(True)
    labels = torch.tensor([0, 1, 2, 3, 0])
    ft.cross_entropy(x, labels).backward()
    assert calls[0]["grad_out"] is calls[0]["logits"]          # private copy reused in place
    torch.testing.assert_close(x.grad, torch.autograd.grad(F.cross_entropy(x, labels), x)[0])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision(dtype):
    x64, labels, multi_hot, _ = _data(n=16, c=9)
    x = x64.detach().to(dtype).requires_grad_(True)
    exact = x.detach().double().requires_grad_(True)
    for fast, ref in [(lambda z: ft.cross_entropy(z, labels), lambda z: F.cross_entropy(z, labels)),
                      (lambda z: ft.sigmoid_focal_loss(z, multi_hot, reduction="sum"),
                       lambda z: torchvision_sigmoid_focal_loss(z, multi_hot, reduction="sum"))]:
        x.grad = exact.grad = None
        loss = fast(x)
        loss.backward()
        ref(exact).backward()
        assert loss.dtype == dtype and x.grad.dtype == dtype
        torch.testing.assert_close(loss.double(), ref(exact).detach(), rtol=1e-2, atol=1e-2)
        # computed in float32, rounded once to the half type
        torch.testing.assert_close(x.grad.double(), exact.grad, rtol=1e-2,
                                   atol=1e-2 * float(exact.grad.abs().max()))


# ============================================================================================
# errors and devices
# ============================================================================================

def test_errors_are_clear():
    x, labels, multi_hot, _ = _data()
    with pytest.raises(ValueError, match="movedim"):
        ft.cross_entropy(x.detach().reshape(7, 5, 1), labels)
    with pytest.raises(TypeError, match="deprecated"):
        ft.CrossEntropyLoss(size_average=True)
    with pytest.raises(NotImplementedError, match="detach"):
        ft.binary_cross_entropy_with_logits(x, multi_hot.clone().requires_grad_(True))
    with pytest.raises(ValueError, match="weight of shape"):
        ft.binary_cross_entropy_with_logits(x, multi_hot, weight=torch.ones(7, 5))
    with pytest.raises(NotImplementedError, match="pos_weight"):
        ft.binary_cross_entropy_with_logits(x, multi_hot, reduction="none",
                                            pos_weight=torch.ones(5))
    with pytest.raises(TypeError, match="float16, bfloat16, float32 or float64"):
        ft.cross_entropy(torch.zeros(2, 3, dtype=torch.int32), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"sparse target must be \[N, C\] = \[N, 5\]"):
        ft.binary_cross_entropy_with_logits(x, torch.zeros(7, 8).to_sparse())   # C + 3
    with pytest.raises(ValueError, match="sparse target must be"):
        ft.binary_cross_entropy_with_logits(x, torch.zeros(7).to_sparse())       # 1-D


@pytest.mark.parametrize("name", ["cross_entropy", "binary_cross_entropy_with_logits"])
def test_second_derivative_raises_first_with_create_graph_is_exact(name):
    """The gradient comes from the forward pass: with create_graph=True it is still the exact
    first derivative (equal to PyTorch's), and differentiating it again raises instead of
    silently contributing nothing (a gradient penalty would otherwise be dropped)."""
    x, labels, multi_hot, _ = _data()
    target = labels if name == "cross_entropy" else multi_hot
    ours = getattr(ft, name)
    theirs = getattr(torch.nn.functional, name)
    x = x.detach().double().requires_grad_(True)
    (g,) = torch.autograd.grad(ours(x, target), x, create_graph=True)
    (g_ref,) = torch.autograd.grad(theirs(x, target), x, create_graph=True)
    torch.testing.assert_close(g.detach(), g_ref.detach(), rtol=1e-12, atol=1e-14)
    with pytest.raises(RuntimeError, match="first derivatives only"):
        (g ** 2).sum().backward()


def test_cuda_tensor_without_cuda_backend_raises():
    if "cuda" in fastxent.available_backends():
        pytest.skip("the CUDA backend is available here")
    with pytest.raises(RuntimeError, match="CUDA backend is not available"):
        ft._cuda_ready(torch.empty(0))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device for PyTorch")
def test_cuda_tensors_stay_on_the_device():
    if "cuda" not in fastxent.available_backends():
        pytest.skip("fastxent's CUDA backend is not available")
    x = torch.randn(64, 33, device="cuda", requires_grad=True)
    labels = torch.randint(0, 33, (64,), device="cuda")
    loss = ft.cross_entropy(x, labels)
    loss.backward()
    assert x.grad.is_cuda
    ref = x.detach().clone().requires_grad_(True)
    F.cross_entropy(ref, labels).backward()
    torch.testing.assert_close(x.grad, ref.grad, rtol=1e-5, atol=1e-6)


def test_import_fastxent_does_not_import_torch():
    code = "import sys, fastxent, fastxent.pipeline; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ============================================================================================
# real training loops (scikit-learn's bundled digits, 20 optimiser steps)
# ============================================================================================

def _digits():
    datasets = pytest.importorskip("sklearn.datasets",
                                   reason="scikit-learn not installed (digits data set)")
    features, labels = datasets.load_digits(return_X_y=True)
    return torch.tensor(features / 16.0), torch.tensor(labels)


def _train(loss_fn, features, n_out, steps=20):
    torch.manual_seed(0)
    model = torch.nn.Linear(features.shape[1], n_out).double()
    optimiser = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    trajectory = []
    for _ in range(steps):
        optimiser.zero_grad()
        loss = loss_fn(model(features))
        loss.backward()
        optimiser.step()
        trajectory.append(loss.item())
    return np.array(trajectory), model.weight.detach().clone()


def test_training_loop_cross_entropy_digits():
    features, labels = _digits()
    ours, w_ours = _train(lambda z: ft.CrossEntropyLoss()(z, labels), features, 10)
    theirs, w_theirs = _train(lambda z: F.cross_entropy(z, labels), features, 10)
    np.testing.assert_allclose(ours, theirs, rtol=1e-10)
    assert ours[-1] < 0.5 * ours[0]                     # it did learn
    torch.testing.assert_close(w_ours, w_theirs, rtol=1e-9, atol=1e-12)


def test_training_loop_bce_multi_hot_digits():
    features, labels = _digits()
    # multi-hot: the digit itself, "is even" (class 10) and "is > 4" (class 11)
    dense = torch.zeros(len(labels), 12, dtype=torch.float64)
    dense[torch.arange(len(labels)), labels] = 1
    dense[:, 10] = (labels % 2 == 0).double()
    dense[:, 11] = (labels > 4).double()
    sparse = fastxent.MultiLabel.from_dense(dense.numpy())
    ours, _ = _train(lambda z: ft.binary_cross_entropy_with_logits(z, sparse), features, 12)
    theirs, _ = _train(lambda z: F.binary_cross_entropy_with_logits(z, dense), features, 12)
    np.testing.assert_allclose(ours, theirs, rtol=1e-10)
    assert ours[-1] < 0.5 * ours[0]


@pytest.mark.parametrize("which", ["cross_entropy", "binary_cross_entropy_with_logits"])
def test_autocast_returns_a_float32_loss_like_pytorch(which):
    """Under torch.autocast (bfloat16) a Linear layer's output is bfloat16; PyTorch's losses
    run in float32 there and return a float32 loss: so does fastxent (its loss in bfloat16
    was off by ~0.2%); the gradient reaching the layer matches PyTorch's."""
    torch.manual_seed(0)
    layer = torch.nn.Linear(16, 40)
    inputs = torch.randn(8, 16)
    target = torch.randint(0, 40, (8,)) if which == "cross_entropy" else \
        (torch.rand(8, 40) < 0.1).float()
    results = []
    for module in (F, ft):
        layer.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = layer(inputs)
            assert logits.dtype == torch.bfloat16
            loss = getattr(module, which)(logits, target)
        loss.backward()
        results.append((loss.dtype, loss.item(), layer.weight.grad.clone()))
    (want_dtype, want, want_grad), (dtype, got, grad) = results
    assert dtype == want_dtype == torch.float32
    assert got == pytest.approx(want, rel=1e-5)
    torch.testing.assert_close(grad, want_grad, rtol=2e-2, atol=1e-4)


def _three_losses(module, z, labels, soft):
    return (module.cross_entropy(z, labels)
            + module.binary_cross_entropy_with_logits(z, soft)
            + (ft.sigmoid_focal_loss(z, soft, reduction="mean") if module is ft
               else torchvision_sigmoid_focal_loss(z, soft, reduction="mean")))


def test_torch_compile_calls_the_losses_as_opaque_functions():
    """Under torch.compile (eager backend: no C++ compiler needed) a model step with fastxent's
    losses gives the eager values and gradients, as PyTorch's losses do; dynamo runs the fused
    call as one opaque function instead of tracing into NumPy/Numba."""
    torch.manual_seed(0)
    layer = torch.nn.Linear(6, 5).double()
    inputs = torch.randn(4, 6, dtype=torch.float64)
    labels = torch.tensor([0, 3, 4, 1])
    soft = torch.rand(4, 5, dtype=torch.float64)

    def step(module):
        layer.zero_grad()
        loss = _three_losses(module, layer(inputs), labels, soft)
        loss.backward()
        return loss.detach(), layer.weight.grad.clone()

    want, want_grad = step(F)
    eager, eager_grad = step(ft)
    compiled, compiled_grad = torch.compile(step, backend="eager")(ft)
    torch.testing.assert_close(eager, want, rtol=1e-12, atol=0)
    torch.testing.assert_close(compiled, eager, rtol=1e-15, atol=0)
    torch.testing.assert_close(compiled_grad, eager_grad, rtol=1e-15, atol=0)
    torch.testing.assert_close(eager_grad, want_grad, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("transform", ["grad", "vmap over logits", "vmap over targets",
                                       "jit.trace"])
def test_unsupported_torch_transforms_say_so(transform):
    """torch.func transforms hand the losses tensors without storage, and torch.jit.trace
    cannot see into the kernels: each raises a RuntimeError that names the transform and the
    way out (torch's own errors were "Cannot access data pointer" and "unordered_map::at")."""
    x = torch.randn(3, 4, requires_grad=True)
    y = torch.tensor([0, 1, 2])
    calls = {
        "grad": lambda: torch.func.grad(lambda a: ft.cross_entropy(a, y))(x),
        "vmap over logits": lambda: torch.vmap(
            lambda a: ft.binary_cross_entropy_with_logits(a[None], torch.ones(1, 4)))(x),
        "vmap over targets": lambda: torch.vmap(lambda t: ft.cross_entropy(x, t))(
            torch.tensor([[0, 1, 2], [2, 1, 0]])),
        "jit.trace": lambda: torch.jit.trace(lambda a: ft.sigmoid_focal_loss(a, torch.ones(3, 4)),
                                             (x,)),
    }
    match = "torch.jit.trace" if transform == "jit.trace" else "torch.func transform"
    with pytest.raises(RuntimeError, match=match):
        calls[transform]()


def test_autograd_grad_twice_returns_independent_tensors():
    """torch.autograd.grad through a retained graph: each call returns its own tensor (the
    kept gradient was handed out twice, so editing one result changed the other), with
    PyTorch's values; the first call still returns the kept gradient without a copy."""
    x = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0, 1, 2, 3])
    loss = ft.cross_entropy(x, t)
    g1, = torch.autograd.grad(loss, x, retain_graph=True)
    g2, = torch.autograd.grad(loss, x, retain_graph=True)
    assert g1.data_ptr() != g2.data_ptr()
    want, = torch.autograd.grad(F.cross_entropy(x, t), x)
    g1.mul_(0.0)                                 # e.g. clipping a returned gradient in place
    torch.testing.assert_close(g2, want, rtol=1e-12, atol=0)


def test_pos_weight_of_shape_1_by_c_broadcasts_like_pytorch():
    x = torch.randn(3, 4, dtype=torch.float64)
    t = torch.rand(3, 4, dtype=torch.float64)
    pw = torch.tensor([[1.0, 2.0, 0.5, 3.0]], dtype=torch.float64)
    for reduction in ("mean", "sum"):
        torch.testing.assert_close(
            ft.binary_cross_entropy_with_logits(x, t, pos_weight=pw, reduction=reduction),
            F.binary_cross_entropy_with_logits(x, t, pos_weight=pw, reduction=reduction),
            rtol=1e-12, atol=0)


def test_element_losses_of_sparse_targets_with_values_keep_float64():
    """reduction='none' densifies sparse targets for the element losses: in the logits' dtype
    (float32 before, which left float64 results float32-accurate)."""
    x = torch.randn(3, 4, dtype=torch.float64)
    dense = torch.tensor([[0.3, 0, 0.7, 0], [0, 0.1, 0, 0], [0, 0, 0, 0.9]],
                         dtype=torch.float64)
    for fn, theirs in ((ft.binary_cross_entropy_with_logits,
                        lambda a, b: F.binary_cross_entropy_with_logits(a, b, reduction="none")),
                       (ft.sigmoid_focal_loss,
                        lambda a, b: torchvision_sigmoid_focal_loss(a, b))):
        ours = fn(x, dense.to_sparse_csr(), reduction="none")
        torch.testing.assert_close(ours, theirs(x, dense), rtol=1e-12, atol=1e-15)
