"""Parameter: an array and its gradient, the unit the optimizers update.

The torch backend uses ``torch.nn.Parameter`` (same ``.data`` and ``.grad``).
"""
from __future__ import annotations

import numpy as np

__all__ = ["Parameter"]


class Parameter:
    """A trainable array. ``.data`` holds the value, ``.grad`` the accumulated gradient
    (``None`` until a backward pass writes it, as in torch)."""

    __slots__ = ("data", "grad")

    def __init__(self, data):
        self.data = np.asarray(data)
        if not np.issubdtype(self.data.dtype, np.floating):
            raise ValueError(f"Parameter expects a floating-point array, got dtype {self.data.dtype}")
        self.grad = None

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    def accumulate(self, grad) -> None:
        """Add ``grad`` to ``.grad`` (gradients of a parameter used twice add up)."""
        if grad.shape != self.data.shape:
            raise ValueError(f"gradient shape {grad.shape} does not match parameter shape {self.data.shape}")
        if self.grad is None:
            self.grad = np.array(grad, dtype=self.data.dtype, copy=True)
        else:
            self.grad += grad

    def __repr__(self) -> str:
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"
