r"""Root-mean-square normalisation over the last (feature) axis (RMSNorm).

Dimension legend: ``C`` features, normalised over; ``...`` any leading dimensions, e.g.
``(B, T)`` in a block or ``(B, H, T)`` for QK-norm (then C is the head size D).
x ``(..., C)``, gamma ``(C,)``, y ``(..., C)``.

RMSNorm (Zhang and Sennrich 2019, "Root Mean Square Layer Normalization", eq. 4) is
layer norm without the mean and without the shift: it rescales a row to unit root mean
square and multiplies by a learned gain. Llama, Mistral, Qwen and OLMo use it for every
norm of the decoder.
"""
from typing import NamedTuple

import numpy as np

from ..core import _validate as v

__all__ = ["rms_norm", "rms_norm_forward", "rms_norm_backward"]


class RMSNormCache(NamedTuple):
    x_hat: np.ndarray        # x / rms, (..., C)
    rstd: np.ndarray         # 1 / sqrt(mean(x^2) + eps), (..., 1)
    gamma: np.ndarray        # (C,)


def _check(x, gamma, eps):
    """Arrays of the right kinds and sizes, and a positive finite eps; returns the arrays."""
    x, gamma = np.asarray(x), np.asarray(gamma)
    v.require_float("x", x)
    v.require_ndim_at_least("x", x, 1)
    v.require_nonempty_axis("x", x, -1)
    v.require_float("gamma", gamma)
    v.require_same_dtype("gamma", gamma, "x", x)
    v.require_shape("gamma", gamma, (x.shape[-1],), f"the last axis of x {x.shape}")
    v.require_number_in("eps", eps, 0.0, float("inf"), low_open=True, high_open=True)
    return x, gamma


def rms_norm_forward(x, gamma, eps=1e-5):
    r"""RMSNorm (Zhang and Sennrich 2019, eq. 4), as ``torch.nn.functional.rms_norm``:

    .. math::
        r = \frac{1}{\sqrt{\frac{1}{C}\sum_c x_c^2 + \epsilon}}, \quad
        \hat x = x\, r, \quad y = \gamma \odot \hat x

    Shapes: x (..., C), gamma (C,) -> y (..., C). Returns ``(y, RMSNormCache)``.
    """
    if v.checking():
        x, gamma = _check(x, gamma, eps)
    ms = (x * x).mean(axis=-1, keepdims=True)                   # (..., 1), mean square
    rstd = 1.0 / np.sqrt(ms + eps)                              # (..., 1)
    x_hat = x * rstd                                            # (..., C)
    y = gamma * x_hat                                           # (..., C)
    return y, RMSNormCache(x_hat, rstd, gamma)


def rms_norm_backward(dy, cache: RMSNormCache):
    r"""Gradients in closed form. With :math:`g = \gamma \odot \partial L/\partial y` and
    means over the C features of one row,

    .. math::
        \frac{\partial L}{\partial x} = r\,\big(g - \hat x \odot \overline{g \odot \hat x}\big),
        \quad
        \frac{\partial L}{\partial \gamma} = \sum_{\text{rows}} \frac{\partial L}{\partial y}
            \odot \hat x

    Derivation: :math:`\hat x_j = x_j r` with :math:`r = (m + \epsilon)^{-1/2}`,
    :math:`m = \frac1C\sum_c x_c^2`. Then :math:`\partial r/\partial x_j =
    -\frac12 (m+\epsilon)^{-3/2} \cdot 2x_j/C = -r^3 x_j / C`, so

    .. math::
        \frac{\partial L}{\partial x_j} = g_j r + \sum_c g_c x_c \frac{\partial r}{\partial x_j}
        = g_j r - \frac{r^3 x_j}{C}\sum_c g_c x_c
        = r\Big(g_j - \hat x_j\,\frac1C\sum_c g_c \hat x_c\Big).

    It is layer norm's gradient (``layer_norm_backward``) without the :math:`-\overline g`
    term, which came from the mean RMSNorm does not subtract.
    Shapes: dy (..., C) -> dx (..., C), dgamma (C,).
    """
    x_hat, rstd, gamma = cache
    if v.checking():
        dy = np.asarray(dy)
        v.require_shape("dy", dy, x_hat.shape, "the shape of rms_norm's output")
    C = x_hat.shape[-1]
    g = dy * gamma                                              # (..., C) dL/dx_hat
    gx_mean = (g * x_hat).mean(axis=-1, keepdims=True)          # (..., 1)
    dx = rstd * (g - x_hat * gx_mean)                           # (..., C)
    dgamma = (dy * x_hat).reshape(-1, C).sum(axis=0)            # (C,)
    return dx, dgamma


def rms_norm(x, gamma, eps=1e-5):
    """RMS normalisation over the last axis; see :func:`rms_norm_forward`."""
    return rms_norm_forward(x, gamma, eps)[0]
