r"""Activation functions: ReLU, GELU (exact, erf form), GELU's tanh approximation and
SiLU, written with tensor ops; autograd gives the gradients.

Dimension legend: elementwise ops, ``x`` of any shape ``(...)``.
"""
import math

import torch
import torch.nn.functional as F

from ..core import _validate as v

__all__ = ["relu", "gelu", "gelu_tanh", "silu"]

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_GELU_TANH_C = 0.044715  # Hendrycks & Gimpel (2016), section 2


def _check(x):
    v.require_tensor("x", x)
    v.require_float("x", x)


def relu(x):
    r"""ReLU (chapter, section 4.2, inside the FFN).

    .. math:: \mathrm{ReLU}(x) = \max(0, x)

    Written with ``where``, as in the reference: the gradient at exactly 0 is 0 (the
    selection passes none to a value that was replaced), and a NaN stays NaN, as in
    ``torch.relu`` (``x <= 0`` is False for NaN).
    Shapes: x (...) -> (...).
    """
    if v.checking():
        _check(x)
    return torch.where(x <= 0, 0.0, x)                          # (...)


def gelu(x):
    r"""GELU, the exact form (Hendrycks & Gimpel 2016, eq. 1; torch's default).

    .. math::
        \mathrm{GELU}(x) = x\,\Phi(x) = \frac{x}{2}\Big(1 + \mathrm{erf}\big(x/\sqrt2\big)\Big)
        = \frac{x}{2}\,\mathrm{erfc}\big(-x/\sqrt2\big)

    ``erfc(-z)`` rather than ``1 + erf(z)``: the same value, without the cancellation
    to 0 for very negative x (the reference computes it the same way). At
    :math:`x = \pm\infty` the value is the formula's limit, :math:`+\infty` and 0, with
    slopes 1 and 0: the infinite entries are set aside (``x_fin``) so that autograd never
    multiplies :math:`\infty` by 0, and their limit, ReLU's value, is put back (the reference
    puts the same limits in where x is infinite).
    Shapes: x (...) -> (...).
    """
    if v.checking():
        _check(x)
    return _at_infinity(x, lambda z: z * (0.5 * torch.special.erfc(z * -_INV_SQRT_2)))  # (...), x Phi(x)


def gelu_tanh(x):
    r"""GELU's tanh approximation (Hendrycks & Gimpel 2016, section 2; used by GPT-2).

    .. math::
        \mathrm{GELU}_{\tanh}(x) = \frac{x}{2}\Big(1 + \tanh\big(u\big)\Big),
        \quad u = \sqrt{2/\pi}\,\big(x + 0.044715\,x^3\big)

    At :math:`x = \pm\infty` the value is the formula's limit, as in :func:`gelu`.
    Shapes: x (...) -> (...).
    """
    if v.checking():
        _check(x)
    return _at_infinity(x, _gelu_tanh_formula)                  # (...)


def _gelu_tanh_formula(x):
    u = _SQRT_2_OVER_PI * (x + _GELU_TANH_C * x * x * x)        # (...)
    return 0.5 * x * (1.0 + torch.tanh(u))                      # (...)


def _at_infinity(x, formula):
    """``formula(x)`` with the formula's limit, ReLU's value (+inf at +inf, 0 at -inf),
    where ``x`` is +-inf, as the reference's ``_at_infinity``: checked with one pass and
    skipped when nothing is infinite, so the common, finite case costs what the formula
    costs (on a GPU the check is a sync: this is the explicit path, not the fast one).
    Otherwise the infinite entries are set aside (``formula`` sees 0 there), so that
    autograd never multiplies inf by 0, and the limit is put back, with slopes 1 and 0."""
    inf = torch.isinf(x)                                        # (...), no gradient
    if not bool(inf.any()):
        return formula(x)                                       # (...)
    x_fin = torch.where(inf, 0.0, x)                            # (...), +-inf -> 0
    limit = torch.where(x > 0, x, 0.0)                          # (...), +inf -> +inf, -inf -> 0
    return torch.where(inf, limit, formula(x_fin))              # (...)


def silu(x):
    r"""SiLU (Swish-1), the gate of SwiGLU (Shazeer 2020, eq. 5).

    .. math:: \mathrm{SiLU}(x) = x\,\sigma(x) = \frac{x}{1 + e^{-x}}

    :math:`\sigma` is ``torch.sigmoid``, torch's logistic function, as :func:`gelu` takes
    :math:`\Phi` from ``torch.special.erfc`` where the reference writes its own (its
    ``_sigmoid``: NumPy has none); its backward is :math:`\sigma(1 - \sigma)`, the
    reference's. At :math:`x = \pm\infty` the value is the formula's limit, :math:`+\infty`
    and 0, with slopes 1 and 0, as in :func:`gelu`: the infinite entries are set aside
    (``x_fin``) so that autograd never multiplies :math:`\infty` by 0, and ReLU's value is
    put back (the reference puts the same limits in where x is infinite).
    Shapes: x (...) -> (...).
    """
    if v.checking():
        _check(x)
    return _at_infinity(x, lambda z: z * torch.sigmoid(z))      # (...)


# ----------------------------------------------------------------------------------------
# the fast path (not exported): torch's own kernels, the same functions


def fast_relu(x):
    """``torch.nn.functional.relu``. Its backward passes the gradient where the output
    is > 0 (torch's ``threshold_backward``), so the derivative at exactly 0 is 0, the
    same ``[x > 0]`` as :func:`relu` (tests/ops/test_fast_path.py checks it at 0 and -0)."""
    if v.checking():
        _check(x)
    return F.relu(x)                                            # (...)


def fast_gelu(x):
    """``torch.nn.functional.gelu(x, approximate='none')``: the exact erf form of :func:`gelu`."""
    if v.checking():
        _check(x)
    return F.gelu(x, approximate="none")                        # (...)


def fast_gelu_tanh(x):
    """``torch.nn.functional.gelu(x, approximate='tanh')``: the same tanh form as :func:`gelu_tanh`."""
    if v.checking():
        _check(x)
    return F.gelu(x, approximate="tanh")                        # (...)


def fast_silu(x):
    r"""``torch.nn.functional.silu``: the same :math:`x\sigma(x)` as :func:`silu`."""
    if v.checking():
        _check(x)
    return F.silu(x)                                            # (...)


# The one place this backend maps an activation name (``minillm.core.config.ACTIVATIONS``, the
# names a ModelConfig and the CLI accept) to its function: the explicit path's formula and
# the fast path's torch kernel. The feed-forward network and the models look names up here.
ACTIVATIONS = {"relu": relu, "gelu": gelu, "gelu_tanh": gelu_tanh, "silu": silu}
FAST_ACTIVATIONS = {"relu": fast_relu, "gelu": fast_gelu, "gelu_tanh": fast_gelu_tanh,
                    "silu": fast_silu}
