r"""Encoder-decoder Transformer — NumPy reference (question answering: :mod:`.span_qa`).

The chapter draws the Transformer as an encoder and a decoder (section 2.3) and names
machine translation and question answering among its applications (sections 6.2, 6.3).

Dimension legend:
    B  batch size          S  source length (encoder)      T  target length (decoder)
    C  d_model             H  number of heads              D  head size, C / H
    V  vocabulary size

The encoder is the bidirectional body of :class:`~minillm.reference.TransformerEncoder`
(token + position embedding, blocks, final LayerNorm for pre-norm). Each decoder block
adds a cross-attention between its causal self-attention and its feed-forward network:
queries come from the decoder, keys and values from the encoder's output ("memory"),
and the source padding mask hides the padded source positions (Vaswani et al. 2017,
section 3.2.3).

Like the other reference layers, every layer keeps ONE cache of its last call and its
``backward`` adds the parameter gradients and returns the input gradients; a decoder
block returns two: the gradient of its input and of the memory, which every decoder
block reads, so the model sums the memory gradients of all blocks before running the
encoder's backward.
"""
from __future__ import annotations


import numpy as np

from ..core import _validate as v
from ..core.config import IGNORE_INDEX, ModelConfig
from ..core.init import init_parameters, sinusoidal_positions
from .attention import causal_mask
from .layers import Dropout, Embedding, FeedForward, LayerNorm, Linear, MultiHeadAttention, _rope_positions
from .linear import linear_backward, linear_forward
from .losses import cross_entropy_backward, cross_entropy_forward
from .models import _Body, _check_attention_mask, _check_config, _check_ids, _check_targets
from .module import Loss, Module, ModuleList

__all__ = ["DecoderBlock", "EncoderDecoder"]


def _check_memory(memory, batch, config):
    """The encoder's output for a batch of ``batch`` sequences: (B, S, d_model), float."""
    memory = np.asarray(memory)
    v.require_float("memory", memory)
    v.require_ndim("memory", memory, 3)
    v.require_nonempty_axis("memory", memory, 1)
    v.require_shape("memory", memory, (batch, memory.shape[1], config.d_model),
                    "(B, S, d_model), B as in tgt_idx")
    return memory


class DecoderBlock(Module):
    r"""One decoder layer: causal self-attention, cross-attention, feed-forward.

    .. math::
        \text{pre-norm:}\quad x_1 = x + \mathrm{Drop}(\mathrm{MHA}(\mathrm{LN}_1(x))),\
        x_2 = x_1 + \mathrm{Drop}(\mathrm{Cross}(\mathrm{LN}_2(x_1), M)),\
        y = x_2 + \mathrm{Drop}(\mathrm{FFN}(\mathrm{LN}_3(x_2)))

        \text{post-norm:}\quad x_1 = \mathrm{LN}_1(x + \mathrm{Drop}(\mathrm{MHA}(x))),\
        x_2 = \mathrm{LN}_2(x_1 + \mathrm{Drop}(\mathrm{Cross}(x_1, M))),\
        y = \mathrm{LN}_3(x_2 + \mathrm{Drop}(\mathrm{FFN}(x_2)))

    where Cross is a :class:`~minillm.reference.MultiHeadAttention` called with the memory
    M (the encoder's output) and the source's padding mask, without RoPE.
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

    def backward(self, dy):
        """Returns ``(dx, dmemory)``, the reverse of :meth:`forward` sublayer by sublayer."""
        if self.norm_first:
            dx2 = dy + self.ln3.backward(self.ffn.backward(self.drop_ffn.backward(dy)))
            da, dmem = self.cross_attn.backward(self.drop_cross.backward(dx2))
            dx1 = dx2 + self.ln2.backward(da)
            dx = dx1 + self.ln1.backward(self.self_attn.backward(self.drop_self.backward(dx1)))
            return dx, dmem
        ds = self.ln3.backward(dy)                                       # d(x2 + FFN)
        dx2 = ds + self.ffn.backward(self.drop_ffn.backward(ds))
        ds = self.ln2.backward(dx2)                                      # d(x1 + Cross)
        da, dmem = self.cross_attn.backward(self.drop_cross.backward(ds))
        dx1 = ds + da
        ds = self.ln1.backward(dx1)                                      # d(x + MHA)
        return ds + self.self_attn.backward(self.drop_self.backward(ds)), dmem


class EncoderDecoder(Module):
    r"""Encoder-decoder Transformer for sequence-to-sequence tasks (chapter section 2.3;
    Vaswani et al. 2017), trained with teacher forcing: the decoder reads the target
    shifted right (``tgt_idx`` starts with BOS) and predicts the next target token.

    .. math::
        M = \mathrm{Encoder}(x), \quad
        L = -\frac{1}{N}\sum_{b,t} \Big[(1-\varepsilon)\log p_{b,t,y_{b,t}}
            + \frac{\varepsilon}{V}\sum_c \log p_{b,t,c}\Big],\quad
        p_{b,t} = \mathrm{softmax}(\mathrm{Decoder}(y_{<t}, M)_{t}\,W_{out})

    with label smoothing :math:`\varepsilon` (Szegedy et al. 2016). Source and target
    share one vocabulary but have their own embeddings; ``tie_embeddings`` ties the
    target embedding to the output projection. Shapes: idx (B, S), tgt_idx (B, T),
    targets (B, T) (``-100`` = not counted), attention_mask (B, S) True at real source
    tokens -> logits (B, T, V), loss.
    """

    def __init__(self, config: ModelConfig, label_smoothing: float = 0.0, seed: int = 0):
        _check_config(config)
        config.require_classic("EncoderDecoder")   # its blocks are the original Transformer's
        if not 0.0 <= float(label_smoothing) < 1.0:
            raise ValueError(f"expected label_smoothing in [0, 1), got {label_smoothing!r}")
        super().__init__()
        c, dt = config, config.dtype
        self.config, self.seed, self.label_smoothing = c, seed, float(label_smoothing)
        self._forward_id = 0
        self.encoder = _Body(c, seed, causal=False)
        self.dropout_rng = self.encoder.dropout_rng        # one stream for the whole model
        self.tgt_emb = Embedding(c.vocab_size, c.d_model, dt)
        self.tgt_pos_emb = Embedding(c.block_size, c.d_model, dt) if c.positional == "learned" else None
        self.pos_table = (sinusoidal_positions(c.block_size, c.d_model, dt)  # (block, C)
                          if c.positional == "sinusoidal" else None)        # rope: in attention
        self.tgt_drop = Dropout(c.dropout, self.dropout_rng)
        self.decoder = ModuleList([DecoderBlock(c, self.dropout_rng) for _ in range(c.n_layers)])
        self.dec_ln = LayerNorm(c.d_model, c.layer_norm_eps, dt) if c.norm_first else None
        self.lm_head = None if c.tie_embeddings else Linear(c.d_model, c.vocab_size, False, dt)
        values = init_parameters([(n, p.shape) for n, p in self.named_parameters()], seed, dt,
                                 std=c.init_std)
        for name, p in self.named_parameters():
            p.data[...] = values[name]

    # -- the two halves ---------------------------------------------------------------
    def encode(self, idx, attention_mask=None):
        """The memory the decoder attends to. Shapes: idx (B, S) -> (B, S, C)."""
        idx = _check_ids("idx", idx, self.config)
        attention_mask = _check_attention_mask(attention_mask, idx.shape)
        with v.trusted():                                                # checked above, once
            return self.encoder._encode(idx, attention_mask)             # (B, S, C)

    def decode(self, tgt_idx, memory, attention_mask=None):
        """Next-token logits of every target position. Shapes: tgt_idx (B, T),
        memory (B, S, C), attention_mask (B, S) -> logits (B, T, V)."""
        tgt_idx = _check_ids("tgt_idx", tgt_idx, self.config)
        memory = _check_memory(memory, tgt_idx.shape[0], self.config)
        attention_mask = _check_attention_mask(attention_mask, memory.shape[:2])
        with v.trusted():                                                # checked above, once
            T = tgt_idx.shape[1]
            x = self.tgt_emb(tgt_idx)                                    # (B, T, C)
            if self.tgt_pos_emb is not None:
                x = x + self.tgt_pos_emb(np.arange(T))                   # (B, T, C)
            elif self.pos_table is not None:
                x = x + self.pos_table[:T]                               # (B, T, C)
            x = self.tgt_drop(x)                                         # (B, T, C)
            memory_mask = None if attention_mask is None else attention_mask[:, None, None, :]  # (B,1,1,S)
            self_mask = causal_mask(T)                                   # (T, T)
            for block in self.decoder:
                x = block(x, memory, self_mask, memory_mask)             # (B, T, C)
            h = self.dec_ln(x) if self.dec_ln is not None else x         # (B, T, C)
            if self.lm_head is not None:
                return self.lm_head(h)                                   # (B, T, V)
            logits, self._tied_cache = linear_forward(h, self.tgt_emb.W.data.T)  # (B, T, V)
            return logits

    def forward(self, idx, tgt_idx, targets=None, attention_mask=None):
        self._forward_id += 1
        idx = _check_ids("idx", idx, self.config)
        tgt_idx = _check_ids("tgt_idx", tgt_idx, self.config)
        if idx.shape[0] != tgt_idx.shape[0]:
            raise ValueError(f"expected idx and tgt_idx with the same batch size, got "
                             f"{idx.shape} and {tgt_idx.shape}")
        attention_mask = _check_attention_mask(attention_mask, idx.shape)
        if targets is not None:
            targets = _check_targets("targets", targets, tgt_idx.shape, self.config.vocab_size)
        memory = self.encode(idx, attention_mask)                        # (B, S, C)
        logits = self.decode(tgt_idx, memory, attention_mask)            # (B, T, V)
        if targets is None:
            return logits, None
        V = logits.shape[-1]
        with v.trusted():                                                # checked above, once
            value, cache = cross_entropy_forward(logits.reshape(-1, V), targets.reshape(-1),
                                                 IGNORE_INDEX, self.label_smoothing)

        def backward():
            dlogits = cross_entropy_backward(np.ones((), logits.dtype), cache)  # (B*T, V)
            self._backward(dlogits.reshape(logits.shape))

        return logits, Loss(value, backward, self, self._forward_id)

    def _backward(self, dlogits):
        if self.lm_head is not None:
            dh = self.lm_head.backward(dlogits)                          # (B, T, C)
        else:
            dh, dW_T, _ = linear_backward(dlogits, self._tied_cache)     # (B, T, C), (C, V)
            self.tgt_emb.W.accumulate(dW_T.T)
        if self.dec_ln is not None:
            dh = self.dec_ln.backward(dh)
        dmemory = 0
        for block in reversed(list(self.decoder)):
            dh, dmem = block.backward(dh)                                # (B, T, C), (B, S, C)
            dmemory = dmemory + dmem                                     # every block read M
        dx = self.tgt_drop.backward(dh)                                  # (B, T, C)
        self.tgt_emb.backward(dx)
        if self.tgt_pos_emb is not None:
            self.tgt_pos_emb.backward(dx.sum(axis=0))                    # (T, C)
        self.encoder._encode_backward(dmemory)
