r"""Inverted dropout, written with tensor ops.

Dimension legend: elementwise, ``x`` of any shape ``(...)``.

With a ``numpy.random.Generator`` the keep mask is ``rng.random(x.shape) >= p``, drawn
on the CPU exactly as the reference draws it and moved to ``x``'s device, so both
backends drop the same entries. A ``torch.Generator`` is accepted too (faster on a GPU;
no cross-backend guarantee); with ``rng=None`` torch's global generator is used.
"""
import numpy as np
import torch

from ..core import _validate as v

__all__ = ["dropout"]


def dropout(x, p, training=True, rng=None):
    r"""Inverted dropout (Srivastava et al. 2014, scaled at training time):

    .. math::
        m_i = [u_i \ge p],\ u_i \sim \mathcal U[0, 1), \qquad y = \frac{m \odot x}{1 - p}

    ``training=False`` or ``p == 0`` returns ``x`` unchanged and draws nothing.
    Shapes: x (...) -> y (...).
    """
    if v.checking():
        v.require_tensor("x", x)
        v.require_float("x", x)
        v.require_probability("p", p)
        if not isinstance(training, (bool, np.bool_)):
            raise ValueError(f"expected training to be True or False, got {training!r}")
        if rng is not None and not isinstance(rng, (np.random.Generator, torch.Generator)):
            raise ValueError(f"expected rng to be a numpy.random.Generator, a torch.Generator "
                             f"or None, got {type(rng).__name__}")
    if not training or p == 0:
        return x
    if isinstance(rng, np.random.Generator):
        keep = torch.from_numpy(rng.random(tuple(x.shape)) >= p).to(x.device)  # (...) bool
    elif isinstance(rng, torch.Generator):
        u = torch.rand(tuple(x.shape), generator=rng, device=rng.device)       # (...)
        keep = (u >= p).to(x.device)                            # (...) bool
    else:
        keep = torch.rand(tuple(x.shape), device=x.device) >= p  # (...) bool
    return x * keep * (1.0 / (1.0 - p))                         # (...)
