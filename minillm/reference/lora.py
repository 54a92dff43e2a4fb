r"""LoRA, a low-rank adapter on a frozen affine map (Hu et al. 2021, eq. 3):
:math:`y = xW + b + s\,\mathrm{dropout}(x) A B`, :math:`s = \alpha / r`.

Dimension legend: ``d_in`` input features, ``d_out`` output features, ``r`` the rank,
``...`` any leading dimensions (e.g. ``(B, T)``), ``N`` their product.
x ``(..., d_in)``, W ``(d_in, d_out)``, b ``(d_out,)`` or None, A ``(d_in, r)``,
B ``(r, d_out)``, y ``(..., d_out)``.

The scale, the rank check and A's initialisation are shared with the torch backend
(:mod:`minillm.core.lora`). ``LoRA`` is the adapter alone (A, B and the scale) applied
to a weight it does not own; :class:`LoRALinear` is a linear layer with one;
``minillm.store.lora_adapters`` attaches adapters to a model's projections by name.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..core import _validate as v
from ..core.lora import check_rank, init_lora_A, lora_scale
from .dropout import dropout_backward, dropout_forward
from .linear import check_linear, linear_forward
from .module import Module
from .parameter import Parameter

__all__ = ["lora", "lora_forward", "lora_backward", "LoRALinear"]


class LoRACache(NamedTuple):
    x: np.ndarray            # (..., d_in)
    W: np.ndarray            # (d_in, d_out)
    has_bias: bool
    u: np.ndarray            # dropout(x), (N, d_in)
    h: np.ndarray            # u A, (N, r)
    A: np.ndarray            # (d_in, r)
    B: np.ndarray            # (r, d_out)
    scale: float
    drop: object             # DropoutCache


def _check(x, W, b, A, B, scale):
    x, W, b = check_linear(x, W, b)
    A, B = np.asarray(A), np.asarray(B)
    for name, t in (("A", A), ("B", B)):
        v.require_float(name, t)
        v.require_ndim(name, t, 2)
        v.require_same_dtype(name, t, "x", x)
    d_in, d_out = W.shape
    r = check_rank(A.shape[1], d_in, d_out, "lora")
    v.require_shape("A", A, (d_in, r), f"(d_in of W {W.shape}, r)")
    v.require_shape("B", B, (r, d_out), f"(r of A {A.shape}, d_out of W {W.shape})")
    v.require_number_in("scale", scale, -np.inf, np.inf)
    return x, W, b, A, B


def lora_forward(x, W, b, A, B, scale, p=0.0, training=True, rng=None):
    r"""A linear map with a low-rank update beside it (Hu et al. 2021, eq. 3):

    .. math::
        u = \mathrm{dropout}_p(x), \qquad h = u A, \qquad y = x W + b + s\, h B

    The frozen path sees x, the adapter its dropped-out copy (PEFT's ``lora_dropout``).
    ``s`` is ``scale`` (:func:`minillm.core.lora.lora_scale`: alpha / r or alpha / sqrt r).
    The update is never formed as the (d_in, d_out) matrix A B: two thin products,
    N d_in r + N r d_out multiply-adds. Shapes: x (..., d_in), W (d_in, d_out),
    b (d_out,) or None, A (d_in, r), B (r, d_out) -> y (..., d_out).
    Returns ``(y, LoRACache)``.
    """
    if v.checking():
        x, W, b, A, B = _check(x, W, b, A, B, scale)
    d_in, d_out = W.shape
    y, _ = linear_forward(x, W, b)                               # (..., d_out)
    u, c_drop = dropout_forward(x.reshape(-1, d_in), p, training, rng)  # (N, d_in)
    h = u @ A                                                    # (N, r)
    y += (scale * (h @ B)).reshape(y.shape)                      # (..., d_out), in place
    return y, LoRACache(x, W, b is not None, u, h, A, B, float(scale), c_drop)


def lora_backward(dy, cache: LoRACache, frozen: bool = False):
    r"""Gradients of :math:`y = xW + b + s\,hB`, :math:`h = uA`, :math:`u = \mathrm{dropout}(x)`,
    summed over every leading position (g = dy as rows (N, d_out)):

    .. math::
        \frac{\partial L}{\partial B} = s\, h^\top g, \quad
        \frac{\partial L}{\partial h} = s\, g B^\top, \quad
        \frac{\partial L}{\partial A} = u^\top \frac{\partial L}{\partial h}, \quad
        \frac{\partial L}{\partial u} = \frac{\partial L}{\partial h} A^\top,

    .. math::
        \frac{\partial L}{\partial x} = g W^\top + \mathrm{dropout}'\Big(\frac{\partial L}{\partial u}\Big),
        \quad \frac{\partial L}{\partial W} = x^\top g, \quad \frac{\partial L}{\partial b} = \sum g

    (the chain rule through each product, as in :func:`minillm.reference.linear_backward`;
    dropout's backward applies the same mask and 1/(1-p)). Why B starts at zero and A
    does not: at B = 0, dL/dA = 0 but dL/dB = s h^T g is not, so the first step moves B
    and the layer leaves its base map smoothly. ``frozen=True`` (what a LoRA layer
    passes) skips dW and db, the one (d_in, d_out) product of this backward, and returns
    None in their places: the base is not trained, so its gradient is not computed.
    Shapes: dy (..., d_out) -> dx (..., d_in), dW (d_in, d_out), db (d_out,) or None,
    dA (d_in, r), dB (r, d_out).
    """
    x, W, has_bias, u, h, A, B, s, c_drop = cache
    d_in, d_out = W.shape
    if v.checking():
        dy = np.asarray(dy)
        v.require_shape("dy", dy, x.shape[:-1] + (d_out,), "the shape of lora's output")
    g = dy.reshape(-1, d_out)                                    # (N, d_out)
    dB = s * (h.T @ g)                                           # (r, d_out)
    dh = s * (g @ B.T)                                           # (N, r)
    dA = u.T @ dh                                                # (d_in, r)
    du = dh @ A.T                                                # (N, d_in)
    dx = g @ W.T + dropout_backward(du, c_drop)                  # (N, d_in)
    if frozen:
        return dx.reshape(x.shape), None, None, dA, dB
    dW = x.reshape(-1, d_in).T @ g                               # (d_in, d_out)
    db = g.sum(axis=0) if has_bias else None                     # (d_out,)
    return dx.reshape(x.shape), dW, db, dA, dB


def lora(x, W, b, A, B, scale, p=0.0, training=True, rng=None):
    """LoRA's adapted affine map; see :func:`lora_forward`."""
    return lora_forward(x, W, b, A, B, scale, p, training, rng)[0]


class LoRA(Module):
    r"""The adapter alone: A (d_in, r) drawn by :func:`minillm.core.lora.init_lora_A` from
    ``rng``, B (r, d_out) zero, the scale :math:`\alpha/r` (or :math:`\alpha/\sqrt r`), the
    adapter's dropout p (masks from ``rng`` too). It applies to a weight it does not own
    (``forward(x, W, b)``), so a model's projection keeps its name and its state-dict
    entry. ``backward`` adds dA, dB into the adapter and returns dx: the base weight is
    frozen and gets no gradient. ``merged``: W holds s A B already (:meth:`merge`), and
    the map is the plain linear one.
    """

    def __init__(self, d_in, d_out, r, alpha, rank_stabilised=False, dropout=0.0, rng=None,
                 dtype="float32"):
        super().__init__()
        r = check_rank(r, d_in, d_out)
        v.require_probability("dropout", dropout)
        self.rng = np.random.default_rng(0) if rng is None else rng
        self.A = Parameter(init_lora_A(d_in, r, self.rng, dtype))           # (d_in, r)
        self.B = Parameter(np.zeros((r, d_out), dtype=dtype))             # (r, d_out)
        self.r, self.alpha, self.rank_stabilised = r, float(alpha), bool(rank_stabilised)
        self.scale = lora_scale(r, alpha, rank_stabilised)
        self.p = float(dropout)
        self.merged = False

    def forward(self, x, W, b=None):
        if self.merged:
            y, self._cache = linear_forward(x, W, b)                       # (..., d_out)
        else:
            y, self._cache = lora_forward(x, W, b, self.A.data, self.B.data, self.scale,
                                          self.p, self.training, self.rng)  # (..., d_out)
        return y

    def backward(self, dy):
        if self.merged:
            raise RuntimeError("this LoRA adapter is merged into its weight; unmerge it to train it")
        dx, _, _, dA, dB = lora_backward(dy, self._cache, frozen=True)   # W, b get none
        self.A.accumulate(dA)
        self.B.accumulate(dB)
        return dx

    def delta(self):
        """:math:`s A B`, the update as one (d_in, d_out) matrix (for merging)."""
        return self.scale * (self.A.data @ self.B.data)                    # (d_in, d_out)

    def merge(self, W) -> None:
        """Fold the update into ``W`` (a Parameter), in place: W <- W + s A B."""
        if self.merged:
            raise RuntimeError("this LoRA adapter is merged already")
        W.data += self.delta()
        self.merged = True

    def unmerge(self, W) -> None:
        """Take the update out again: W <- W - s A B. It equals the W before :meth:`merge`
        within rounding, not bit for bit: W + D and then (W + D) - D each round once, by
        at most half an ulp of a number no larger than |W| + |D|, so
        |W' - W| <= eps (|W| + |D|) elementwise (tests/ops/test_lora.py checks this bound)."""
        if not self.merged:
            raise RuntimeError("this LoRA adapter is not merged")
        W.data -= self.delta()
        self.merged = False


class LoRALinear(Module):
    r"""A linear layer with a LoRA adapter: :math:`y = xW + b + s\,\mathrm{dropout}(x) A B`
    (:func:`lora_forward`). W (d_in, d_out) and b are the frozen base, filled like
    :class:`minillm.reference.Linear`'s (``load_state_dict`` or by hand); ``lora.A`` and
    ``lora.B`` are trained. ``rank_stabilised``: :math:`s = \alpha/\sqrt r`; ``rng`` (a
    ``numpy.random.Generator``, None: ``default_rng(0)``) draws A, then dropout's masks.
    ``merge()`` / ``unmerge()`` fold the update into W and out again.
    Shapes: x (..., d_in) -> (..., d_out).
    """

    def __init__(self, d_in: int, d_out: int, r: int = 8, alpha: float = 8.0, bias: bool = True,
                 rank_stabilised: bool = False, dropout: float = 0.0, rng=None, dtype="float32"):
        super().__init__()
        check_rank(r, d_in, d_out, "LoRALinear")
        self.W = Parameter(np.zeros((d_in, d_out), dtype=dtype))
        self.b = Parameter(np.zeros((d_out,), dtype=dtype)) if bias else None
        self.lora = LoRA(d_in, d_out, r, alpha, rank_stabilised, dropout, rng, dtype)

    def forward(self, x):
        return self.lora(x, self.W.data, None if self.b is None else self.b.data)  # (..., d_out)

    def backward(self, dy):
        return self.lora.backward(dy)                                      # (..., d_in)

    def merge(self) -> None:
        self.lora.merge(self.W)

    def unmerge(self) -> None:
        self.lora.unmerge(self.W)
