r"""Activation functions: ReLU, GELU (exact, erf form) and GELU's tanh approximation,
written with tensor ops; autograd gives the gradients.

Dimension legend: elementwise ops, ``x`` of any shape ``(...)``.
"""
import math

import torch

from .. import _validate as v
from .linear import is_float_tensor

__all__ = ["relu", "gelu", "gelu_tanh"]

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_GELU_TANH_C = 0.044715  # Hendrycks & Gimpel (2016), section 2


def _check(x):
    if is_float_tensor(x):  # the common case cheaply (see linear.py)
        return
    v.require_tensor("x", x)
    v.require_float("x", x)


def relu(x):
    r"""ReLU (chapter, section 4.2, inside the FFN).

    .. math:: \mathrm{ReLU}(x) = \max(0, x)

    Written with ``where`` so that the gradient at exactly 0 is 0, as in the reference.
    Shapes: x (...) -> (...).
    """
    _check(x)
    return torch.where(x > 0, x, 0.0)                           # (...)


def gelu(x):
    r"""GELU, the exact form (Hendrycks & Gimpel 2016, eq. 1; torch's default).

    .. math::
        \mathrm{GELU}(x) = x\,\Phi(x) = \frac{x}{2}\,\mathrm{erfc}\big(-x/\sqrt2\big)

    ``erfc(-z)`` rather than ``1 + erf(z)``: the same value, without the cancellation
    to 0 for very negative x (the reference computes it the same way).

    Computed with :math:`u = -x/\sqrt2`, so that :math:`x/2 = -u/\sqrt2`:

    .. math:: \mathrm{GELU}(x) = -\frac{1}{\sqrt2}\, u\, \mathrm{erfc}(u)

    the same product, but autograd keeps only ``u`` and ``erfc(u)`` for the backward
    (``x/2`` and ``x`` are never stored), and the constants are multiplications, not
    a negation and a division: on the CPU each (..., d_ff) temporary costs about as
    much as the arithmetic on it.
    Shapes: x (...) -> (...).
    """
    _check(x)
    u = x * -_INV_SQRT_2                                        # (...), u = -x / sqrt(2)
    return u * torch.special.erfc(u) * -_INV_SQRT_2             # (...)


def gelu_tanh(x):
    r"""GELU's tanh approximation (Hendrycks & Gimpel 2016, section 2; used by GPT-2).

    .. math::
        \mathrm{GELU}_{\tanh}(x) = \frac{x}{2}\Big(1 + \tanh\big(\sqrt{2/\pi}\,
            (x + 0.044715\,x^3)\big)\Big) = x\,\sigma(2u),
        \quad u = \sqrt{2/\pi}\,(x + 0.044715\,x^3)

    computed in the sigmoid form, since :math:`\tfrac12(1 + \tanh u) = \sigma(2u)`:
    one kernel fewer, no cancellation of :math:`1 + \tanh u` to 0 for very negative
    x, and torch's sigmoid kernel measured 10x faster than its float32 tanh (which
    goes through MKL's vector math library) on the test machine.
    Shapes: x (...) -> (...).
    """
    _check(x)
    u = _SQRT_2_OVER_PI * (x + _GELU_TANH_C * x * x * x)        # (...)
    return x * torch.sigmoid(2.0 * u)                           # (...)
