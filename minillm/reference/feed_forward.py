r"""The position-wise feed-forward network of a Transformer block.

Dimension legend: ``d_model`` model width, ``d_ff`` hidden width, ``...`` any leading
dimensions, e.g. ``(B, T)``. x ``(..., d_model)``, W1 ``(d_model, d_ff)``, b1 ``(d_ff,)``,
W2 ``(d_ff, d_model)``, b2 ``(d_model,)``, out ``(..., d_model)``.

Forward and backward are compositions of :mod:`.linear` and :mod:`.activations`.
"""
from typing import NamedTuple

import numpy as np

from ..core import _validate as v
from .activations import ACTIVATIONS
from .linear import LinearCache, check_linear, linear_backward, linear_forward

__all__ = ["feed_forward", "feed_forward_forward", "feed_forward_backward"]

class FeedForwardCache(NamedTuple):
    first: LinearCache                        # x -> h = x W1 + b1
    act: tuple                                # h -> a = act(h): ActivationCache or GeluCache
    second: LinearCache                       # a -> out = a W2 + b2
    activation: str


def feed_forward_forward(x, W1, b1, W2, b2, activation="relu"):
    r"""FFN (chapter, section 4.2), with ReLU or one of the GELUs as ``act``:

    .. math:: \mathrm{FFN}(x) = \mathrm{act}(x W_1 + b_1)\, W_2 + b_2

    Shapes: x (..., d_model), W1 (d_model, d_ff), b1 (d_ff,) or None,
    W2 (d_ff, d_model), b2 (d_model,) or None -> out (..., d_model).
    Returns ``(out, FeedForwardCache)``.
    """
    if v.checking():
        x, W1, b1, W2 = _check(x, W1, b1, W2, activation)
    act_forward, _ = ACTIVATIONS[activation]
    h, first = linear_forward(x, W1, b1)                        # (..., d_ff)
    a, act = act_forward(h)                                     # (..., d_ff)
    out, second = linear_forward(a, W2, b2)                     # (..., d_model)
    return out, FeedForwardCache(first, act, second, activation)


def feed_forward_backward(dout, cache: FeedForwardCache):
    r"""The chain rule through the three steps, in reverse:

    .. math::
        \frac{\partial L}{\partial a} = \frac{\partial L}{\partial y} W_2^\top, \quad
        \frac{\partial L}{\partial h} = \frac{\partial L}{\partial a} \odot \mathrm{act}'(h),
        \quad
        \frac{\partial L}{\partial x} = \frac{\partial L}{\partial h} W_1^\top

    Shapes: dout (..., d_model) -> dx (..., d_model), dW1 (d_model, d_ff), db1 (d_ff,),
    dW2 (d_ff, d_model), db2 (d_model,); db1/db2 are None where b1/b2 were None.
    """
    first, act, second, activation = cache
    _, act_backward = ACTIVATIONS[activation]
    da, dW2, db2 = linear_backward(dout, second)                # (..., d_ff)
    dh = act_backward(da, act)                                  # (..., d_ff)
    dx, dW1, db1 = linear_backward(dh, first)                   # (..., d_model)
    return dx, dW1, db1, dW2, db2


def _check(x, W1, b1, W2, activation):
    v.require_choice("activation", activation, tuple(ACTIVATIONS))
    x, W1, b1 = check_linear(x, W1, b1, ("x", "W1", "b1"))
    W2 = np.asarray(W2)
    v.require_float("W2", W2)
    v.require_ndim("W2", W2, 2)
    v.require_shape("W2", W2, (W1.shape[1], x.shape[-1]),
                    f"(d_ff, d_model) from W1 {W1.shape}")
    return x, W1, b1, W2


def feed_forward(x, W1, b1, W2, b2, activation="relu"):
    """Position-wise feed-forward network; see :func:`feed_forward_forward`."""
    return feed_forward_forward(x, W1, b1, W2, b2, activation)[0]
