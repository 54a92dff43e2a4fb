"""The yardsticks of ``minillm bench``: a GPT and a Llama-style decoder of the same architecture
as minillm's, written the usual way with ``torch.nn`` modules, so that each of minillm's paths
is timed against what a reader would write without minillm (the ``torch_nn`` variant of
benchmarks/harness/train_step.py; :func:`plain_model` picks the one of a config).

Pre-norm blocks, explicit attention (scores / sqrt(D), ``masked_fill``, ``Tensor.softmax``),
no dropout: the same shapes and FLOPs as ``minillm.torch_backend.GPT`` on its explicit path.
With ``sdpa=True`` its attention is torch's fused kernel with ``is_causal=True``, as in
nanoGPT: the yardstick of the fast path's whole run (benchmarks/bench_whole_run.py).
``PlainLlama`` is the Llama-style decoder of ``ModelConfig``'s "llama" preset: RMSNorm
(``nn.RMSNorm``), the SwiGLU feed-forward, grouped-query attention (each key/value head
repeated for its group, then explicit attention; with ``sdpa=True`` torch's kernel with
``enable_gqa=True``), RoPE on split halves (``rotate_half``, as Hugging Face's Llama), no
biases. Neither is a second implementation of the lesson: tests/cli/test_bench.py runs
them and checks that, from minillm's weights, they give minillm's logits (the same math).

Dimension legend: B batch, T sequence length, C d_model, H heads, D = C / H, V vocabulary.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from minillm.core.config import ModelConfig, architecture_of

__all__ = ["PlainGPT", "PlainLlama", "plain_model"]

ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "gelu_tanh": lambda x: F.gelu(x, approximate="tanh")}


class PlainBlock(nn.Module):
    def __init__(self, c: ModelConfig, sdpa: bool = False):
        super().__init__()
        self.n_heads, self.act, self.sdpa = c.n_heads, ACTIVATIONS[c.activation], sdpa
        self.ln1 = nn.LayerNorm(c.d_model, eps=c.layer_norm_eps)
        self.q, self.k, self.v, self.o = (nn.Linear(c.d_model, c.d_model) for _ in range(4))
        self.ln2 = nn.LayerNorm(c.d_model, eps=c.layer_norm_eps)
        self.fc1, self.fc2 = nn.Linear(c.d_model, c.d_ff), nn.Linear(c.d_ff, c.d_model)

    def attention(self, x, mask):
        B, T, C = x.shape
        H, D = self.n_heads, C // self.n_heads
        q, k, v = (f(x).view(B, T, H, D).transpose(1, 2) for f in (self.q, self.k, self.v))
        if self.sdpa:                                              # as nanoGPT: torch's kernel
            heads = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.o(heads.transpose(1, 2).reshape(B, T, C))  # (B, T, C)
        scores = q @ k.transpose(-2, -1) / math.sqrt(D)            # (B, H, T, T)
        weights = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        heads = weights @ v                                        # (B, H, T, D)
        return self.o(heads.transpose(1, 2).reshape(B, T, C))      # (B, T, C)

    def forward(self, x, mask):
        x = x + self.attention(self.ln1(x), mask)                  # (B, T, C)
        return x + self.fc2(self.act(self.fc1(self.ln2(x))))       # (B, T, C)


class PlainGPT(nn.Module):
    """Pre-norm GPT with ``torch.nn`` modules, explicit attention, no dropout: the
    yardstick for the torch backend's explicit formulas (same shapes and FLOPs).
    ``forward(idx, targets)`` -> ``(logits (B, T, V), mean cross-entropy)``."""

    def __init__(self, c: ModelConfig, sdpa: bool = False):
        super().__init__()
        self.tok = nn.Embedding(c.vocab_size, c.d_model)
        self.pos = nn.Embedding(c.block_size, c.d_model)
        self.blocks = nn.ModuleList(PlainBlock(c, sdpa) for _ in range(c.n_layers))
        self.ln_f = nn.LayerNorm(c.d_model, eps=c.layer_norm_eps)
        self.head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        self.register_buffer("mask", torch.ones(c.block_size, c.block_size).tril().bool(),
                             persistent=False)

    def forward(self, idx, targets):
        T = idx.shape[1]
        x = self.tok(idx) + self.pos(torch.arange(T, device=idx.device))  # (B, T, C)
        for block in self.blocks:
            x = block(x, self.mask[:T, :T])
        logits = self.head(self.ln_f(x))                           # (B, T, V)
        return logits, F.cross_entropy(logits.flatten(0, 1), targets.flatten())

    @torch.no_grad()
    def load_minillm_weights(self, state: dict) -> "PlainGPT":
        """Copy the weights of a ``minillm`` GPT of the same config (its ``state_dict()``)
        into this model, so that a run of each starts from the same point: minillm keeps
        ``x @ W`` matrices (in, out), ``nn.Linear`` keeps (out, in), hence the transposes."""
        def put(param, value, transpose=False):
            value = torch.as_tensor(value)
            param.copy_(value.T if transpose else value)

        put(self.tok.weight, state["tok_emb.W"])
        put(self.pos.weight, state["pos_emb.W"])
        for i, block in enumerate(self.blocks):
            p = f"blocks.{i}."
            for ln in ("ln1", "ln2"):
                put(getattr(block, ln).weight, state[p + ln + ".gamma"])
                put(getattr(block, ln).bias, state[p + ln + ".beta"])
            for name in ("q", "k", "v", "o"):
                put(getattr(block, name).weight, state[p + "attn.W_" + name.upper()], transpose=True)
                put(getattr(block, name).bias, state[p + "attn.b_" + name.upper()])
            put(block.fc1.weight, state[p + "ffn.W1"], transpose=True)
            put(block.fc1.bias, state[p + "ffn.b1"])
            put(block.fc2.weight, state[p + "ffn.W2"], transpose=True)
            put(block.fc2.bias, state[p + "ffn.b2"])
        put(self.ln_f.weight, state["ln_f.gamma"])
        put(self.ln_f.bias, state["ln_f.beta"])
        put(self.head.weight, state["lm_head.W"], transpose=True)
        return self


# -- the Llama-style decoder ------------------------------------------------------------------

def rotate_half(x):
    """(x1, x2) -> (-x2, x1) on the two halves of the last axis (Hugging Face's Llama)."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class PlainLlamaBlock(nn.Module):
    def __init__(self, c: ModelConfig, sdpa: bool = False):
        super().__init__()
        C, D = c.d_model, c.d_head
        self.n_heads, self.n_kv_heads, self.sdpa = c.n_heads, c.kv_heads, sdpa
        self.ln1 = nn.RMSNorm(C, eps=c.layer_norm_eps)
        self.q = nn.Linear(C, c.n_heads * D, bias=False)
        self.k = nn.Linear(C, c.kv_heads * D, bias=False)
        self.v = nn.Linear(C, c.kv_heads * D, bias=False)
        self.o = nn.Linear(c.n_heads * D, C, bias=False)
        self.ln2 = nn.RMSNorm(C, eps=c.layer_norm_eps)
        self.gate = nn.Linear(C, c.d_ff, bias=False)
        self.up = nn.Linear(C, c.d_ff, bias=False)
        self.down = nn.Linear(c.d_ff, C, bias=False)

    def attention(self, x, cos, sin, mask):
        B, T, _ = x.shape
        H, H_kv = self.n_heads, self.n_kv_heads
        q = self.q(x).view(B, T, H, -1).transpose(1, 2)                # (B, H, T, D)
        k = self.k(x).view(B, T, H_kv, -1).transpose(1, 2)             # (B, H_kv, T, D)
        v = self.v(x).view(B, T, H_kv, -1).transpose(1, 2)             # (B, H_kv, T, D)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        if self.sdpa:
            heads = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        else:
            k = k.repeat_interleave(H // H_kv, dim=1)                  # (B, H, T, D)
            v = v.repeat_interleave(H // H_kv, dim=1)                  # (B, H, T, D)
            scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, H, T, T)
            heads = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1) @ v  # (B, H, T, D)
        return self.o(heads.transpose(1, 2).reshape(B, T, -1))        # (B, T, C)

    def forward(self, x, cos, sin, mask):
        x = x + self.attention(self.ln1(x), cos, sin, mask)           # (B, T, C)
        h = self.ln2(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))       # (B, T, C)


class PlainLlama(nn.Module):
    """A Llama-style decoder with ``torch.nn`` modules (see the module doc), the yardstick of
    minillm's GPT built with the "llama" preset. ``forward(idx, targets)`` ->
    ``(logits (B, T, V), mean cross-entropy)``."""

    def __init__(self, c: ModelConfig, sdpa: bool = False):
        super().__init__()
        if architecture_of(c) != "llama" or c.tie_embeddings or c.head_dim:
            raise ValueError(f"PlainLlama is the 'llama' preset, untied, head_dim 0; got {c}")
        self.tok = nn.Embedding(c.vocab_size, c.d_model)
        self.blocks = nn.ModuleList(PlainLlamaBlock(c, sdpa) for _ in range(c.n_layers))
        self.ln_f = nn.RMSNorm(c.d_model, eps=c.layer_norm_eps)
        self.head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        D = c.d_head
        inv_freq = c.rope_theta ** (-torch.arange(0, D, 2, dtype=torch.float64) / D)   # (D/2,)
        angles = torch.arange(c.block_size, dtype=torch.float64)[:, None] * inv_freq   # (block, D/2)
        angles = torch.cat((angles, angles), dim=-1)                                   # (block, D)
        self.register_buffer("cos", angles.cos().float(), persistent=False)
        self.register_buffer("sin", angles.sin().float(), persistent=False)
        self.register_buffer("mask", torch.ones(c.block_size, c.block_size).tril().bool(),
                             persistent=False)

    def forward(self, idx, targets):
        T = idx.shape[1]
        x = self.tok(idx)                                              # (B, T, C)
        for block in self.blocks:
            x = block(x, self.cos[:T], self.sin[:T], self.mask[:T, :T])
        logits = self.head(self.ln_f(x))                               # (B, T, V)
        return logits, F.cross_entropy(logits.flatten(0, 1), targets.flatten())

    @torch.no_grad()
    def load_minillm_weights(self, state: dict) -> "PlainLlama":
        """Copy the weights of a ``minillm`` GPT of the same config (its ``state_dict()``);
        ``x @ W`` matrices (in, out) are transposed to ``nn.Linear``'s (out, in)."""
        def put(param, value, transpose=False):
            value = torch.as_tensor(value)
            param.copy_(value.T if transpose else value)

        put(self.tok.weight, state["tok_emb.W"])
        for i, block in enumerate(self.blocks):
            p = f"blocks.{i}."
            put(block.ln1.weight, state[p + "ln1.gamma"])
            put(block.ln2.weight, state[p + "ln2.gamma"])
            for name in ("q", "k", "v", "o"):
                put(getattr(block, name).weight, state[p + "attn.W_" + name.upper()], transpose=True)
            for name in ("gate", "up", "down"):
                put(getattr(block, name).weight, state[p + "ffn.W_" + name], transpose=True)
        put(self.ln_f.weight, state["ln_f.gamma"])
        put(self.head.weight, state["lm_head.W"], transpose=True)
        return self


def plain_model(c: ModelConfig, sdpa: bool = False) -> nn.Module:
    """The yardstick of a config: ``PlainLlama`` for the "llama" preset, else ``PlainGPT``."""
    return (PlainLlama if architecture_of(c) == "llama" else PlainGPT)(c, sdpa)
