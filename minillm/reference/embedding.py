r"""Token embedding: a lookup of rows of a table.

Dimension legend: ``V`` rows (the vocabulary size), ``d`` embedding width (d_model),
``...`` the shape of the ids, e.g. ``(B, T)``. ids ``(...)`` int, W ``(V, d)``,
out ``(..., d)``.
"""
from typing import NamedTuple

import numpy as np

from ..core import _validate as v

__all__ = ["embedding", "embedding_forward", "embedding_backward"]


class EmbeddingCache(NamedTuple):
    ids: np.ndarray          # (...) int
    W_shape: tuple           # (V, d)
    dtype: np.dtype


def embedding_forward(ids, W):
    r"""Row lookup. Equivalent to a one-hot row times the table,
    :math:`\mathrm{onehot}(i)\,W`, without building the one-hot.

    .. math:: \mathrm{out}_{\ldots} = W_{\mathrm{ids}_{\ldots},\,:}

    Shapes: ids (...) int, W (V, d) -> out (..., d). Returns ``(out, EmbeddingCache)``.
    """
    if v.checking():
        ids, W = _check(ids, W)
    return W[ids], EmbeddingCache(ids, W.shape, W.dtype)        # (..., d)


def embedding_backward(dout, cache: EmbeddingCache):
    r"""Each row of W receives the sum of the upstream gradients of every position that
    looked it up (a repeated id adds up):

    .. math::
        \frac{\partial L}{\partial W_{v,:}} = \sum_{p\,:\,\mathrm{ids}_p = v}
            \frac{\partial L}{\partial \mathrm{out}_{p,:}}

    ``np.add.at`` does the unbuffered scatter-add (``dW[ids] += dout`` would keep only
    the last of repeated ids). The ids get no gradient. Shapes: dout (..., d) -> dW (V, d).
    """
    ids, (V, d), dtype = cache
    if v.checking():
        dout = np.asarray(dout)
        v.require_shape("dout", dout, ids.shape + (d,), "the shape of embedding's output")
    dW = np.zeros((V, d), dtype=dtype)                          # (V, d)
    np.add.at(dW, ids.reshape(-1), dout.reshape(-1, d))
    return dW


def _check(ids, W):
    ids, W = np.asarray(ids), np.asarray(W)
    v.require_integer("ids", ids)
    v.require_float("W", W)
    v.require_ndim("W", W, 2)
    v.require_index_range("ids", ids, W.shape[0], what=f"V={W.shape[0]} rows of W")
    return ids, W


def embedding(ids, W):
    """Embedding lookup ``W[ids]``; see :func:`embedding_forward`."""
    return embedding_forward(ids, W)[0]
