"""Layers: the ops of this package wrapped with their parameters — PyTorch backend.

Dimension legend:
    B  batch size          T  sequence length          C  d_model
    H  number of heads     D  head size, C / H         F  d_ff (feed-forward width)
    V  vocabulary size     H_kv  key/value heads (grouped-query attention), G = H / H_kv

The same classes, parameter names, shapes and order as ``minillm/reference/layers.py``
(``W`` of a Linear is (d_in, d_out), as the formula writes it); gradients come from
autograd, so there is no ``backward`` here.

Two paths (docs/architecture.md, "The torch backend's two paths"): every layer with a
torch kernel has a ``fused`` flag, False when built. False is the explicit path, the
reference's formulas written with tensor ops (``linear``, ``layer_norm``, ...); True is
the fast path, torch's own kernels (``F.linear``, ``F.layer_norm``, ``F.rms_norm``,
``F.gelu``, ``F.silu``, ``F.embedding``, ``F.scaled_dot_product_attention``, with
``enable_gqa`` for grouped-query attention) on the same parameters. A model's
``set_fused`` sets every flag; ``minillm.store.runtime.Runtime.prepare`` calls it.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from ..core._validate import checking, require_int_at_least
from ..core.config import GATED_ACTIVATIONS, ModelConfig
from ..core.init import rotary_tables
from .activations import ACTIVATIONS, FAST_ACTIVATIONS
from .attention import (
    causal_mask, fast_grouped_attention, fused_attention, merge_heads, repeat_kv,
    scaled_dot_product_attention, split_heads,
)
from .dropout import dropout
from .embedding import embedding, fast_embedding
from .feed_forward import fast_feed_forward, fast_gated_feed_forward, feed_forward, gated_feed_forward
from .layer_norm import fast_layer_norm, layer_norm
from .linear import fast_linear, linear
from .module import Module
from .rms_norm import fast_rms_norm, rms_norm
from .rope import rope, rope_half

__all__ = [
    "KVCache",
    "Linear", "Embedding", "LayerNorm", "RMSNorm", "MultiHeadAttention", "FeedForward",
    "GatedFeedForward", "Dropout", "TransformerBlock",
]

# RoPE's layouts (ModelConfig.rope_layout): the rotation
ROTATIONS = {"interleaved": rope, "half": rope_half}


class KVCache(NamedTuple):
    """One attention layer's keys and values for the positions generated so far: what
    ``forward_cached`` returns and takes back as ``past`` (with RoPE the keys are rotated
    already, each by its own position). Only the H_kv key/value heads are held, not their
    G copies. Shapes: keys, values (B, H_kv, P, D)."""

    keys: torch.Tensor
    values: torch.Tensor

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
        position ``start`` on. Shapes: (B, H_kv, P, D) -> (len(rows), H_kv, P - start, D)."""
        return KVCache(self.keys[rows, :, start:], self.values[rows, :, start:])

    def left_pad(self, P: int) -> "KVCache":
        """P - length zero columns put before the held ones (left padding).
        Shapes: (B, H_kv, length, D) -> (B, H_kv, P, D)."""
        B, H_kv, L, D = self.keys.shape
        pad = self.keys.new_zeros((B, H_kv, P - L, D))                      # (B, H_kv, P - L, D)
        return KVCache(torch.cat([pad, self.keys], dim=2), torch.cat([pad, self.values], dim=2))

    @staticmethod
    def cat(caches) -> "KVCache":
        """The batch rows of several caches of one length, one after another.
        Shapes: (B_i, H_kv, P, D) each -> (sum B_i, H_kv, P, D)."""
        return KVCache(torch.cat([c.keys for c in caches]), torch.cat([c.values for c in caches]))


def _rope_positions(config: ModelConfig) -> int:
    """How many positions a self-attention layer rotates for (0: no RoPE)."""
    return config.block_size if config.positional == "rope" else 0


def _attention_ops(fused: bool):
    """(affine map, attention) of the fast path (``F.linear``, torch's fused kernel)
    or of the explicit one (the formulas)."""
    if fused:
        return fast_linear, fused_attention
    return linear, scaled_dot_product_attention


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


def _no_adapters(layer) -> None:
    """Empty LoRA slots, ``lora_<name>`` for each of the layer's ``LORA_TARGETS``
    (``minillm.store.lora_adapters`` fills them; an empty slot is no parameter)."""
    for name in layer.LORA_TARGETS:
        setattr(layer, f"lora_{name}", None)


def _adapted(layer) -> bool:
    return any(getattr(layer, f"lora_{name}") is not None for name in layer.LORA_TARGETS)


def _project(layer, name, affine, x):
    """The layer's projection ``name`` (``W_Q``, ``W1``, ...; its bias ``b_Q``, ``b1``) of
    x: ``affine(x, W, b)``, or the LoRA adapter in ``lora_<name>`` on the same W and b."""
    W, b = getattr(layer, name), getattr(layer, "b" + name[1:])
    adapter = getattr(layer, f"lora_{name}")
    return affine(x, W, b) if adapter is None else adapter(x, W, b)   # (..., d_out)


def _empty(shape, dtype):
    # filled by minillm.core.init.init_parameters (or load_state_dict) before any use
    return nn.Parameter(torch.zeros(shape, dtype=getattr(torch, str(dtype))))


class Linear(Module):
    r""":math:`y = xW + b`, with ``W`` of shape ``(d_in, d_out)`` as the formula writes it.

    ``fused``: ``F.linear(x, W.t(), b)`` on ``W`` as stored. Shapes: x (..., d_in) -> (..., d_out).
    """

    def __init__(self, d_in: int, d_out: int, bias: bool = True, dtype="float32"):
        super().__init__()
        self.fused = False
        self.W = _empty((d_in, d_out), dtype)
        self.b = _empty((d_out,), dtype) if bias else None

    def forward(self, x):
        return (fast_linear if self.fused else linear)(x, self.W, self.b)  # (..., d_out)


class Embedding(Module):
    r"""Row lookup :math:`E[\mathrm{ids}]`: ``W`` (V, C); ``fused``: ``F.embedding``.
    Shapes: ids (...) int -> (..., C)."""

    def __init__(self, n: int, d: int, dtype="float32"):
        super().__init__()
        self.fused = False
        self.W = _empty((n, d), dtype)

    def forward(self, ids):
        return (fast_embedding if self.fused else embedding)(ids, self.W)  # (..., C)


class LayerNorm(Module):
    r""":math:`\mathrm{LN}(x) = \gamma \odot (x - \mu)/\sqrt{\sigma^2 + \epsilon} + \beta`
    over the last axis (Ba et al. 2016); ``fused``: ``F.layer_norm``. Shapes: x (..., C) -> (..., C)."""

    def __init__(self, d: int, eps: float = 1e-5, dtype="float32"):
        super().__init__()
        self.fused = False
        self.eps = eps
        self.gamma = _empty((d,), dtype)
        self.beta = _empty((d,), dtype)

    def forward(self, x):
        norm = fast_layer_norm if self.fused else layer_norm
        return norm(x, self.gamma, self.beta, self.eps)            # (..., C)


class RMSNorm(Module):
    r""":math:`\mathrm{RMSNorm}(x) = \gamma \odot x / \sqrt{\overline{x^2} + \epsilon}` over the
    last axis (Zhang and Sennrich 2019); ``fused``: ``F.rms_norm``. Shapes: x (..., C) -> (..., C)."""

    def __init__(self, d: int, eps: float = 1e-5, dtype="float32"):
        super().__init__()
        self.fused = False
        self.eps = eps
        self.gamma = _empty((d,), dtype)

    def forward(self, x):
        norm = fast_rms_norm if self.fused else rms_norm
        return norm(x, self.gamma, self.eps)                       # (..., C)


class Dropout(Module):
    r"""Inverted dropout: :math:`y = x \odot m / (1 - p)`, :math:`m = [u \ge p]`,
    :math:`u \sim U[0, 1)` from the model's ``numpy.random.Generator`` (the same masks
    as the reference). Identity in eval mode or when ``p == 0``."""

    def __init__(self, p: float, rng: np.random.Generator):
        super().__init__()
        self.p = p
        self.rng = rng

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        return dropout(x, self.p, True, self.rng)


class MultiHeadAttention(Module):
    r"""Multi-head attention (chapter section 4.1; Vaswani et al. 2017, 3.2.2): self-attention,
    or with ``memory`` (B, S, C) the decoder's attention over the encoder's output (3.2.3);
    see ``minillm.reference.MultiHeadAttention``.

    .. math::
        Q = XW_Q + b_Q,\ K = MW_K + b_K,\ V = MW_V + b_V, \quad
        \mathrm{head}_h = \mathrm{softmax}\!\Big(\frac{Q_h K_{g(h)}^\top}{\sqrt{D}} + M_{mask}\Big) V_{g(h)},
        \quad Y = \mathrm{Concat}(\mathrm{head}_1..\mathrm{head}_H)\, W_O + b_O

    with :math:`M = X` without memory and :math:`g(h) = \lfloor h / G \rfloor` (grouped-query
    attention with ``n_kv_heads`` < H; :func:`repeat_kv`).

    ``fused = True`` (torch only; see ``set_fused`` on the models) computes the heads
    with ``torch.nn.functional.scaled_dot_product_attention`` (:func:`fused_attention`,
    fully masked rows still zero; with ``enable_gqa=True`` instead of the copies of
    :func:`repeat_kv` when grouped) and the projections with ``F.linear``, instead of the
    explicit formulas. ``rope_positions`` > 0 rotates queries and keys by their
    positions (RoPE), as in the reference; a rotary layer takes no memory. ``n_kv_heads``,
    ``bias``, ``qkv_bias``, ``head_dim``, ``qk_norm``, ``rope_theta``, ``rope_layout`` and
    ``eps`` as in the reference.
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
        self.fused = False
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
        self.rotary = bool(rope_positions)
        if self.rotary:   # constants that follow .to(device), neither trained nor saved
            cos, sin = rotary_tables(rope_positions, D, dtype, rope_theta)
            self.register_buffer("rope_cos", torch.from_numpy(cos), persistent=False)  # (P, D/2)
            self.register_buffer("rope_sin", torch.from_numpy(sin), persistent=False)  # (P, D/2)

    def _rotate(self, q, k, start: int):
        """q (B, H, T, D), k (B, H_kv, T, D) rotated for positions ``start .. start + T - 1``.
        The tables are cast to q's dtype, a no-op where q has the model's dtype (also under
        autocast, where linear's float32 bias promotes the product back to float32)."""
        T = q.shape[2]
        if start + T > self.rope_cos.shape[0]:
            raise ValueError(f"expected at most rope_positions={self.rope_cos.shape[0]} positions, "
                             f"got {start + T}")
        cos = self.rope_cos[start:start + T].to(q.dtype)          # (T, D/2)
        sin = self.rope_sin[start:start + T].to(q.dtype)          # (T, D/2)
        return self.rotation(q, cos, sin), self.rotation(k, cos, sin)

    def _rotate_at(self, q, k, positions):
        """q, k rotated for each row's own positions (left-padded batches): positions (B, T)
        int; the tables gathered to (B, 1, T, D/2), broadcast over the heads."""
        if checking() and int(positions.max()) >= self.rope_cos.shape[0]:   # no sync when trusted
            raise ValueError(f"expected positions below rope_positions={self.rope_cos.shape[0]}, "
                             f"got {int(positions.max())}")
        cos = self.rope_cos[positions][:, None].to(q.dtype)      # (B, 1, T, D/2)
        sin = self.rope_sin[positions][:, None].to(q.dtype)      # (B, 1, T, D/2)
        return self.rotation(q, cos, sin), self.rotation(k, cos, sin)

    def _heads(self, affine, x, src):
        """The projections, split into heads, QK-normed where asked: q from x (B, H, T, D);
        k, v from src (B, H_kv, S, D)."""
        q = split_heads(_project(self, "W_Q", affine, x), self.n_heads)  # (B, H, T, D)
        k = split_heads(_project(self, "W_K", affine, src), self.n_kv_heads)  # (B, H_kv, S, D)
        v = split_heads(_project(self, "W_V", affine, src), self.n_kv_heads)  # (B, H_kv, S, D)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        return q, k, v

    def _attend(self, q, k, v, mask):
        """The heads: each key/value head shared by its G query heads, by the explicit
        copies of :func:`repeat_kv` or, fused, by the kernel's ``enable_gqa``.
        Shapes: q (B, H, T, D), k, v (B, H_kv, S, D) -> (B, H, T, D)."""
        if self.n_kv_heads == self.n_heads:
            return _attention_ops(self.fused)[1](q, k, v, mask)[0]
        if self.fused:
            return fast_grouped_attention(q, k, v, mask)
        G = self.n_heads // self.n_kv_heads
        return scaled_dot_product_attention(q, repeat_kv(k, G), repeat_kv(v, G), mask)[0]

    def forward(self, x, mask=None, memory=None, positions=None):
        """``positions`` (B, T) int: each token's position in its own sequence, for RoPE
        (packed conversations restart at 0); None: 0 .. T-1 in every row."""
        if memory is not None and self.rotary:
            raise ValueError("expected memory=None for a rotary attention (rope_positions > 0): "
                             "RoPE rotates by positions on one axis, and a memory's are not the "
                             "queries'; build cross-attention with rope_positions=0")
        affine, _ = _attention_ops(self.fused)
        q, k, v = self._heads(affine, x, x if memory is None else memory)  # (B, H|H_kv, T|S, D)
        if self.rotary:
            q, k = (self._rotate(q, k, 0) if positions is None
                    else self._rotate_at(q, k, positions))         # (B, H|H_kv, T, D)
        heads = self._attend(q, k, v, mask)                        # (B, H, T, D)
        return _project(self, "W_O", affine, merge_heads(heads))   # (B, T, C)

    def forward_cached(self, x, past=None, key_mask=None, positions=None):
        """Causal attention of ``T`` new positions over the ``P`` cached ones and
        themselves, for generation; ``key_mask`` (B, P + T) bool, False at padding, and
        ``positions`` (B, T) int for a left-padded batch; see
        ``minillm.reference.MultiHeadAttention``.

        Shapes: x (B, T, C) -> y (B, T, C), present KVCache, keys and values (B, H_kv, P + T, D).
        """
        affine, _ = _attention_ops(self.fused)
        q, k, v = self._heads(affine, x, x)                        # (B, H|H_kv, T, D)
        if self.rotary:                         # the new positions: P .. P+T-1, or each row's own
            q, k = (self._rotate(q, k, 0 if past is None else past.length) if positions is None
                    else self._rotate_at(q, k, positions))
        if past is not None:
            k = torch.cat([past.keys, k], dim=2)                   # (B, H_kv, P+T, D)
            v = torch.cat([past.values, v], dim=2)                 # (B, H_kv, P+T, D)
        T = q.shape[2]                          # one new position sees all P + 1: no causal mask
        mask = None if T == 1 else causal_mask(T, k.shape[2]).to(x.device)  # (T, P+T)
        if key_mask is not None:                # padding hidden from every query
            pad = key_mask[:, None, None, :]                       # (B, 1, 1, P+T)
            mask = pad if mask is None else mask & pad             # (B, 1, T, P+T)
        heads = self._attend(q, k, v, mask)                        # (B, H, T, D)
        return _project(self, "W_O", affine, merge_heads(heads)), KVCache(k, v)


def _check_kv_heads(n_heads, n_kv_heads):
    """n_kv_heads resolved (0: n_heads) and checked to divide n_heads."""
    n_kv_heads = require_int_at_least("n_kv_heads", n_kv_heads, 0) or n_heads
    if n_heads % n_kv_heads:
        raise ValueError(f"n_kv_heads must divide n_heads (each key/value head serves a group of "
                         f"query heads): got n_kv_heads={n_kv_heads}, n_heads={n_heads}")
    return n_kv_heads


def _ffn_steps(fused: bool, activation: str):
    """(affine map, activation) of the fast path or of the explicit one, for a
    feed-forward layer that runs step by step because an adapter sits on it."""
    if fused:
        return fast_linear, FAST_ACTIVATIONS[activation]
    return linear, ACTIVATIONS[activation]


class FeedForward(Module):
    r"""Position-wise feed-forward network (chapter section 4.2):
    :math:`\mathrm{FFN}(x) = \phi(xW_1 + b_1)W_2 + b_2`, :math:`\phi` = ReLU (the
    chapter), GELU, its tanh form or SiLU; ``bias=False``: no b1, b2; ``fused``:
    ``F.linear`` and ``F.relu`` / ``F.gelu`` / ``F.silu``.
    Shapes: x (..., C) -> (..., C), hidden (..., F)."""

    LORA_TARGETS = ("W1", "W2")

    def __init__(self, d_model: int, d_ff: int, activation: str = "relu", dtype="float32",
                 bias: bool = True):
        super().__init__()
        self.fused = False
        self.activation = activation
        self.W1 = _empty((d_model, d_ff), dtype)
        self.b1 = _empty((d_ff,), dtype) if bias else None
        self.W2 = _empty((d_ff, d_model), dtype)
        self.b2 = _empty((d_model,), dtype) if bias else None
        _no_adapters(self)

    def forward(self, x):
        if _adapted(self):   # the op's steps one by one, each projection with its adapter
            affine, act = _ffn_steps(self.fused, self.activation)
            h = _project(self, "W1", affine, x)                    # (..., F)
            return _project(self, "W2", affine, act(h))            # (..., C)
        ffn = fast_feed_forward if self.fused else feed_forward
        return ffn(x, self.W1, self.b1, self.W2, self.b2, self.activation)  # (..., C)


class GatedFeedForward(Module):
    r"""Gated feed-forward network; SwiGLU with ``activation="silu"`` (Shazeer 2020; Llama):
    :math:`\mathrm{FFN}(x) = (\mathrm{SiLU}(xW_{gate} + b_{gate}) \odot (xW_{up} + b_{up}))W_{down} + b_{down}`;
    ``bias=False``: no b_gate, b_up, b_down; ``fused``: ``F.linear`` and ``F.silu``.
    Shapes: x (..., C) -> (..., C), hidden (..., F)."""

    LORA_TARGETS = ("W_gate", "W_up", "W_down")

    def __init__(self, d_model: int, d_ff: int, activation: str = "silu", dtype="float32",
                 bias: bool = True):
        super().__init__()
        self.fused = False
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
            affine, act = _ffn_steps(self.fused, self.activation)
            a = act(_project(self, "W_gate", affine, x))           # (..., F)
            u = _project(self, "W_up", affine, x)                  # (..., F)
            return _project(self, "W_down", affine, a * u)         # (..., C)
        ffn = fast_gated_feed_forward if self.fused else gated_feed_forward
        return ffn(x, self.W_gate, self.b_gate, self.W_up, self.b_up, self.W_down, self.b_down,
                   self.activation)                                # (..., C)


class TransformerBlock(Module):
    r"""One Transformer layer, pre-norm (GPT-2) or post-norm (Vaswani et al.; BERT).

    .. math::
        \text{pre-norm:}\quad  x' = x + \mathrm{Drop}(\mathrm{MHA}(\mathrm{LN}_1(x))),\quad
                               y = x' + \mathrm{Drop}(\mathrm{FFN}(\mathrm{LN}_2(x')))

        \text{post-norm:}\quad x' = \mathrm{LN}_1(x + \mathrm{Drop}(\mathrm{MHA}(x))),\quad
                               y = \mathrm{LN}_2(x' + \mathrm{Drop}(\mathrm{FFN}(x')))

    Causal or bidirectional is decided by the ``mask`` the model passes. The config picks
    LN (LayerNorm or RMSNorm, ``norm``), the attention (heads, grouping, QK-norm, RoPE,
    biases) and the FFN (plain or gated); see ``minillm.reference.TransformerBlock``.
    Shapes: x (B, T, C) -> (B, T, C).
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

    def forward_cached(self, x, past=None, key_mask=None, positions=None):
        """:meth:`forward` for generation, attention reading and extending the KV cache
        (``past``: this block's KVCache or None; ``key_mask``, ``positions``: a padded
        batch's). Returns ``(y, present)``."""
        if self.norm_first:
            a, present = self.attn.forward_cached(self.ln1(x), past, key_mask, positions)
            x = x + self.drop_attn(a)                                # (B, T, C)
            return x + self.drop_ffn(self.ffn(self.ln2(x))), present
        a, present = self.attn.forward_cached(x, past, key_mask, positions)
        x = self.ln1(x + self.drop_attn(a))                          # (B, T, C)
        return self.ln2(x + self.drop_ffn(self.ffn(x))), present
