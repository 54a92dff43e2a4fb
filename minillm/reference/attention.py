"""Scaled dot-product attention, its masks, and splitting into heads — NumPy reference.

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

Masks are boolean, True = may attend. A query row whose mask is False everywhere has
nothing to attend to: its weights and its output are zero (never NaN, where torch's
masked_fill + softmax gives 0/0 = NaN), and so are the gradients that flow through it.

Non-finite inputs (docs/architecture.md, "Non-finite values") give NaN and inf where
torch's masked_fill + softmax composition does, with these consequences of the above:
a masked-out score is *replaced* by -inf, so a NaN or infinite key that a query may not
attend to changes nothing for that query; an empty row stays zero even if its own query
is not finite. A masked-out *value* is still multiplied by its weight 0, and 0 * inf is
NaN, in the product A V, as in torch. Zero outputs are promised for finite q, k and v.
"""
from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import numpy as np

from ..core._validate import (
    checking, require_bool, require_broadcastable, require_float, require_integer, require_ndim,
    require_ndim_at_least, require_same_dtype, require_shape, shape_of,
)
from .softmax import softmax_backward, softmax_forward

__all__ = [
    "scaled_dot_product_attention", "scaled_dot_product_attention_forward",
    "scaled_dot_product_attention_backward",
    "causal_mask", "padding_mask", "length_mask",
    "split_heads", "split_heads_forward", "split_heads_backward",
    "merge_heads", "merge_heads_forward", "merge_heads_backward",
    "repeat_kv", "repeat_kv_forward", "repeat_kv_backward",
]


# ----------------------------------------------------------------------------------------
# scaled dot-product attention

class AttentionCache(NamedTuple):
    """What the backward of attention needs from the forward."""
    q: np.ndarray             # (..., T_q, d_k)
    k: np.ndarray             # (..., T_k, d_k)
    v: np.ndarray             # (..., T_k, d_v)
    weights: np.ndarray       # (..., T_q, T_k), zero rows where nothing may be attended
    has_any: np.ndarray       # (..., T_q, 1) bool (the mask's leading dims, broadcastable to the
                              # scores'): the row may attend to at least one key
    softmax_cache: object     # what softmax_backward needs


def scaled_dot_product_attention(q, k, v, mask=None):
    r"""Attention with its weights (chapter section 4.1).

    .. math::
        \mathrm{Attention}(Q, K, V) = \mathrm{softmax}\!\left(\frac{QK^\top}{\sqrt{d_k}}\right) V

    Shapes: q (..., T_q, d_k), k (..., T_k, d_k), v (..., T_k, d_v),
    mask bool broadcastable to (..., T_q, T_k), True = may attend
    -> out (..., T_q, d_v), weights (..., T_q, T_k).

    The leading dimensions of q, k and v broadcast against each other (one k/v may
    serve several heads). A row of the mask with no True gives zero weights and a zero
    output for that query.
    """
    return scaled_dot_product_attention_forward(q, k, v, mask)[0]


def scaled_dot_product_attention_forward(q, k, v, mask=None):
    r"""Forward of :func:`scaled_dot_product_attention`: ``((out, weights), cache)``.

    .. math::
        S = \frac{QK^\top}{\sqrt{d_k}}, \quad
        S_{ij} = -\infty \text{ where the mask is False}, \quad
        A = \mathrm{softmax}(S), \quad O = A V

    A fully masked row would be softmax of all :math:`-\infty` (0/0); its scores are set
    to 0 instead and its weights are multiplied by 0 afterwards.
    """
    if checking():
        q, k, v, mask = _check_attention_inputs(q, k, v, mask)
    d_k = q.shape[-1]
    scores = q @ k.swapaxes(-1, -2) / math.sqrt(d_k)  # (..., T_q, T_k)
    if mask is None:
        has_any = np.ones(scores.shape[:-1] + (1,), dtype=bool)  # (..., T_q, 1)
    else:
        has_any = mask.any(axis=-1, keepdims=True)  # (..., T_q, 1), the mask's own shape
        scores = np.where(mask, scores, -np.inf)  # (..., T_q, T_k)
        scores = np.where(has_any, scores, 0.0)  # (..., T_q, T_k)
    probs, softmax_cache = softmax_forward(scores, axis=-1)  # (..., T_q, T_k)
    weights = probs * has_any  # (..., T_q, T_k), rows with nothing to attend are zero
    out = weights @ v  # (..., T_q, d_v)
    cache = AttentionCache(q, k, v, weights, has_any, softmax_cache)
    return (out, weights), cache


def scaled_dot_product_attention_backward(dout, cache):
    r"""Gradients of attention: ``(dq, dk, dv)``, each of its input's shape.

    With :math:`O = AV`, :math:`A = \mathrm{softmax}(S)`, :math:`S = QK^\top/\sqrt{d_k}`:

    .. math::
        dV = A^\top dO, \quad dA = dO\, V^\top, \quad dS = \mathrm{softmax\_backward}(dA),
        \quad dQ = \frac{dS\, K}{\sqrt{d_k}}, \quad dK = \frac{dS^\top Q}{\sqrt{d_k}}

    Masked entries have :math:`A_{ij} = 0`, so softmax's backward gives them
    :math:`dS_{ij} = 0`; fully masked rows get :math:`dA = 0` and so :math:`dS = 0`.
    The gradient with respect to the weights output is not taken: ``dout`` is the
    gradient of ``out`` only. Shapes: dout (..., T_q, d_v).
    """
    q, k, v, weights, has_any, softmax_cache = cache
    d_k = q.shape[-1]
    if checking():
        dout = np.asarray(dout)
        out_shape = np.broadcast_shapes(weights.shape[:-2], v.shape[:-2]) + (
            weights.shape[-2], v.shape[-1])
        require_shape("dout", dout, out_shape, "the shape of attention's output")
    dv = weights.swapaxes(-1, -2) @ dout  # (..., T_k, d_v)
    dweights = _unbroadcast(dout @ v.swapaxes(-1, -2), weights.shape)  # (..., T_q, T_k)
    dprobs = dweights * has_any  # (..., T_q, T_k)
    dscores = softmax_backward(dprobs, softmax_cache)  # (..., T_q, T_k)
    dq = dscores @ k / math.sqrt(d_k)  # (..., T_q, d_k)
    dk = dscores.swapaxes(-1, -2) @ q / math.sqrt(d_k)  # (..., T_k, d_k)
    # q, k, v may have broadcast against each other: sum back to each input's shape
    return _unbroadcast(dq, q.shape), _unbroadcast(dk, k.shape), _unbroadcast(dv, v.shape)


# ----------------------------------------------------------------------------------------
# masks

def causal_mask(T_q, T_k=None):
    r"""Causal mask, aligned at the end: query ``i`` may see keys ``j <= T_k - T_q + i``.

    .. math::
        M_{ij} = [\, j \le T_k - T_q + i \,]

    With ``T_k=None`` it is the square lower-triangular mask of self-attention. With
    ``T_q < T_k`` the queries are the last ``T_q`` positions (generation with a cache
    of earlier keys). Shapes: -> (T_q, T_k) bool.
    """
    T_q = _positive_int("T_q", T_q)
    T_k = T_q if T_k is None else _positive_int("T_k", T_k)
    if T_k < T_q:
        raise ValueError(
            f"causal_mask expects T_k >= T_q (the queries are the last T_q of the T_k "
            f"positions), got T_q={T_q}, T_k={T_k}"
        )
    i = np.arange(T_q)[:, None]  # (T_q, 1)
    j = np.arange(T_k)[None, :]  # (1, T_k)
    return j <= T_k - T_q + i  # (T_q, T_k)


def padding_mask(ids, pad_id):
    r"""True at real tokens, False at padding: :math:`M_{bt} = [\,\mathrm{ids}_{bt} \ne \mathrm{pad}\,]`.

    Shapes: ids (B, T) int -> (B, T) bool. Use ``mask[:, None, None, :]`` to broadcast
    it over heads and queries, as a mask of keys.
    """
    ids = _integer_array("ids", ids, ndim=2)
    return ids != pad_id  # (B, T)


def length_mask(lengths, T):
    r"""True at the first ``lengths[b]`` positions of each row: :math:`M_{bt} = [\,t < L_b\,]`.

    Shapes: lengths (B,) int -> (B, T) bool.
    """
    lengths = _integer_array("lengths", lengths, ndim=1)
    T = _positive_int("T", T)
    if lengths.size and (lengths.min() < 0 or lengths.max() > T):
        raise ValueError(
            f"lengths must lie in [0, T={T}], got min {lengths.min()}, max {lengths.max()}"
        )
    return np.arange(T)[None, :] < lengths[:, None]  # (B, T)


# ----------------------------------------------------------------------------------------
# heads

class HeadsCache(NamedTuple):
    """What the backward of split_heads / merge_heads needs."""
    n_heads: int


def split_heads(x, n_heads):
    r"""Split the last dimension into heads: (..., T, C) -> (..., H, T, D), D = C / H.

    .. math::
        X \in \mathbb{R}^{T \times C} \mapsto [X_1, \dots, X_H],\ X_h \in \mathbb{R}^{T \times D}

    Head ``h`` takes columns ``h*D`` to ``(h+1)*D - 1``.
    """
    return split_heads_forward(x, n_heads)[0]


def split_heads_forward(x, n_heads):
    """Forward of :func:`split_heads`: ``(out, cache)``."""
    if checking():
        x, n_heads = _check_split_heads(x, n_heads)
    *lead, T, C = x.shape
    D = C // n_heads
    out = x.reshape(*lead, T, n_heads, D).swapaxes(-3, -2)  # (..., H, T, D)
    return out, HeadsCache(n_heads)


def split_heads_backward(dout, cache):
    """Gradient of :func:`split_heads`: merging the heads back. dout (..., H, T, D) -> (..., T, C)."""
    return merge_heads(dout)


def merge_heads(x):
    r"""Concatenate the heads: (..., H, T, D) -> (..., T, H*D), the inverse of split_heads.

    .. math::
        \mathrm{Concat}(\mathrm{head}_1, \dots, \mathrm{head}_H)
    """
    return merge_heads_forward(x)[0]


def merge_heads_forward(x):
    """Forward of :func:`merge_heads`: ``(out, cache)``."""
    if checking():
        x = np.asarray(x)
        require_float("x", x)
        require_ndim_at_least("x", x, 3)
    *lead, H, T, D = x.shape
    out = x.swapaxes(-3, -2).reshape(*lead, T, H * D)  # (..., T, C)
    return out, HeadsCache(H)


def merge_heads_backward(dout, cache):
    """Gradient of :func:`merge_heads`: splitting again. dout (..., T, C) -> (..., H, T, D)."""
    return split_heads(dout, cache.n_heads)


def repeat_kv(x, n_rep):
    r"""Grouped-query attention's sharing (Ainslie et al. 2023, section 2.2): each of the
    :math:`H_{kv}` key (or value) heads serves :math:`G` = ``n_rep`` query heads, so query
    head h reads key/value head :math:`\lfloor h / G \rfloor`:

    .. math:: \mathrm{out}_{h} = x_{\lfloor h / G \rfloor}, \qquad h = 0, \dots, G H_{kv} - 1

    (torch's ``enable_gqa`` and Hugging Face's ``repeat_kv`` pair heads the same way).
    ``n_rep=1`` is multi-head attention. Shapes: x (..., H_kv, T, D) -> (..., H_kv * G, T, D).
    """
    return repeat_kv_forward(x, n_rep)[0]


def repeat_kv_forward(x, n_rep):
    """Forward of :func:`repeat_kv`: ``(out, cache)``."""
    if checking():
        x = np.asarray(x)
        require_float("x", x)
        require_ndim_at_least("x", x, 3)
        n_rep = _positive_int("n_rep", n_rep)
    out = np.repeat(x, n_rep, axis=-3)          # (..., H_kv * G, T, D): each head G times in a row
    return out, HeadsCache(n_rep)


def repeat_kv_backward(dout, cache):
    r"""A shared head's gradient is the sum over the G query heads of its group:

    .. math:: \frac{\partial L}{\partial x_j} = \sum_{g=0}^{G-1} \frac{\partial L}{\partial \mathrm{out}_{jG + g}}

    Shapes: dout (..., H_kv * G, T, D) -> dx (..., H_kv, T, D)."""
    n_rep = cache.n_heads
    *lead, H, T, D = dout.shape
    return dout.reshape(*lead, H // n_rep, n_rep, T, D).sum(axis=-3)  # (..., H_kv, T, D)


# ----------------------------------------------------------------------------------------
# private helpers

def _check_attention_inputs(q, k, v, mask):
    """Arrays of the right kinds and matching sizes; returns them and the scores' shape."""
    q, k, v = np.asarray(q), np.asarray(k), np.asarray(v)
    for name, x in (("q", q), ("k", k), ("v", v)):
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
        mask = np.asarray(mask)
        require_bool("mask", mask)
        require_broadcastable("mask", mask, scores_shape, "the scores (..., T_q, T_k)")
    return q, k, v, mask


def _check_split_heads(x, n_heads):
    """An array of at least 2 dimensions whose last one n_heads divides; returns it and n_heads."""
    x = np.asarray(x)
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
    try:
        return tuple(np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2]))
    except ValueError:
        raise ValueError(
            f"expected the leading dimensions of q, k and v to broadcast together, "
            f"got q: {shape_of(q)}, k: {shape_of(k)}, v: {shape_of(v)}"
        ) from None


def _unbroadcast(grad, shape):
    """Sum ``grad`` over the dimensions that broadcasting added or stretched to ``shape``."""
    extra = grad.ndim - len(shape)
    grad = grad.sum(axis=tuple(range(extra))) if extra else grad
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    return grad.sum(axis=stretched, keepdims=True) if stretched else grad


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"expected {name} to be a positive int, got {value!r}")
    return int(value)


def _integer_array(name, x, ndim):
    x = np.asarray(x)
    require_integer(name, x)
    require_ndim(name, x, ndim)
    return x
