r"""Rotary position embedding (RoPE; Su et al. 2021, RoFormer, section 3.2.2, in the element-wise
form of section 3.4.2) — NumPy reference.

Dimension legend: ``x`` is ``(..., T, D)``: T positions of D features (a head's queries
or keys, D even); the tables ``cos``, ``sin`` are ``(T, D/2)``, one angle
:math:`m\theta_i` per position m and pair i (:func:`minillm.core.init.rotary_tables`).

The chapter gives the model its positions by adding a vector to each embedding
(section 2.3). RoPE adds nothing: it rotates every pair of dimensions
:math:`(x_{2i}, x_{2i+1})` of a query or key at position m by the angle
:math:`m\theta_i`,

.. math::
    \begin{pmatrix} y_{2i} \\ y_{2i+1} \end{pmatrix} =
    \begin{pmatrix} \cos m\theta_i & -\sin m\theta_i \\
                    \sin m\theta_i & \cos m\theta_i \end{pmatrix}
    \begin{pmatrix} x_{2i} \\ x_{2i+1} \end{pmatrix},

so that :math:`R_m q \cdot R_n k = q \cdot R_{n-m} k`: an attention score depends on the
two tokens and on their offset n - m, never on where they stand. "The subject of my own
sentence, three tokens back" is then one pattern for every sentence, which a model with
absolute positions must learn anew at each place (benchmarks/README.md, question
answering).
"""
from typing import NamedTuple

import numpy as np

from ..core import _validate as v

__all__ = ["rope", "rope_forward", "rope_backward"]


class RopeCache(NamedTuple):
    cos: np.ndarray    # (T, D/2)
    sin: np.ndarray    # (T, D/2)
    shape: tuple       # x's shape, (..., T, D)


def check_rope(x, cos, sin):
    """Validate RoPE's input and tables (shared by both backends' checks); returns arrays."""
    x, cos, sin = np.asarray(x), np.asarray(cos), np.asarray(sin)
    v.require_float("x", x)
    v.require_ndim_at_least("x", x, 2)
    if x.shape[-1] % 2:
        raise ValueError(f"expected x with an even last dimension (RoPE rotates pairs), got shape {x.shape}")
    for name, table in (("cos", cos), ("sin", sin)):
        v.require_float(name, table)
        v.require_same_dtype(name, table, "x", x)
        v.require_shape(name, table, (x.shape[-2], x.shape[-1] // 2), "(T, D/2) for x (..., T, D)")
    return x, cos, sin


def rope_forward(x, cos, sin):
    r"""Rotate each pair :math:`(x_{2i}, x_{2i+1})` at position m by :math:`m\theta_i`:

    .. math::
        y_{2i} = x_{2i}\cos m\theta_i - x_{2i+1}\sin m\theta_i, \qquad
        y_{2i+1} = x_{2i}\sin m\theta_i + x_{2i+1}\cos m\theta_i

    Shapes: x (..., T, D), cos (T, D/2), sin (T, D/2) -> y (..., T, D).
    Returns ``(y, RopeCache)``.
    """
    if v.checking():
        x, cos, sin = check_rope(x, cos, sin)
    even, odd = x[..., 0::2], x[..., 1::2]                       # (..., T, D/2) each
    y = np.stack([even * cos - odd * sin,
                  even * sin + odd * cos], axis=-1)              # (..., T, D/2, 2)
    return y.reshape(x.shape), RopeCache(cos, sin, x.shape)      # (..., T, D)


def rope_backward(dy, cache: RopeCache):
    r"""The rotation is orthogonal, so its gradient is the rotation back by
    :math:`-m\theta_i` (the transposed matrix); the tables are constants:

    .. math::
        \frac{\partial L}{\partial x_{2i}} = g_{2i}\cos m\theta_i + g_{2i+1}\sin m\theta_i,
        \qquad
        \frac{\partial L}{\partial x_{2i+1}} = -g_{2i}\sin m\theta_i + g_{2i+1}\cos m\theta_i

    with :math:`g = \partial L/\partial y`. Shapes: dy (..., T, D) -> dx (..., T, D).
    """
    cos, sin, shape = cache
    if v.checking():
        dy = np.asarray(dy)
        v.require_shape("dy", dy, shape, "the shape of rope's output")
    g_even, g_odd = dy[..., 0::2], dy[..., 1::2]                 # (..., T, D/2) each
    dx = np.stack([g_even * cos + g_odd * sin,
                   -g_even * sin + g_odd * cos], axis=-1)        # (..., T, D/2, 2)
    return dx.reshape(dy.shape)                                  # (..., T, D)


def rope(x, cos, sin):
    """:func:`rope_forward` without the cache. Shapes: x (..., T, D) -> (..., T, D)."""
    return rope_forward(x, cos, sin)[0]
