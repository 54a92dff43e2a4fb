r"""The position-wise feed-forward network, plain or gated (SwiGLU), composed of :mod:`.linear` and
:mod:`.activations`; autograd gives the gradients.

Dimension legend: ``d_model`` model width, ``d_ff`` hidden width, ``...`` any leading
dimensions. x ``(..., d_model)``, W1 ``(d_model, d_ff)``, b1 ``(d_ff,)``,
W2 ``(d_ff, d_model)``, b2 ``(d_model,)``.
"""
import torch

from ..core import _validate as v
from .activations import ACTIVATIONS, FAST_ACTIVATIONS
from .linear import autocasting, check_linear, fast_linear, linear

__all__ = ["feed_forward", "gated_feed_forward"]


def feed_forward(x, W1, b1, W2, b2, activation="relu"):
    r"""FFN (chapter, section 4.2), with ReLU or one of the GELUs as ``act``:

    .. math:: \mathrm{FFN}(x) = \mathrm{act}(x W_1 + b_1)\, W_2 + b_2

    Shapes: x (..., d_model), W1 (d_model, d_ff), b1 (d_ff,) or None,
    W2 (d_ff, d_model), b2 (d_model,) or None -> out (..., d_model).
    """
    if v.checking():
        _check(x, W1, b1, W2, activation)
    h = linear(x, W1, b1)                                       # (..., d_ff)
    a = ACTIVATIONS[activation](h)                              # (..., d_ff)
    return linear(a, W2, b2)                                    # (..., d_model)


def fast_feed_forward(x, W1, b1, W2, b2, activation="relu"):
    """The fast path's FFN: ``F.linear``, ``F.relu`` / ``F.gelu`` and ``F.linear`` (see
    :func:`~minillm.torch_backend.linear.fast_linear`), the weights as stored. Not
    exported: :class:`FeedForward` calls it when ``fused``. Shapes: as :func:`feed_forward`."""
    if v.checking():
        _check(x, W1, b1, W2, activation, same_dtype=not autocasting(x))
    h = fast_linear(x, W1, b1)                                  # (..., d_ff)
    a = FAST_ACTIVATIONS[activation](h)                         # (..., d_ff)
    return fast_linear(a, W2, b2)                               # (..., d_model)


def _check(x, W1, b1, W2, activation, same_dtype=True):
    v.require_choice("activation", activation, tuple(ACTIVATIONS))
    check_linear(x, W1, b1, ("x", "W1", "b1"), same_dtype)
    v.require_tensor("W2", W2)
    v.require_float("W2", W2)
    if same_dtype:
        v.require_same_dtype("W2", W2, "x", x)
    v.require_ndim("W2", W2, 2)
    v.require_shape("W2", W2, (W1.shape[1], x.shape[-1]),
                    f"(d_ff, d_model) from W1 {tuple(W1.shape)}")


def gated_feed_forward(x, W_gate, b_gate, W_up, b_up, W_down, b_down, activation="silu"):
    r"""Gated FFN; with ``activation="silu"`` it is SwiGLU (Shazeer 2020, eq. 5 and 6):

    .. math::
        \mathrm{FFN}_{\mathrm{SwiGLU}}(x) =
            \big(\mathrm{SiLU}(x W_{gate} + b_{gate}) \odot (x W_{up} + b_{up})\big)\, W_{down} + b_{down}

    Shapes: x (..., d_model), W_gate and W_up (d_model, d_ff), b_gate and b_up (d_ff,) or
    None, W_down (d_ff, d_model), b_down (d_model,) or None -> out (..., d_model).
    """
    if v.checking():
        _check_gated(x, W_gate, b_gate, W_up, b_up, W_down, activation)
    h_gate = linear(x, W_gate, b_gate)                          # (..., d_ff)
    h_up = linear(x, W_up, b_up)                                # (..., d_ff)
    a = ACTIVATIONS[activation](h_gate)                         # (..., d_ff)
    m = a * h_up                                                # (..., d_ff)
    return linear(m, W_down, b_down)                            # (..., d_model)


def fast_gated_feed_forward(x, W_gate, b_gate, W_up, b_up, W_down, b_down, activation="silu"):
    """The fast path's gated FFN: ``F.linear`` and ``F.silu`` (or the activation's torch
    kernel). Not exported: :class:`GatedFeedForward` calls it when ``fused``.
    Shapes: as :func:`gated_feed_forward`."""
    if v.checking():
        _check_gated(x, W_gate, b_gate, W_up, b_up, W_down, activation,
                     same_dtype=not autocasting(x))
    a = FAST_ACTIVATIONS[activation](fast_linear(x, W_gate, b_gate))   # (..., d_ff)
    return fast_linear(a * fast_linear(x, W_up, b_up), W_down, b_down)  # (..., d_model)


def _check_gated(x, W_gate, b_gate, W_up, b_up, W_down, activation, same_dtype=True):
    v.require_choice("activation", activation, tuple(ACTIVATIONS))
    check_linear(x, W_gate, b_gate, ("x", "W_gate", "b_gate"), same_dtype)
    check_linear(x, W_up, b_up, ("x", "W_up", "b_up"), same_dtype)
    v.require_shape("W_up", W_up, tuple(W_gate.shape), f"(d_model, d_ff) as W_gate {tuple(W_gate.shape)}")
    v.require_tensor("W_down", W_down)
    v.require_float("W_down", W_down)
    if same_dtype:
        v.require_same_dtype("W_down", W_down, "x", x)
    v.require_ndim("W_down", W_down, 2)
    v.require_shape("W_down", W_down, (W_gate.shape[1], x.shape[-1]),
                    f"(d_ff, d_model) from W_gate {tuple(W_gate.shape)}")
