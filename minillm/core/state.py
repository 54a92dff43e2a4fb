"""State dicts as plain NumPy, and the check of one against a model's parameters.

Both backends' ``state_dict`` / ``load_state_dict`` and the checkpoint files use these:
a state dict is a mapping name -> array (NumPy arrays, torch tensors or reference
``Parameter`` objects; torch tensors are recognised by their ``detach`` method, so this
module never imports torch).
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

__all__ = ["as_numpy_state", "check_model_state", "check_state_dict"]


def check_state_dict(expected: dict, got: dict, where: str) -> None:
    """Raise ValueError unless ``got`` has exactly the names of ``expected`` with the
    same shapes.

    Args:
        expected: name -> shape (a tuple), e.g. from ``model.named_parameters()``.
        got: name -> array or tensor (anything with ``.shape``).
        where: who is loading, put at the start of the message.
    """
    def shape(x) -> tuple:
        return tuple(int(n) for n in (x.shape if hasattr(x, "shape") else np.shape(x)))

    def listing(items: list) -> str:
        return ", ".join(items[:10]) + (f", ... and {len(items) - 10} more" if len(items) > 10 else "")

    missing = [f"{n} {tuple(s)}" for n, s in expected.items() if n not in got]
    unexpected = [f"{n} {shape(a)}" for n, a in got.items() if n not in expected]
    wrong = [f"{n}: expected {tuple(expected[n])}, got {shape(got[n])}"
             for n in expected if n in got and tuple(expected[n]) != shape(got[n])]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)}: {listing(missing)}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)}: {listing(unexpected)}")
    if wrong:
        problems.append(f"wrong shape {len(wrong)}: {listing(wrong)}")
    if problems:
        raise ValueError(f"{where}: the state dict does not match the model: " + "; ".join(problems))


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

    With ``strict=True`` this is :func:`check_state_dict`: a
    ``ValueError`` listing the missing and unexpected names and the wrong shapes
    (expected vs got). With ``strict=False`` only the names present in both are checked.
    Values of another float dtype are accepted (cast on load); integer ones are not.
    """
    expected = {name: tuple(p.shape) for name, p in params.items()}
    if strict:
        check_state_dict(expected, state, where)
    else:
        check_state_dict({n: s for n, s in expected.items() if n in state},
                         {n: a for n, a in state.items() if n in expected}, where)
    for name, array in state.items():
        if name in expected and not np.issubdtype(array.dtype, np.floating):
            raise ValueError(f"{where}: parameter {name!r} expected a floating-point array, "
                             f"got dtype {array.dtype}")
