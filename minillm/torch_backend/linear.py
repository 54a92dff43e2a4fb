r"""The affine map :math:`y = xW + b`, with ``W`` stored as the formula writes it.

Dimension legend: ``d_in`` input features, ``d_out`` output features, ``...`` any
leading dimensions. x ``(..., d_in)``, W ``(d_in, d_out)``, b ``(d_out,)`` or None.
"""
from .. import _validate as v

__all__ = ["linear"]


def check_linear(x, W, b, names=("x", "W", "b")):
    """Validate one affine map's tensors (shared with feed_forward)."""
    x_name, W_name, b_name = names
    for name, t in ((x_name, x), (W_name, W)) + (((b_name, b),) if b is not None else ()):
        v.require_tensor(name, t)
        v.require_float(name, t)
    v.require_ndim_at_least(x_name, x, 1)
    v.require_ndim(W_name, W, 2)
    v.require_same_dtype(W_name, W, x_name, x)
    v.require_last_dim(x_name, x, W.shape[0], f"d_in of {W_name} {tuple(W.shape)}")
    if b is not None:
        v.require_same_dtype(b_name, b, x_name, x)
        v.require_shape(b_name, b, (W.shape[1],), f"d_out of {W_name} {tuple(W.shape)}")


def linear(x, W, b=None):
    r"""Affine map (chapter, section 4.1: :math:`Q = XW_Q`; section 4.2: :math:`xW_1 + b_1`).

    .. math:: y = x W + b

    Shapes: x (..., d_in), W (d_in, d_out), b (d_out,) or None -> y (..., d_out).
    """
    check_linear(x, W, b)
    y = x @ W                                                   # (..., d_out)
    if b is not None:
        # in place when the dtypes agree: no second (..., d_out) tensor (x @ W keeps x and
        # W for its backward, not y); under autocast (a bf16 product, a float32 b) the sum
        # is promoted to float32 as before
        y = y.add_(b) if y.dtype == b.dtype else y + b          # (..., d_out)
    return y
