"""Input checks shared by both backends.

Every public op calls these helpers before it computes anything, so that a wrong input
fails with a ``ValueError`` that says what was expected and what came, instead of a
broadcasting surprise three layers later.

Checks are paid once. A model checks its own inputs at its entry (token ids integer and
in ``[0, vocab_size)``, at most ``block_size`` positions, targets, masks) and then runs
its layers inside :func:`trusted`; there every op skips its checks
(``if v.checking(): ...``), since what reaches it was made by the model from checked
inputs and its own parameters. An op called directly, outside a model, checks everything
as before. The flag is per thread and nests, so a server thread running a model never
switches the checks off for another thread's direct call.

The helpers only read ``.shape``, ``.dtype`` and ``.ndim`` (and, for index checks,
boolean indexing plus ``.min()``/``.max()``), so the same function checks a NumPy array
and a torch tensor. This module never imports torch: the reference imports it too.
"""
import contextlib
import math
import numbers
import sys
import threading

import numpy as np

__all__ = [
    "checking", "trusted", "dtype_name", "is_floating", "is_integer", "is_bool", "shape_of",
    "require_array", "require_tensor", "require_float", "require_integer", "require_bool",
    "require_ndim_at_least", "require_ndim", "require_axis", "require_shape",
    "require_same_dtype", "require_nonempty_axis", "require_last_dim", "require_broadcastable",
    "require_choice", "require_number_in", "require_probability", "require_index_range",
]


class _Trust(threading.local):
    depth = 0    # how many trusted() blocks this thread is inside


_trust = _Trust()


def checking() -> bool:
    """Whether an op should check its inputs: True, except inside :func:`trusted` on
    this thread."""
    return _trust.depth == 0


@contextlib.contextmanager
def trusted():
    """Inside this block, on this thread, the ops skip their input checks (see the module
    docstring). A model enters it after checking its own inputs; blocks nest, and the
    checks are back on when the outermost one is left, also by an exception."""
    _trust.depth += 1
    try:
        yield
    finally:
        _trust.depth -= 1


def dtype_name(dtype) -> str:
    """``float32`` for both ``np.float32`` and ``torch.float32``."""
    return str(dtype).replace("torch.", "")


def shape_of(x) -> tuple:
    return tuple(int(n) for n in x.shape)


def is_floating(x) -> bool:
    dtype = x.dtype
    if hasattr(dtype, "is_floating_point"):  # torch.dtype
        return bool(dtype.is_floating_point)
    return bool(np.issubdtype(dtype, np.floating))


def is_bool(x) -> bool:
    return dtype_name(x.dtype) in ("bool", "bool_")


def is_integer(x) -> bool:
    """Signed or unsigned integers; ``bool`` does not count as an integer here."""
    dtype = x.dtype
    if hasattr(dtype, "is_floating_point"):  # torch.dtype
        return not dtype.is_floating_point and not dtype.is_complex and dtype_name(dtype) != "bool"
    return bool(np.issubdtype(dtype, np.integer))


def require_array(name: str, x) -> None:
    if not (hasattr(x, "shape") and hasattr(x, "dtype") and hasattr(x, "ndim")):
        raise ValueError(f"expected {name} to be an array or tensor, got {type(x).__name__}")


def require_tensor(name: str, x) -> None:
    """For the torch backend: a torch tensor (checked by its attributes, so this module
    need not import torch), not a NumPy array or a list."""
    if not (hasattr(x, "requires_grad") and hasattr(x, "grad_fn") and hasattr(x, "device")):
        raise ValueError(
            f"expected {name} to be a torch.Tensor, got {type(x).__name__} "
            f"(convert with torch.as_tensor)"
        )


def require_float(name: str, x) -> None:
    require_array(name, x)
    if not is_floating(x):
        raise ValueError(
            f"expected {name} to have a floating-point dtype, got {dtype_name(x.dtype)} "
            f"(shape {shape_of(x)})"
        )


def require_integer(name: str, x) -> None:
    require_array(name, x)
    if not is_integer(x):
        raise ValueError(
            f"expected {name} to have an integer dtype, got {dtype_name(x.dtype)} "
            f"(shape {shape_of(x)})"
        )


def require_bool(name: str, x) -> None:
    require_array(name, x)
    if not is_bool(x):
        raise ValueError(
            f"expected {name} to be boolean (True = keep), got {dtype_name(x.dtype)} "
            f"(shape {shape_of(x)})"
        )


def require_ndim_at_least(name: str, x, n: int) -> None:
    if x.ndim < n:
        raise ValueError(
            f"expected {name} to have at least {n} dimension(s), got {x.ndim} "
            f"(shape {shape_of(x)})"
        )


def require_ndim(name: str, x, n: int) -> None:
    if x.ndim != n:
        raise ValueError(
            f"expected {name} to have {n} dimension(s), got {x.ndim} (shape {shape_of(x)})"
        )


def require_axis(name: str, x, axis) -> int:
    """Check ``axis`` is a valid axis of ``x`` and return it as a non-negative int."""
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise ValueError(f"expected axis to be an int, got {axis!r}")
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(
            f"expected axis in [{-x.ndim}, {x.ndim}) for {name} of shape {shape_of(x)}, "
            f"got {axis}"
        )
    return int(axis) % x.ndim


def require_shape(name: str, x, expected: tuple, hint: str = "") -> None:
    if shape_of(x) != tuple(expected):
        extra = f" ({hint})" if hint else ""
        raise ValueError(f"expected {name} of shape {tuple(expected)}{extra}, got {shape_of(x)}")


def _autocasting(x) -> bool:
    """True for a torch tensor inside ``torch.autocast``, where mixed float dtypes
    (bf16 activations, float32 weights) are what autocast means. Looked up through
    ``sys.modules``: a torch tensor implies torch is already imported."""
    torch = sys.modules.get("torch")
    return (torch is not None and isinstance(x, torch.Tensor)
            and torch.is_autocast_enabled(x.device.type))


def require_same_dtype(name: str, x, ref_name: str, ref) -> None:
    """Keeps float32 runs float32: NumPy would silently promote a float64 partner.
    (Under torch's autocast, mixed float dtypes are allowed.)"""
    if x.dtype != ref.dtype and not _autocasting(x):
        raise ValueError(
            f"expected {name} to have the dtype of {ref_name} ({dtype_name(ref.dtype)}), "
            f"got {dtype_name(x.dtype)}"
        )


def require_nonempty_axis(name: str, x, axis: int = -1) -> None:
    if x.ndim == 0 or x.shape[axis] == 0:
        raise ValueError(
            f"expected {name} to have at least one entry along axis {axis}, "
            f"got shape {shape_of(x)}"
        )


def require_last_dim(name: str, x, size: int, what: str) -> None:
    """``what`` says where ``size`` comes from, e.g. ``"d_in of W (8, 16)"``."""
    if x.ndim < 1 or x.shape[-1] != size:
        raise ValueError(
            f"expected {name} to end in {size} ({what}), got shape {shape_of(x)}"
        )


def require_broadcastable(name: str, x, target: tuple, target_name: str) -> None:
    try:
        result = np.broadcast_shapes(shape_of(x), tuple(target))
    except ValueError:
        result = None
    if result != tuple(target):
        raise ValueError(
            f"expected {name} broadcastable to {target_name} {tuple(target)}, "
            f"got shape {shape_of(x)}"
        )


def require_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"expected {name} to be one of {tuple(choices)}, got {value!r}")


def require_number_in(name: str, value, low: float, high: float,
                      low_open: bool = False, high_open: bool = False) -> None:
    """``value`` is a real number in the interval; open ends are excluded."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (
            value < high if high_open else value <= high)
    if not ok:
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"expected {name} in {interval}, got {value!r}")


def require_int_at_least(name: str, value, minimum: int) -> int:
    """A count: an int (not a bool) ``>= minimum``; returned as a Python int."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"expected {name} to be an int >= {minimum}, got {value!r}")
    return int(value)


def require_probability(name: str, p) -> None:
    """A drop probability: ``0 <= p < 1`` (p = 1 would divide by zero in 1/(1-p))."""
    require_number_in(name, p, 0.0, 1.0, high_open=True)


def require_index_range(name: str, ids, high: int, ignore=None, what: str = "") -> None:
    """Every entry of ``ids`` lies in ``[0, high)``, apart from entries equal to ``ignore``."""
    counted = ids if ignore is None else ids[ids != ignore]
    if math.prod(shape_of(counted)) == 0:
        return
    low_seen, high_seen = int(counted.min()), int(counted.max())
    if low_seen < 0 or high_seen >= high:
        bad = low_seen if low_seen < 0 else high_seen
        extra = f" ({what})" if what else ""
        skip = f" or equal to ignore_index={ignore}" if ignore is not None else ""
        raise ValueError(
            f"expected every entry of {name} in [0, {high}){extra}{skip}, got {bad}"
        )
