r"""Extractive question answering: an encoder with a start/end span head — PyTorch backend.

Dimension legend:
    B  batch size      T  sequence length (question and context)      C  d_model

The same class, parameter names and order, initialisation and dropout stream as
``minillm/reference/span_qa.py``; see its docstrings for the formulas. Gradients come
from autograd.
"""
from __future__ import annotations

import torch

from ..core import _validate as v
from ..core.config import ModelConfig
from .layers import Linear
from .models import _Body, _check_attention_mask, _check_ids, _check_targets

__all__ = ["SpanQA"]


class SpanQA(_Body):
    r"""Extractive question answering: encoder + start/end head; see
    ``minillm.reference.SpanQA``.

    .. math::
        L = \tfrac12\big(-\log \mathrm{softmax}(s_b)_{i_b} - \log \mathrm{softmax}(e_b)_{j_b}\big)

    Shapes: idx (B, T), attention_mask (B, T), start_positions, end_positions (B,) ->
    logits (B, 2, T), loss.
    """

    def __init__(self, config: ModelConfig, seed: int = 0):
        super().__init__(config, seed, causal=False)
        self.qa_head = Linear(config.d_model, 2, True, config.dtype)
        self._init_weights(scale_residual=False)

    def forward(self, idx, start_positions=None, end_positions=None, attention_mask=None,
                token_type_ids=None):
        idx = _check_ids("idx", idx, self.config, self.device)
        B, T = idx.shape
        attention_mask = _check_attention_mask(attention_mask, (B, T), self.device)
        token_type_ids = self._check_types(token_type_ids, (B, T))
        if (start_positions is None) != (end_positions is None):
            raise ValueError("expected both start_positions and end_positions, or neither")
        if start_positions is not None:
            start = _check_targets("start_positions", start_positions, (B,), T, self.device)
            end = _check_targets("end_positions", end_positions, (B,), T, self.device)
        with v.trusted():                                                # checked above, once
            h = self._encode(idx, attention_mask, token_type_ids)        # (B, T, C)
            logits = self.qa_head(h).transpose(1, 2)                     # (B, 2, T)
            if attention_mask is not None:
                pad = torch.where(attention_mask, 0.0, -1e4).to(logits.dtype)  # (B, T)
                logits = logits + pad[:, None, :]
            if start_positions is None:
                return logits, None
            targets = torch.stack([start, end], dim=1)                   # (B, 2)
            return logits, self._loss(logits, targets)
