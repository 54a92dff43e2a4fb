"""Models: GPT (causal LM), TransformerEncoder (masked LM), SequenceClassifier — NumPy.

Dimension legend:
    B  batch size      T  sequence length (<= block_size)      C  d_model
    V  vocabulary      K  number of classes

All three share one body (token + position embedding, dropout, ``n_layers`` blocks and,
for pre-norm, a final norm, LayerNorm or RMSNorm):

.. math::
    h_0 = \\mathrm{Drop}(E[\\mathrm{idx}] + P_{0..T-1}), \\quad
    h_l = \\mathrm{Block}_l(h_{l-1}), \\quad h = \\mathrm{LN}_f(h_L)

and differ in the mask and the head. Each public entry (``forward``, ``forward_cached``,
``encode``) checks its inputs once and runs the layers inside
``minillm.core._validate.trusted()``, where the ops do not check them again (nor does the
backward that ``loss.backward()`` runs). ``forward`` returns ``(logits, loss)``; ``loss`` is
a :class:`~minillm.reference.module.Loss` whose ``backward()`` runs the hand-written
backward of the whole model, so a step reads as in torch:
``logits, loss = model(x, y); loss.backward(); opt.step(); opt.zero_grad()``.

Initialisation is :func:`minillm.core.init.init_parameters` with the model's seed; dropout
masks come from ``model.dropout_rng`` (:func:`minillm.core.init.dropout_rng`), the same
stream in both backends. Attention weights themselves are not dropped.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..core import _validate as v
from ..core.config import IGNORE_INDEX, ModelConfig
from ..core.init import dropout_rng, init_parameters, sinusoidal_positions
from .activations import ACTIVATIONS
from .attention import causal_mask
from .layers import Dropout, Embedding, KVCache, LayerNorm, Linear, TransformerBlock, make_norm
from .linear import linear_backward, linear_forward
from .losses import cross_entropy_backward, cross_entropy_forward
from .module import Loss, Module, ModuleList
from .parameter import Parameter

__all__ = ["GPT", "TransformerEncoder", "SequenceClassifier"]

# the names a language model's head adds to the body; a classifier leaves them out
LM_HEAD_PARAMETERS = ("lm_head.", "lm_transform.", "lm_ln.", "b_out")


def _check_config(config):
    if not isinstance(config, ModelConfig):
        raise ValueError(f"expected a minillm.core.config.ModelConfig, got {type(config).__name__}")


def _check_ids(name, ids, config):
    ids = np.asarray(ids)
    v.require_integer(name, ids)
    v.require_ndim(name, ids, 2)
    if ids.shape[1] > config.block_size or ids.shape[1] < 1:
        raise ValueError(f"expected {name} with 1 to block_size={config.block_size} positions, "
                         f"got shape {ids.shape}")
    v.require_index_range(name, ids, config.vocab_size, what=f"vocab_size={config.vocab_size}")
    return ids


def _check_targets(name, targets, shape, high):
    targets = np.asarray(targets)
    v.require_integer(name, targets)
    v.require_shape(name, targets, shape)
    v.require_index_range(name, targets, high, ignore=IGNORE_INDEX)
    return targets


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
    v.require_array("cache[0][0]", cache[0][0])
    v.require_ndim("cache[0][0]", cache[0][0], 4)
    P = int(cache[0][0].shape[2])
    expected = (batch, config.kv_heads, P, config.d_head)
    for i, kv in enumerate(cache):
        for j, t in enumerate(kv):
            v.require_float(f"cache[{i}][{j}]", t)
            v.require_shape(f"cache[{i}][{j}]", t, expected, f"(B, H_kv, P, D) for idx of batch {batch}")
    return P


def _check_attention_mask(mask, shape):
    if mask is None:
        return None
    mask = np.asarray(mask)
    if v.is_integer(mask):
        mask = mask != 0
    v.require_bool("attention_mask", mask)
    v.require_shape("attention_mask", mask, shape, "True at real tokens")
    return mask


def _check_segment_ids(segment_ids, shape):
    """Packed sequences' ids, (B, T) int, non-decreasing along each row (a sequence's tokens
    together), or None."""
    if segment_ids is None:
        return None
    segment_ids = np.asarray(segment_ids)
    v.require_integer("segment_ids", segment_ids)
    v.require_shape("segment_ids", segment_ids, shape, "the sequence each token belongs to")
    if (np.diff(segment_ids, axis=1) < 0).any():
        raise ValueError("expected segment_ids non-decreasing along each row (each packed sequence's "
                         f"tokens together), got {segment_ids.tolist()}")
    return segment_ids


def _packed(segment_ids):
    r"""Where several sequences share a row (packing): each token's position in its own
    sequence, :math:`p_t = t - \min\{t' : s_{t'} = s_t\}`, and the mask that keeps attention
    inside a sequence, :math:`M_{ij} = [s_i = s_j]`.

    Shapes: segment_ids (B, T) int -> positions (B, T) int, mask (B, 1, T, T) bool.
    """
    B, T = segment_ids.shape
    t = np.arange(T)                                                  # (T,)
    starts = np.concatenate([np.ones((B, 1), bool), segment_ids[:, 1:] != segment_ids[:, :-1]], axis=1)  # (B, T)
    first = np.maximum.accumulate(np.where(starts, t, 0), axis=1)     # (B, T), each sequence's first index
    same = segment_ids[:, None, :, None] == segment_ids[:, None, None, :]  # (B, 1, T, T)
    return t - first, same


class _Body(Module):
    """Embeddings + blocks (+ final LayerNorm): what the three models share."""

    def __init__(self, config: ModelConfig, seed: int, causal: bool):
        _check_config(config)
        super().__init__()
        c, dt = config, config.dtype
        self.config, self.causal, self.seed = c, causal, seed
        self.dropout_rng = dropout_rng(seed)
        self._forward_id = 0
        self._row_positions = False        # the last forward's positions: per row (packed) or shared
        self.tok_emb = Embedding(c.vocab_size, c.d_model, dt)
        self.pos_emb = Embedding(c.block_size, c.d_model, dt) if c.positional == "learned" else None
        # sinusoidal: a fixed table, neither trained nor saved; rope: none, attention
        # rotates queries and keys instead (layers.MultiHeadAttention)
        self.pos_table = (sinusoidal_positions(c.block_size, c.d_model, dt)  # (block, C)
                          if c.positional == "sinusoidal" else None)
        self.type_emb = Embedding(c.type_vocab_size, c.d_model, dt) if c.type_vocab_size else None
        self.emb_ln = LayerNorm(c.d_model, c.layer_norm_eps, dt) if c.embedding_norm else None
        self.drop = Dropout(c.dropout, self.dropout_rng)
        self.blocks = ModuleList([TransformerBlock(c, self.dropout_rng) for _ in range(c.n_layers)])
        self.ln_f = make_norm(c) if c.norm_first else None

    def _init_weights(self, scale_residual: bool):
        shapes = [(n, p.shape) for n, p in self.named_parameters()]
        values = init_parameters(shapes, self.seed, self.config.dtype,
                                 self.config.n_layers, scale_residual, self.config.init_std)
        for name, p in self.named_parameters():
            p.data[...] = values[name]

    def _embed(self, idx, positions, token_type_ids=None):
        r""":math:`x = \mathrm{Drop}(\mathrm{LN}_e(E[\mathrm{idx}] + P_{pos} + S[\mathrm{types}]))`;
        the segment table ``S`` and ``LN_e`` only where the config asks (BERT, Devlin et
        al. 2019, section 3.2). Token types default to 0.

        Shapes: idx (B, T) int, positions (T,) or (B, T) int, token_type_ids (B, T) or None
        -> (B, T, C).
        """
        x = self.tok_emb(idx)                                         # (B, T, C)
        if self.pos_emb is not None:
            x = x + self.pos_emb(positions)                           # (B, T, C)
        elif self.pos_table is not None:
            x = x + self.pos_table[positions]                         # (B, T, C)
        if self.type_emb is not None:
            types = np.zeros_like(idx) if token_type_ids is None else token_type_ids
            x = x + self.type_emb(types)                              # (B, T, C)
        if self.emb_ln is not None:
            x = self.emb_ln(x)                                        # (B, T, C)
        return self.drop(x)                                           # (B, T, C)

    def _encode(self, idx, key_mask=None, token_type_ids=None, segment_ids=None):
        """Shapes: idx (B, T) int, key_mask (B, T) bool or None, segment_ids (B, T) int or
        None (packed sequences: positions restart and attention stays inside each) ->
        h (B, T, C)."""
        self._forward_id += 1
        T = idx.shape[1]
        positions, same = (np.arange(T), None) if segment_ids is None else _packed(segment_ids)  # (T,) | (B, T)
        self._row_positions = segment_ids is not None
        x = self._embed(idx, positions, token_type_ids)               # (B, T, C)
        mask = causal_mask(T) if self.causal else None                # (T, T)
        if same is not None:
            mask = same if mask is None else mask & same              # (B, 1, T, T)
        if key_mask is not None:
            pad = key_mask[:, None, None, :]                          # (B, 1, 1, T)
            mask = pad if mask is None else mask & pad                # (B, 1, T, T)
        rows = positions if segment_ids is not None else None         # RoPE's, where they restart
        for block in self.blocks:
            x = block(x, mask, rows)                                  # (B, T, C)
        return self.ln_f(x) if self.ln_f is not None else x           # (B, T, C)

    def _encode_backward(self, dh):
        """The reverse of :meth:`_encode`: dh (B, T, C) -> gradients in the parameters."""
        if self.ln_f is not None:
            dh = self.ln_f.backward(dh)
        for block in reversed(list(self.blocks)):
            dh = block.backward(dh)                                   # (B, T, C)
        dx = self.drop.backward(dh)                                   # (B, T, C)
        if self.emb_ln is not None:
            dx = self.emb_ln.backward(dx)                             # (B, T, C)
        if self.type_emb is not None:
            self.type_emb.backward(dx)
        self.tok_emb.backward(dx)
        if self.pos_emb is not None:                                  # (B, T, C) per row, else (T, C)
            self.pos_emb.backward(dx if self._row_positions else dx.sum(axis=0))

    def encode(self, idx, attention_mask=None, token_type_ids=None):
        """The last hidden states, before any head (what ``transformers`` calls
        ``last_hidden_state``). Shapes: idx (B, T) int, attention_mask (B, T) bool or
        None, token_type_ids (B, T) int or None -> h (B, T, C)."""
        idx = _check_ids("idx", idx, self.config)
        attention_mask = _check_attention_mask(attention_mask, idx.shape)
        token_type_ids = self._check_types(token_type_ids, idx.shape)
        with v.trusted():                                             # checked above, once
            return self._encode(idx, attention_mask, token_type_ids)  # (B, T, C)

    def _check_types(self, token_type_ids, shape):
        if token_type_ids is None:
            return None
        if self.type_emb is None:
            raise ValueError("token_type_ids given, but the model has no token-type embeddings: "
                             "expected ModelConfig.type_vocab_size > 0, got 0")
        types = np.asarray(token_type_ids)
        v.require_integer("token_type_ids", types)
        v.require_shape("token_type_ids", types, shape)
        v.require_index_range("token_type_ids", types, self.config.type_vocab_size,
                              what=f"type_vocab_size={self.config.type_vocab_size}")
        return types

    def _loss(self, logits, targets, backward_head):
        """Cross-entropy over the counted targets, as a Loss that backpropagates."""
        K = logits.shape[-1]
        value, cache = cross_entropy_forward(logits.reshape(-1, K), targets.reshape(-1),
                                             ignore_index=IGNORE_INDEX)

        def backward():
            dlogits = cross_entropy_backward(np.ones((), dtype=logits.dtype), cache)  # (N, K)
            backward_head(dlogits.reshape(logits.shape))

        return Loss(value, backward, self, self._forward_id)


class _LanguageModel(_Body):
    r"""Body + LM head: logits = h W_out, W_out (C, V), or h E^T with tied embeddings.

    With ``lm_head_transform`` the head first maps
    :math:`h \mapsto \mathrm{LN}_t(\phi(h W_t + b_t))` and with ``lm_head_bias`` adds
    ``b_out`` (V,) to the logits: BERT's masked-LM head (Devlin et al. 2019, appendix A.1).
    """

    def __init__(self, config, seed, causal, scale_residual):
        super().__init__(config, seed, causal)
        c = config
        if c.lm_head_transform:
            self.lm_transform = Linear(c.d_model, c.d_model, True, c.dtype)
            self.lm_ln = LayerNorm(c.d_model, c.layer_norm_eps, c.dtype)
        else:
            self.lm_transform = self.lm_ln = None
        self.lm_head = None if c.tie_embeddings else Linear(c.d_model, c.vocab_size, False, c.dtype)
        self.b_out = Parameter(np.zeros(c.vocab_size, c.dtype)) if c.lm_head_bias else None
        self._init_weights(scale_residual)

    def _head(self, h):
        if self.lm_transform is not None:
            act_forward, _ = ACTIVATIONS[self.config.activation]
            a, self._act_cache = act_forward(self.lm_transform(h))    # (B, T, C)
            h = self.lm_ln(a)                                         # (B, T, C)
        if self.lm_head is not None:
            logits = self.lm_head(h)                                  # (B, T, V)
        else:
            logits, self._tied_cache = linear_forward(h, self.tok_emb.W.data.T)  # (B, T, V)
        if self.b_out is not None:
            logits = logits + self.b_out.data                         # (B, T, V)
        return logits

    def _backward(self, dlogits):
        if self.b_out is not None:
            self.b_out.accumulate(dlogits.reshape(-1, dlogits.shape[-1]).sum(axis=0))  # (V,)
        if self.lm_head is not None:
            dh = self.lm_head.backward(dlogits)                       # (B, T, C)
        else:  # tied: this use's dW (C, V) adds, transposed, to the embedding's gradient
            dh, dW_T, _ = linear_backward(dlogits, self._tied_cache)  # (B, T, C), (C, V)
            self.tok_emb.W.accumulate(dW_T.T)
        if self.lm_transform is not None:
            da = self.lm_ln.backward(dh)                              # (B, T, C)
            _, act_backward = ACTIVATIONS[self.config.activation]
            dh = self.lm_transform.backward(act_backward(da, self._act_cache))  # (B, T, C)
        self._encode_backward(dh)


class GPT(_LanguageModel):
    r"""Decoder-only causal language model (Radford et al. 2018/2019; chapter 3.3).

    Position :math:`t` attends to positions :math:`\le t` only — the causal mask the
    chapter's sample code forgot — and is trained to predict token :math:`t+1`:

    .. math::
        L = -\frac{1}{N}\sum_{b,t} \log \mathrm{softmax}(h_{b,t} W_{out})_{y_{b,t}}

    Shapes: idx (B, T) int, targets (B, T) int (``-100`` = not counted) ->
    logits (B, T, V), loss (a Loss, or None without targets). GPT-2's scaled
    initialisation of the residual projections is used (see :mod:`minillm.core.init`).

    The config's modern fields make it the decoder of Llama, Mistral and Qwen: for example
    ``ModelConfig(norm="rms", activation="swiglu", n_kv_heads=2, qk_norm=True,
    positional="rope", rope_layout="half", rope_theta=5e5, bias=False)`` gives RMSNorm,
    SwiGLU, grouped-query attention with QK-norm and RoPE, and no biases, every gradient
    still written by hand.
    """

    def __init__(self, config: ModelConfig, seed: int = 0):
        super().__init__(config, seed, causal=True, scale_residual=True)

    def forward(self, idx, targets=None, segment_ids=None):
        """``segment_ids`` (B, T) int, non-decreasing along a row: several sequences packed
        in one row, each token attending only to the earlier tokens of its own sequence and
        its position counted from that sequence's start, so each sequence's logits are those
        it has alone (SFT's packing); None: one sequence a row."""
        idx = _check_ids("idx", idx, self.config)
        if targets is not None:
            targets = _check_targets("targets", targets, idx.shape, self.config.vocab_size)
        segment_ids = _check_segment_ids(segment_ids, idx.shape)
        with v.trusted():                                             # checked above, once
            logits = self._head(self._encode(idx, segment_ids=segment_ids))  # (B, T, V)
            loss = None if targets is None else self._loss(logits, targets, self._backward)
        return logits, loss

    def forward_cached(self, idx, cache=None, attention_mask=None):
        r"""Logits of ``T`` new tokens given the KV cache of the ``P`` before them: the
        decoding step of generation (no loss, no backward). ``cache`` is what the last
        call returned (a tuple of one :class:`KVCache` per layer, keys and values each
        (B, H_kv, P, D)) or None; the
        result's logits equal ``forward``'s on the whole sequence at these positions.

        ``attention_mask`` (B, P + T), True at real tokens, covers the cached positions
        and the new ones, for a batch of rows of different lengths padded on the left:
        no query reads a padded key, and each token's position is the count of real
        tokens before it in its row, :math:`p_{bt} = \sum_{s<t} m_{bs}` (for the learned
        or sinusoidal table and for RoPE), so a row's logits are those of the row alone.
        None: every token real, positions P .. P+T-1.

        Shapes: idx (B, T) int, attention_mask (B, P + T) bool or None ->
        logits (B, T, V), cache with P + T positions.
        """
        idx = _check_ids("idx", idx, self.config)
        B, T = idx.shape
        P = _check_cache(cache, self.config, B)
        if P + T > self.config.block_size:
            raise ValueError(f"the KV cache holds {P} positions and {T} more were given: expected at "
                             f"most block_size={self.config.block_size} in all, got {P + T}")
        key_mask = _check_attention_mask(attention_mask, (B, P + T))      # (B, P+T) or None
        self._forward_id += 1             # the layers' caches now hold this call, not a loss's
        with v.trusted():                                                 # checked above, once
            if key_mask is None:
                positions = None
                x = self._embed(idx, np.arange(P, P + T))                 # (B, T, C)
            else:                         # real tokens before each one in its row; padding: 0
                positions = np.maximum(np.cumsum(key_mask, axis=1) - 1, 0)[:, P:]  # (B, T)
                x = self._embed(idx, positions)                           # (B, T, C)
            present = []
            for i, block in enumerate(self.blocks):
                past = None if cache is None else KVCache(*cache[i])
                x, kv = block.forward_cached(x, past, key_mask, positions)  # (B, T, C)
                present.append(kv)
            h = self.ln_f(x) if self.ln_f is not None else x              # (B, T, C)
            return self._head(h), tuple(present)                          # (B, T, V)


class TransformerEncoder(_LanguageModel):
    r"""Bidirectional encoder with a masked-LM head (BERT, Devlin et al. 2019; chapter 3.3).

    Every position sees every real token; ``attention_mask`` (B, T), True at real tokens,
    hides padding. The loss counts only the positions whose target is not ``-100``
    (the masked ones):

    .. math::
        L = -\frac{1}{|M|}\sum_{(b,t) \in M} \log \mathrm{softmax}(h_{b,t} W_{out})_{y_{b,t}}

    Shapes: idx (B, T) int, targets (B, T) int, attention_mask (B, T) bool,
    token_type_ids (B, T) int or None (needs ``type_vocab_size`` > 0) ->
    logits (B, T, V), loss.
    """

    def __init__(self, config: ModelConfig, seed: int = 0):
        super().__init__(config, seed, causal=False, scale_residual=False)

    def forward(self, idx, targets=None, attention_mask=None, token_type_ids=None):
        idx = _check_ids("idx", idx, self.config)
        attention_mask = _check_attention_mask(attention_mask, idx.shape)
        token_type_ids = self._check_types(token_type_ids, idx.shape)
        if targets is not None:
            targets = _check_targets("targets", targets, idx.shape, self.config.vocab_size)
        with v.trusted():                                             # checked above, once
            logits = self._head(self._encode(idx, attention_mask, token_type_ids))  # (B, T, V)
            loss = None if targets is None else self._loss(logits, targets, self._backward)
        return logits, loss


class _PoolCache(NamedTuple):
    """What the pooling's backward needs: the mask and the counts of mean pooling (None
    for "cls"), and the sequence length T."""
    mask: np.ndarray | None     # (B, T, 1)
    count: np.ndarray | None    # (B, 1)
    length: int


class SequenceClassifier(_Body):
    r"""Encoder + pooling + linear head: fine-tuning with a real classification head.

    .. math::
        \bar h_b = \frac{\sum_t m_{bt} h_{bt}}{\sum_t m_{bt}} \ (\text{mean}) \quad\text{or}\quad
        \bar h_b = h_{b,0}\ (\text{cls}), \qquad
        \mathrm{logits}_b = \mathrm{Drop}(\bar h_b)\, W + b

    Start from a pretrained encoder with :meth:`load_encoder_state`.
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
        state.update({k: p.data for k, p in self.named_parameters() if k.startswith("head.")})
        self.load_state_dict(state)

    def forward(self, idx, labels=None, attention_mask=None, token_type_ids=None):
        idx = _check_ids("idx", idx, self.config)
        B, T = idx.shape
        attention_mask = _check_attention_mask(attention_mask, idx.shape)
        token_type_ids = self._check_types(token_type_ids, idx.shape)
        if labels is not None:
            labels = _check_targets("labels", labels, (B,), self.n_classes)
        with v.trusted():                                             # checked above, once
            h = self._encode(idx, attention_mask, token_type_ids)     # (B, T, C)
            if self.pooling == "cls":
                pooled = h[:, 0]                                      # (B, C)
                self._pool_cache = _PoolCache(None, None, T)
            else:
                m = (np.ones((B, T), h.dtype) if attention_mask is None
                     else attention_mask.astype(h.dtype))[:, :, None]  # (B, T, 1)
                count = np.maximum(m.sum(axis=1), 1)                  # (B, 1)
                pooled = (h * m).sum(axis=1) / count                  # (B, C)
                self._pool_cache = _PoolCache(m, count, T)
            logits = self.head(self.head_drop(pooled))                # (B, K)
            loss = None if labels is None else self._loss(logits, labels, self._backward)
        return logits, loss

    def _backward(self, dlogits):
        dpooled = self.head_drop.backward(self.head.backward(dlogits))  # (B, C)
        B, C = dpooled.shape
        m, count, T = self._pool_cache
        if self.pooling == "cls":
            dh = np.zeros((B, T, C), dpooled.dtype)                   # (B, T, C)
            dh[:, 0] = dpooled
        else:
            dh = (dpooled / count)[:, None, :] * m                    # (B, T, C)
        self._encode_backward(dh)
