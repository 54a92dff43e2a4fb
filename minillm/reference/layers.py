"""Layers: the ops of this package wrapped with their parameters — NumPy reference.

Dimension legend:
    B  batch size          T  sequence length          C  d_model
    H  number of heads     D  head size, C / H         F  d_ff (feed-forward width)
    V  vocabulary size     H_kv  key/value heads (grouped-query attention), G = H / H_kv

Every layer's ``forward`` stores ONE cache of its last call in ``self._cache``
(overwritten each call, never a growing list); ``backward(dout)`` adds the gradients of
its parameters into ``Parameter.grad`` and returns the gradient of its input. A layer
used twice in one forward would lose the first cache, so the models never do that.

The parameter names (``W``, ``b``, ``gamma``, ``W_Q``, ``W1``, ...) and their order are
the torch backend's too (``minillm/torch_backend/layers.py``).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..core._validate import checking, require_int_at_least
from ..core.config import GATED_ACTIVATIONS, ModelConfig
from ..core.init import rotary_tables
from .activations import ACTIVATIONS
from .attention import (
    causal_mask, merge_heads, repeat_kv, repeat_kv_backward, repeat_kv_forward,
    scaled_dot_product_attention, scaled_dot_product_attention_backward,
    scaled_dot_product_attention_forward, split_heads,
)
from .dropout import dropout_backward, dropout_forward
from .embedding import embedding_backward, embedding_forward
from .feed_forward import (
    feed_forward_backward, feed_forward_forward, gated_feed_forward_backward, gated_feed_forward_forward,
)
from .layer_norm import layer_norm_backward, layer_norm_forward
from .linear import linear_backward, linear_forward
from .module import Module
from .parameter import Parameter
from .rms_norm import rms_norm_backward, rms_norm_forward
from .rope import rope_backward, rope_forward, rope_half_backward, rope_half_forward

__all__ = [
    "KVCache",
    "Linear", "Embedding", "LayerNorm", "RMSNorm", "MultiHeadAttention", "FeedForward",
    "GatedFeedForward", "Dropout", "TransformerBlock",
]

# RoPE's layouts (ModelConfig.rope_layout): the rotation's forward and backward
ROTATIONS = {"interleaved": (rope_forward, rope_backward),
             "half": (rope_half_forward, rope_half_backward)}


class KVCache(NamedTuple):
    """One attention layer's keys and values for the positions generated so far: what
    ``forward_cached`` returns and takes back as ``past`` (with RoPE the keys are rotated
    already, each by its own position). Only the H_kv key/value heads are held, not their
    G copies. Shapes: keys, values (B, H_kv, P, D)."""

    keys: np.ndarray
    values: np.ndarray

    @property
    def nbytes(self) -> int:
        """The memory the cache holds: keys and values, (B, H_kv, P, D) each."""
        return int(self.keys.nbytes + self.values.nbytes)

    @property
    def length(self) -> int:
        """P, the number of positions held."""
        return int(self.keys.shape[2])

    # rows join and leave a batched cache between decoding steps (minillm.train.generation)
    def take(self, rows, start: int = 0) -> "KVCache":
        """The cache of the batch rows ``rows`` (a list of indices, in that order), from
        position ``start`` on (dropping columns that are padding in every kept row).
        Shapes: (B, H_kv, P, D) -> (len(rows), H_kv, P - start, D)."""
        return KVCache(self.keys[rows, :, start:], self.values[rows, :, start:])

    def left_pad(self, P: int) -> "KVCache":
        """P - length zero columns put before the held ones: left padding, which the
        attention mask then hides. Shapes: (B, H_kv, length, D) -> (B, H_kv, P, D)."""
        B, H_kv, L, D = self.keys.shape
        pad = np.zeros((B, H_kv, P - L, D), self.keys.dtype)                # (B, H_kv, P - L, D)
        return KVCache(np.concatenate([pad, self.keys], axis=2), np.concatenate([pad, self.values], axis=2))

    @staticmethod
    def cat(caches) -> "KVCache":
        """The batch rows of several caches of one length, one after another.
        Shapes: (B_i, H_kv, P, D) each -> (sum B_i, H_kv, P, D)."""
        return KVCache(np.concatenate([c.keys for c in caches]), np.concatenate([c.values for c in caches]))


def _rope_positions(config: ModelConfig) -> int:
    """How many positions a self-attention layer rotates for (0: no RoPE)."""
    return config.block_size if config.positional == "rope" else 0


def _self_attention(config: ModelConfig) -> "MultiHeadAttention":
    """A block's self-attention, with every choice the config makes."""
    c = config
    return MultiHeadAttention(c.d_model, c.n_heads, c.dtype, _rope_positions(c), n_kv_heads=c.n_kv_heads,
                              bias=c.bias, qk_norm=c.qk_norm, rope_theta=c.rope_theta,
                              rope_layout=c.rope_layout, eps=c.layer_norm_eps, qkv_bias=c.qkv_bias,
                              head_dim=c.head_dim)


def make_norm(config: ModelConfig):
    """The norm the config names (``norm``): LayerNorm or RMSNorm, of width d_model."""
    kind = RMSNorm if config.norm == "rms" else LayerNorm
    return kind(config.d_model, config.layer_norm_eps, config.dtype)


def make_feed_forward(config: ModelConfig):
    """The feed-forward network the config names: gated (``activation="swiglu"``) or plain."""
    c = config
    if c.activation in GATED_ACTIVATIONS:
        return GatedFeedForward(c.d_model, c.d_ff, GATED_ACTIVATIONS[c.activation], c.dtype, c.bias)
    return FeedForward(c.d_model, c.d_ff, c.activation, c.dtype, c.bias)


def _data(p):
    """A parameter's array, or None for an absent bias."""
    return None if p is None else p.data


def _accumulate(p, grad):
    if p is not None:
        p.accumulate(grad)


def _no_adapters(layer) -> None:
    """Empty LoRA slots, ``lora_<name>`` for each of the layer's ``LORA_TARGETS``
    (``minillm.store.lora_adapters`` fills them; an empty slot is no parameter)."""
    for name in layer.LORA_TARGETS:
        setattr(layer, f"lora_{name}", None)


def _adapted(layer) -> bool:
    return any(getattr(layer, f"lora_{name}") is not None for name in layer.LORA_TARGETS)


def _project(layer, name, x):
    r"""The layer's projection ``name`` (``W_Q``, ``W1``, ...; its bias ``b_Q``, ``b1``)
    of x: :math:`xW + b`, or with a LoRA adapter in ``lora_<name>``
    :math:`xW + b + s\,xAB`, the adapter keeping its own cache (returned as None).
    Shapes: x (..., d_in) -> (..., d_out)."""
    W, b = getattr(layer, name), getattr(layer, "b" + name[1:])
    adapter = getattr(layer, f"lora_{name}")
    if adapter is None:
        return linear_forward(x, W.data, _data(b))
    return adapter(x, W.data, _data(b)), None


def _project_backward(layer, name, d, cache):
    """dx of projection ``name``; W and b get their gradients, or, adapted, the adapter's
    A and B get theirs and the frozen W and b none."""
    adapter = getattr(layer, f"lora_{name}")
    if adapter is not None:
        return adapter.backward(d)
    d_in, dW, db = linear_backward(d, cache)
    getattr(layer, name).accumulate(dW)
    _accumulate(getattr(layer, "b" + name[1:]), db)
    return d_in


def _empty(shape, dtype):
    # filled by minillm.core.init.init_parameters (or load_state_dict) before any use
    return Parameter(np.zeros(shape, dtype=dtype))


class Linear(Module):
    r""":math:`y = xW + b`, with ``W`` of shape ``(d_in, d_out)`` as the formula writes it.

    Shapes: x (..., d_in) -> (..., d_out).
    """

    def __init__(self, d_in: int, d_out: int, bias: bool = True, dtype="float32"):
        super().__init__()
        self.W = _empty((d_in, d_out), dtype)
        self.b = _empty((d_out,), dtype) if bias else None

    def forward(self, x):
        b = None if self.b is None else self.b.data
        y, self._cache = linear_forward(x, self.W.data, b)        # (..., d_out)
        return y

    def backward(self, dy):
        dx, dW, db = linear_backward(dy, self._cache)             # (..., d_in)
        self.W.accumulate(dW)
        if self.b is not None:
            self.b.accumulate(db)
        return dx


class Embedding(Module):
    r"""Row lookup :math:`E[\mathrm{ids}]`: ``W`` (V, C). Shapes: ids (...) int -> (..., C).

    Its backward adds each row of ``dout`` into the row of ``W`` its id picked and
    returns nothing (token ids have no gradient).
    """

    def __init__(self, n: int, d: int, dtype="float32"):
        super().__init__()
        self.W = _empty((n, d), dtype)

    def forward(self, ids):
        out, self._cache = embedding_forward(ids, self.W.data)    # (..., C)
        return out

    def backward(self, dout):
        self.W.accumulate(embedding_backward(dout, self._cache))
        return None


class LayerNorm(Module):
    r""":math:`\mathrm{LN}(x) = \gamma \odot (x - \mu)/\sqrt{\sigma^2 + \epsilon} + \beta`
    over the last axis (Ba et al. 2016). Shapes: x (..., C) -> (..., C)."""

    def __init__(self, d: int, eps: float = 1e-5, dtype="float32"):
        super().__init__()
        self.eps = eps
        self.gamma = _empty((d,), dtype)
        self.beta = _empty((d,), dtype)

    def forward(self, x):
        y, self._cache = layer_norm_forward(x, self.gamma.data, self.beta.data, self.eps)
        return y                                                   # (..., C)

    def backward(self, dy):
        dx, dgamma, dbeta = layer_norm_backward(dy, self._cache)
        self.gamma.accumulate(dgamma)
        self.beta.accumulate(dbeta)
        return dx                                                  # (..., C)


class RMSNorm(Module):
    r""":math:`\mathrm{RMSNorm}(x) = \gamma \odot x / \sqrt{\overline{x^2} + \epsilon}` over the
    last axis (Zhang and Sennrich 2019): no mean, no ``beta``. Shapes: x (..., C) -> (..., C)."""

    def __init__(self, d: int, eps: float = 1e-5, dtype="float32"):
        super().__init__()
        self.eps = eps
        self.gamma = _empty((d,), dtype)

    def forward(self, x):
        y, self._cache = rms_norm_forward(x, self.gamma.data, self.eps)
        return y                                                   # (..., C)

    def backward(self, dy):
        dx, dgamma = rms_norm_backward(dy, self._cache)
        self.gamma.accumulate(dgamma)
        return dx                                                  # (..., C)


class Dropout(Module):
    r"""Inverted dropout: :math:`y = x \odot m / (1 - p)`, :math:`m = [u \ge p]`,
    :math:`u \sim U[0, 1)` from the model's ``numpy.random.Generator`` (the same masks
    in both backends). Identity in eval mode or when ``p == 0``."""

    def __init__(self, p: float, rng: np.random.Generator):
        super().__init__()
        self.p = p
        self.rng = rng

    def forward(self, x):
        self._active = self.training and self.p > 0
        if not self._active:
            return x
        y, self._cache = dropout_forward(x, self.p, True, self.rng)
        return y

    def backward(self, dy):
        return dropout_backward(dy, self._cache) if self._active else dy


class _AttentionCache(NamedTuple):
    """What :meth:`MultiHeadAttention.backward` needs from its forward: the caches of the
    four projections, of the key/value sharing (None without grouping), of the rotations
    of q and k (None without RoPE) and of the attention, and whether keys and values came from a
    memory."""
    q: object
    k: object
    v: object
    repeat: object
    rope: object
    attention: object
    out: object
    with_memory: bool


class MultiHeadAttention(Module):
    r"""Multi-head attention (chapter section 4.1; Vaswani et al. 2017, 3.2.2): self-attention,
    or with ``memory`` the decoder's attention over the encoder's output (3.2.3).

    .. math::
        Q = XW_Q + b_Q,\ K = MW_K + b_K,\ V = MW_V + b_V, \quad
        \mathrm{head}_h = \mathrm{softmax}\!\Big(\frac{Q_h K_{g(h)}^\top}{\sqrt{D}} + M_{mask}\Big) V_{g(h)},
        \quad Y = \mathrm{Concat}(\mathrm{head}_1..\mathrm{head}_H)\, W_O + b_O

    with :math:`M = X` (self-attention, ``memory=None``) or :math:`M` = ``memory`` (B, S, C),
    the encoder's output (cross-attention: queries from the decoder, keys and values from
    the source). ``mask`` is boolean, broadcastable to (B, H, T, S), S = T without memory,
    True = may attend; the model builds it (causal and/or padding; the source's padding
    for cross-attention). ``rope_positions`` > 0 rotates each head's queries and keys by
    their positions (RoPE, :mod:`minillm.reference.rope`) with tables for that many
    positions, before the scores are taken; 0 leaves them as they are (the model then
    adds positions to its embeddings). A rotary layer takes no memory: a target and a
    source position are not on one axis, so their offset means nothing.

    The modern decoder's options (``ModelConfig``): ``n_kv_heads`` (0: H) key/value heads,
    grouped-query attention (Ainslie et al. 2023): W_K and W_V are (C, H_kv D) and query
    head h reads key/value head :math:`g(h) = \lfloor h / G \rfloor` (:func:`repeat_kv`;
    the gradient of a shared head sums over its group); ``bias=False`` drops the four
    biases (``b_Q`` ... are then None) and ``qkv_bias=True`` with it keeps ``b_Q``, ``b_K``,
    ``b_V`` (Qwen 2); ``head_dim`` (0: C / H) is D when set apart from C / H (Qwen 3): W_Q
    is (C, H D), W_K and W_V (C, H_kv D), W_O (H D, C); ``qk_norm`` applies an RMSNorm of size D
    (``q_norm``, ``k_norm``) to each head's queries and keys before RoPE (Qwen 3,
    OLMo 2); ``rope_theta`` is RoPE's base and ``rope_layout`` its pairing
    (:func:`rope` or :func:`rope_half`); ``eps`` QK-norm's epsilon.
    Shapes: x (B, T, C), memory (B, S, C) or None -> (B, T, C).
    """

    LORA_TARGETS = ("W_Q", "W_K", "W_V", "W_O")     # the projections that take an adapter

    def __init__(self, d_model: int, n_heads: int, dtype="float32", rope_positions: int = 0,
                 n_kv_heads: int = 0, bias: bool = True, qk_norm: bool = False,
                 rope_theta: float = 10000.0, rope_layout: str = "interleaved", eps: float = 1e-5,
                 qkv_bias: bool = False, head_dim: int = 0):
        super().__init__()
        self.n_heads = n_heads
        self.n_kv_heads = _check_kv_heads(n_heads, n_kv_heads)
        D = require_int_at_least("head_dim", head_dim, 0) or d_model // n_heads
        shapes = {"Q": (d_model, n_heads * D), "K": (d_model, self.n_kv_heads * D),
                  "V": (d_model, self.n_kv_heads * D), "O": (n_heads * D, d_model)}
        for name in ("Q", "K", "V", "O"):
            with_bias = bias or (qkv_bias and name != "O")
            setattr(self, f"W_{name}", _empty(shapes[name], dtype))
            setattr(self, f"b_{name}", _empty((shapes[name][1],), dtype) if with_bias else None)
        self.q_norm = RMSNorm(D, eps, dtype) if qk_norm else None
        self.k_norm = RMSNorm(D, eps, dtype) if qk_norm else None
        _no_adapters(self)
        require_int_at_least("rope_positions", rope_positions, 0)   # 0: no RoPE
        if rope_layout not in ROTATIONS:
            raise ValueError(f"expected rope_layout in {tuple(ROTATIONS)}, got {rope_layout!r}")
        self.rotation = ROTATIONS[rope_layout]
        # constants, neither trained nor saved: cos, sin (rope_positions, D/2)
        self.rope_tables = (rotary_tables(rope_positions, D, dtype, rope_theta)
                            if rope_positions else None)

    def _rotary(self, start: int, T: int):
        """The RoPE tables of positions ``start .. start + T - 1``: cos, sin (T, D/2)."""
        cos, sin = self.rope_tables
        if start + T > len(cos):
            raise ValueError(f"expected at most rope_positions={len(cos)} positions, got {start + T}")
        return cos[start:start + T], sin[start:start + T]

    def _rotary_at(self, positions):
        """The RoPE tables of each row's own positions (left-padded batches):
        positions (B, T) int -> cos, sin (B, 1, T, D/2), broadcast over the heads."""
        cos, sin = self.rope_tables
        if checking() and positions.max() >= len(cos):      # the model's positions are below block_size
            raise ValueError(f"expected positions below rope_positions={len(cos)}, got {positions.max()}")
        return cos[positions][:, None], sin[positions][:, None]         # (B, 1, T, D/2)

    def _source(self, x, memory):
        """What keys and values read: ``x`` itself, or the memory (never rotated)."""
        if memory is None:
            return x
        if self.rope_tables is not None:
            raise ValueError("expected memory=None for a rotary attention (rope_positions > 0): "
                             "RoPE rotates by positions on one axis, and a memory's are not the "
                             "queries'; build cross-attention with rope_positions=0")
        return memory

    def forward(self, x, mask=None, memory=None, positions=None):
        """``positions`` (B, T) int: each token's position in its own sequence, for RoPE
        (packed conversations restart at 0); None: 0 .. T-1 in every row."""
        H, H_kv = self.n_heads, self.n_kv_heads
        src = self._source(x, memory)                              # (B, S, C), S = T if self
        q, c_q = _project(self, "W_Q", x)                          # (B, T, C)
        k, c_k = _project(self, "W_K", src)                        # (B, S, H_kv D)
        v, c_v = _project(self, "W_V", src)                        # (B, S, H_kv D)
        q, k, v = split_heads(q, H), split_heads(k, H_kv), split_heads(v, H_kv)  # (B, H|H_kv, T|S, D)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)                  # (B, H|H_kv, T|S, D)
        c_rope = None
        if self.rope_tables is not None:
            rotate, _ = self.rotation
            cos, sin = (self._rotary(0, x.shape[1]) if positions is None
                        else self._rotary_at(positions))           # (T | B, 1, T, D/2)
            (q, c_rope_q), (k, c_rope_k) = rotate(q, cos, sin), rotate(k, cos, sin)  # (B, H|H_kv, T, D)
            c_rope = (c_rope_q, c_rope_k)                          # same tables, H and H_kv heads
        c_rep = None
        if H_kv != H:                                              # each k/v head serves G queries
            (k, c_rep), (v, _) = repeat_kv_forward(k, H // H_kv), repeat_kv_forward(v, H // H_kv)
        (heads, _), c_att = scaled_dot_product_attention_forward(q, k, v, mask)  # (B, H, T, D)
        y, c_o = _project(self, "W_O", merge_heads(heads))         # (B, T, C)
        self._cache = _AttentionCache(c_q, c_k, c_v, c_rep, c_rope, c_att, c_o, memory is not None)
        return y

    def backward(self, dy):
        """Returns ``dx`` after self-attention. After a call with ``memory`` returns
        ``(dx, dmemory)``: the query path gives dx; the key and value paths both read the
        memory, so their input gradients add into dmemory."""
        c_q, c_k, c_v, c_rep, c_rope, c_att, c_o, with_memory = self._cache
        dmerged = _project_backward(self, "W_O", dy, c_o)          # (B, T, C)
        dq, dk, dv = scaled_dot_product_attention_backward(
            split_heads(dmerged, self.n_heads), c_att)             # (B, H, T|S, D) each
        if c_rep is not None:                                      # a shared head sums its group
            dk, dv = repeat_kv_backward(dk, c_rep), repeat_kv_backward(dv, c_rep)  # (B, H_kv, S, D)
        if c_rope is not None:                                     # rotate the gradients back
            _, rotate_back = self.rotation
            dq, dk = rotate_back(dq, c_rope[0]), rotate_back(dk, c_rope[1])
        if self.q_norm is not None:
            dq, dk = self.q_norm.backward(dq), self.k_norm.backward(dk)
        dx, dsrc = 0, 0
        for name, d, cache, into_x in (("W_Q", dq, c_q, True), ("W_K", dk, c_k, not with_memory),
                                       ("W_V", dv, c_v, not with_memory)):
            d_in = _project_backward(self, name, merge_heads(d), cache)  # (B, T|S, C)
            if into_x:
                dx = dx + d_in
            else:
                dsrc = dsrc + d_in
        return (dx, dsrc) if with_memory else dx                   # (B, T, C), (B, S, C)

    def forward_cached(self, x, past=None, key_mask=None, positions=None):
        """Causal attention of ``T`` new positions over the ``P`` cached ones and
        themselves, for generation (no backward). ``past`` is the :class:`KVCache` of the
        earlier positions (keys, values each (B, H_kv, P, D)) or None; with RoPE the cached
        keys are rotated already, each by its own position. The cache holds the H_kv
        key/value heads only; they are shared out to the query heads for each step.

        A left-padded batch (rows of different lengths) also gives ``key_mask`` (B, P + T)
        bool, False at padding (keys no query may read), and ``positions`` (B, T) int, the
        new tokens' positions in their own rows (RoPE rotates by these); None: every key
        real and the new positions P .. P+T-1.

        Shapes: x (B, T, C) -> y (B, T, C), present KVCache, keys and values (B, H_kv, P + T, D).
        """
        H, H_kv = self.n_heads, self.n_kv_heads
        q = split_heads(_project(self, "W_Q", x)[0], H)            # (B, H, T, D)
        k = split_heads(_project(self, "W_K", x)[0], H_kv)         # (B, H_kv, T, D)
        v = split_heads(_project(self, "W_V", x)[0], H_kv)         # (B, H_kv, T, D)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if self.rope_tables is not None:        # the new positions: P .. P+T-1, or each row's own
            rotate, _ = self.rotation
            cos, sin = (self._rotary(0 if past is None else past.length, x.shape[1]) if positions is None
                        else self._rotary_at(positions))                   # (T | B, 1, T, D/2)
            q, k = rotate(q, cos, sin)[0], rotate(k, cos, sin)[0]           # (B, H|H_kv, T, D)
        if past is not None:
            k = np.concatenate([past.keys, k], axis=2)                      # (B, H_kv, P+T, D)
            v = np.concatenate([past.values, v], axis=2)                    # (B, H_kv, P+T, D)
        T = q.shape[2]                          # one new position sees all P + 1: no causal mask
        mask = None if T == 1 else causal_mask(T, k.shape[2])               # (T, P+T)
        if key_mask is not None:                # padding hidden from every query
            pad = key_mask[:, None, None, :]                                # (B, 1, 1, P+T)
            mask = pad if mask is None else mask & pad                      # (B, 1, T, P+T)
        k_all, v_all = (k, v) if H_kv == H else (repeat_kv(k, H // H_kv), repeat_kv(v, H // H_kv))
        heads, _ = scaled_dot_product_attention(q, k_all, v_all, mask)      # (B, H, T, D)
        return _project(self, "W_O", merge_heads(heads))[0], KVCache(k, v)


def _check_kv_heads(n_heads, n_kv_heads):
    """n_kv_heads resolved (0: n_heads) and checked to divide n_heads."""
    n_kv_heads = require_int_at_least("n_kv_heads", n_kv_heads, 0) or n_heads
    if n_heads % n_kv_heads:
        raise ValueError(f"n_kv_heads must divide n_heads (each key/value head serves a group of "
                         f"query heads): got n_kv_heads={n_kv_heads}, n_heads={n_heads}")
    return n_kv_heads


class _AdaptedCache(NamedTuple):
    """A feed-forward layer's caches when an adapter made it run step by step."""
    caches: tuple


class FeedForward(Module):
    r"""Position-wise feed-forward network (chapter section 4.2):
    :math:`\mathrm{FFN}(x) = \phi(xW_1 + b_1)W_2 + b_2`, :math:`\phi` = ReLU (the
    chapter), GELU, its tanh form or SiLU; ``bias=False``: no b1, b2.
    Shapes: x (..., C) -> (..., C), hidden (..., F)."""

    LORA_TARGETS = ("W1", "W2")

    def __init__(self, d_model: int, d_ff: int, activation: str = "relu", dtype="float32",
                 bias: bool = True):
        super().__init__()
        self.activation = activation
        self.W1 = _empty((d_model, d_ff), dtype)
        self.b1 = _empty((d_ff,), dtype) if bias else None
        self.W2 = _empty((d_ff, d_model), dtype)
        self.b2 = _empty((d_model,), dtype) if bias else None
        _no_adapters(self)

    def forward(self, x):
        if _adapted(self):   # the op's steps one by one, each projection with its adapter
            act_forward, _ = ACTIVATIONS[self.activation]
            h, c_1 = _project(self, "W1", x)                       # (..., F)
            a, c_act = act_forward(h)                              # (..., F)
            y, c_2 = _project(self, "W2", a)                       # (..., C)
            self._cache = _AdaptedCache((c_1, c_act, c_2))
            return y
        y, self._cache = feed_forward_forward(
            x, self.W1.data, _data(self.b1), self.W2.data, _data(self.b2), self.activation)
        return y                                                   # (..., C)

    def backward(self, dy):
        if isinstance(self._cache, _AdaptedCache):
            c_1, c_act, c_2 = self._cache.caches
            da = _project_backward(self, "W2", dy, c_2)            # (..., F)
            dh = ACTIVATIONS[self.activation][1](da, c_act)        # (..., F)
            return _project_backward(self, "W1", dh, c_1)          # (..., C)
        dx, dW1, db1, dW2, db2 = feed_forward_backward(dy, self._cache)
        for p, g in ((self.W1, dW1), (self.b1, db1), (self.W2, dW2), (self.b2, db2)):
            _accumulate(p, g)
        return dx                                                  # (..., C)


class GatedFeedForward(Module):
    r"""Gated feed-forward network; SwiGLU with ``activation="silu"`` (Shazeer 2020; Llama):
    :math:`\mathrm{FFN}(x) = (\mathrm{SiLU}(xW_{gate} + b_{gate}) \odot (xW_{up} + b_{up}))W_{down} + b_{down}`;
    ``bias=False``: no b_gate, b_up, b_down. Shapes: x (..., C) -> (..., C), hidden (..., F)."""

    LORA_TARGETS = ("W_gate", "W_up", "W_down")

    def __init__(self, d_model: int, d_ff: int, activation: str = "silu", dtype="float32",
                 bias: bool = True):
        super().__init__()
        self.activation = activation
        self.W_gate = _empty((d_model, d_ff), dtype)
        self.b_gate = _empty((d_ff,), dtype) if bias else None
        self.W_up = _empty((d_model, d_ff), dtype)
        self.b_up = _empty((d_ff,), dtype) if bias else None
        self.W_down = _empty((d_ff, d_model), dtype)
        self.b_down = _empty((d_model,), dtype) if bias else None
        _no_adapters(self)

    def forward(self, x):
        if _adapted(self):   # the op's steps one by one, each projection with its adapter
            act_forward, _ = ACTIVATIONS[self.activation]
            h_gate, c_gate = _project(self, "W_gate", x)           # (..., F)
            a, c_act = act_forward(h_gate)                         # (..., F)
            u, c_up = _project(self, "W_up", x)                    # (..., F)
            y, c_down = _project(self, "W_down", a * u)            # (..., C)
            self._cache = _AdaptedCache((c_gate, c_act, c_up, a, u, c_down))
            return y
        y, self._cache = gated_feed_forward_forward(
            x, self.W_gate.data, _data(self.b_gate), self.W_up.data, _data(self.b_up),
            self.W_down.data, _data(self.b_down), self.activation)
        return y                                                   # (..., C)

    def backward(self, dy):
        if isinstance(self._cache, _AdaptedCache):
            c_gate, c_act, c_up, a, u, c_down = self._cache.caches
            dm = _project_backward(self, "W_down", dy, c_down)     # (..., F)
            dh_gate = ACTIVATIONS[self.activation][1](dm * u, c_act)  # (..., F)
            dx_up = _project_backward(self, "W_up", dm * a, c_up)  # (..., C)
            return _project_backward(self, "W_gate", dh_gate, c_gate) + dx_up  # (..., C)
        dx, *grads = gated_feed_forward_backward(dy, self._cache)
        params = (self.W_gate, self.b_gate, self.W_up, self.b_up, self.W_down, self.b_down)
        for p, g in zip(params, grads):
            _accumulate(p, g)
        return dx                                                  # (..., C)


class TransformerBlock(Module):
    r"""One Transformer layer, pre-norm (GPT-2) or post-norm (Vaswani et al.; BERT).

    .. math::
        \text{pre-norm:}\quad  x' = x + \mathrm{Drop}(\mathrm{MHA}(\mathrm{LN}_1(x))),\quad
                               y = x' + \mathrm{Drop}(\mathrm{FFN}(\mathrm{LN}_2(x')))

        \text{post-norm:}\quad x' = \mathrm{LN}_1(x + \mathrm{Drop}(\mathrm{MHA}(x))),\quad
                               y = \mathrm{LN}_2(x' + \mathrm{Drop}(\mathrm{FFN}(x')))

    Causal or bidirectional is decided by the ``mask`` the model passes. The config picks
    LN (LayerNorm or RMSNorm, ``norm``), the attention (heads, grouping, QK-norm, RoPE,
    biases) and the FFN (plain or gated); a Llama block is the pre-norm one with RMSNorm,
    grouped-query attention and SwiGLU. Shapes: x (B, T, C) -> (B, T, C).
    """

    def __init__(self, config: ModelConfig, rng: np.random.Generator):
        super().__init__()
        c = config
        self.norm_first = c.norm_first
        self.ln1 = make_norm(c)
        self.attn = _self_attention(c)
        self.ln2 = make_norm(c)
        self.ffn = make_feed_forward(c)
        self.drop_attn = Dropout(c.dropout, rng)
        self.drop_ffn = Dropout(c.dropout, rng)

    def forward(self, x, mask=None, positions=None):
        if self.norm_first:
            x = x + self.drop_attn(self.attn(self.ln1(x), mask, positions=positions))  # (B, T, C)
            return x + self.drop_ffn(self.ffn(self.ln2(x)))          # (B, T, C)
        x = self.ln1(x + self.drop_attn(self.attn(x, mask, positions=positions)))  # (B, T, C)
        return self.ln2(x + self.drop_ffn(self.ffn(x)))              # (B, T, C)

    def backward(self, dy):
        if self.norm_first:
            dx = dy + self.ln2.backward(self.ffn.backward(self.drop_ffn.backward(dy)))
            return dx + self.ln1.backward(self.attn.backward(self.drop_attn.backward(dx)))
        ds = self.ln2.backward(dy)                                   # d(x' + FFN)
        dx = ds + self.ffn.backward(self.drop_ffn.backward(ds))      # dx'
        ds = self.ln1.backward(dx)                                   # d(x + MHA)
        return ds + self.attn.backward(self.drop_attn.backward(ds))  # (B, T, C)

    def forward_cached(self, x, past=None, key_mask=None, positions=None):
        """:meth:`forward` for generation, attention reading and extending the KV cache
        (``past``: this block's KVCache or None; ``key_mask``, ``positions``: a padded
        batch's, see :meth:`MultiHeadAttention.forward_cached`). Returns ``(y, present)``."""
        if self.norm_first:
            a, present = self.attn.forward_cached(self.ln1(x), past, key_mask, positions)
            x = x + self.drop_attn(a)                                # (B, T, C)
            return x + self.drop_ffn(self.ffn(self.ln2(x))), present
        a, present = self.attn.forward_cached(x, past, key_mask, positions)
        x = self.ln1(x + self.drop_attn(a))                          # (B, T, C)
        return self.ln2(x + self.drop_ffn(self.ffn(x))), present
