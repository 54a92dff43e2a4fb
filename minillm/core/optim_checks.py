"""The optimizers' argument and state checks, shared by both backends' ``optim.py``.

``minillm.reference.optim`` and ``minillm.torch_backend.optim`` validate the same
arguments (learning rates, betas, the parameter list, a loaded state dict, gradient
clipping's ``max_norm``) with these functions, so both word their errors alike. They
read only Python numbers, ``.shape`` and dicts: no backend is imported here.
"""
from __future__ import annotations

import logging
import math
import numbers

import numpy as np

__all__ = ["check_number", "check_betas", "materialise", "check_loaded", "check_decays", "check_clip_arguments",
           "check_total_norm", "clip_coefficient"]

logger = logging.getLogger("minillm")


def check_number(owner: str, name: str, value, low: float, high: float | None = None, *,
                  low_open: bool = False, high_open: bool = True) -> float:
    """``value`` as a Python float, or a ValueError saying which interval was expected.

    A Python float (not a NumPy scalar) keeps float32 arrays float32 under NumPy's
    promotion rules."""
    left = ">" if low_open else ">="
    right = "<" if high_open else "<="
    expected = f"{name} {left} {low}" if high is None else f"{low} {'<' if low_open else '<='} {name} {right} {high}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{owner}: expected {expected}, got {name}={value!r}")
    ok = value > low if low_open else value >= low
    if high is not None:
        ok = ok and (value < high if high_open else value <= high)
    if not ok:
        raise ValueError(f"{owner}: expected {expected}, got {name}={value!r}")
    return float(value)


def check_betas(owner: str, betas) -> tuple[float, float]:
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"{owner}: expected betas to be a pair (beta1, beta2), got {betas!r}")
    return (check_number(owner, "betas[0]", betas[0], 0.0, 1.0),
            check_number(owner, "betas[1]", betas[1], 0.0, 1.0))


def materialise(owner: str, params, is_param, what: str) -> list:
    """The parameters as a list: non-empty, each of the backend's type, no repeats."""
    params = list(params)
    if not params:
        raise ValueError(
            f"{owner}: expected a non-empty iterable of parameters, got an empty one "
            f"(was a generator such as model.parameters() already consumed?)"
        )
    for i, p in enumerate(params):
        if not is_param(p):
            hint = " (pass model.parameters(), not named_parameters())" if isinstance(p, tuple) else ""
            raise ValueError(f"{owner}: expected parameter {i} to be a {what}, got {type(p).__name__}{hint}")
    if len({id(p) for p in params}) != len(params):
        raise ValueError(f"{owner}: expected each parameter once, got a parameter listed twice")
    return params


def check_loaded(owner: str, sd, shapes: list[tuple], array_keys: tuple[str, ...]) -> None:
    """Validate a state dict's type, parameter count and array shapes before loading."""
    if sd.get("type") != owner:
        raise ValueError(f"{owner}.load_state_dict: expected type {owner!r}, got {sd.get('type')!r}")
    state = sd.get("state")
    if not isinstance(state, (list, tuple)) or len(state) != len(shapes):
        got = len(state) if isinstance(state, (list, tuple)) else repr(state)
        raise ValueError(
            f"{owner}.load_state_dict: expected state for {len(shapes)} parameters, got {got}"
        )
    for i, (entry, shape) in enumerate(zip(state, shapes)):
        if not isinstance(entry, dict):
            raise ValueError(f"{owner}.load_state_dict: expected state[{i}] to be a dict, got {type(entry).__name__}")
        missing = [k for k in ("step",) + array_keys if k not in entry]
        if missing:
            raise ValueError(f"{owner}.load_state_dict: state[{i}] lacks {missing}")
        for key in array_keys:
            got_shape = tuple(getattr(entry[key], "shape", None) or np.shape(entry[key]))
            if got_shape != tuple(shape):
                raise ValueError(
                    f"{owner}.load_state_dict: state[{i}][{key!r}] has shape {got_shape} but "
                    f"parameter {i} has shape {tuple(shape)}"
                )
        if isinstance(entry["step"], bool) or not isinstance(entry["step"], numbers.Integral) \
                or entry["step"] < 0:
            raise ValueError(f"{owner}.load_state_dict: expected state[{i}]['step'] >= 0, got {entry['step']!r}")




def check_decays(owner: str, sd: dict, n_params: int, weight_decay: float) -> list[float]:
    """The weight decay of each parameter a loaded state dict records (``"weight_decays"``,
    one per parameter, each >= 0); a state dict written before parameter groups has one
    ``weight_decay`` for all."""
    decays = sd.get("weight_decays")
    if decays is None:
        return [weight_decay] * n_params
    if not isinstance(decays, (list, tuple)) or len(decays) != n_params:
        got = len(decays) if isinstance(decays, (list, tuple)) else repr(decays)
        raise ValueError(f"{owner}.load_state_dict: expected weight_decays for {n_params} parameters, got {got}")
    return [check_number(owner, f"weight_decays[{i}]", wd, 0.0) for i, wd in enumerate(decays)]


def check_clip_arguments(max_norm, error_if_nonfinite) -> float:
    """``max_norm`` as a float > 0, where +inf is allowed (measure, never clip: what the
    trainer passes for ``grad_clip=None``, and what torch accepts); ``error_if_nonfinite``
    a bool."""
    if not isinstance(error_if_nonfinite, bool):
        raise ValueError(f"clip_grad_norm: expected error_if_nonfinite to be a bool, "
                         f"got {error_if_nonfinite!r}")
    if isinstance(max_norm, numbers.Real) and not isinstance(max_norm, bool) and max_norm == math.inf:
        return math.inf
    return check_number("clip_grad_norm", "max_norm", max_norm, 0.0, low_open=True)


def check_total_norm(total: float, error_if_nonfinite: bool) -> None:
    """Raise (``error_if_nonfinite``) or log a warning when the gradient norm is not finite.
   """
    if math.isfinite(total):
        return
    if error_if_nonfinite:
        raise RuntimeError(
            f"clip_grad_norm: the total L2 norm of the gradients is {total}, so they cannot "
            f"be clipped; no gradient was changed (pass error_if_nonfinite=False to scale "
            f"them by the non-finite coefficient anyway, as torch does)")
    logger.warning("clip_grad_norm: the gradient norm is %s", total)


def clip_coefficient(max_norm: float, total: float) -> float:
    """min(1, max_norm / (total + 1e-6)), with NaN propagating as ``torch.clamp(c, max=1)``
    does: a NaN total gives a NaN coefficient, an infinite one gives 0."""
    coef = max_norm / (total + 1e-6)
    return 1.0 if coef > 1.0 else coef                    # NaN > 1.0 is False: NaN stays
