r"""Rotary position embedding (RoPE; Su et al. 2021), written with tensor ops; autograd
gives the gradient (the reference writes it by hand: the rotation back).

Dimension legend: x ``(..., T, D)`` (D even), tables ``cos``, ``sin`` ``(T, D/2)``
(:func:`minillm.core.init.rotary_tables`), or ``(..., T, D/2)`` broadcastable against x
(each sequence its own positions). See ``minillm.reference.rope`` for the formula
and why it helps, and for the two layouts (:func:`rope`, interleaved pairs; :func:`rope_half`,
split halves) and the permutation between them.
"""
import torch

from ..core import _validate as v

__all__ = ["rope", "rope_half", "rope_layout_permutation"]


def _check(x, cos, sin):
    """Validate RoPE's input and tables, as the reference's ``check_rope``."""
    v.require_tensor("x", x)
    v.require_float("x", x)
    v.require_ndim_at_least("x", x, 2)
    if x.shape[-1] % 2:
        raise ValueError(f"expected x with an even last dimension (RoPE rotates pairs), "
                         f"got shape {tuple(x.shape)}")
    for name, table in (("cos", cos), ("sin", sin)):
        v.require_tensor(name, table)
        v.require_float(name, table)
        v.require_same_dtype(name, table, "x", x)
        _require_table_shape(name, table, tuple(x.shape))


def _require_table_shape(name, table, x_shape):
    """A table (T, D/2), or (..., T, D/2) broadcastable against x (..., T, D), as the reference."""
    T, half = x_shape[-2], x_shape[-1] // 2
    if table.ndim <= 2:
        v.require_shape(name, table, (T, half), "(T, D/2) for x (..., T, D)")
        return
    hint = "the rotated x's (..., T, D/2)"
    if tuple(table.shape[-2:]) != (T, half):
        raise ValueError(f"expected {name} of shape (..., {T}, {half}) ((..., T, D/2) for x (..., T, D)), "
                         f"got {tuple(table.shape)}")
    v.require_broadcastable(name, table, tuple(x_shape[:-1]) + (half,), hint)


def rope(x, cos, sin):
    r"""Rotate each pair :math:`(x_{2i}, x_{2i+1})` at position m by :math:`m\theta_i`:

    .. math::
        y_{2i} = x_{2i}\cos m\theta_i - x_{2i+1}\sin m\theta_i, \qquad
        y_{2i+1} = x_{2i}\sin m\theta_i + x_{2i+1}\cos m\theta_i

    Shapes: x (..., T, D), cos (T, D/2), sin (T, D/2) -> y (..., T, D).
    """
    if v.checking():
        _check(x, cos, sin)
    even, odd = x[..., 0::2], x[..., 1::2]                       # (..., T, D/2) each
    y = torch.stack([even * cos - odd * sin,
                     even * sin + odd * cos], dim=-1)            # (..., T, D/2, 2)
    return y.flatten(-2)                                         # (..., T, D)


def rope_half(x, cos, sin):
    r"""Rotate each pair :math:`(x_i, x_{i+D/2})` at position m by :math:`m\theta_i`, the
    split-halves layout (Hugging Face's ``q * cos + rotate_half(q) * sin``):

    .. math::
        y_i = x_i\cos m\theta_i - x_{i+D/2}\sin m\theta_i, \qquad
        y_{i+D/2} = x_i\sin m\theta_i + x_{i+D/2}\cos m\theta_i

    Shapes: x (..., T, D), cos (T, D/2), sin (T, D/2) -> y (..., T, D).
    """
    if v.checking():
        _check(x, cos, sin)
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]                        # (..., T, D/2) each
    return torch.cat([x1 * cos - x2 * sin,
                      x1 * sin + x2 * cos], dim=-1)              # (..., T, D)


def rope_layout_permutation(d_head, n_heads=1):
    r"""The column order that takes the interleaved layout to the split halves, head by
    head: :math:`p = (0, 2, \dots, D-2,\ 1, 3, \dots, D-1)`, so that
    ``rope_half(x[..., p]) == rope(x)[..., p]``; see ``minillm.reference.rope``.
    Shapes: -> (n_heads * d_head,) int64 tensor.
    """
    for name, value in (("d_head", d_head), ("n_heads", n_heads)):
        v.require_int_at_least(name, value, 1)
    if d_head % 2:
        raise ValueError(f"expected an even d_head (RoPE rotates pairs), got {d_head}")
    within = torch.cat([torch.arange(0, d_head, 2), torch.arange(1, d_head, 2)])   # (D,)
    return (torch.arange(n_heads)[:, None] * d_head + within).reshape(-1)        # (H * D,)
