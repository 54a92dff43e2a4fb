r"""Root-mean-square normalisation over the last (feature) axis (RMSNorm), written with
tensor ops; autograd gives the gradients (the reference writes them by hand). The fast
path is ``F.rms_norm``.

Dimension legend: ``C`` features, ``...`` any leading dimensions. x ``(..., C)``,
gamma ``(C,)``. See ``minillm.reference.rms_norm`` for the formula's source.
"""
import torch
import torch.nn.functional as F

from ..core import _validate as v
from .linear import autocasting

__all__ = ["rms_norm"]


def _check(x, gamma, eps, same_dtype=True):
    """The checks of the reference's rms_norm; ``same_dtype=False`` (the fast path under
    autocast) lets the dtypes differ."""
    for name, t in (("x", x), ("gamma", gamma)):
        v.require_tensor(name, t)
        v.require_float(name, t)
    v.require_ndim_at_least("x", x, 1)
    v.require_nonempty_axis("x", x, -1)
    if same_dtype:
        v.require_same_dtype("gamma", gamma, "x", x)
    v.require_shape("gamma", gamma, (x.shape[-1],), f"the last axis of x {tuple(x.shape)}")
    v.require_number_in("eps", eps, 0.0, float("inf"), low_open=True, high_open=True)


def rms_norm(x, gamma, eps=1e-5):
    r"""RMSNorm (Zhang and Sennrich 2019, eq. 4):

    .. math::
        r = \frac{1}{\sqrt{\frac{1}{C}\sum_c x_c^2 + \epsilon}}, \quad
        y = \gamma \odot x\, r

    Shapes: x (..., C), gamma (C,) -> y (..., C).
    """
    if v.checking():
        _check(x, gamma, eps)
    ms = (x * x).mean(dim=-1, keepdim=True)                     # (..., 1), mean square
    rstd = 1.0 / torch.sqrt(ms + eps)                           # (..., 1)
    x_hat = x * rstd                                            # (..., C)
    return gamma * x_hat                                        # (..., C)


def fast_rms_norm(x, gamma, eps=1e-5):
    """The fast path's RMSNorm: ``torch.nn.functional.rms_norm`` over the last axis (the
    same eps inside the square root as :func:`rms_norm`; under autocast it computes in
float32, as ``F.layer_norm`` does there). Not exported: :class:`RMSNorm`
    calls it when ``fused``. Shapes: as :func:`rms_norm`."""
    mixed = autocasting(x)
    if v.checking():
        _check(x, gamma, eps, same_dtype=not mixed)
    if mixed:   # in float32, as autocast runs F.layer_norm: F.rms_norm is not on its list,
        x, gamma = x.float(), gamma.float()   # and bf16 x with float32 gamma misses its kernel
    return F.rms_norm(x, x.shape[-1:], gamma, eps)              # (..., C)
