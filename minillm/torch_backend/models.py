"""Models: GPT (causal LM), TransformerEncoder (masked LM), SequenceClassifier — PyTorch.

Dimension legend:
    B  batch size      T  sequence length (<= block_size)      C  d_model
    V  vocabulary      K  number of classes

The same classes, parameter names and order, initialisation and dropout stream as
``minillm/reference/models.py``; see its docstrings for the formulas. The body:

.. math::
    h_0 = \\mathrm{Drop}(E[\\mathrm{idx}] + P_{0..T-1}), \\quad
    h_l = \\mathrm{Block}_l(h_{l-1}), \\quad h = \\mathrm{LN}_f(h_L)

Built on the explicit path (the reference's formulas); ``set_fused(True)`` (which
``minillm.store.runtime.Runtime.prepare`` calls by default) switches every layer and the
loss to torch's kernels, on the same parameters.

Each public entry (``forward``, ``forward_cached``, ``encode``) checks its inputs once
and runs the layers inside ``minillm.core._validate.trusted()``, where the ops do not check
them again. ``forward`` returns ``(logits, loss)`` with ``loss`` a scalar tensor: a training step is
``logits, loss = model(x, y); loss.backward(); opt.step(); opt.zero_grad()``.
Models are built on the CPU with ``config.dtype``; ``model.to(device)`` moves them
(the inputs may be NumPy arrays or tensors; they follow the model's device).
"""
from __future__ import annotations


import numpy as np
import torch
from torch import nn

from ..core import _validate as v
from ..core.config import IGNORE_INDEX, ModelConfig
from ..core.init import dropout_rng, init_parameters, sinusoidal_positions
from .activations import ACTIVATIONS, FAST_ACTIVATIONS
from .attention import causal_mask
from .layers import Dropout, Embedding, KVCache, LayerNorm, Linear, TransformerBlock, make_norm
from .linear import fast_linear, linear
from .losses import cross_entropy, fast_cross_entropy
from .module import Module

__all__ = ["GPT", "TransformerEncoder", "SequenceClassifier"]

# the names a language model's head adds to the body; a classifier leaves them out
LM_HEAD_PARAMETERS = ("lm_head.", "lm_transform.", "lm_ln.", "b_out")


def _check_config(config):
    if not isinstance(config, ModelConfig):
        raise ValueError(f"expected a minillm.core.config.ModelConfig, got {type(config).__name__}")


def _as_tensor(x, device):
    if not isinstance(x, torch.Tensor):
        x = torch.from_numpy(np.asarray(x))
    return x.to(device)


def _check_ids(name, ids, config, device):
    ids = _as_tensor(ids, device)
    v.require_integer(name, ids)
    v.require_ndim(name, ids, 2)
    if ids.shape[1] > config.block_size or ids.shape[1] < 1:
        raise ValueError(f"expected {name} with 1 to block_size={config.block_size} positions, "
                         f"got shape {tuple(ids.shape)}")
    v.require_index_range(name, ids, config.vocab_size, what=f"vocab_size={config.vocab_size}")
    return ids.long()


def _check_targets(name, targets, shape, high, device):
    targets = _as_tensor(targets, device)
    v.require_integer(name, targets)
    v.require_shape(name, targets, shape)
    v.require_index_range(name, targets, high, ignore=IGNORE_INDEX)
    return targets.long()


def _check_cache(cache, config, batch):
    """A KV cache as ``forward_cached`` returned it: one (K, V) per layer, each
    (B, H_kv, P, D) with the same P; returns P (0 for no cache)."""
    if cache is None:
        return 0
    n = config.n_layers
    if not (isinstance(cache, (tuple, list)) and len(cache) == n
            and all(isinstance(kv, (tuple, list)) and len(kv) == 2 for kv in cache)):
        raise ValueError(f"expected cache to be what forward_cached returned, one (K, V) pair for each "
                         f"of the n_layers={n} layers, got {type(cache).__name__}"
                         + (f" of length {len(cache)}" if isinstance(cache, (tuple, list)) else ""))
    v.require_tensor("cache[0][0]", cache[0][0])
    v.require_ndim("cache[0][0]", cache[0][0], 4)
    P = int(cache[0][0].shape[2])
    expected = (batch, config.kv_heads, P, config.d_head)
    for i, kv in enumerate(cache):
        for j, t in enumerate(kv):
            v.require_tensor(f"cache[{i}][{j}]", t)
            v.require_float(f"cache[{i}][{j}]", t)
            v.require_shape(f"cache[{i}][{j}]", t, expected, f"(B, H_kv, P, D) for idx of batch {batch}")
    return P


def _check_attention_mask(mask, shape, device):
    if mask is None:
        return None
    mask = _as_tensor(mask, device)
    if v.is_integer(mask):
        mask = mask != 0
    v.require_bool("attention_mask", mask)
    v.require_shape("attention_mask", mask, shape, "True at real tokens")
    return mask


def _check_segment_ids(segment_ids, shape, device):
    """Packed sequences' ids, (B, T) int, non-decreasing along each row; see the reference."""
    if segment_ids is None:
        return None
    segment_ids = _as_tensor(segment_ids, device)
    v.require_integer("segment_ids", segment_ids)
    v.require_shape("segment_ids", segment_ids, shape, "the sequence each token belongs to")
    if bool((segment_ids[:, 1:] < segment_ids[:, :-1]).any()):
        raise ValueError("expected segment_ids non-decreasing along each row (each packed sequence's "
                         f"tokens together), got {segment_ids.tolist()}")
    return segment_ids.long()


def _packed(segment_ids):
    r"""Each token's position in its own sequence and the mask keeping attention inside it;
    see ``minillm.reference``. Shapes: segment_ids (B, T) int -> positions (B, T), mask (B, 1, T, T)."""
    B, T = segment_ids.shape
    t = torch.arange(T, device=segment_ids.device)                    # (T,)
    starts = torch.cat([torch.ones((B, 1), dtype=torch.bool, device=segment_ids.device),
                        segment_ids[:, 1:] != segment_ids[:, :-1]], dim=1)  # (B, T)
    first = torch.cummax(torch.where(starts, t, 0), dim=1).values     # (B, T), each sequence's first index
    same = segment_ids[:, None, :, None] == segment_ids[:, None, None, :]  # (B, 1, T, T)
    return t - first, same


class _Body(Module):
    """Embeddings + blocks (+ final LayerNorm): what the three models share."""

    def __init__(self, config: ModelConfig, seed: int, causal: bool):
        _check_config(config)
        super().__init__()
        c, dt = config, config.dtype
        self.config, self.causal, self.seed = c, causal, seed
        self.fused = False          # the loss and the tied head; the layers have their own
        self.dropout_rng = dropout_rng(seed)
        self.tok_emb = Embedding(c.vocab_size, c.d_model, dt)
        self.pos_emb = Embedding(c.block_size, c.d_model, dt) if c.positional == "learned" else None
        # sinusoidal: a fixed table (a non-persistent buffer), neither trained nor saved;
        # rope: none, attention rotates queries and keys instead (layers.MultiHeadAttention)
        table = (torch.from_numpy(sinusoidal_positions(c.block_size, c.d_model, dt))
                 if c.positional == "sinusoidal" else None)
        self.register_buffer("pos_table", table, persistent=False)      # (block, C) or None
        self.type_emb = Embedding(c.type_vocab_size, c.d_model, dt) if c.type_vocab_size else None
        self.emb_ln = LayerNorm(c.d_model, c.layer_norm_eps, dt) if c.embedding_norm else None
        self.drop = Dropout(c.dropout, self.dropout_rng)
        self.blocks = nn.ModuleList([TransformerBlock(c, self.dropout_rng) for _ in range(c.n_layers)])
        self.ln_f = make_norm(c) if c.norm_first else None

    @property
    def device(self):
        return self.tok_emb.W.device

    def _init_weights(self, scale_residual: bool):
        shapes = [(n, tuple(p.shape)) for n, p in self.named_parameters()]
        values = init_parameters(shapes, self.seed, self.config.dtype,
                                 self.config.n_layers, scale_residual, self.config.init_std)
        with torch.no_grad():
            for name, p in self.named_parameters():
                p.copy_(torch.from_numpy(values[name]))

    def _embed(self, idx, positions, token_type_ids=None):
        """Token + position (+ token-type) embeddings, LayerNorm'd where the config asks,
        then dropout; see ``minillm.reference`` for the formula.

        Shapes: idx (B, T) int, positions (T,) or (B, T) int, token_type_ids (B, T) or None
        -> (B, T, C).
        """
        x = self.tok_emb(idx)                                         # (B, T, C)
        if self.pos_emb is not None:
            x = x + self.pos_emb(positions)                           # (B, T, C)
        elif self.pos_table is not None:
            x = x + self.pos_table[positions]                         # (B, T, C)
        if self.type_emb is not None:
            types = torch.zeros_like(idx) if token_type_ids is None else token_type_ids
            x = x + self.type_emb(types)                              # (B, T, C)
        if self.emb_ln is not None:
            x = self.emb_ln(x)                                        # (B, T, C)
        return self.drop(x)                                           # (B, T, C)

    def _encode(self, idx, key_mask=None, token_type_ids=None, segment_ids=None):
        """Shapes: idx (B, T) int, key_mask (B, T) bool or None, segment_ids (B, T) int or
        None (packed sequences) -> h (B, T, C)."""
        T = idx.shape[1]
        positions, same = ((torch.arange(T, device=idx.device), None) if segment_ids is None
                           else _packed(segment_ids))                 # (T,) | (B, T)
        x = self._embed(idx, positions, token_type_ids)               # (B, T, C)
        mask = causal_mask(T).to(idx.device) if self.causal else None  # (T, T)
        if same is not None:
            mask = same if mask is None else mask & same              # (B, 1, T, T)
        if key_mask is not None:
            pad = key_mask[:, None, None, :]                          # (B, 1, 1, T)
            mask = pad if mask is None else mask & pad                # (B, 1, T, T)
        rows = positions if segment_ids is not None else None         # RoPE's, where they restart
        for block in self.blocks:
            x = block(x, mask, rows)                                  # (B, T, C)
        return self.ln_f(x) if self.ln_f is not None else x           # (B, T, C)

    def encode(self, idx, attention_mask=None, token_type_ids=None):
        """The last hidden states, before any head; see ``minillm.reference``.
        Shapes: idx (B, T) int, attention_mask (B, T) bool or None,
        token_type_ids (B, T) int or None -> h (B, T, C)."""
        idx = _check_ids("idx", idx, self.config, self.device)
        attention_mask = _check_attention_mask(attention_mask, tuple(idx.shape), self.device)
        token_type_ids = self._check_types(token_type_ids, tuple(idx.shape))
        with v.trusted():                                             # checked above, once
            return self._encode(idx, attention_mask, token_type_ids)  # (B, T, C)

    def _check_types(self, token_type_ids, shape):
        if token_type_ids is None:
            return None
        if self.type_emb is None:
            raise ValueError("token_type_ids given, but the model has no token-type embeddings: "
                             "expected ModelConfig.type_vocab_size > 0, got 0")
        types = _as_tensor(token_type_ids, self.device)
        v.require_integer("token_type_ids", types)
        v.require_shape("token_type_ids", types, shape)
        v.require_index_range("token_type_ids", types, self.config.type_vocab_size,
                              what=f"type_vocab_size={self.config.type_vocab_size}")
        return types.long()

    def _loss(self, logits, targets):
        K = logits.shape[-1]
        loss = fast_cross_entropy if self.fused else cross_entropy
        return loss(logits.reshape(-1, K), targets.reshape(-1), ignore_index=IGNORE_INDEX)


class _LanguageModel(_Body):
    """Body + LM head: logits = h W_out, W_out (C, V), or h E^T with tied embeddings;
    optionally BERT's transform LN(phi(h W_t + b_t)) first and a bias ``b_out`` (V,)."""

    def __init__(self, config, seed, causal, scale_residual):
        super().__init__(config, seed, causal)
        c = config
        if c.lm_head_transform:
            self.lm_transform = Linear(c.d_model, c.d_model, True, c.dtype)
            self.lm_ln = LayerNorm(c.d_model, c.layer_norm_eps, c.dtype)
        else:
            self.lm_transform = self.lm_ln = None
        self.lm_head = None if c.tie_embeddings else Linear(c.d_model, c.vocab_size, False, c.dtype)
        self.b_out = (nn.Parameter(torch.zeros(c.vocab_size, dtype=getattr(torch, c.dtype)))
                      if c.lm_head_bias else None)
        self._init_weights(scale_residual)

    def _head(self, h):
        if self.lm_transform is not None:
            act = (FAST_ACTIVATIONS if self.fused else ACTIVATIONS)[self.config.activation]
            h = self.lm_ln(act(self.lm_transform(h)))                 # (B, T, C)
        if self.lm_head is not None:
            logits = self.lm_head(h)                                  # (B, T, V)
        else:                                                         # (B, T, V), tied: h E^T
            logits = (fast_linear if self.fused else linear)(h, self.tok_emb.W.t())
        return logits if self.b_out is None else logits + self.b_out  # (B, T, V)


class GPT(_LanguageModel):
    r"""Decoder-only causal language model; see ``minillm.reference.GPT``.

    .. math::
        L = -\frac{1}{N}\sum_{b,t} \log \mathrm{softmax}(h_{b,t} W_{out})_{y_{b,t}}

    Shapes: idx (B, T) int, targets (B, T) int (``-100`` = not counted) ->
    logits (B, T, V), loss (scalar tensor, or None without targets). With the config's
    modern fields it is a Llama/Qwen-style decoder, as in the reference.
    """

    def __init__(self, config: ModelConfig, seed: int = 0):
        super().__init__(config, seed, causal=True, scale_residual=True)

    def forward(self, idx, targets=None, segment_ids=None):
        """``segment_ids`` (B, T) int: packed sequences, each attending only inside itself
        with positions from its own start; see ``minillm.reference.GPT.forward``."""
        idx = _check_ids("idx", idx, self.config, self.device)
        if targets is not None:
            targets = _check_targets("targets", targets, tuple(idx.shape),
                                     self.config.vocab_size, self.device)
        segment_ids = _check_segment_ids(segment_ids, tuple(idx.shape), self.device)
        with v.trusted():                                             # checked above, once
            logits = self._head(self._encode(idx, segment_ids=segment_ids))  # (B, T, V)
            return logits, None if targets is None else self._loss(logits, targets)

    def forward_cached(self, idx, cache=None, attention_mask=None):
        """Logits of ``T`` new tokens given the KV cache of the ``P`` before them, with
        ``attention_mask`` (B, P + T), True at real tokens, for a left-padded batch; see
        ``minillm.reference.GPT.forward_cached``.

        Shapes: idx (B, T) int, attention_mask (B, P + T) bool or None ->
        logits (B, T, V), cache with P + T positions.
        """
        idx = _check_ids("idx", idx, self.config, self.device)
        B, T = idx.shape
        P = _check_cache(cache, self.config, B)
        if P + T > self.config.block_size:
            raise ValueError(f"the KV cache holds {P} positions and {T} more were given: expected at "
                             f"most block_size={self.config.block_size} in all, got {P + T}")
        key_mask = _check_attention_mask(attention_mask, (B, P + T), self.device)  # (B, P+T) or None
        with v.trusted():                                                 # checked above, once
            if key_mask is None:
                positions = None
                x = self._embed(idx, torch.arange(P, P + T, device=idx.device))  # (B, T, C)
            else:                         # real tokens before each one in its row; padding: 0
                # integer positions from the mask: no gradient
                positions = (key_mask.long().cumsum(dim=1) - 1).clamp(min=0)[:, P:]  # (B, T), no gradient
                x = self._embed(idx, positions)                           # (B, T, C)
            present = []
            for i, block in enumerate(self.blocks):
                past = None if cache is None else KVCache(*cache[i])
                x, kv = block.forward_cached(x, past, key_mask, positions)  # (B, T, C)
                present.append(kv)
            h = self.ln_f(x) if self.ln_f is not None else x              # (B, T, C)
            return self._head(h), tuple(present)                          # (B, T, V)


class TransformerEncoder(_LanguageModel):
    r"""Bidirectional encoder with a masked-LM head; see ``minillm.reference.TransformerEncoder``.

    Shapes: idx (B, T) int, targets (B, T) int, attention_mask (B, T) bool,
    token_type_ids (B, T) int or None (needs ``type_vocab_size`` > 0) ->
    logits (B, T, V), loss.
    """

    def __init__(self, config: ModelConfig, seed: int = 0):
        super().__init__(config, seed, causal=False, scale_residual=False)

    def forward(self, idx, targets=None, attention_mask=None, token_type_ids=None):
        idx = _check_ids("idx", idx, self.config, self.device)
        attention_mask = _check_attention_mask(attention_mask, tuple(idx.shape), self.device)
        token_type_ids = self._check_types(token_type_ids, tuple(idx.shape))
        if targets is not None:
            targets = _check_targets("targets", targets, tuple(idx.shape),
                                     self.config.vocab_size, self.device)
        with v.trusted():                                             # checked above, once
            logits = self._head(self._encode(idx, attention_mask, token_type_ids))  # (B, T, V)
            return logits, None if targets is None else self._loss(logits, targets)


class SequenceClassifier(_Body):
    r"""Encoder + pooling + linear head; see ``minillm.reference.SequenceClassifier``.

    Shapes: idx (B, T), labels (B,) int in [0, K), attention_mask (B, T),
    token_type_ids (B, T) or None ->
    logits (B, K), loss.
    """

    LORA_TRAINED = ("head",)     # new, so it trains beside LoRA adapters (PEFT: modules_to_save)

    def __init__(self, config: ModelConfig, n_classes: int = 2, pooling: str = "mean",
                 seed: int = 0):
        if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
            raise ValueError(f"expected n_classes to be an int >= 2, got {n_classes!r}")
        v.require_choice("pooling", pooling, ("mean", "cls"))
        super().__init__(config, seed, causal=False)
        self.n_classes, self.pooling = n_classes, pooling
        self.head_drop = Dropout(config.dropout, self.dropout_rng)
        self.head = Linear(config.d_model, n_classes, True, config.dtype)
        self._init_weights(scale_residual=False)

    def load_encoder_state(self, encoder_state) -> None:
        """Copy a :class:`TransformerEncoder`'s body weights (everything but its LM head);
        the classification head keeps its initialisation."""
        from ..core.state import as_numpy_state

        state = {k: a for k, a in as_numpy_state(encoder_state).items()
                 if not k.startswith(LM_HEAD_PARAMETERS)}
        state.update({k: p for k, p in as_numpy_state(dict(self.named_parameters())).items()
                      if k.startswith("head.")})
        self.load_state_dict(state)

    def forward(self, idx, labels=None, attention_mask=None, token_type_ids=None):
        idx = _check_ids("idx", idx, self.config, self.device)
        B, T = idx.shape
        attention_mask = _check_attention_mask(attention_mask, (B, T), self.device)
        token_type_ids = self._check_types(token_type_ids, (B, T))
        if labels is not None:
            labels = _check_targets("labels", labels, (B,), self.n_classes, self.device)
        with v.trusted():                                             # checked above, once
            h = self._encode(idx, attention_mask, token_type_ids)     # (B, T, C)
            if self.pooling == "cls":
                pooled = h[:, 0]                                      # (B, C)
            else:
                m = (torch.ones(B, T, dtype=h.dtype, device=h.device) if attention_mask is None
                     else attention_mask.to(h.dtype))[:, :, None]     # (B, T, 1)
                count = m.sum(dim=1).clamp_min(1)                     # (B, 1), no gradient
                pooled = (h * m).sum(dim=1) / count                   # (B, C)
            logits = self.head(self.head_drop(pooled))                # (B, K)
            return logits, None if labels is None else self._loss(logits, labels)
