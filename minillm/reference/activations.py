r"""Activation functions: ReLU, GELU (exact, erf form), GELU's tanh approximation and
SiLU (the gate of SwiGLU).

Dimension legend: elementwise ops, ``x`` of any shape ``(...)``; outputs and gradients
have the shape of ``x``.

The exact GELU needs the error function, which NumPy lacks; :mod:`minillm.reference.erf`
computes it (vectorised, to about one float64 ulp).
"""
import math
from typing import NamedTuple

import numpy as np

from ..core import _validate as v
from .erf import erf as _erf, erfc as _erfc   # the names the GELU code (and tests) use

__all__ = [
    "relu", "relu_forward", "relu_backward",
    "gelu", "gelu_forward", "gelu_backward",
    "gelu_tanh", "gelu_tanh_forward", "gelu_tanh_backward",
    "silu", "silu_forward", "silu_backward",
]

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_GELU_TANH_C = 0.044715  # Hendrycks & Gimpel (2016), section 2


class ActivationCache(NamedTuple):
    x: np.ndarray   # the input, shape (...)


def _check(x):
    x = np.asarray(x)
    v.require_float("x", x)
    return x


def _at_infinity(x, out, limit):
    """``out`` with ``limit()`` where ``x`` is +-inf: the formula's limit
    there, where the product the formula is written as would be inf * 0 = NaN. Checked
    with one pass (``np.isinf(...).any()``) and skipped when nothing is infinite, which
    keeps the common, finite case at its old cost (the torch backend checks the same way,
    then, differentiated by autograd, sets the infinite entries aside with ``where``)."""
    inf = np.isinf(x)
    if inf.any():
        return np.where(inf, limit(), out)                      # (...), also for 0-d x
    return out


def _check_dout(dout, cache, op):
    dout = np.asarray(dout)
    v.require_shape("dout", dout, cache.x.shape, f"the shape of {op}'s output")
    return dout


def relu_forward(x):
    r"""ReLU (chapter, section 4.2, inside the FFN).

    .. math:: \mathrm{ReLU}(x) = \max(0, x)

    NaN stays NaN, as in ``torch.relu``: the test is written ``x <= 0`` (False for NaN),
    so a NaN is passed through rather than replaced by 0, which would hide it.
    Shapes: x (...) -> (...). Returns ``(out, ActivationCache)``.
    """
    if v.checking():
        x = _check(x)
    return np.where(x <= 0, np.zeros_like(x), x), ActivationCache(x)


def relu_backward(dout, cache: ActivationCache):
    r""":math:`\partial L / \partial x = \partial L / \partial y \cdot [x > 0]`; the gradient
    at exactly 0 is taken as 0, as torch does. Written as a selection, as torch's
    ``threshold_backward``: 0 where :math:`x \le 0` (even if ``dout`` is NaN or inf there,
    where a product would give NaN), ``dout`` elsewhere, including where x is NaN.
    Shapes: dout (...) -> dx (...)."""
    if v.checking():
        dout = _check_dout(dout, cache, "relu")
    return np.where(cache.x <= 0, np.zeros_like(dout), dout)    # (...)


def relu(x):
    """ReLU; see :func:`relu_forward`."""
    return relu_forward(x)[0]


class GeluCache(NamedTuple):
    x: np.ndarray     # the input, shape (...)
    cdf: np.ndarray   # Phi(x), shape (...): saved so that backward need not recompute erfc


def _normal_cdf(x):
    """Phi(x) = erfc(-x / sqrt 2) / 2, in x's dtype: accurate for very negative x,
    where 1 + erf(x / sqrt 2) would cancel to 0."""
    return (0.5 * _erfc(x * -_INV_SQRT_2)).astype(x.dtype, copy=False)  # (...)


def gelu_forward(x):
    r"""GELU, the exact form (Hendrycks & Gimpel 2016, eq. 1; torch's default).

    .. math::
        \mathrm{GELU}(x) = x\,\Phi(x) = \frac{x}{2}\Big(1 + \mathrm{erf}\big(x/\sqrt2\big)\Big)
        = \frac{x}{2}\,\mathrm{erfc}\big(-x/\sqrt2\big)

    At :math:`x = \pm\infty` the value is the formula's limit, :math:`+\infty` and 0 (the
    product would give :math:`-\infty \cdot 0` = NaN at :math:`-\infty`): the infinite
    entries get ReLU's value, their limit (``_at_infinity``), as in the torch backend.
    Shapes: x (...) -> (...). Returns ``(out, GeluCache)`` (``x`` and :math:`\Phi(x)`).
    """
    if v.checking():
        x = _check(x)
    cdf = _normal_cdf(x)                                        # (...)
    out = _at_infinity(x, x * cdf, lambda: relu(x))          # (...), +inf -> +inf, -inf -> 0
    return out, GeluCache(x, cdf)


def gelu_backward(dout, cache: GeluCache):
    r"""Product rule on :math:`x\Phi(x)`, with :math:`\Phi' = \varphi` the normal density:

    .. math::
        \frac{d}{dx}\mathrm{GELU}(x) = \Phi(x) + x\,\varphi(x),
        \quad \varphi(x) = \frac{e^{-x^2/2}}{\sqrt{2\pi}}

    :math:`\Phi(x)` comes from the forward's cache. At :math:`x = \pm\infty` the slope is
    its limit, 1 and 0 (:math:`x\varphi(x)` would be :math:`\infty \cdot 0` = NaN), applied
    as ReLU's backward applies it: a selection, so an infinite ``dout`` at :math:`-\infty`
    gives 0 (what autograd gives through the torch backend's ``where``).
    Shapes: dout (...) -> dx (...).
    """
    if v.checking():
        dout = _check_dout(dout, cache, "gelu")
    x = cache.x
    phi = np.exp(-0.5 * x * x) * _INV_SQRT_2PI                  # (...)
    dx = dout * (cache.cdf + x * phi)                           # (...)
    return _at_infinity(x, dx, lambda: relu_backward(dout, cache))  # (...), slopes 1, 0 at +-inf


def gelu(x):
    """GELU, exact erf form; see :func:`gelu_forward`."""
    return gelu_forward(x)[0]


def gelu_tanh_forward(x):
    r"""GELU's tanh approximation (Hendrycks & Gimpel 2016, section 2; used by GPT-2).

    .. math::
        \mathrm{GELU}_{\tanh}(x) = \frac{x}{2}\Big(1 + \tanh\big(u\big)\Big),
        \quad u = \sqrt{2/\pi}\,\big(x + 0.044715\,x^3\big)

    At :math:`x = \pm\infty` the value is the formula's limit, :math:`+\infty` and 0
    (the product would give :math:`-\infty \cdot 0` = NaN at :math:`-\infty`), as in
    :func:`gelu_forward`. Shapes: x (...) -> (...). Returns ``(out, ActivationCache)``.
    """
    if v.checking():
        x = _check(x)
    u = _SQRT_2_OVER_PI * (x + _GELU_TANH_C * x * x * x)        # (...)
    out = 0.5 * x * (1.0 + np.tanh(u))                          # (...)
    return _at_infinity(x, out, lambda: relu(x)), ActivationCache(x)


def gelu_tanh_backward(dout, cache: ActivationCache):
    r"""With :math:`t = \tanh(u)` and :math:`\tanh' = 1 - t^2`:

    .. math::
        \frac{d}{dx}\mathrm{GELU}_{\tanh}(x) = \frac{1 + t}{2}
            + \frac{x}{2}\,(1 - t^2)\,\sqrt{2/\pi}\,\big(1 + 3 \cdot 0.044715\,x^2\big)

    The tanh is recomputed from ``x`` rather than cached. At :math:`x = \pm\infty` the
    slope is its limit, 1 and 0, as in :func:`gelu_backward`.
    Shapes: dout (...) -> dx (...).
    """
    if v.checking():
        dout = _check_dout(dout, cache, "gelu_tanh")
    x = cache.x
    t = np.tanh(_SQRT_2_OVER_PI * (x + _GELU_TANH_C * x * x * x))  # (...), recomputed
    du_dx = _SQRT_2_OVER_PI * (1.0 + 3.0 * _GELU_TANH_C * x * x)   # (...)
    dx = dout * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du_dx)  # (...)
    return _at_infinity(x, dx, lambda: relu_backward(dout, cache))  # (...), slopes 1, 0 at +-inf


def gelu_tanh(x):
    """GELU, tanh approximation; see :func:`gelu_tanh_forward`."""
    return gelu_tanh_forward(x)[0]


class SiluCache(NamedTuple):
    x: np.ndarray     # the input, shape (...)
    s: np.ndarray     # sigmoid(x), shape (...): saved for the backward


def _sigmoid(x):
    r""":math:`\sigma(x) = 1/(1 + e^{-x})`, written so that no exp overflows: with
    :math:`e = e^{-|x|} \le 1`, :math:`\sigma(x) = 1/(1+e)` for x >= 0 and :math:`e/(1+e)`
    below. NaN stays NaN. Shapes: (...) -> (...)."""
    e = np.exp(np.where(x >= 0, -x, x))                         # (...), e^{-|x|} in (0, 1]
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype, copy=False)


def silu_forward(x):
    r"""SiLU, also called Swish-1 (Elfwing et al. 2017; Ramachandran et al. 2017), the
    gate of SwiGLU (Shazeer 2020, eq. 5).

    .. math:: \mathrm{SiLU}(x) = x\,\sigma(x) = \frac{x}{1 + e^{-x}}

    At :math:`x = \pm\infty` the value is the formula's limit, :math:`+\infty` and 0
    (the product would give :math:`-\infty \cdot 0` = NaN at :math:`-\infty`, which
    torch's ``F.silu`` gives): the infinite entries get ReLU's value, their limit
    (``_at_infinity``), as for GELU and in the torch backend.
    Shapes: x (...) -> (...). Returns ``(out, SiluCache)`` (``x`` and :math:`\sigma(x)`).
    """
    if v.checking():
        x = _check(x)
    s = _sigmoid(x)                                             # (...)
    out = _at_infinity(x, x * s, lambda: relu(x))               # (...), +inf -> +inf, -inf -> 0
    return out, SiluCache(x, s)


def silu_backward(dout, cache: SiluCache):
    r"""Product rule on :math:`x\sigma(x)`, with :math:`\sigma' = \sigma(1 - \sigma)`:

    .. math:: \frac{d}{dx}\mathrm{SiLU}(x) = \sigma(x)\,\big(1 + x\,(1 - \sigma(x))\big)

    At :math:`x = \pm\infty` the slope is its limit, 1 and 0 (:math:`x(1 - \sigma(x))`
    would be :math:`\infty \cdot 0` = NaN at :math:`+\infty`, and :math:`\sigma(x)\,x` at
    :math:`-\infty`), applied as ReLU's backward applies it, as in :func:`gelu_backward`.
    Shapes: dout (...) -> dx (...).
    """
    if v.checking():
        dout = _check_dout(dout, cache, "silu")
    x, s = cache
    dx = dout * (s * (1.0 + x * (1.0 - s)))                     # (...)
    return _at_infinity(x, dx, lambda: relu_backward(dout, cache))  # (...), slopes 1, 0 at +-inf


def silu(x):
    """SiLU; see :func:`silu_forward`."""
    return silu_forward(x)[0]


# The one place the reference maps an activation name (``minillm.core.config.ACTIVATIONS``,
# the names a ModelConfig and the CLI accept) to its forward and backward; the
# feed-forward network and the models look the name up here.
ACTIVATIONS = {
    "relu": (relu_forward, relu_backward),
    "gelu": (gelu_forward, gelu_backward),
    "gelu_tanh": (gelu_tanh_forward, gelu_tanh_backward),
    "silu": (silu_forward, silu_backward),
}
