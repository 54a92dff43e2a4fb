"""The yardstick of ``minillm bench``: a GPT of the same architecture written the usual way,
with ``torch.nn`` modules, so that each of minillm's paths is timed against what a reader
would write without minillm (the ``torch_nn`` variant of benchmarks/harness/train_step.py).

Pre-norm blocks, explicit attention (scores / sqrt(D), ``masked_fill``, ``Tensor.softmax``),
no dropout: the same shapes and FLOPs as ``minillm.torch_backend.GPT`` on its explicit path.
With ``sdpa=True`` its attention is torch's fused kernel with ``is_causal=True``, as in
nanoGPT: the yardstick of the fast path's whole run (benchmarks/bench_whole_run.py).
It is not a second implementation of the lesson and is tested only for running
(tests/cli/test_bench.py).

Dimension legend: B batch, T sequence length, C d_model, H heads, D = C / H, V vocabulary.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from minillm.core.config import ModelConfig

__all__ = ["PlainGPT"]

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
