r"""The affine map :math:`y = xW + b`, with ``W`` stored as the formula writes it.

Dimension legend: ``d_in`` input features, ``d_out`` output features, ``...`` any
leading dimensions. x ``(..., d_in)``, W ``(d_in, d_out)``, b ``(d_out,)`` or None.

Input checks, here and in the other ops of this package, are those of the reference
(``minillm.core._validate``), skipped inside a model, which checks its inputs once at its
entry (``minillm.core._validate.trusted``).
"""
import torch
import torch.nn.functional as F

from ..core import _validate as v

__all__ = ["linear"]


def autocasting(x) -> bool:
    """Whether autocast is on for ``x``'s device. The fast path's torch kernels then
    take mixed dtypes (float32 weights, bf16 activations) and cast them themselves, so
    its checks do not require one dtype."""
    return torch.is_autocast_enabled(x.device.type)


def check_linear(x, W, b, names=("x", "W", "b"), same_dtype=True):
    """Validate one affine map's tensors (shared with feed_forward); ``same_dtype=False``
    (the fast path under autocast) lets the dtypes differ."""
    x_name, W_name, b_name = names
    for name, t in ((x_name, x), (W_name, W)) + (((b_name, b),) if b is not None else ()):
        v.require_tensor(name, t)
        v.require_float(name, t)
    v.require_ndim_at_least(x_name, x, 1)
    v.require_ndim(W_name, W, 2)
    if same_dtype:
        v.require_same_dtype(W_name, W, x_name, x)
    v.require_last_dim(x_name, x, W.shape[0], f"d_in of {W_name} {tuple(W.shape)}")
    if b is not None:
        if same_dtype:
            v.require_same_dtype(b_name, b, x_name, x)
        v.require_shape(b_name, b, (W.shape[1],), f"d_out of {W_name} {tuple(W.shape)}")


def linear(x, W, b=None):
    r"""Affine map (chapter, section 4.1: :math:`Q = XW_Q`; section 4.2: :math:`xW_1 + b_1`).

    .. math:: y = x W + b

    Shapes: x (..., d_in), W (d_in, d_out), b (d_out,) or None -> y (..., d_out).
    """
    if v.checking():
        check_linear(x, W, b)
    y = x @ W                                                   # (..., d_out)
    if b is not None:
        y = y + b                                               # (..., d_out)
    return y


def fast_linear(x, W, b=None):
    r"""The fast path's :math:`y = xW + b`: ``torch.nn.functional.linear(x, W^T, b)``,
    one fused multiply-add kernel (addmm). ``F.linear`` expects its weight as
    (d_out, d_in); ``W.t()`` is a view of ``W`` as stored, (d_in, d_out), so the
    parameter, its name, shape and state dict are those of :func:`linear`, and
    autograd's gradient lands in ``W`` itself. Under autocast the kernel computes in
    the autocast dtype (bf16), so the dtypes of x and W may differ here. Not exported:
    the layers call it when their ``fused`` flag is set. Shapes: as :func:`linear`.
    """
    if v.checking():
        check_linear(x, W, b, same_dtype=not autocasting(x))
    return F.linear(x, W.t(), b)                                # (..., d_out)
