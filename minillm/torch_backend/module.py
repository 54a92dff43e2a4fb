"""Module: ``torch.nn.Module`` with a state-dict loader that also takes NumPy arrays,
and the switch between the backend's two paths (``set_fused``).

The torch layers are ordinary ``nn.Module`` s; this base only changes
``load_state_dict`` so that a state dict from the NumPy reference (or from a
safetensors checkpoint) loads directly, after the same check of names and shapes the
reference does (``minillm.store.model_io.check_model_state``: a checkpoint of another
configuration is a ``ValueError`` naming the first mismatch).
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = []  # internal base class; the public layers live in layers.py / models.py


class Module(nn.Module):
    """``nn.Module`` whose ``load_state_dict`` accepts NumPy or torch values."""

    def set_fused(self, fused: bool = True):
        """Torch only: ``True`` = the fast path (torch's own kernels: ``F.linear``,
        ``F.embedding``, ``F.layer_norm``, ``F.relu`` / ``F.gelu``, fused attention,
        ``F.cross_entropy``), ``False`` = the explicit path (the reference's formulas
        written with tensor ops), for this module and every module inside it that has
        a ``fused`` flag. Parameters, state dicts and results (within rounding, see
        tests/tolerances.py) are the same on both paths. Returns ``self``."""
        if not isinstance(fused, bool):
            raise ValueError(f"expected fused to be a bool, got {fused!r}")
        for m in self.modules():
            if "fused" in vars(m):
                m.fused = fused
        return self

    def load_state_dict(self, state, strict: bool = True):  # noqa: D102 - see module doc
        from ..core.state import as_numpy_state, check_model_state

        state = as_numpy_state(state)
        params = dict(self.named_parameters())
        check_model_state(params, state, type(self).__name__, strict=strict)
        with torch.no_grad():
            for name, p in params.items():
                if name in state:
                    p.copy_(torch.from_numpy(state[name]).to(dtype=p.dtype, device=p.device))
