r"""Layer normalisation over the last (feature) axis, written with tensor ops (not
``F.layer_norm``; the tests use that as a third opinion).

Dimension legend: ``C`` features, ``...`` any leading dimensions. x ``(..., C)``,
gamma and beta ``(C,)``.
"""
import torch
import torch.nn.functional as F

from ..core import _validate as v
from .linear import autocasting

__all__ = ["layer_norm"]


def _check(x, gamma, beta, eps, same_dtype=True):
    """The checks of the reference's layer_norm; ``same_dtype=False`` (the fast path
    under autocast) lets the dtypes differ."""
    for name, t in (("x", x), ("gamma", gamma), ("beta", beta)):
        v.require_tensor(name, t)
        v.require_float(name, t)
    v.require_ndim_at_least("x", x, 1)
    v.require_nonempty_axis("x", x, -1)
    C = x.shape[-1]
    for name, p in (("gamma", gamma), ("beta", beta)):
        if same_dtype:
            v.require_same_dtype(name, p, "x", x)
        v.require_shape(name, p, (C,), f"the last axis of x {tuple(x.shape)}")
    v.require_number_in("eps", eps, 0.0, float("inf"), low_open=True, high_open=True)


def layer_norm(x, gamma, beta, eps=1e-5):
    r"""Layer norm (Ba, Kiros & Hinton 2016, eq. 4; the chapter's encoder, section 4.2),
    with the biased variance:

    .. math::
        \mu = \frac{1}{C}\sum_c x_c, \quad
        \sigma^2 = \frac{1}{C}\sum_c (x_c - \mu)^2, \quad
        y = \gamma \odot \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}} + \beta

    Shapes: x (..., C), gamma (C,), beta (C,) -> y (..., C).
    """
    if v.checking():
        _check(x, gamma, beta, eps)
    mu = x.mean(dim=-1, keepdim=True)                           # (..., 1)
    centered = x - mu                                           # (..., C)
    var = (centered * centered).mean(dim=-1, keepdim=True)      # (..., 1), biased
    rstd = 1.0 / torch.sqrt(var + eps)                          # (..., 1)
    x_hat = centered * rstd                                     # (..., C)
    return gamma * x_hat + beta                                 # (..., C)


def fast_layer_norm(x, gamma, beta, eps=1e-5):
    """The fast path's layer norm: ``torch.nn.functional.layer_norm`` over the last
    axis (one kernel forward, one backward; the same biased variance and eps inside the
    square root as :func:`layer_norm`; under autocast it computes in float32 whatever
    the dtypes of x and gamma). Not exported: :class:`LayerNorm` calls it when
    ``fused``. Shapes: as :func:`layer_norm`."""
    if v.checking():
        _check(x, gamma, beta, eps, same_dtype=not autocasting(x))
    return F.layer_norm(x, x.shape[-1:], gamma, beta, eps)      # (..., C)
