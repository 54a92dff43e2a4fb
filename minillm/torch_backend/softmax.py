r"""Softmax and log-softmax, written with tensor ops; autograd gives the gradients.

Dimension legend: ``x`` has any shape ``(..., C)``; the normalised axis (``axis``,
default the last one) has ``C`` entries. Every output has the shape of ``x``.

The same lines as ``minillm.reference.softmax``. The maximum is subtracted first, as in
the reference, and it is detached: softmax does not depend on the shift, so its true
gradient through the max is exactly zero, and the reference's hand-written backward
treats it as a constant too. Detaching also means that no gradient ever depends on
how a torch release splits the gradient of a max between tied entries.
"""
import torch

from ..core import _validate as v

__all__ = ["softmax", "log_softmax"]


def _check(x, axis):
    v.require_tensor("x", x)
    v.require_float("x", x)
    v.require_ndim_at_least("x", x, 1)
    v.require_nonempty_axis("x", x, v.require_axis("x", x, axis))


def softmax(x, axis=-1):
    r"""Softmax along ``axis`` (chapter, section 4.1).

    .. math::
        \mathrm{softmax}(x)_i = \frac{e^{x_i - m}}{\sum_j e^{x_j - m}}, \quad m = \max_j x_j

    Shapes: x (..., C) -> (..., C).
    """
    if v.checking():
        _check(x, axis)
    shifted = x - x.amax(dim=axis, keepdim=True).detach()      # (..., C), max entry 0
    e = torch.exp(shifted)                                      # (..., C), in (0, 1]
    return e / e.sum(dim=axis, keepdim=True)                    # (..., C)


def log_softmax(x, axis=-1):
    r"""Log-softmax along ``axis``, computed with log-sum-exp.

    .. math::
        \log \mathrm{softmax}(x)_i = x_i - m - \log \sum_j e^{x_j - m},
        \quad m = \max_j x_j

    Never takes the log of a softmax that underflowed to 0, so it stays finite for
    logits of any size. Shapes: x (..., C) -> (..., C).
    """
    if v.checking():
        _check(x, axis)
    shifted = x - x.amax(dim=axis, keepdim=True).detach()      # (..., C)
    log_z = torch.log(torch.exp(shifted).sum(dim=axis, keepdim=True))  # (..., 1)
    return shifted - log_z                                      # (..., C)
