r"""The affine map :math:`y = xW + b`, with ``W`` stored as the formula writes it.

Dimension legend: ``d_in`` input features, ``d_out`` output features, ``...`` any
leading dimensions (e.g. ``(B, T)``). x ``(..., d_in)``, W ``(d_in, d_out)``,
b ``(d_out,)`` or None, y ``(..., d_out)``.
"""
from typing import NamedTuple

import numpy as np

from ..core import _validate as v

__all__ = ["linear", "linear_forward", "linear_backward"]


class LinearCache(NamedTuple):
    x: np.ndarray            # (..., d_in)
    W: np.ndarray            # (d_in, d_out)
    has_bias: bool


def check_linear(x, W, b, names=("x", "W", "b")):
    """Validate one affine map's arrays (shared with feed_forward); returns them as arrays."""
    x_name, W_name, b_name = names
    x, W = np.asarray(x), np.asarray(W)
    v.require_float(x_name, x)
    v.require_ndim_at_least(x_name, x, 1)
    v.require_float(W_name, W)
    v.require_ndim(W_name, W, 2)
    v.require_same_dtype(W_name, W, x_name, x)
    v.require_last_dim(x_name, x, W.shape[0], f"d_in of {W_name} {W.shape}")
    if b is not None:
        b = np.asarray(b)
        v.require_float(b_name, b)
        v.require_same_dtype(b_name, b, x_name, x)
        v.require_shape(b_name, b, (W.shape[1],), f"d_out of {W_name} {W.shape}")
    return x, W, b


def linear_forward(x, W, b=None):
    r"""Affine map (chapter, section 4.1: :math:`Q = XW_Q`; section 4.2: :math:`xW_1 + b_1`).

    .. math:: y = x W + b

    Shapes: x (..., d_in), W (d_in, d_out), b (d_out,) or None -> y (..., d_out).
    Returns ``(y, LinearCache)``.
    """
    if v.checking():
        x, W, b = check_linear(x, W, b)
    d_in, d_out = W.shape
    # one matrix product over all N positions: a single BLAS call, not one per batch row
    y = (x.reshape(-1, d_in) @ W).reshape(*x.shape[:-1], d_out)  # (..., d_out)
    if b is not None:
        y += b                                                  # (..., d_out), in place
    return y, LinearCache(x, W, b is not None)


def linear_backward(dy, cache: LinearCache):
    r"""Gradients of :math:`y = xW + b`, summing over every leading position:

    .. math::
        \frac{\partial L}{\partial x} = \frac{\partial L}{\partial y} W^\top, \quad
        \frac{\partial L}{\partial W} = \sum_{\text{positions}} x^\top \frac{\partial L}{\partial y},
        \quad
        \frac{\partial L}{\partial b} = \sum_{\text{positions}} \frac{\partial L}{\partial y}

    Shapes: dy (..., d_out) -> dx (..., d_in), dW (d_in, d_out), db (d_out,) or None.
    """
    x, W, has_bias = cache
    if v.checking():
        dy = np.asarray(dy)
        v.require_shape("dy", dy, x.shape[:-1] + (W.shape[1],), "the shape of linear's output")
    x_rows = x.reshape(-1, W.shape[0])                          # (N, d_in), N = prod(...)
    dy_rows = dy.reshape(-1, W.shape[1])                        # (N, d_out)
    dx = (dy_rows @ W.T).reshape(x.shape)                       # (..., d_in)
    dW = x_rows.T @ dy_rows                                     # (d_in, d_out)
    db = dy_rows.sum(axis=0) if has_bias else None              # (d_out,)
    return dx, dW, db


def linear(x, W, b=None):
    """Affine map ``x @ W + b``; see :func:`linear_forward`."""
    return linear_forward(x, W, b)[0]
