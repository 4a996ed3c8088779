"""PyTorch autograd for fastxent's fused losses (optional: ``import fastxent`` never imports torch).

Modules and functions with PyTorch's (and torchvision's, for focal) argument names and defaults:

=====================================  ===============================================
``CrossEntropyLoss`` / ``cross_entropy``  ``weight``, ``ignore_index=-100``, ``reduction="mean"``,
                                          ``label_smoothing=0.0``
``BCEWithLogitsLoss`` /                   ``weight`` ([C], [1, C] or [N, 1]), ``reduction="mean"``,
``binary_cross_entropy_with_logits``      ``pos_weight``
``SigmoidFocalLoss`` /                    torchvision's ``alpha=0.25``, ``gamma=2``,
``sigmoid_focal_loss``                    ``reduction`` (functional default ``"none"``, as
                                          torchvision; module default ``"mean"``)
=====================================  ===============================================

Targets may be class indices (int tensor [N]), a dense float tensor [N, C], a
:class:`fastxent.MultiLabel`, a scipy.sparse matrix or a sparse torch tensor (CSR or COO: never
densified). Logits are [N, C] (for softmax a class-axis-last reshape of [N, C, d...] is the
caller's: ``logits.movedim(1, -1).reshape(-1, C)``).

How it runs (the Liger-Kernel pattern): the forward pass calls the fused kernel once with
``return_grad=True``; the gradient is kept for backward, which only scales it by
``grad_output`` (a scalar, or row i by ``grad_output[i]`` for a per-row loss; when
``grad_output`` is exactly 1 on the CPU the kept gradient is returned as is, the first time:
a second backward through a retained graph gets a copy). Under
``torch.no_grad()``, or when the logits do not require grad, no gradient is computed.

* CPU tensors are zero-copy: a contiguous float32/float64 tensor is handed to the kernels as
  ``tensor.numpy()`` (the same memory) and results come back with ``torch.from_numpy``.
* float16/bfloat16 logits are computed in float32 (one converted copy, which then receives the
  gradient in place) and the loss and gradient are returned in the logits' dtype; under
  ``torch.autocast`` the loss is float32, as PyTorch's losses are there.
* CUDA tensors go to fastxent's CUDA backend without a host round trip when
  ``"cuda" in fastxent.available_backends()``; otherwise a CUDA tensor raises ``RuntimeError``
  (nothing is copied to the host behind your back).

Differences from PyTorch: ``"mean"`` over a batch whose rows are all ignored is 0.0 with a zero
gradient (PyTorch: NaN); no gradient flows to the targets or weights (a target that requires
grad raises); sparse softmax targets are normalised per row (docs/losses.md). For the sigmoid
family, ``reduction="none"`` returns PyTorch's element losses [N, C] (computed by the same
kernels, one class per row; sparse targets are densified for it, and a per-class
``pos_weight`` is not supported there); ``reduction="row"`` returns fastxent's per-row sums [N].

Transforms: under ``torch.compile`` each loss is one opaque call (a graph break; the rest of the
model is compiled as usual). ``torch.func`` transforms (``grad``, ``vmap``, ``jacrev``, ...)
and ``torch.jit.trace`` are not supported and raise a ``RuntimeError`` saying so.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from . import _dispatch, api
from .targets import MultiLabel

__all__ = ["CrossEntropyLoss", "BCEWithLogitsLoss", "SigmoidFocalLoss", "cross_entropy",
           "binary_cross_entropy_with_logits", "sigmoid_focal_loss"]

_KERNEL_DTYPES = (torch.float32, torch.float64)
_HALF_DTYPES = (torch.float16, torch.bfloat16)


class _FirstDerivativeOnly(torch.autograd.Function):
    """Identity whose own derivative raises: what a gradient taken with ``create_graph=True``
    passes through, so that differentiating it again (a gradient penalty, a Hessian-vector
    product) fails loudly instead of silently contributing nothing."""

    @staticmethod
    def forward(ctx, grad):  # noqa: D401 - torch API
        return grad.view_as(grad)

    @staticmethod
    def backward(ctx, grad_output):
        raise RuntimeError("fastxent's losses have first derivatives only: the gradient was "
                           "computed in the forward pass and cannot be differentiated again "
                           "(create_graph=True, double backward); use torch.nn.functional's "
                           "losses where second derivatives are needed")


def _first_derivative_only(grad: torch.Tensor) -> torch.Tensor:
    if not torch.is_grad_enabled():          # a plain backward: no graph is built
        return grad
    leaf = grad.detach().requires_grad_(True)
    return _FirstDerivativeOnly.apply(leaf)


class _FusedLoss(torch.autograd.Function):
    """Loss whose gradient was computed in the forward pass; backward scales it."""

    @staticmethod
    def forward(ctx, logits, compute):  # noqa: D401 - torch API
        loss, grad = compute()
        ctx.save_for_backward(grad)
        return loss

    @staticmethod
    def backward(ctx, grad_output):
        (grad,) = ctx.saved_tensors
        if grad_output.dim() == 0:
            if grad_output.device.type == "cpu" and float(grad_output) == 1.0:
                # the kept gradient itself (no multiply, no copy) the first time; a copy after
                # that (retain_graph): torch.autograd.grad handed the same tensor out twice,
                # so editing one result changed the other
                if not getattr(ctx, "handed_out", False):
                    ctx.handed_out = True
                    return _first_derivative_only(grad), None
                return _first_derivative_only(grad.clone()), None
            return _first_derivative_only(grad * grad_output.to(grad.dtype)), None
        if grad_output.dim() == 1 and grad.dim() == 2:    # per-row losses: scale row i
            return _first_derivative_only(grad * grad_output.to(grad.dtype).unsqueeze(1)), None
        return _first_derivative_only(grad * grad_output.to(grad.dtype)), None  # [N, C]


# ------------------------------------------------------------------------------------------
# conversions (no copies for contiguous CPU tensors)
# ------------------------------------------------------------------------------------------

def _cuda_ready(tensor: torch.Tensor) -> None:
    if "cuda" not in _dispatch.available_backends():
        raise RuntimeError(
            f"logits are on {tensor.device} but fastxent's CUDA backend is not available in "
            f"this process (fastxent.available_backends() = "
            f"{sorted(_dispatch.available_backends())}); move the tensors to the CPU "
            f"explicitly with .cpu(), or install numba-cuda on a machine with a GPU")


def _eager_only(tensor: torch.Tensor, name: str) -> None:
    """Refuse, with a clear message, what the fused kernels cannot serve: tensors wrapped by a
    ``torch.func`` transform (they have no storage to hand to a kernel; torch's own error was
    "Cannot access data pointer") and ``torch.jit.trace`` (which cannot see into the kernels;
    its error was "unordered_map::at")."""
    wrapped = getattr(getattr(torch._C, "_functorch", None), "is_functorch_wrapped_tensor", None)
    if wrapped is not None and wrapped(tensor):
        raise RuntimeError(
            f"{name} is a tensor inside a torch.func transform (grad, vmap, jacrev, ...), which "
            f"fastxent's losses do not support: their gradient comes from fused NumPy/Numba "
            f"kernels, not from torch operators. Call the loss eagerly and use loss.backward() "
            f"or torch.autograd.grad, or use torch.nn.functional's losses inside torch.func")
    if torch.jit.is_tracing():
        raise RuntimeError(
            "fastxent's losses cannot be recorded by torch.jit.trace: they call NumPy/Numba "
            "kernels that a trace cannot see. Trace the model without its loss and call the "
            "loss eagerly, or use torch.compile, which calls the loss as a Python function")


def _logits(tensor: Any, name: str = "input"):
    """(array handed to the kernels, private?) for logits [N, C]; private means our own copy,
    which may receive the gradient in place."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of logits [N, C], got "
                        f"{type(tensor).__name__}; call the fastxent losses directly for "
                        f"NumPy arrays")
    _eager_only(tensor, name)
    if tensor.dim() != 2:
        raise ValueError(f"{name} must be 2-D [N, C] logits, got shape {tuple(tensor.shape)}; "
                         f"for [N, C, d1, ...] pass logits.movedim(1, -1).reshape(-1, C) and "
                         f"target.reshape(-1)")
    if tensor.layout != torch.strided:
        raise TypeError(f"{name} must be a dense (strided) tensor, got layout {tensor.layout}")
    x = tensor.detach()
    private = False
    if x.dtype in _HALF_DTYPES:
        x, private = x.float(), True
    elif x.dtype not in _KERNEL_DTYPES:
        raise TypeError(f"{name} must be float16, bfloat16, float32 or float64, got {x.dtype}")
    if not x.is_contiguous():
        x, private = x.contiguous(), True
    if x.is_cuda:
        _cuda_ready(x)
        return x, private
    if x.device.type != "cpu":
        raise RuntimeError(f"{name} is on {x.device}: fastxent computes on the CPU and CUDA only")
    return x.numpy(), private


def _host(tensor: Any) -> Any:
    """A tensor argument as a NumPy array (weights, class indices; small), else unchanged."""
    if isinstance(tensor, torch.Tensor):
        _eager_only(tensor, "a tensor argument")
        t = tensor.detach()
        if t.dtype in _HALF_DTYPES:
            t = t.float()
        return t.cpu().contiguous().numpy()
    return tensor


def _sparse_tensor_to_multilabel(target: torch.Tensor, n_classes: int) -> MultiLabel:
    t = target.detach().cpu()
    if t.dim() != 2 or t.shape[1] != n_classes:
        raise ValueError(f"target: a sparse target must be [N, C] = [N, {n_classes}] like the "
                         f"logits, got shape {tuple(t.shape)}")
    if t.layout == torch.sparse_coo:
        t = t.coalesce()          # sorted by (row, column), duplicates summed
        rows, cols = t.indices()[0].numpy(), t.indices()[1].numpy()
        indptr = np.zeros(t.shape[0] + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=t.shape[0]), out=indptr[1:])
        indices = cols
    elif t.layout == torch.sparse_csr:
        indptr, indices = t.crow_indices().numpy(), t.col_indices().numpy()
    else:
        raise TypeError(f"sparse target layout {t.layout} is not supported; convert it with "
                        f".to_sparse_csr()")
    values = t.values()
    values = None if bool(torch.all(values == 1)) else _host(values)
    return MultiLabel(indptr, indices, n_classes, values)


def _targets(target: Any, logits: Any, n_classes: int) -> Any:
    """Targets in a form the API takes: MultiLabel / scipy.sparse as given; tensors converted."""
    if not isinstance(target, torch.Tensor):
        return target
    if target.layout != torch.strided:
        return _sparse_tensor_to_multilabel(target, n_classes)
    if target.requires_grad and torch.is_grad_enabled():
        raise NotImplementedError("fastxent does not compute gradients with respect to the "
                                  "targets; pass target.detach()")
    if isinstance(logits, torch.Tensor):            # CUDA: stays on the device
        if target.device != logits.device:
            raise ValueError(f"target is on {target.device} but the logits are on "
                             f"{logits.device}")
        t = target.detach()
        return (t.float() if t.dtype in _HALF_DTYPES else t).contiguous()
    if target.device.type != "cpu":
        raise ValueError(f"target is on {target.device} but the logits are on the CPU")
    return _host(target)


def _place(value: Any, logits: Any) -> Any:
    """A weight option next to the logits: NumPy for host logits, a float64 tensor on the
    logits' device for CUDA logits (PyTorch's weights are tensors; they are O(N + C))."""
    if not isinstance(value, torch.Tensor):
        return value
    if isinstance(logits, torch.Tensor):
        return value.detach().to(device=logits.device, dtype=torch.float64).contiguous()
    return _host(value)


def _numel(value: Any) -> int:
    return value.numel() if isinstance(value, torch.Tensor) else int(np.size(value))


def _to_tensor(value: Any, device: torch.device) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    if hasattr(value, "__dlpack__"):
        return torch.from_dlpack(value)
    return torch.as_tensor(value, device=device)


def _reduction(value: str, allowed=("none", "mean", "sum")) -> str:
    if value not in allowed:
        raise ValueError(f"reduction must be one of {allowed}, got {value!r}")
    return value


def _deprecated(size_average, reduce) -> None:
    if size_average is not None or reduce is not None:
        raise TypeError("size_average and reduce are deprecated in PyTorch and not supported; "
                        "use reduction='none' | 'mean' | 'sum'")


# ------------------------------------------------------------------------------------------
# the one path every loss takes
# ------------------------------------------------------------------------------------------

def _autocast_on(device_type: str) -> bool:
    try:
        return bool(torch.is_autocast_enabled(device_type))
    except TypeError:                         # older PyTorch: no device argument
        return bool(torch.is_autocast_enabled() if device_type == "cuda"
                    else torch.is_autocast_cpu_enabled())


def _compiler_opaque(function):
    """``function`` run as one opaque call under ``torch.compile``: dynamo breaks the graph
    there and runs it eagerly instead of tracing into NumPy/Numba (which it cannot compile:
    it retraced Numba's first-call registry loading until its recompile limit, with pages of
    warnings). Outside ``torch.compile`` nothing changes."""
    disable = getattr(getattr(torch, "compiler", None), "disable", None)
    return disable(function) if disable is not None else function


@_compiler_opaque
def _fused(function, input: torch.Tensor, target: Any, reduction: str, options: dict,
           elementwise: bool = False) -> torch.Tensor:
    """``function(logits, targets, reduction=..., **options)`` as a differentiable tensor.

    ``elementwise``: PyTorch's "none" of the sigmoid family ([N, C] element losses), computed
    as N * C rows of one class each (the loss of a one-class row is its element loss).
    """
    x, private = _logits(input)
    n, c = tuple(input.shape)
    targets = _targets(target, x, c)
    options = {key: _place(value, x) for key, value in options.items()}
    fx_reduction = "none" if reduction == "row" else reduction
    if elementwise:
        x, targets, options = _one_class_rows(x, targets, n, c, options)
    need_grad = torch.is_grad_enabled() and input.requires_grad
    device = input.device
    dtype = input.dtype
    # PyTorch's losses run in float32 under autocast (they are on its float32 list): so is the
    # loss returned here; the gradient stays in the logits' dtype
    loss_dtype = (torch.float32 if dtype in _HALF_DTYPES and _autocast_on(device.type)
                  else dtype)

    def compute():
        out = function(x, targets, reduction=fx_reduction, return_grad=need_grad,
                       grad_out=x if (need_grad and private and isinstance(x, np.ndarray))
                       else None, **options)
        loss, grad = out if need_grad else (out, None)
        if fx_reduction == "none":
            loss = _to_tensor(loss, device)
            loss = loss.reshape(n, c) if elementwise else loss
            loss = loss.to(loss_dtype)
        else:
            loss = torch.tensor(float(loss), dtype=loss_dtype, device=device)
        if grad is not None:
            grad = _to_tensor(grad, device).reshape(n, c).to(dtype)
        return loss, grad

    if not need_grad:
        return compute()[0]
    return _FusedLoss.apply(input, compute)


def _one_class_rows(x, targets, n, c, options):
    """[N, C] logits as [N * C, 1] (a view), targets and weights to match."""
    on_device = isinstance(x, torch.Tensor)
    x = x.reshape(n * c, 1)
    options = dict(options)
    if isinstance(targets, torch.Tensor):             # CUDA dense targets
        targets = targets.reshape(n * c, 1)
    else:
        from .targets import as_multilabel
        ml = as_multilabel(targets, c, n_rows=n)
        wide = x.dtype == (torch.float64 if on_device else np.float64)
        dense = (ml.to_dense(np.float64 if wide else np.float32) if ml is not None
                 else np.asarray(targets))
        if dense.shape != (n, c):
            raise ValueError(f"target must have the logits' shape {(n, c)}, got {dense.shape}")
        targets = np.ascontiguousarray(dense).reshape(n * c, 1)
        if on_device:
            targets = torch.from_numpy(targets).to(x.device)
    pos_weight = options.get("pos_weight")
    if pos_weight is not None and _numel(pos_weight) > 1:
        raise NotImplementedError("reduction='none' (element losses [N, C]) with a per-class "
                                  "pos_weight is not supported; use reduction='row' (per-row "
                                  "sums [N]), 'sum' or 'mean'")
    if pos_weight is not None and not isinstance(pos_weight, float):
        options["pos_weight"] = float(pos_weight.reshape(()))
    class_weight = options.pop("class_weight", None)
    sample_weight = options.pop("sample_weight", None)
    if class_weight is not None or sample_weight is not None:
        weight = (torch.ones((n, c), dtype=torch.float64, device=x.device) if on_device
                  else np.ones((n, c)))
        if class_weight is not None:
            weight = weight * class_weight.reshape(1, c)
        if sample_weight is not None:
            weight = weight * sample_weight.reshape(n, 1)
        options["sample_weight"] = weight.reshape(n * c)
    return x, targets, options


def _bce_weight(weight: Any, n: int, c: int) -> dict:
    """PyTorch's BCE ``weight`` (broadcast to [N, C]) as fastxent's class or sample weight."""
    if weight is None:
        return {}
    w = weight if isinstance(weight, torch.Tensor) else np.asarray(weight)
    shape = tuple(w.shape)
    if _numel(w) == 1:
        return {"class_weight": w.reshape(1).expand(c) if isinstance(w, torch.Tensor)
                else np.full(c, float(w.reshape(())))}
    if shape in ((c,), (1, c)):
        return {"class_weight": w.reshape(c)}
    if shape == (n, 1):
        return {"sample_weight": w.reshape(n)}
    raise ValueError(f"weight of shape {shape} is not supported: fastxent takes a per-class "
                     f"weight [C] or [1, C] (here C = {c}) or a per-row weight [N, 1] (N = {n})")


# ------------------------------------------------------------------------------------------
# functional forms
# ------------------------------------------------------------------------------------------

def cross_entropy(input: torch.Tensor, target: Any, weight: Optional[torch.Tensor] = None,
                  size_average=None, ignore_index: int = -100, reduce=None,
                  reduction: str = "mean", label_smoothing: float = 0.0, *,
                  sample_weight: Optional[Any] = None, z_loss: float = 0.0,
                  backend: str = "auto") -> torch.Tensor:
    """``torch.nn.functional.cross_entropy`` on fastxent's fused kernel.

    ``target``: class indices (int [N]), probabilities [N, C], a MultiLabel, scipy.sparse or a
    sparse torch tensor (each row's positives normalised to sum 1). Extras (keyword-only):
    ``sample_weight`` [N], ``z_loss``, ``backend``; ``reduction`` may also be ``"batchmean"``.

    >>> import torch, fastxent.torch as ft
    >>> x = torch.tensor([[2.0, 1.0, 0.1], [0.5, 2.5, 0.3]], requires_grad=True)
    >>> loss = ft.cross_entropy(x, torch.tensor([0, 1]))
    >>> loss.backward()
    >>> round(loss.item(), 5), x.grad.shape
    (0.30538, torch.Size([2, 3]))
    """
    _deprecated(size_average, reduce)
    reduction = _reduction(reduction, ("none", "mean", "sum", "batchmean"))
    options = dict(class_weight=weight, sample_weight=sample_weight,
                   ignore_index=int(ignore_index), label_smoothing=label_smoothing,
                   z_loss=z_loss, backend=backend)
    return _fused(api.softmax_cross_entropy, input, target, reduction, options)


def binary_cross_entropy_with_logits(input: torch.Tensor, target: Any,
                                     weight: Optional[torch.Tensor] = None, size_average=None,
                                     reduce=None, reduction: str = "mean",
                                     pos_weight: Optional[torch.Tensor] = None, *,
                                     label_smoothing: float = 0.0,
                                     backend: str = "auto") -> torch.Tensor:
    """``torch.nn.functional.binary_cross_entropy_with_logits`` on fastxent's fused kernel.

    ``target``: [N, C] in [0, 1], a MultiLabel, scipy.sparse or a sparse torch tensor (never
    densified, except for ``reduction="none"``, whose [N, C] element losses need it).
    ``weight``: [C], [1, C] or [N, 1]; ``pos_weight``: [C], [1, C] or a scalar. ``reduction``
    may also be ``"row"`` (per-row sums [N]) or ``"batchmean"``.
    """
    _deprecated(size_average, reduce)
    reduction = _reduction(reduction, ("none", "mean", "sum", "row", "batchmean"))
    n, c = _shape(input)
    options = dict(pos_weight=_pos_weight(pos_weight), label_smoothing=label_smoothing,
                   backend=backend, **_bce_weight(weight, n, c))
    return _fused(api.sigmoid_binary_cross_entropy, input, target, reduction, options,
                  elementwise=reduction == "none")


def sigmoid_focal_loss(inputs: torch.Tensor, targets: Any, alpha: float = 0.25,
                       gamma: float = 2, reduction: str = "none", *,
                       gamma_neg: Optional[float] = None, clip: float = 0.0,
                       backend: str = "auto") -> torch.Tensor:
    """``torchvision.ops.sigmoid_focal_loss`` on fastxent's fused kernel (same defaults:
    ``reduction="none"`` returns the [N, C] element losses; ``alpha < 0`` disables alpha).

    ``targets`` as for :func:`binary_cross_entropy_with_logits`. Extras: ``gamma_neg``, ``clip``
    (the asymmetric loss), ``reduction="row"`` (per-row sums [N]) and ``"batchmean"``.
    """
    reduction = _reduction(reduction, ("none", "mean", "sum", "row", "batchmean"))
    options = dict(alpha=alpha, gamma=gamma, gamma_neg=gamma_neg, clip=clip, backend=backend)
    return _fused(api.sigmoid_focal_loss, inputs, targets, reduction, options,
                  elementwise=reduction == "none")


def _shape(input: Any):
    if not isinstance(input, torch.Tensor) or input.dim() != 2:
        _logits(input)              # raises the helpful error
    return tuple(input.shape)


def _pos_weight(pos_weight: Any):
    if pos_weight is None:
        return None
    if np.ndim(pos_weight) == 2 and pos_weight.shape[0] == 1:   # [1, C] broadcasts as [C]
        pos_weight = pos_weight.reshape(-1)
    if _numel(pos_weight) == 1:
        return float(pos_weight.reshape(()) if isinstance(pos_weight, torch.Tensor)
                     else np.asarray(pos_weight).reshape(()))
    return pos_weight


# ------------------------------------------------------------------------------------------
# modules
# ------------------------------------------------------------------------------------------

class CrossEntropyLoss(nn.Module):
    """``torch.nn.CrossEntropyLoss`` on fastxent (see :func:`cross_entropy`)."""

    def __init__(self, weight: Optional[torch.Tensor] = None, size_average=None,
                 ignore_index: int = -100, reduce=None, reduction: str = "mean",
                 label_smoothing: float = 0.0) -> None:
        super().__init__()
        _deprecated(size_average, reduce)
        self.register_buffer("weight", weight)
        self.ignore_index = ignore_index
        self.reduction = _reduction(reduction, ("none", "mean", "sum", "batchmean"))
        self.label_smoothing = label_smoothing

    def forward(self, input: torch.Tensor, target: Any) -> torch.Tensor:
        return cross_entropy(input, target, weight=self.weight, ignore_index=self.ignore_index,
                             reduction=self.reduction, label_smoothing=self.label_smoothing)


class BCEWithLogitsLoss(nn.Module):
    """``torch.nn.BCEWithLogitsLoss`` on fastxent (see :func:`binary_cross_entropy_with_logits`)."""

    def __init__(self, weight: Optional[torch.Tensor] = None, size_average=None, reduce=None,
                 reduction: str = "mean", pos_weight: Optional[torch.Tensor] = None) -> None:
        super().__init__()
        _deprecated(size_average, reduce)
        self.register_buffer("weight", weight)
        self.register_buffer("pos_weight", pos_weight)
        self.reduction = _reduction(reduction, ("none", "mean", "sum", "row", "batchmean"))

    def forward(self, input: torch.Tensor, target: Any) -> torch.Tensor:
        return binary_cross_entropy_with_logits(input, target, weight=self.weight,
                                                pos_weight=self.pos_weight,
                                                reduction=self.reduction)


class SigmoidFocalLoss(nn.Module):
    """Module form of :func:`sigmoid_focal_loss` (torchvision's formula); the default reduction
    is ``"mean"`` like PyTorch's loss modules (the functional form defaults to ``"none"``)."""

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0, reduction: str = "mean", *,
                 gamma_neg: Optional[float] = None, clip: float = 0.0) -> None:
        super().__init__()
        self.alpha, self.gamma, self.gamma_neg, self.clip = alpha, gamma, gamma_neg, clip
        self.reduction = _reduction(reduction, ("none", "mean", "sum", "row", "batchmean"))

    def forward(self, input: torch.Tensor, target: Any) -> torch.Tensor:
        return sigmoid_focal_loss(input, target, alpha=self.alpha, gamma=self.gamma,
                                  reduction=self.reduction, gamma_neg=self.gamma_neg,
                                  clip=self.clip)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, gamma={self.gamma}, reduction={self.reduction!r}"
