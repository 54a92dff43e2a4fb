r"""Rotary position embedding (RoPE; Su et al. 2021, RoFormer, section 3.2.2, in the element-wise
form of section 3.4.2) — NumPy reference.

Dimension legend: ``x`` is ``(..., T, D)``: T positions of D features (a head's queries
or keys, D even); the tables ``cos``, ``sin`` are ``(T, D/2)``, one angle
:math:`m\theta_i` per position m and pair i (:func:`minillm.core.init.rotary_tables`),
or ``(..., T, D/2)`` broadcastable against x where each sequence has its own positions
(batched generation with left padding).

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

Two layouts are in use, pairing different dimensions with the same angles
:math:`\theta_i = \mathrm{base}^{-2i/D}` (``rope_theta``, 10000 in the paper):

- interleaved, :func:`rope`: pairs :math:`(x_{2i}, x_{2i+1})`, the paper's (section 3.4.2);
- split halves, :func:`rope_half`: pairs :math:`(x_i, x_{i+D/2})`, what Hugging Face
  Llama and Qwen compute with ``rotate_half`` and what their checkpoints' W_q, W_k expect.

They are the same rotation of permuted dimensions: ``rope_half(x[..., p]) ==
rope(x)[..., p]`` with ``p = rope_layout_permutation(D)`` (the even dimensions, then the
odd ones). Permuting the columns of W_Q and W_K (and their biases, and QK-norm's
weights) of every head by p moves a model from one layout to the other without changing
any score, since a dot product does not see a permutation applied to both its vectors.
"""
from typing import NamedTuple

import numpy as np

from ..core import _validate as v

__all__ = [
    "rope", "rope_forward", "rope_backward",
    "rope_half", "rope_half_forward", "rope_half_backward",
    "rope_layout_permutation",
]


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
        _require_table_shape(name, table, x.shape)
    return x, cos, sin


def _require_table_shape(name, table, x_shape):
    """A table (T, D/2), or (..., T, D/2) broadcastable against x (..., T, D): one row of
    positions per sequence, as batched generation gives (each row its own positions)."""
    T, half = x_shape[-2], x_shape[-1] // 2
    if table.ndim <= 2:
        v.require_shape(name, table, (T, half), "(T, D/2) for x (..., T, D)")
        return
    hint = "the rotated x's (..., T, D/2)"
    if tuple(table.shape[-2:]) != (T, half):
        raise ValueError(f"expected {name} of shape (..., {T}, {half}) ((..., T, D/2) for x (..., T, D)), "
                         f"got {tuple(table.shape)}")
    v.require_broadcastable(name, table, tuple(x_shape[:-1]) + (half,), hint)


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


def rope_half_forward(x, cos, sin):
    r"""Rotate each pair :math:`(x_i, x_{i+D/2})` at position m by :math:`m\theta_i`, the
    split-halves layout (Hugging Face's ``q * cos + rotate_half(q) * sin``):

    .. math::
        y_i = x_i\cos m\theta_i - x_{i+D/2}\sin m\theta_i, \qquad
        y_{i+D/2} = x_i\sin m\theta_i + x_{i+D/2}\cos m\theta_i

    Shapes: x (..., T, D), cos (T, D/2), sin (T, D/2) -> y (..., T, D).
    Returns ``(y, RopeCache)``.
    """
    if v.checking():
        x, cos, sin = check_rope(x, cos, sin)
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]                        # (..., T, D/2) each
    y = np.concatenate([x1 * cos - x2 * sin,
                        x1 * sin + x2 * cos], axis=-1)           # (..., T, D)
    return y, RopeCache(cos, sin, x.shape)


def rope_half_backward(dy, cache: RopeCache):
    r"""The rotation back by :math:`-m\theta_i`, as :func:`rope_backward`, on the halves:

    .. math::
        \frac{\partial L}{\partial x_i} = g_i\cos m\theta_i + g_{i+D/2}\sin m\theta_i,
        \qquad
        \frac{\partial L}{\partial x_{i+D/2}} = -g_i\sin m\theta_i + g_{i+D/2}\cos m\theta_i

    Shapes: dy (..., T, D) -> dx (..., T, D).
    """
    cos, sin, shape = cache
    if v.checking():
        dy = np.asarray(dy)
        v.require_shape("dy", dy, shape, "the shape of rope_half's output")
    half = dy.shape[-1] // 2
    g1, g2 = dy[..., :half], dy[..., half:]                      # (..., T, D/2) each
    return np.concatenate([g1 * cos + g2 * sin,
                           -g1 * sin + g2 * cos], axis=-1)       # (..., T, D)


def rope_half(x, cos, sin):
    """:func:`rope_half_forward` without the cache. Shapes: x (..., T, D) -> (..., T, D)."""
    return rope_half_forward(x, cos, sin)[0]


def rope_layout_permutation(d_head, n_heads=1):
    r"""The column order that takes the interleaved layout to the split halves, for
    ``n_heads`` heads of ``d_head`` columns side by side: within each head, the even
    dimensions and then the odd ones,

    .. math:: p = (0, 2, \dots, D-2,\ 1, 3, \dots, D-1), \qquad
              \mathrm{rope\_half}(x_{:, p}) = \mathrm{rope}(x)_{:, p}

    so ``W_Q[:, rope_layout_permutation(D, H)]`` is the half-layout twin of an
    interleaved ``W_Q`` (likewise W_K, b_Q, b_K, and QK-norm's gamma with H = 1);
    ``np.argsort`` of it goes back. Shapes: -> (n_heads * d_head,) int.
    """
    d_head = _check_even_size(d_head, n_heads)
    within = np.concatenate([np.arange(0, d_head, 2), np.arange(1, d_head, 2)])   # (D,)
    return (np.arange(n_heads)[:, None] * d_head + within).reshape(-1)          # (H * D,)


def _check_even_size(d_head, n_heads):
    for name, value in (("d_head", d_head), ("n_heads", n_heads)):
        v.require_int_at_least(name, value, 1)
    if d_head % 2:
        raise ValueError(f"expected an even d_head (RoPE rotates pairs), got {d_head}")
    return int(d_head)
