r"""Rotary position embedding (RoPE; Su et al. 2021), written with tensor ops; autograd
gives the gradient (the reference writes it by hand: the rotation back).

Dimension legend: x ``(..., T, D)`` (D even), tables ``cos``, ``sin`` ``(T, D/2)``
(:func:`minillm.core.init.rotary_tables`). See ``minillm.reference.rope`` for the formula
and why it helps.
"""
import torch

from ..core import _validate as v

__all__ = ["rope"]


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
        v.require_shape(name, table, (x.shape[-2], x.shape[-1] // 2), "(T, D/2) for x (..., T, D)")


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
