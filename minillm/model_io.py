"""Saving and loading a model with its optimizer, step and RNG state, in either backend.

A checkpoint is a folder written by :mod:`minillm.checkpoint` (safetensors weights,
JSON, atomic): this module decides what goes in it and how it comes back:

- ``model.safetensors`` — ``model.state_dict()`` as NumPy arrays, names as in
  ``named_parameters()`` (the same in both backends);
- ``config.json`` — the ``ModelConfig``, the model class and its extra arguments;
- the optimizer state (``opt.state_dict()``, plain Python and NumPy in both backends);
- ``step``, the model's dropout generator state and any ``extra`` JSON the caller adds
  (data position, data RNG state).

What one backend saves the other loads: nothing in the folder depends on torch, and
nothing is a pickle. ``load_checkpoint`` checks the configuration before it touches the
model, so a checkpoint of another configuration is a ``ValueError``.

Also here, used by both backends' ``load_state_dict``: :func:`as_numpy_state` and
:func:`check_model_state`. This module never imports torch.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from .config import ModelConfig

__all__ = ["as_numpy_state", "check_model_state", "save_checkpoint", "load_checkpoint",
           "model_state", "model_kind"]


def _to_numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, without importing torch
        return value.detach().cpu().numpy()
    if hasattr(value, "data") and not isinstance(value, np.ndarray):  # a reference Parameter
        return np.asarray(value.data)
    return np.asarray(value)


def as_numpy_state(state) -> "OrderedDict[str, np.ndarray]":
    """A state dict (NumPy arrays, torch tensors or Parameters) as NumPy arrays, in order."""
    if not hasattr(state, "items"):
        raise ValueError(f"expected a state dict (a mapping name -> array), got {type(state).__name__}")
    return OrderedDict((str(k), _to_numpy(a)) for k, a in state.items())


def check_model_state(params, state, where: str, strict: bool = True) -> None:
    """Names and shapes of ``state`` against the model's ``params`` (name -> Parameter).

    Raises ``ValueError`` naming the missing and unexpected keys, or the first parameter
    whose shape differs (expected vs got). With ``strict=False`` only the keys present
    in both are checked. Values of another float dtype are accepted (cast on load).
    """
    missing = [k for k in params if k not in state]
    unexpected = [k for k in state if k not in params]
    if strict and (missing or unexpected):
        raise ValueError(
            f"{where}: state dict does not match the model (a checkpoint of another "
            f"configuration?): missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}")
    for name, p in params.items():
        if name not in state:
            continue
        expected, got = tuple(p.shape), tuple(state[name].shape)
        if expected != got:
            raise ValueError(f"{where}: parameter {name!r} expected shape {expected}, got {got} "
                             f"(a checkpoint of another configuration?)")
        if not np.issubdtype(state[name].dtype, np.floating):
            raise ValueError(f"{where}: parameter {name!r} expected a floating-point array, "
                             f"got dtype {state[name].dtype}")
