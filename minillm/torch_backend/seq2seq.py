r"""Encoder-decoder Transformer — PyTorch backend (question answering: :mod:`.span_qa`).

Dimension legend:
    B  batch size          S  source length (encoder)      T  target length (decoder)
    C  d_model             H  number of heads              D  head size, C / H
    V  vocabulary size

The same classes, parameter names and order, initialisation and dropout stream as
``minillm/reference/seq2seq.py``; see its docstrings for the formulas. Gradients come
from autograd.
"""
from __future__ import annotations


import numpy as np
import torch

from ..core import _validate as v
from ..core.config import IGNORE_INDEX, ModelConfig
from ..core.init import init_parameters, sinusoidal_positions
from .attention import causal_mask
from .layers import Dropout, Embedding, FeedForward, LayerNorm, Linear, MultiHeadAttention, _rope_positions
from .linear import fast_linear, linear
from .losses import cross_entropy, fast_cross_entropy
from .models import _Body, _check_attention_mask, _check_config, _check_ids, _check_targets
from .module import Module

__all__ = ["DecoderBlock", "EncoderDecoder"]


def _check_memory(memory, batch, config):
    """The encoder's output for a batch of ``batch`` sequences: (B, S, d_model), float."""
    v.require_tensor("memory", memory)
    v.require_float("memory", memory)
    v.require_ndim("memory", memory, 3)
    v.require_nonempty_axis("memory", memory, 1)
    v.require_shape("memory", memory, (batch, memory.shape[1], config.d_model),
                    "(B, S, d_model), B as in tgt_idx")
    return memory


class DecoderBlock(Module):
    r"""One decoder layer: causal self-attention, cross-attention, feed-forward; see
    ``minillm.reference.DecoderBlock``.

    .. math::
        \text{pre-norm:}\quad x_1 = x + \mathrm{Drop}(\mathrm{MHA}(\mathrm{LN}_1(x))),\
        x_2 = x_1 + \mathrm{Drop}(\mathrm{Cross}(\mathrm{LN}_2(x_1), M)),\
        y = x_2 + \mathrm{Drop}(\mathrm{FFN}(\mathrm{LN}_3(x_2)))

    Shapes: x (B, T, C), memory (B, S, C) -> (B, T, C).
    """

    def __init__(self, config: ModelConfig, rng: np.random.Generator):
        super().__init__()
        c, dt = config, config.dtype
        self.norm_first = c.norm_first
        self.ln1 = LayerNorm(c.d_model, c.layer_norm_eps, dt)
        self.self_attn = MultiHeadAttention(c.d_model, c.n_heads, dt, _rope_positions(c))
        self.ln2 = LayerNorm(c.d_model, c.layer_norm_eps, dt)
        self.cross_attn = MultiHeadAttention(c.d_model, c.n_heads, dt)   # no RoPE: see its docstring
        self.ln3 = LayerNorm(c.d_model, c.layer_norm_eps, dt)
        self.ffn = FeedForward(c.d_model, c.d_ff, c.activation, dt)
        self.drop_self = Dropout(c.dropout, rng)
        self.drop_cross = Dropout(c.dropout, rng)
        self.drop_ffn = Dropout(c.dropout, rng)

    def forward(self, x, memory, self_mask=None, memory_mask=None):
        if self.norm_first:
            x = x + self.drop_self(self.self_attn(self.ln1(x), self_mask))               # (B, T, C)
            x = x + self.drop_cross(self.cross_attn(self.ln2(x), memory_mask, memory=memory))  # (B, T, C)
            return x + self.drop_ffn(self.ffn(self.ln3(x)))                              # (B, T, C)
        x = self.ln1(x + self.drop_self(self.self_attn(x, self_mask)))                   # (B, T, C)
        x = self.ln2(x + self.drop_cross(self.cross_attn(x, memory_mask, memory=memory)))  # (B, T, C)
        return self.ln3(x + self.drop_ffn(self.ffn(x)))                                  # (B, T, C)


class EncoderDecoder(Module):
    r"""Encoder-decoder Transformer trained with teacher forcing and label smoothing;
    see ``minillm.reference.EncoderDecoder``.

    .. math::
        L = -\frac{1}{N}\sum_{b,t} \Big[(1-\varepsilon)\log p_{b,t,y_{b,t}}
            + \frac{\varepsilon}{V}\sum_c \log p_{b,t,c}\Big]

    Shapes: idx (B, S), tgt_idx (B, T), targets (B, T), attention_mask (B, S) ->
    logits (B, T, V), loss.
    """

    def __init__(self, config: ModelConfig, label_smoothing: float = 0.0, seed: int = 0):
        _check_config(config)
        config.require_classic("EncoderDecoder")   # its blocks are the original Transformer's
        if not 0.0 <= float(label_smoothing) < 1.0:
            raise ValueError(f"expected label_smoothing in [0, 1), got {label_smoothing!r}")
        super().__init__()
        c, dt = config, config.dtype
        self.config, self.seed, self.label_smoothing = c, seed, float(label_smoothing)
        self.fused = False          # the loss and the tied head; the layers have their own
        self.encoder = _Body(c, seed, causal=False)
        self.dropout_rng = self.encoder.dropout_rng        # one stream for the whole model
        self.tgt_emb = Embedding(c.vocab_size, c.d_model, dt)
        self.tgt_pos_emb = Embedding(c.block_size, c.d_model, dt) if c.positional == "learned" else None
        table = (torch.from_numpy(sinusoidal_positions(c.block_size, c.d_model, dt))
                 if c.positional == "sinusoidal" else None)                # rope: in attention
        self.register_buffer("pos_table", table, persistent=False)       # (block, C) or None
        self.tgt_drop = Dropout(c.dropout, self.dropout_rng)
        self.decoder = torch.nn.ModuleList([DecoderBlock(c, self.dropout_rng) for _ in range(c.n_layers)])
        self.dec_ln = LayerNorm(c.d_model, c.layer_norm_eps, dt) if c.norm_first else None
        self.lm_head = None if c.tie_embeddings else Linear(c.d_model, c.vocab_size, False, dt)
        values = init_parameters([(n, tuple(p.shape)) for n, p in self.named_parameters()], seed, dt,
                                 std=c.init_std)
        with torch.no_grad():
            for name, p in self.named_parameters():
                p.copy_(torch.from_numpy(values[name]))

    @property
    def device(self):
        return self.tgt_emb.W.device

    def encode(self, idx, attention_mask=None):
        """The memory the decoder attends to. Shapes: idx (B, S) -> (B, S, C)."""
        idx = _check_ids("idx", idx, self.config, self.device)
        attention_mask = _check_attention_mask(attention_mask, tuple(idx.shape), self.device)
        with v.trusted():                                                # checked above, once
            return self.encoder._encode(idx, attention_mask)             # (B, S, C)

    def decode(self, tgt_idx, memory, attention_mask=None):
        """Next-token logits of every target position. Shapes: tgt_idx (B, T),
        memory (B, S, C), attention_mask (B, S) -> logits (B, T, V)."""
        tgt_idx = _check_ids("tgt_idx", tgt_idx, self.config, self.device)
        memory = _check_memory(memory, tgt_idx.shape[0], self.config)
        if attention_mask is not None:
            attention_mask = _check_attention_mask(attention_mask, tuple(memory.shape[:2]), self.device)
        with v.trusted():                                                # checked above, once
            T = tgt_idx.shape[1]
            x = self.tgt_emb(tgt_idx)                                    # (B, T, C)
            if self.tgt_pos_emb is not None:
                x = x + self.tgt_pos_emb(torch.arange(T, device=self.device))  # (B, T, C)
            elif self.pos_table is not None:
                x = x + self.pos_table[:T]                               # (B, T, C)
            x = self.tgt_drop(x)                                         # (B, T, C)
            memory_mask = None if attention_mask is None else attention_mask[:, None, None, :]  # (B,1,1,S)
            self_mask = causal_mask(T).to(self.device)                   # (T, T)
            for block in self.decoder:
                x = block(x, memory, self_mask, memory_mask)             # (B, T, C)
            h = self.dec_ln(x) if self.dec_ln is not None else x         # (B, T, C)
            if self.lm_head is not None:
                return self.lm_head(h)                                   # (B, T, V)
            return (fast_linear if self.fused else linear)(h, self.tgt_emb.W.t())  # (B, T, V), tied

    def forward(self, idx, tgt_idx, targets=None, attention_mask=None):
        idx = _check_ids("idx", idx, self.config, self.device)
        tgt_idx = _check_ids("tgt_idx", tgt_idx, self.config, self.device)
        if idx.shape[0] != tgt_idx.shape[0]:
            raise ValueError(f"expected idx and tgt_idx with the same batch size, got "
                             f"{tuple(idx.shape)} and {tuple(tgt_idx.shape)}")
        attention_mask = _check_attention_mask(attention_mask, tuple(idx.shape), self.device)
        if targets is not None:
            targets = _check_targets("targets", targets, tuple(tgt_idx.shape),
                                     self.config.vocab_size, self.device)
        memory = self.encode(idx, attention_mask)                        # (B, S, C)
        logits = self.decode(tgt_idx, memory, attention_mask)            # (B, T, V)
        if targets is None:
            return logits, None
        V = logits.shape[-1]
        ce = fast_cross_entropy if self.fused else cross_entropy
        with v.trusted():                                                # checked above, once
            loss = ce(logits.reshape(-1, V), targets.reshape(-1), IGNORE_INDEX, self.label_smoothing)
        return logits, loss
