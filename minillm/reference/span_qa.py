r"""Extractive question answering: an encoder with a start/end span head — NumPy reference.

The chapter names question answering among the Transformer's applications (section 6.3);
BERT (Devlin et al. 2019, section 4.2) answers by pointing at the context: every position
gets a start and an end logit, and the answer is the best span.

Dimension legend:
    B  batch size      T  sequence length (question and context)      C  d_model

The body is :class:`~minillm.reference.TransformerEncoder`'s (bidirectional, optional
segment embeddings); only the head and the loss are new, and the backward runs the
head's then the body's hand-written backward.
"""
from __future__ import annotations

import numpy as np

from ..core import _validate as v
from ..core.config import ModelConfig
from .layers import Linear
from .models import _Body, _check_attention_mask, _check_ids, _check_targets

__all__ = ["SpanQA"]


class SpanQA(_Body):
    r"""Extractive question answering: an encoder and a span head (BERT, Devlin et al.
    2019, section 4.2; chapter section 6.3). Each position gets a start and an end logit,

    .. math::
        [s_{b,t},\ e_{b,t}] = h_{b,t} W + b, \qquad
        L = \tfrac12\big(-\log \mathrm{softmax}(s_b)_{i_b} - \log \mathrm{softmax}(e_b)_{j_b}\big)

    averaged over the batch, where :math:`[i_b, j_b]` is the answer's span. Padded
    positions get the logit ``-1e4`` (added, so no probability and no gradient reach
    them). With ``config.type_vocab_size`` = 2, ``token_type_ids`` (B, T) tell the
    question (0) from the context (1), BERT's segment embeddings. Shapes: idx (B, T),
    attention_mask (B, T), start_positions, end_positions (B,) in [0, T) ->
    logits (B, 2, T) (start row, end row), loss.
    """

    def __init__(self, config: ModelConfig, seed: int = 0):
        super().__init__(config, seed, causal=False)
        self.qa_head = Linear(config.d_model, 2, True, config.dtype)
        self._init_weights(scale_residual=False)

    def forward(self, idx, start_positions=None, end_positions=None, attention_mask=None,
                token_type_ids=None):
        idx = _check_ids("idx", idx, self.config)
        B, T = idx.shape
        attention_mask = _check_attention_mask(attention_mask, idx.shape)
        token_type_ids = self._check_types(token_type_ids, idx.shape)
        if (start_positions is None) != (end_positions is None):
            raise ValueError("expected both start_positions and end_positions, or neither")
        if start_positions is not None:
            start = _check_targets("start_positions", start_positions, (B,), T)
            end = _check_targets("end_positions", end_positions, (B,), T)
        with v.trusted():                                                # checked above, once
            h = self._encode(idx, attention_mask, token_type_ids)        # (B, T, C)
            logits = self.qa_head(h).transpose(0, 2, 1)                  # (B, 2, T)
            if attention_mask is not None:
                logits = logits + np.where(attention_mask, 0.0, -1e4).astype(logits.dtype)[:, None, :]
            if start_positions is None:
                return logits, None
            targets = np.stack([start, end], axis=1)                     # (B, 2)
            return logits, self._loss(logits, targets, self._backward)

    def _backward(self, dlogits):
        dh = self.qa_head.backward(dlogits.transpose(0, 2, 1))           # (B, T, C)
        self._encode_backward(dh)
