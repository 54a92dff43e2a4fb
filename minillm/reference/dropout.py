r"""Inverted dropout: drop each entry with probability p, scale the kept ones by 1/(1-p).

Dimension legend: elementwise, ``x`` of any shape ``(...)``.

The keep mask is ``rng.random(x.shape) >= p`` from a ``numpy.random.Generator`` in both
backends, so the same generator state gives the same mask in each.
"""
from typing import NamedTuple, Optional

import numpy as np

from ..core import _validate as v

__all__ = ["dropout", "dropout_forward", "dropout_backward"]


class DropoutCache(NamedTuple):
    keep: Optional[np.ndarray]   # bool (...), None when nothing was dropped
    scale: float                 # 1 / (1 - p)
    shape: tuple


def dropout_forward(x, p, training=True, rng=None):
    r"""Inverted dropout (Srivastava et al. 2014, with the scaling moved to training time):

    .. math::
        m_i = [u_i \ge p],\ u_i \sim \mathcal U[0, 1), \qquad y = \frac{m \odot x}{1 - p}

    so that :math:`\mathbb E[y] = x` and evaluation needs no rescaling. With
    ``training=False`` or ``p == 0`` it returns ``x`` unchanged (the same array).
    ``rng`` is a ``numpy.random.Generator``; None draws from a fresh, unseeded one.
    Shapes: x (...) -> y (...). Returns ``(y, DropoutCache)``.
    """
    if v.checking():
        x = np.asarray(x)
        v.require_float("x", x)
        v.require_probability("p", p)
        if not isinstance(training, (bool, np.bool_)):
            raise ValueError(f"expected training to be True or False, got {training!r}")
        if rng is not None and not isinstance(rng, np.random.Generator):
            raise ValueError(f"expected rng to be a numpy.random.Generator or None, "
                             f"got {type(rng).__name__}")
    if not training or p == 0:
        return x, DropoutCache(None, 1.0, x.shape)
    rng = np.random.default_rng() if rng is None else rng
    keep = rng.random(x.shape) >= p                             # (...) bool
    scale = 1.0 / (1.0 - p)
    return x * keep * scale, DropoutCache(keep, scale, x.shape)  # (...)


def dropout_backward(dy, cache: DropoutCache):
    r"""The same mask and scale: :math:`\partial L/\partial x = m \odot \partial L/\partial y
    \,/\,(1 - p)`. Shapes: dy (...) -> dx (...)."""
    keep, scale, shape = cache
    if v.checking():
        dy = np.asarray(dy)
        v.require_shape("dy", dy, shape, "the shape of dropout's output")
    if keep is None:
        return dy
    return dy * keep * scale                                    # (...)


def dropout(x, p, training=True, rng=None):
    """Inverted dropout; see :func:`dropout_forward`."""
    return dropout_forward(x, p, training, rng)[0]
