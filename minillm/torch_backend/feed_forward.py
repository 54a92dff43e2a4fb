r"""The position-wise feed-forward network, composed of :mod:`.linear` and
:mod:`.activations`; autograd gives the gradients.

Dimension legend: ``d_model`` model width, ``d_ff`` hidden width, ``...`` any leading
dimensions. x ``(..., d_model)``, W1 ``(d_model, d_ff)``, b1 ``(d_ff,)``,
W2 ``(d_ff, d_model)``, b2 ``(d_model,)``.
"""
import torch

from .. import _validate as v
from .activations import gelu, gelu_tanh, relu
from .linear import check_linear, linear

__all__ = ["feed_forward"]

ACTIVATIONS = {"relu": relu, "gelu": gelu, "gelu_tanh": gelu_tanh}


def feed_forward(x, W1, b1, W2, b2, activation="relu"):
    r"""FFN (chapter, section 4.2), with ReLU or one of the GELUs as ``act``:

    .. math:: \mathrm{FFN}(x) = \mathrm{act}(x W_1 + b_1)\, W_2 + b_2

    Shapes: x (..., d_model), W1 (d_model, d_ff), b1 (d_ff,) or None,
    W2 (d_ff, d_model), b2 (d_model,) or None -> out (..., d_model).
    """
    v.require_choice("activation", activation, tuple(ACTIVATIONS))
    check_linear(x, W1, b1, ("x", "W1", "b1"))
    if not (isinstance(W2, torch.Tensor) and W2.dtype == x.dtype
            and W2.shape == (W1.shape[1], x.shape[-1])):  # else: explain (see linear.py)
        v.require_tensor("W2", W2)
        v.require_float("W2", W2)
        v.require_ndim("W2", W2, 2)
        v.require_shape("W2", W2, (W1.shape[1], x.shape[-1]),
                        f"(d_ff, d_model) from W1 {tuple(W1.shape)}")
    h = linear(x, W1, b1)                                       # (..., d_ff)
    a = ACTIVATIONS[activation](h)                              # (..., d_ff)
    return linear(a, W2, b2)                                    # (..., d_model)
