r"""LoRA, a low-rank adapter on a frozen affine map (Hu et al. 2021, eq. 3):
:math:`y = xW + b + s\,\mathrm{dropout}(x) A B` — PyTorch backend, line by line the
reference's ``minillm/reference/lora.py``; gradients from autograd.

Dimension legend: ``d_in``, ``d_out``, ``r`` the rank, ``...`` leading dimensions.
x ``(..., d_in)``, W ``(d_in, d_out)``, b ``(d_out,)`` or None, A ``(d_in, r)``,
B ``(r, d_out)``.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core import _validate as v
from ..core.lora import check_rank, init_lora_A, lora_scale
from .dropout import dropout
from .linear import autocasting, check_linear, linear
from .module import Module

__all__ = ["lora", "LoRALinear"]


def _check(x, W, b, A, B, scale, same_dtype=True):
    check_linear(x, W, b, same_dtype=same_dtype)
    for name, t in (("A", A), ("B", B)):
        v.require_tensor(name, t)
        v.require_float(name, t)
        v.require_ndim(name, t, 2)
        if same_dtype:
            v.require_same_dtype(name, t, "x", x)
    d_in, d_out = W.shape
    r = check_rank(A.shape[1], d_in, d_out, "lora")
    v.require_shape("A", A, (d_in, r), f"(d_in of W {tuple(W.shape)}, r)")
    v.require_shape("B", B, (r, d_out), f"(r of A {tuple(A.shape)}, d_out of W {tuple(W.shape)})")
    v.require_number_in("scale", scale, -np.inf, np.inf)


def lora(x, W, b, A, B, scale, p=0.0, training=True, rng=None):
    r"""A linear map with a low-rank update beside it (Hu et al. 2021, eq. 3):

    .. math::
        u = \mathrm{dropout}_p(x), \qquad h = u A, \qquad y = x W + b + s\, h B

    Shapes: x (..., d_in), W (d_in, d_out), b (d_out,) or None, A (d_in, r),
    B (r, d_out) -> y (..., d_out).
    """
    if v.checking():
        _check(x, W, b, A, B, scale)
    y = linear(x, W, b)                                         # (..., d_out)
    u = dropout(x, p, training, rng)                            # (..., d_in)
    h = u @ A                                                   # (..., r)
    return y + scale * (h @ B)                                  # (..., d_out)


def fast_lora(x, W, b, A, B, scale, p=0.0, training=True, rng=None):
    r"""The fast path's LoRA: ``F.linear`` for the base map (one addmm on W as stored,
    see :func:`minillm.torch_backend.linear.fast_linear`) and for the two thin
    products, the scale folded into the last one's output. Not exported: the
    :class:`LoRA` adapter calls it when its ``fused`` flag is set. Shapes: as :func:`lora`.
    """
    if v.checking():
        _check(x, W, b, A, B, scale, same_dtype=not autocasting(x))
    u = dropout(x, p, training, rng)                            # (..., d_in)
    update = F.linear(F.linear(u, A.t()), B.t())                # (..., d_out)
    return torch.add(F.linear(x, W.t(), b), update, alpha=scale)  # (..., d_out)


class LoRA(Module):
    r"""The adapter alone (see ``minillm.reference.lora.LoRA``): A (d_in, r) from
    :func:`minillm.core.lora.init_lora_A` on ``rng``, B (r, d_out) zero, applied to a
    weight it does not own, ``forward(x, W, b)``. The caller freezes W and b
    (``requires_grad=False``), so autograd computes no gradient for them. ``fused``:
    :func:`fast_lora`."""

    def __init__(self, d_in, d_out, r, alpha, rank_stabilised=False, dropout=0.0, rng=None,
                 dtype="float32"):
        super().__init__()
        r = check_rank(r, d_in, d_out)
        v.require_probability("dropout", dropout)
        self.fused = False
        self.rng = np.random.default_rng(0) if rng is None else rng
        self.A = nn.Parameter(torch.from_numpy(init_lora_A(d_in, r, self.rng, dtype)))  # (d_in, r)
        self.B = nn.Parameter(torch.zeros((r, d_out), dtype=getattr(torch, str(dtype))))  # (r, d_out)
        self.r, self.alpha, self.rank_stabilised = r, float(alpha), bool(rank_stabilised)
        self.scale = lora_scale(r, alpha, rank_stabilised)
        self.p = float(dropout)
        self.merged = False

    def forward(self, x, W, b=None):
        if self.merged:
            return (F.linear(x, W.t(), b) if self.fused else linear(x, W, b))  # (..., d_out)
        op = fast_lora if self.fused else lora
        return op(x, W, b, self.A, self.B, self.scale, self.p, self.training, self.rng)

    def delta(self):
        """:math:`s A B`, the update as one (d_in, d_out) matrix (for merging)."""
        return self.scale * (self.A @ self.B)                   # (d_in, d_out)

    @torch.no_grad()
    def merge(self, W) -> None:
        """W <- W + s A B, in place."""
        if self.merged:
            raise RuntimeError("this LoRA adapter is merged already")
        W.add_(self.delta())
        self.merged = True

    @torch.no_grad()
    def unmerge(self, W) -> None:
        """W <- W - s A B: the W before :meth:`merge` within rounding, |W' - W| <=
        eps (|W| + |s A B|) (see ``minillm.reference.lora.LoRA.unmerge``)."""
        if not self.merged:
            raise RuntimeError("this LoRA adapter is not merged")
        W.sub_(self.delta())
        self.merged = False


class LoRALinear(Module):
    r"""A linear layer with a LoRA adapter (see ``minillm.reference.LoRALinear``): W and
    b frozen (``requires_grad=False``), ``lora.A`` and ``lora.B`` trained.
    Shapes: x (..., d_in) -> (..., d_out)."""

    def __init__(self, d_in: int, d_out: int, r: int = 8, alpha: float = 8.0, bias: bool = True,
                 rank_stabilised: bool = False, dropout: float = 0.0, rng=None, dtype="float32"):
        super().__init__()
        check_rank(r, d_in, d_out, "LoRALinear")
        torch_dtype = getattr(torch, str(dtype))
        self.W = nn.Parameter(torch.zeros((d_in, d_out), dtype=torch_dtype), requires_grad=False)
        self.b = (nn.Parameter(torch.zeros((d_out,), dtype=torch_dtype), requires_grad=False)
                  if bias else None)
        self.lora = LoRA(d_in, d_out, r, alpha, rank_stabilised, dropout, rng, dtype)

    def forward(self, x):
        return self.lora(x, self.W, self.b)                     # (..., d_out)

    def merge(self) -> None:
        self.lora.merge(self.W)

    def unmerge(self) -> None:
        self.lora.unmerge(self.W)
