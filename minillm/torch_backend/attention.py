"""Scaled dot-product attention, its masks, and splitting into heads — PyTorch backend.

Dimensions:
    B    batch size
    H    number of heads
    T_q  number of queries (positions that ask)
    T_k  number of keys and values (positions that are looked at)
    d_k  size of a query / key vector
    d_v  size of a value vector
    C    model width, C = H * D
    D    size of one head, D = C / H
    ...  any leading (batch, head) dimensions

Attention (chapter section 4.1; Vaswani et al. 2017, eq. 1):

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V

The same formulas as ``minillm.reference.attention``, with gradients from autograd.
Masks are boolean, True = may attend; a query row with nothing to attend to gets zero
weights and a zero output (never NaN). ``fused_attention`` is the one name that exists
only here: it calls torch's fused kernel, which is faster but returns no weights.
"""
from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F

from ..core._validate import (
    checking, require_bool, require_broadcastable, require_float, require_integer, require_ndim,
    require_ndim_at_least, require_same_dtype, require_tensor, shape_of,
)
from .softmax import softmax

__all__ = [
    "scaled_dot_product_attention", "causal_mask", "padding_mask", "length_mask",
    "split_heads", "merge_heads", "repeat_kv", "fused_attention",
]


# ----------------------------------------------------------------------------------------
# scaled dot-product attention

def scaled_dot_product_attention(q, k, v, mask=None):
    r"""Attention with its weights (chapter section 4.1).

    .. math::
        \mathrm{Attention}(Q, K, V) = \mathrm{softmax}\!\left(\frac{QK^\top}{\sqrt{d_k}}\right) V

    Shapes: q (..., T_q, d_k), k (..., T_k, d_k), v (..., T_k, d_v),
    mask bool broadcastable to (..., T_q, T_k), True = may attend
    -> out (..., T_q, d_v), weights (..., T_q, T_k).

    The same lines as ``minillm.reference.attention``:

    .. math::
        S = \frac{QK^\top}{\sqrt{d_k}}, \quad
        S_{ij} = -\infty \text{ where the mask is False}, \quad
        A = \mathrm{softmax}(S), \quad O = A V

    A fully masked row would be softmax of all :math:`-\infty` (0/0); its scores are
    set to 0 instead and its weights are multiplied by 0 afterwards, so its output and
    its gradients are zero. Every guard is a ``where`` or a product with a 0/1 mask:
    nothing here depends on how torch differentiates at a bound (a ``clamp`` at its
    limit, ties in a ``max``), which changed between torch releases. A mask on another
    device than ``q`` is moved to ``q``'s device.
    """
    if checking():
        q, k, v, mask = _check_attention_inputs(q, k, v, mask)
    d_k = q.shape[-1]
    scores = q @ k.transpose(-1, -2) / math.sqrt(d_k)  # (..., T_q, T_k)
    if mask is None:
        weights = softmax(scores, axis=-1)  # (..., T_q, T_k)
    else:
        has_any = mask.any(dim=-1, keepdim=True)  # (..., T_q, 1), the mask's own shape
        scores = torch.where(mask, scores, -math.inf)  # (..., T_q, T_k)
        scores = torch.where(has_any, scores, 0.0)  # (..., T_q, T_k)
        probs = softmax(scores, axis=-1)  # (..., T_q, T_k)
        weights = probs * has_any  # (..., T_q, T_k), rows with nothing to attend are zero
    out = weights @ v  # (..., T_q, d_v)
    return out, weights


def fused_attention(q, k, v, mask=None):
    r"""The same attention through ``torch.nn.functional.scaled_dot_product_attention``.

    .. math::
        \mathrm{Attention}(Q, K, V) = \mathrm{softmax}\!\left(\frac{QK^\top}{\sqrt{d_k}}\right) V

    Shapes: as :func:`scaled_dot_product_attention` -> ``(out (..., T_q, d_v), None)``.

    The fused kernel never materialises the weights, so the second element is always
    ``None``. Torch-only (the reference has no fused kernel). Fully masked rows are
    given an all-True mask row for the kernel and their output is then multiplied by 0,
    so they are zero here too, and their gradients are zero. (Recent CPU kernels already
    return 0 for such rows, but torch 2.1 and some GPU kernels return NaN, and NaN * 0
    would still be NaN: hence the all-True row.) On the CPU, a mask in which every row
    has a key to attend to (a causal mask always has) goes to the kernel as it is, without
    the guard's two extra operations and their backward.
    """
    if checking():
        q, k, v, mask = _check_attention_inputs(q, k, v, mask)
    batch = _broadcast_batch(q, k, v)
    q = q.expand(*batch, *q.shape[-2:])  # (..., T_q, d_k)
    k = k.expand(*batch, *k.shape[-2:])  # (..., T_k, d_k)
    v = v.expand(*batch, *v.shape[-2:])  # (..., T_k, d_v)
    return _fused_kernel(q, k, v, mask, enable_gqa=False), None


def fast_attention(q, k, v, mask=None):
    """:func:`fused_attention`'s output for q, k, v of one batch shape, inside a model's
    checked entry without its checks and broadcasting (each a few microseconds, which a
    one-token decoding step feels); outside one, :func:`fused_attention` itself. Not
    exported: :class:`~minillm.torch_backend.MultiHeadAttention` calls it when ``fused``.
    Shapes: q (B, H, T_q, D), k and v (B, H, T_k, D), mask broadcastable to (B, H, T_q, T_k)
    -> (B, H, T_q, D)."""
    if checking():
        return fused_attention(q, k, v, mask)[0]
    return _fused_kernel(q, k, v, mask, enable_gqa=False)


def fast_grouped_attention(q, k, v, mask=None):
    """Grouped-query attention through torch's fused kernel with ``enable_gqa=True``: the
    same as ``fused_attention(q, repeat_kv(k, G), repeat_kv(v, G), mask)`` without the
    copies (the kernel reads key/value head h // G for query head h, as :func:`repeat_kv`).
    Not exported: :class:`~minillm.torch_backend.MultiHeadAttention` calls it when
    ``fused`` and ``n_kv_heads < n_heads``; its inputs are the layer's, already checked.
    Shapes: q (B, H, T_q, D), k and v (B, H_kv, T_k, D), mask broadcastable to
    (B, H, T_q, T_k) -> (B, H, T_q, D)."""
    return _fused_kernel(q, k, v, mask, enable_gqa=True)


def _fused_kernel(q, k, v, mask, enable_gqa):
    """``F.scaled_dot_product_attention`` with fully masked rows zero (see :func:`fused_attention`)."""
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v, enable_gqa=enable_gqa)
    # on the mask's own shape (e.g. (T_q, T_k) for a causal mask), broadcast by the kernel
    has_any = mask.any(dim=-1, keepdim=True)  # (..., T_q, 1) or broadcastable to it
    if mask.device.type == "cpu" and bool(has_any.all()):
        # every row sees a key (a causal mask always does): the guard would be the identity.
        # Asked on the CPU only, where it costs no device synchronisation.
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=enable_gqa)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask | ~has_any,
                                         enable_gqa=enable_gqa)  # (..., T_q, d_v)
    return out * has_any


# ----------------------------------------------------------------------------------------
# masks

def causal_mask(T_q, T_k=None):
    r"""Causal mask, aligned at the end: query ``i`` may see keys ``j <= T_k - T_q + i``.

    .. math::
        M_{ij} = [\, j \le T_k - T_q + i \,]

    Shapes: -> (T_q, T_k) bool tensor, on the CPU (``scaled_dot_product_attention``
    moves it to the queries' device; or call ``.to(device)``).
    """
    T_q = _positive_int("T_q", T_q)
    T_k = T_q if T_k is None else _positive_int("T_k", T_k)
    if T_k < T_q:
        raise ValueError(
            f"causal_mask expects T_k >= T_q (the queries are the last T_q of the T_k "
            f"positions), got T_q={T_q}, T_k={T_k}"
        )
    i = torch.arange(T_q)[:, None]  # (T_q, 1)
    j = torch.arange(T_k)[None, :]  # (1, T_k)
    return j <= T_k - T_q + i  # (T_q, T_k)


def padding_mask(ids, pad_id):
    r"""True at real tokens, False at padding: :math:`M_{bt} = [\,\mathrm{ids}_{bt} \ne \mathrm{pad}\,]`.

    Shapes: ids (B, T) int -> (B, T) bool, on ids' device.
    """
    ids = _integer_tensor("ids", ids, ndim=2)
    return ids != pad_id  # (B, T)


def length_mask(lengths, T):
    r"""True at the first ``lengths[b]`` positions of each row: :math:`M_{bt} = [\,t < L_b\,]`.

    Shapes: lengths (B,) int -> (B, T) bool, on lengths' device.
    """
    lengths = _integer_tensor("lengths", lengths, ndim=1)
    T = _positive_int("T", T)
    if lengths.numel() and (lengths.min() < 0 or lengths.max() > T):
        raise ValueError(
            f"lengths must lie in [0, T={T}], got min {int(lengths.min())}, "
            f"max {int(lengths.max())}"
        )
    return torch.arange(T, device=lengths.device)[None, :] < lengths[:, None]  # (B, T)


# ----------------------------------------------------------------------------------------
# heads

def split_heads(x, n_heads):
    r"""Split the last dimension into heads: (..., T, C) -> (..., H, T, D), D = C / H.

    .. math::
        X \in \mathbb{R}^{T \times C} \mapsto [X_1, \dots, X_H],\ X_h \in \mathbb{R}^{T \times D}

    Head ``h`` takes columns ``h*D`` to ``(h+1)*D - 1``.
    """
    if checking():
        x, n_heads = _check_split_heads(x, n_heads)
    *lead, T, C = x.shape
    D = C // n_heads
    return x.reshape(*lead, T, n_heads, D).transpose(-3, -2)  # (..., H, T, D)


def merge_heads(x):
    r"""Concatenate the heads: (..., H, T, D) -> (..., T, H*D), the inverse of split_heads.

    .. math::
        \mathrm{Concat}(\mathrm{head}_1, \dots, \mathrm{head}_H)
    """
    if checking():
        require_tensor("x", x)
        require_float("x", x)
        require_ndim_at_least("x", x, 3)
    *lead, H, T, D = x.shape
    return x.transpose(-3, -2).reshape(*lead, T, H * D)  # (..., T, C)


def repeat_kv(x, n_rep):
    r"""Grouped-query attention's sharing (Ainslie et al. 2023, section 2.2): query head h
    reads key/value head :math:`\lfloor h / G \rfloor`, G = ``n_rep``:

    .. math:: \mathrm{out}_{h} = x_{\lfloor h / G \rfloor}

    Autograd sums a shared head's gradient over its group, as the reference's
    ``repeat_kv_backward`` does by hand. Shapes: x (..., H_kv, T, D) -> (..., H_kv * G, T, D).
    """
    if checking():
        require_tensor("x", x)
        require_float("x", x)
        require_ndim_at_least("x", x, 3)
        n_rep = _positive_int("n_rep", n_rep)
    return torch.repeat_interleave(x, n_rep, dim=-3)  # (..., H_kv * G, T, D): each head G times in a row


# ----------------------------------------------------------------------------------------
# private helpers

def _check_attention_inputs(q, k, v, mask):
    """Tensors of the right kinds and matching sizes; the mask moved to q's device."""
    for name, x in (("q", q), ("k", k), ("v", v)):
        require_tensor(name, x)
        require_float(name, x)
        require_ndim_at_least(name, x, 2)
    require_same_dtype("k", k, "q", q)
    require_same_dtype("v", v, "q", q)
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"q has d_k={q.shape[-1]} but k has d_k={k.shape[-1]} "
            f"(q: {shape_of(q)}, k: {shape_of(k)})"
        )
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(
            f"k has T_k={k.shape[-2]} but v has T_k={v.shape[-2]} "
            f"(k: {shape_of(k)}, v: {shape_of(v)})"
        )
    batch = _broadcast_batch(q, k, v)
    scores_shape = batch + (q.shape[-2], k.shape[-2])
    if mask is not None:
        require_tensor("mask", mask)
        require_bool("mask", mask)
        require_broadcastable("mask", mask, scores_shape, "the scores (..., T_q, T_k)")
        mask = mask.to(q.device)
    return q, k, v, mask


def _check_split_heads(x, n_heads):
    """A tensor of at least 2 dimensions whose last one n_heads divides; returns it and n_heads."""
    require_tensor("x", x)
    require_float("x", x)
    require_ndim_at_least("x", x, 2)
    n_heads = _positive_int("n_heads", n_heads)
    C = x.shape[-1]
    if C % n_heads:
        raise ValueError(
            f"d_model not divisible by n_heads: expected C % n_heads == 0, "
            f"got C={C}, n_heads={n_heads} (x: {shape_of(x)})"
        )
    return x, n_heads


def _broadcast_batch(q, k, v):
    """The leading dimensions q, k and v broadcast to, or a ValueError naming all three."""
    if q.shape[:-2] == k.shape[:-2] == v.shape[:-2]:
        return tuple(q.shape[:-2])
    try:
        return tuple(torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2]))
    except RuntimeError:
        raise ValueError(
            f"expected the leading dimensions of q, k and v to broadcast together, "
            f"got q: {shape_of(q)}, k: {shape_of(k)}, v: {shape_of(v)}"
        ) from None


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"expected {name} to be a positive int, got {value!r}")
    return int(value)


def _integer_tensor(name, x, ndim):
    require_tensor(name, x)
    require_integer(name, x)
    require_ndim(name, x, ndim)
    return x
