"""Softmax and log-softmax, with their hand-written gradients.

Dimension legend: ``x`` has any shape ``(..., C)``; the normalised axis (``axis``,
default the last one) has ``C`` entries. Every output has the shape of ``x``.

Both forwards subtract the maximum along the axis first. This changes nothing
mathematically (softmax is invariant to adding a constant to every entry) but keeps
``exp`` from overflowing, so logits of 1e4 stay finite.

Non-finite logits behave as in ``torch.softmax`` / ``torch.log_softmax``: a -inf entry
gets probability 0 (log-probability -inf) and the rest of its row is unaffected; a row
with a NaN or a +inf, or with every entry -inf (0/0), is NaN throughout. Only attention
turns a row with nothing to attend to into zeros (``minillm.reference.attention``).
"""
from typing import NamedTuple

import numpy as np

from ..core import _validate as v

__all__ = [
    "softmax", "softmax_forward", "softmax_backward",
    "log_softmax", "log_softmax_forward", "log_softmax_backward",
]


class SoftmaxCache(NamedTuple):
    y: np.ndarray   # softmax(x), shape of x
    axis: int       # the normalised axis, as given (e.g. -1)


def _check(x, axis):
    x = np.asarray(x)
    v.require_float("x", x)
    v.require_ndim_at_least("x", x, 1)
    v.require_nonempty_axis("x", x, v.require_axis("x", x, axis))
    return x


def softmax_forward(x, axis=-1):
    r"""Softmax along ``axis`` (chapter, section 4.1).

    .. math::
        \mathrm{softmax}(x)_i = \frac{e^{x_i - m}}{\sum_j e^{x_j - m}}, \quad m = \max_j x_j

    Shapes: x (..., C) -> y (..., C). Returns ``(y, SoftmaxCache)``.
    """
    if v.checking():
        x = _check(x, axis)
    shifted = x - x.max(axis=axis, keepdims=True)               # (..., C), max entry 0
    e = np.exp(shifted)                                         # (..., C), in (0, 1]
    y = e / e.sum(axis=axis, keepdims=True)                     # (..., C)
    return y, SoftmaxCache(y, axis)


def softmax_backward(dy, cache: SoftmaxCache):
    r"""Gradient of softmax: the Jacobian is :math:`\mathrm{diag}(y) - y y^\top`, so

    .. math::
        \frac{\partial L}{\partial x_i} = y_i \Big( \frac{\partial L}{\partial y_i}
            - \sum_j \frac{\partial L}{\partial y_j} y_j \Big)

    Shapes: dy (..., C) -> dx (..., C).
    """
    y, axis = cache
    if v.checking():
        dy = np.asarray(dy)
        v.require_shape("dy", dy, y.shape, "the shape of softmax's output")
    return y * (dy - (dy * y).sum(axis=axis, keepdims=True))     # (..., C)


def softmax(x, axis=-1):
    """Softmax along ``axis``; see :func:`softmax_forward`."""
    return softmax_forward(x, axis)[0]


def log_softmax_forward(x, axis=-1):
    r"""Log-softmax along ``axis``, computed with log-sum-exp.

    .. math::
        \log \mathrm{softmax}(x)_i = x_i - m - \log \sum_j e^{x_j - m},
        \quad m = \max_j x_j

    Never takes the log of a softmax that underflowed to 0, so it stays finite for
    logits of any size. Shapes: x (..., C) -> (..., C). Returns ``(out, SoftmaxCache)``;
    the cache holds ``softmax(x) = exp(out)``, which the backward needs.
    """
    if v.checking():
        x = _check(x, axis)
    shifted = x - x.max(axis=axis, keepdims=True)               # (..., C)
    log_z = np.log(np.exp(shifted).sum(axis=axis, keepdims=True))  # (..., 1)
    out = shifted - log_z                                       # (..., C)
    return out, SoftmaxCache(np.exp(out), axis)


def log_softmax_backward(dout, cache: SoftmaxCache):
    r"""Gradient of log-softmax: :math:`\partial \log y_i / \partial x_j = \delta_{ij} - y_j`, so

    .. math::
        \frac{\partial L}{\partial x_j} = \frac{\partial L}{\partial o_j}
            - y_j \sum_i \frac{\partial L}{\partial o_i}

    Shapes: dout (..., C) -> dx (..., C).
    """
    y, axis = cache
    if v.checking():
        dout = np.asarray(dout)
        v.require_shape("dout", dout, y.shape, "the shape of log_softmax's output")
    return dout - y * dout.sum(axis=axis, keepdims=True)        # (..., C)


def log_softmax(x, axis=-1):
    """Log-softmax along ``axis``; see :func:`log_softmax_forward`."""
    return log_softmax_forward(x, axis)[0]
