r"""Sentence vectors from an encoder's hidden states, as sentence-transformers' Pooling and
Normalize modules compute them (:func:`sentence_embeddings`)."""
from __future__ import annotations

import numpy as np

POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")


def _pool(h: np.ndarray, m: np.ndarray, mode: str) -> np.ndarray:
    """One pooling mode over hidden states h (B, T, C) with mask m (B, T) of 0/1 -> (B, C)."""
    B, T, _ = h.shape
    rows = np.arange(B)
    first = m.argmax(axis=1)                                          # (B,) first real token
    if mode == "cls":
        return h[rows, first]
    if mode == "lasttoken":
        last = T - 1 - m[:, ::-1].argmax(axis=1)                      # (B,) last real token
        return h[rows, last] * m[rows, last][:, None]                 # no real token: zeros
    w = m[:, :, None]                                                 # (B, T, 1)
    if mode == "max":
        return np.where(w > 0, h, -np.inf).max(axis=1)
    if mode == "weightedmean":                        # weights 1, 2, ... from the first real token
        w = w * (np.arange(1, T + 1)[None, :] - first[:, None]).astype(h.dtype)[:, :, None]
    total = (h * w).sum(axis=1)                                       # (B, C)
    count = np.maximum(w.sum(axis=1), 1e-9)                           # (B, 1)
    return total / (np.sqrt(count) if mode == "mean_sqrt_len_tokens" else count)


def sentence_embeddings(model, idx, attention_mask=None, pooling="mean",
                        normalize: bool = False) -> np.ndarray:
    r"""Sentence vectors from an encoder, as sentence-transformers' Pooling and Normalize
    modules compute them. With :math:`m_{bt}` the attention mask, :math:`f_b` and
    :math:`l_b` the first and last positions of text :math:`b`, :math:`n_b = \max(\sum_t m_{bt}, 10^{-9})`:

    .. math::
        \text{mean: } e_b = \frac{\sum_t m_{bt} h_{bt}}{n_b} \qquad
        \text{mean\_sqrt\_len\_tokens: } e_b = \frac{\sum_t m_{bt} h_{bt}}{\sqrt{n_b}} \qquad
        \text{cls: } e_b = h_{b f_b} \qquad \text{lasttoken: } e_b = h_{b l_b}

        \text{max: } e_{bc} = \max_{t:\, m_{bt} = 1} h_{btc} \qquad
        \text{weightedmean: } e_b = \frac{\sum_t w_{bt} h_{bt}}{\max(\sum_t w_{bt}, 10^{-9})},\
        w_{bt} = m_{bt}\,(t + 1 - f_b)

        \text{normalize: } e_b \leftarrow e_b / \max(\lVert e_b \rVert_2, 10^{-12})

    ``pooling`` is one of :data:`POOLING_MODES` or a sequence of them, whose vectors are
    concatenated in that order. Works with either backend's model (the pooling runs in
    NumPy on its hidden states). Shapes: idx (B, T), attention_mask (B, T) -> (B, C * modes).
    """
    modes = (pooling,) if isinstance(pooling, str) else tuple(pooling)
    if not modes or any(p not in POOLING_MODES for p in modes):
        raise ValueError(f"expected pooling among {list(POOLING_MODES)} (or a sequence of them), "
                         f"got {pooling!r}")
    h = model.encode(idx, attention_mask)                             # (B, T, C)
    h = h.detach().cpu().numpy() if hasattr(h, "detach") else np.asarray(h)
    m = np.ones(h.shape[:2], h.dtype) if attention_mask is None else attention_mask
    m = m.detach().cpu().numpy() if hasattr(m, "detach") else np.asarray(m)
    m = m.astype(h.dtype)                                             # (B, T)
    e = np.concatenate([_pool(h, m, mode) for mode in modes], axis=1)  # (B, C * modes)
    if normalize:
        e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    return e

