r"""Layer normalisation over the last (feature) axis.

Dimension legend: ``C`` features (d_model), normalised over; ``...`` any leading
dimensions, e.g. ``(B, T)``. x ``(..., C)``, gamma and beta ``(C,)``, y ``(..., C)``.
"""
from typing import NamedTuple

import numpy as np

from ..core import _validate as v

__all__ = ["layer_norm", "layer_norm_forward", "layer_norm_backward"]


class LayerNormCache(NamedTuple):
    x_hat: np.ndarray        # normalised x, (..., C)
    rstd: np.ndarray         # 1 / sqrt(var + eps), (..., 1)
    gamma: np.ndarray        # (C,)


def _check(x, gamma, beta, eps):
    """Arrays of the right kinds and sizes, and a positive finite eps; returns the arrays."""
    x, gamma, beta = np.asarray(x), np.asarray(gamma), np.asarray(beta)
    v.require_float("x", x)
    v.require_ndim_at_least("x", x, 1)
    v.require_nonempty_axis("x", x, -1)
    C = x.shape[-1]
    for name, p in (("gamma", gamma), ("beta", beta)):
        v.require_float(name, p)
        v.require_same_dtype(name, p, "x", x)
        v.require_shape(name, p, (C,), f"the last axis of x {x.shape}")
    v.require_number_in("eps", eps, 0.0, float("inf"), low_open=True, high_open=True)
    return x, gamma, beta


def layer_norm_forward(x, gamma, beta, eps=1e-5):
    r"""Layer norm (Ba, Kiros & Hinton 2016, eq. 4; the chapter's Transformer encoder,
    section 4.2), with the biased variance, as torch computes it:

    .. math::
        \mu = \frac{1}{C}\sum_c x_c, \quad
        \sigma^2 = \frac{1}{C}\sum_c (x_c - \mu)^2, \quad
        \hat x = \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}}, \quad
        y = \gamma \odot \hat x + \beta

    Shapes: x (..., C), gamma (C,), beta (C,) -> y (..., C). Returns ``(y, LayerNormCache)``.
    """
    if v.checking():
        x, gamma, beta = _check(x, gamma, beta, eps)
    mu = x.mean(axis=-1, keepdims=True)                         # (..., 1)
    centered = x - mu                                           # (..., C)
    var = (centered * centered).mean(axis=-1, keepdims=True)    # (..., 1), biased
    rstd = 1.0 / np.sqrt(var + eps)                             # (..., 1)
    x_hat = centered * rstd                                     # (..., C)
    y = gamma * x_hat + beta                                    # (..., C)
    return y, LayerNormCache(x_hat, rstd, gamma)


def layer_norm_backward(dy, cache: LayerNormCache):
    r"""Gradients in the compact closed form. With :math:`g = \gamma \odot \partial L/\partial y`
    and means over the C features of one row,

    .. math::
        \frac{\partial L}{\partial x} = \frac{1}{\sqrt{\sigma^2 + \epsilon}}
            \Big( g - \overline{g} - \hat x \odot \overline{g \odot \hat x} \Big), \quad
        \frac{\partial L}{\partial \gamma} = \sum_{\text{rows}} \frac{\partial L}{\partial y}
            \odot \hat x, \quad
        \frac{\partial L}{\partial \beta} = \sum_{\text{rows}} \frac{\partial L}{\partial y}

    Derivation: :math:`\hat x` depends on x directly, through :math:`\mu` (whose share is
    :math:`-\overline{g}`) and through :math:`\sigma^2` (whose share is
    :math:`-\hat x\,\overline{g \hat x}`, using :math:`\partial \sigma^2/\partial x_c =
    2(x_c - \mu)/C`); llm.c's ``doc/layernorm`` walks through the same algebra.
    Shapes: dy (..., C) -> dx (..., C), dgamma (C,), dbeta (C,).
    """
    x_hat, rstd, gamma = cache
    if v.checking():
        dy = np.asarray(dy)
        v.require_shape("dy", dy, x_hat.shape, "the shape of layer_norm's output")
    C = x_hat.shape[-1]
    g = dy * gamma                                              # (..., C) dL/dx_hat
    g_mean = g.mean(axis=-1, keepdims=True)                     # (..., 1)
    gx_mean = (g * x_hat).mean(axis=-1, keepdims=True)          # (..., 1)
    dx = rstd * (g - g_mean - x_hat * gx_mean)                  # (..., C)
    dgamma = (dy * x_hat).reshape(-1, C).sum(axis=0)            # (C,)
    dbeta = dy.reshape(-1, C).sum(axis=0)                       # (C,)
    return dx, dgamma, dbeta


def layer_norm(x, gamma, beta, eps=1e-5):
    """Layer normalisation over the last axis; see :func:`layer_norm_forward`."""
    return layer_norm_forward(x, gamma, beta, eps)[0]
