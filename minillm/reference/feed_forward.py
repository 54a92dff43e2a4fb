r"""The position-wise feed-forward network of a Transformer block, plain or gated (SwiGLU).

Dimension legend: ``d_model`` model width, ``d_ff`` hidden width, ``...`` any leading
dimensions, e.g. ``(B, T)``. x ``(..., d_model)``, W1 ``(d_model, d_ff)``, b1 ``(d_ff,)``,
W2 ``(d_ff, d_model)``, b2 ``(d_model,)``, out ``(..., d_model)``.

The gated network (SwiGLU; Shazeer 2020) has three matrices: W_gate and W_up
``(d_model, d_ff)``, W_down ``(d_ff, d_model)``, with biases of their output sizes or None.

Forward and backward are compositions of :mod:`.linear` and :mod:`.activations`.
"""
from typing import NamedTuple

import numpy as np

from ..core import _validate as v
from .activations import ACTIVATIONS
from .linear import LinearCache, check_linear, linear_backward, linear_forward

__all__ = [
    "feed_forward", "feed_forward_forward", "feed_forward_backward",
    "gated_feed_forward", "gated_feed_forward_forward", "gated_feed_forward_backward",
]

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


class GatedFeedForwardCache(NamedTuple):
    gate: LinearCache                         # x -> h_g = x W_gate + b_gate
    up: LinearCache                           # x -> h_u = x W_up + b_up
    act: tuple                                # h_g -> a = act(h_g)
    a: np.ndarray                             # act(h_g), (..., d_ff)
    h_up: np.ndarray                          # h_u, (..., d_ff)
    down: LinearCache                         # m = a * h_u -> out = m W_down + b_down
    activation: str


def gated_feed_forward_forward(x, W_gate, b_gate, W_up, b_up, W_down, b_down, activation="silu"):
    r"""Gated FFN; with ``activation="silu"`` it is SwiGLU (Shazeer 2020, "GLU Variants
    Improve Transformer", eq. 5 and 6; Llama, Mistral, Qwen):

    .. math::
        \mathrm{FFN}_{\mathrm{SwiGLU}}(x) =
            \big(\mathrm{SiLU}(x W_{gate} + b_{gate}) \odot (x W_{up} + b_{up})\big)\, W_{down} + b_{down}

    (the paper writes :math:`(\mathrm{Swish}_1(xW) \otimes xV)W_2`, without biases; pass
    None for each bias to get it exactly). Shapes: x (..., d_model), W_gate and W_up
    (d_model, d_ff), b_gate and b_up (d_ff,) or None, W_down (d_ff, d_model),
    b_down (d_model,) or None -> out (..., d_model). Returns ``(out, GatedFeedForwardCache)``.
    """
    if v.checking():
        x, W_gate, b_gate, W_up, b_up, W_down = _check_gated(
            x, W_gate, b_gate, W_up, b_up, W_down, activation)
    act_forward, _ = ACTIVATIONS[activation]
    h_gate, gate = linear_forward(x, W_gate, b_gate)            # (..., d_ff)
    h_up, up = linear_forward(x, W_up, b_up)                    # (..., d_ff)
    a, act = act_forward(h_gate)                                # (..., d_ff)
    m = a * h_up                                                # (..., d_ff)
    out, down = linear_forward(m, W_down, b_down)               # (..., d_model)
    return out, GatedFeedForwardCache(gate, up, act, a, h_up, down, activation)


def gated_feed_forward_backward(dout, cache: GatedFeedForwardCache):
    r"""The chain rule, in reverse; the product :math:`m = a \odot h_u` sends each factor
    the upstream gradient times the other, and x, read by two maps, sums their gradients:

    .. math::
        \frac{\partial L}{\partial m} = \frac{\partial L}{\partial y} W_{down}^\top, \quad
        \frac{\partial L}{\partial h_u} = \frac{\partial L}{\partial m} \odot a, \quad
        \frac{\partial L}{\partial h_g} = \Big(\frac{\partial L}{\partial m} \odot h_u\Big)
            \odot \mathrm{act}'(h_g), \quad
        \frac{\partial L}{\partial x} = \frac{\partial L}{\partial h_g} W_{gate}^\top
            + \frac{\partial L}{\partial h_u} W_{up}^\top

    Shapes: dout (..., d_model) -> dx (..., d_model), dW_gate (d_model, d_ff),
    db_gate (d_ff,), dW_up (d_model, d_ff), db_up (d_ff,), dW_down (d_ff, d_model),
    db_down (d_model,); a bias gradient is None where the bias was None.
    """
    gate, up, act, a, h_up, down, activation = cache
    _, act_backward = ACTIVATIONS[activation]
    dm, dW_down, db_down = linear_backward(dout, down)          # (..., d_ff)
    dh_up = dm * a                                              # (..., d_ff)
    dh_gate = act_backward(dm * h_up, act)                      # (..., d_ff)
    dx_up, dW_up, db_up = linear_backward(dh_up, up)            # (..., d_model)
    dx_gate, dW_gate, db_gate = linear_backward(dh_gate, gate)  # (..., d_model)
    return dx_gate + dx_up, dW_gate, db_gate, dW_up, db_up, dW_down, db_down


def _check_gated(x, W_gate, b_gate, W_up, b_up, W_down, activation):
    v.require_choice("activation", activation, tuple(ACTIVATIONS))
    x, W_gate, b_gate = check_linear(x, W_gate, b_gate, ("x", "W_gate", "b_gate"))
    _, W_up, b_up = check_linear(x, W_up, b_up, ("x", "W_up", "b_up"))
    v.require_shape("W_up", W_up, W_gate.shape, f"(d_model, d_ff) as W_gate {W_gate.shape}")
    W_down = np.asarray(W_down)
    v.require_float("W_down", W_down)
    v.require_same_dtype("W_down", W_down, "x", x)
    v.require_ndim("W_down", W_down, 2)
    v.require_shape("W_down", W_down, (W_gate.shape[1], x.shape[-1]),
                    f"(d_ff, d_model) from W_gate {W_gate.shape}")
    return x, W_gate, b_gate, W_up, b_up, W_down


def gated_feed_forward(x, W_gate, b_gate, W_up, b_up, W_down, b_down, activation="silu"):
    """Gated feed-forward network (SwiGLU with ``"silu"``); see :func:`gated_feed_forward_forward`."""
    return gated_feed_forward_forward(x, W_gate, b_gate, W_up, b_up, W_down, b_down, activation)[0]
