r"""Activation functions: ReLU, GELU (exact, erf form) and GELU's tanh approximation.

Dimension legend: elementwise ops, ``x`` of any shape ``(...)``; outputs and gradients
have the shape of ``x``.

NumPy has no ``erf``, and SciPy is not a dependency, so this module computes the error
function itself (``_erf``, ``_erfc``), vectorised. Checked against ``math.erf`` and
``math.erfc`` in tests/test_ops_parity.py: erf within 1e-15 relative; erfc within 1e-15
relative for :math:`|z| \ge 2` and 2e-13 just below :math:`z = 2`, where it is
:math:`1 - \mathrm{erf}(z)` with erfc ~ 5e-3 (ample for GELU, compared at 1e-7):

- for :math:`|z| < 2` the everywhere-positive series of Abramowitz & Stegun 7.1.6,
  :math:`\mathrm{erf}(z) = \frac{2}{\sqrt\pi} e^{-z^2} \sum_{n \ge 0}
  \frac{2^n z^{2n+1}}{1 \cdot 3 \cdots (2n+1)}` (35 terms; no cancellation);
- for :math:`z \ge 2` the continued fraction of A&S 7.1.14 (Laplace),
  :math:`\mathrm{erfc}(z) = \frac{e^{-z^2}}{\sqrt\pi}\,
  \cfrac{1}{z + \cfrac{1/2}{z + \cfrac{1}{z + \cfrac{3/2}{z + \cdots}}}}`
  (60 levels, evaluated from the bottom up), and :math:`\mathrm{erfc}(-z) = 2 - \mathrm{erfc}(z)`.

:math:`e^{-z^2}` is computed as :math:`e^{-h^2} e^{-(z-h)(z+h)}` with ``h`` = ``z``
rounded to float32, so that :math:`h^2` is exact: a plain ``np.exp(-z * z)`` loses up to
1e-13 relative precision for large ``z`` from the rounding of ``z * z`` alone.
"""
import math
from typing import NamedTuple

import numpy as np

from .. import _validate as v

__all__ = [
    "relu", "relu_forward", "relu_backward",
    "gelu", "gelu_forward", "gelu_backward",
    "gelu_tanh", "gelu_tanh_forward", "gelu_tanh_backward",
]

_SERIES_TERMS = 35       # enough for |z| < 2: the last term is < 1e-17 of the sum
_CF_LEVELS = 60          # enough for z >= 2: relative error < 1e-15 (see the tests)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_TANH_C = 0.044715  # Hendrycks & Gimpel (2016), section 2


def _exp_neg_square(z):
    h = z.astype(np.float32).astype(np.float64)                 # h * h is exact
    return np.exp(-h * h) * np.exp(-(z - h) * (z + h))


def _erf_series(z):
    """erf for |z| < 2 (A&S 7.1.6): every term positive, so no cancellation."""
    two_z2 = 2.0 * z * z
    term = z.copy()
    total = z.copy()
    for n in range(1, _SERIES_TERMS):
        term = term * two_z2 / (2 * n + 1)
        total = total + term
    return 2.0 / math.sqrt(math.pi) * _exp_neg_square(z) * total


def _erfc_continued_fraction(z):
    """erfc for z >= 2 (A&S 7.1.14), evaluated from the deepest level up."""
    f = z.copy()
    for k in range(_CF_LEVELS, 0, -1):
        f = z + (k / 2.0) / f
    return _exp_neg_square(z) / math.sqrt(math.pi) / f


def _erfc(z):
    """Complementary error function, elementwise, in float64 (accurate in the tails)."""
    z = np.clip(np.asarray(z, dtype=np.float64), -27.0, 27.0)   # erfc(27) < 1e-310
    small = np.abs(z) < 2.0
    out = np.empty_like(z)
    out[small] = 1.0 - _erf_series(z[small])
    tail = _erfc_continued_fraction(np.abs(z[~small]))
    out[~small] = np.where(z[~small] > 0, tail, 2.0 - tail)
    return out


def _erf(z):
    """Error function, elementwise, in float64."""
    z = np.asarray(z, dtype=np.float64)
    small = np.abs(z) < 2.0
    out = np.empty_like(z)
    out[small] = _erf_series(z[small])
    out[~small] = np.sign(z[~small]) * (1.0 - _erfc(np.abs(z[~small])))
    return out


class ActivationCache(NamedTuple):
    x: np.ndarray   # the input, shape (...)


def _check(x):
    x = np.asarray(x)
    v.require_float("x", x)
    return x


def _check_dout(dout, cache, op):
    dout = np.asarray(dout)
    v.require_shape("dout", dout, cache.x.shape, f"the shape of {op}'s output")
    return dout


def relu_forward(x):
    r"""ReLU (chapter, section 4.2, inside the FFN).

    .. math:: \mathrm{ReLU}(x) = \max(0, x)

    Shapes: x (...) -> (...). Returns ``(out, ActivationCache)``.
    """
    x = _check(x)
    return np.where(x > 0, x, np.zeros_like(x)), ActivationCache(x)


def relu_backward(dout, cache: ActivationCache):
    r""":math:`\partial L / \partial x = \partial L / \partial y \cdot [x > 0]`; the gradient
    at exactly 0 is taken as 0, as torch does. Shapes: dout (...) -> dx (...)."""
    dout = _check_dout(dout, cache, "relu")
    return dout * (cache.x > 0)                                 # (...)


def relu(x):
    """ReLU; see :func:`relu_forward`."""
    return relu_forward(x)[0]


def _normal_cdf(x):
    """Phi(x) = erfc(-x / sqrt 2) / 2, in x's dtype: accurate for very negative x,
    where 1 + erf(x / sqrt 2) would cancel to 0."""
    return (0.5 * _erfc(-np.asarray(x, dtype=np.float64) / math.sqrt(2.0))).astype(x.dtype)


def gelu_forward(x):
    r"""GELU, the exact form (Hendrycks & Gimpel 2016, eq. 1; torch's default).

    .. math::
        \mathrm{GELU}(x) = x\,\Phi(x) = \frac{x}{2}\Big(1 + \mathrm{erf}\big(x/\sqrt2\big)\Big)
        = \frac{x}{2}\,\mathrm{erfc}\big(-x/\sqrt2\big)

    Shapes: x (...) -> (...). Returns ``(out, ActivationCache)``.
    """
    x = _check(x)
    return x * _normal_cdf(x), ActivationCache(x)


def gelu_backward(dout, cache: ActivationCache):
    r"""Product rule on :math:`x\Phi(x)`, with :math:`\Phi' = \varphi` the normal density:

    .. math::
        \frac{d}{dx}\mathrm{GELU}(x) = \Phi(x) + x\,\varphi(x),
        \quad \varphi(x) = \frac{e^{-x^2/2}}{\sqrt{2\pi}}

    Shapes: dout (...) -> dx (...).
    """
    dout = _check_dout(dout, cache, "gelu")
    x = cache.x
    phi = np.exp(-0.5 * x * x) / np.asarray(math.sqrt(2.0 * math.pi), dtype=x.dtype)  # (...)
    return dout * (_normal_cdf(x) + x * phi)                    # (...)


def gelu(x):
    """GELU, exact erf form; see :func:`gelu_forward`."""
    return gelu_forward(x)[0]


def gelu_tanh_forward(x):
    r"""GELU's tanh approximation (Hendrycks & Gimpel 2016, section 2; used by GPT-2).

    .. math::
        \mathrm{GELU}_{\tanh}(x) = \frac{x}{2}\Big(1 + \tanh\big(u\big)\Big),
        \quad u = \sqrt{2/\pi}\,\big(x + 0.044715\,x^3\big)

    Shapes: x (...) -> (...). Returns ``(out, ActivationCache)``.
    """
    x = _check(x)
    u = _SQRT_2_OVER_PI * (x + _GELU_TANH_C * x * x * x)        # (...)
    return 0.5 * x * (1.0 + np.tanh(u)), ActivationCache(x)


def gelu_tanh_backward(dout, cache: ActivationCache):
    r"""With :math:`t = \tanh(u)` and :math:`\tanh' = 1 - t^2`:

    .. math::
        \frac{d}{dx}\mathrm{GELU}_{\tanh}(x) = \frac{1 + t}{2}
            + \frac{x}{2}\,(1 - t^2)\,\sqrt{2/\pi}\,\big(1 + 3 \cdot 0.044715\,x^2\big)

    The tanh is recomputed from ``x`` rather than cached. Shapes: dout (...) -> dx (...).
    """
    dout = _check_dout(dout, cache, "gelu_tanh")
    x = cache.x
    t = np.tanh(_SQRT_2_OVER_PI * (x + _GELU_TANH_C * x * x * x))  # (...), recomputed
    du_dx = _SQRT_2_OVER_PI * (1.0 + 3.0 * _GELU_TANH_C * x * x)   # (...)
    return dout * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du_dx)  # (...)


def gelu_tanh(x):
    """GELU, tanh approximation; see :func:`gelu_tanh_forward`."""
    return gelu_tanh_forward(x)[0]
