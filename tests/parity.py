"""Shared helpers for the parity and gradient tests.

- ``to_torch`` / ``to_numpy``: move arrays between the backends, keeping the dtype,
  optionally as a non-contiguous view (same values, strided memory);
- ``assert_close(name, ours, theirs, rtol, atol)``: on failure names the tensor, the
  largest absolute and relative difference and where it sits; it also records the
  largest differences seen per name and dtype in ``DIFF_LOG`` (dumped as JSON when the
  environment variable ``MINILLM_DIFF_REPORT`` names a file, see ``dump_diff_log``);
- ``numerical_grads`` / ``check_grad``: central finite differences in float64 against a
  hand-written backward, with a random upstream gradient;
- hypothesis strategies: ``shapes``, ``seeds``, ``float_dtypes`` and ``random_array``
  (values from a seeded generator: fast to draw, and hypothesis still shrinks the seed).
"""
import json
import os

import numpy as np
from hypothesis import strategies as st

try:  # the reference tests must also run where torch is missing
    import torch
except ImportError:  # pragma: no cover
    torch = None

# ----------------------------------------------------------------------------------
# numpy <-> torch


def make_noncontiguous(a: np.ndarray) -> np.ndarray:
    """The same values as ``a`` in a strided view (every second element of a buffer
    twice as long along the last axis), so ``a.flags.c_contiguous`` is False."""
    a = np.asarray(a)
    if a.ndim == 0:
        return a
    buffer = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), dtype=a.dtype)
    buffer[..., ::2] = a
    view = buffer[..., ::2]
    assert a.shape[-1] <= 1 or not view.flags.c_contiguous
    return view


def to_torch(a, requires_grad: bool = False, noncontiguous: bool = False):
    """A torch tensor with ``a``'s values and dtype (a copy: the reference's arrays are
    never shared with torch). ``noncontiguous=True`` gives a strided view, still a leaf."""
    a = np.asarray(a)
    if noncontiguous and a.ndim > 0:
        buffer = torch.zeros(a.shape[:-1] + (2 * a.shape[-1],), dtype=_torch_dtype(a.dtype))
        buffer[..., ::2] = torch.from_numpy(np.ascontiguousarray(a))
        t = buffer[..., ::2]
    else:
        t = torch.from_numpy(np.array(a, copy=True))
    if requires_grad:
        t.requires_grad_(True)
    return t


def _torch_dtype(np_dtype):
    return torch.from_numpy(np.zeros(0, dtype=np_dtype)).dtype


def to_numpy(t) -> np.ndarray:
    if torch is not None and isinstance(t, torch.Tensor):
        return t.detach().cpu().numpy()
    return np.asarray(t)


# ----------------------------------------------------------------------------------
# comparison with a readable failure and a record of the largest differences

DIFF_LOG: dict = {}   # (name, dtype) -> {"max_abs": float, "max_rel": float, "n": int}


def _record(name, dtype, max_abs, max_rel):
    entry = DIFF_LOG.setdefault(f"{name} [{dtype}]", {"max_abs": 0.0, "max_rel": 0.0, "n": 0})
    entry["max_abs"] = max(entry["max_abs"], max_abs)
    entry["max_rel"] = max(entry["max_rel"], max_rel)
    entry["n"] += 1


def dump_diff_log(path=None):
    """Write ``DIFF_LOG`` as JSON to ``path`` (default: $MINILLM_DIFF_REPORT, if set),
    merging with what an earlier test module wrote there."""
    path = path or os.environ.get("MINILLM_DIFF_REPORT")
    if not path:
        return
    merged = {}
    if os.path.exists(path):
        with open(path) as f:
            merged = json.load(f)
    for key, entry in DIFF_LOG.items():
        old = merged.get(key, {"max_abs": 0.0, "max_rel": 0.0, "n": 0})
        merged[key] = {
            "max_abs": max(old["max_abs"], entry["max_abs"]),
            "max_rel": max(old["max_rel"], entry["max_rel"]),
            "n": old["n"] + entry["n"],
        }
    with open(path, "w") as f:
        json.dump(merged, f, indent=1, sort_keys=True)
    DIFF_LOG.clear()   # written: a later dump from this process adds only new records


def assert_close(name: str, ours, theirs, rtol: float, atol: float, check_dtype: bool = True):
    """``|ours - theirs| <= atol + rtol * |theirs|`` elementwise, same shape (and dtype).

    On failure the message names the tensor, its shape, the largest absolute and
    relative difference and the index where the worst element sits."""
    a, b = to_numpy(ours), to_numpy(theirs)
    assert a.shape == b.shape, f"{name}: shape {a.shape} != expected {b.shape}"
    if check_dtype:
        assert a.dtype == b.dtype, f"{name}: dtype {a.dtype} != expected {b.dtype}"
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    same_nonfinite = (a64 == b64) | (np.isnan(a64) & np.isnan(b64))  # inf == inf, nan ~ nan
    diff = np.where(same_nonfinite, 0.0, np.abs(a64 - b64))
    rel = diff / np.maximum(np.abs(b64), np.finfo(np.float64).tiny)
    max_abs = float(diff.max()) if diff.size else 0.0
    # relative differences where the value is above atol (below it, atol decides)
    big = np.abs(b64) > atol
    max_rel = float(rel[big].max()) if big.any() else 0.0
    _record(name, str(b.dtype), max_abs, max_rel)
    ok = diff <= atol + rtol * np.abs(b64)
    if not ok.all():
        excess = diff - (atol + rtol * np.abs(b64))
        worst = np.unravel_index(int(np.argmax(np.where(ok, -np.inf, excess))), diff.shape)
        raise AssertionError(
            f"{name} {a.shape} {b.dtype}: {int((~ok).sum())} of {ok.size} elements differ; "
            f"largest abs diff {max_abs:.3e}, largest rel diff {max_rel:.3e} "
            f"(rtol={rtol}, atol={atol}); worst at {tuple(int(i) for i in worst)}: "
            f"ours={a64[worst]!r} theirs={b64[worst]!r}"
        )


# ----------------------------------------------------------------------------------
# finite differences


def numerical_grads(f, inputs, dout, eps: float = 1e-6):
    """Central differences of ``L = sum(f(*inputs) * dout)`` w.r.t. every input.

    ``inputs`` are float64 arrays (copied, never modified); ``dout`` is the random
    upstream gradient. Error is O(eps^2) truncation plus O(1e-16 / eps) rounding."""
    inputs = [np.array(x, dtype=np.float64, copy=True) for x in inputs]
    dout = np.asarray(dout, dtype=np.float64)
    grads = []
    for x in inputs:
        g = np.zeros_like(x)
        for idx in np.ndindex(x.shape):
            old = x[idx]
            x[idx] = old + eps
            plus = float(np.sum(np.asarray(f(*inputs)) * dout))
            x[idx] = old - eps
            minus = float(np.sum(np.asarray(f(*inputs)) * dout))
            x[idx] = old
            g[idx] = (plus - minus) / (2 * eps)
        grads.append(g)
    return grads


def check_grad(f, inputs, dout, analytic, names, eps: float = 1e-6,
               rtol: float = 1e-6, atol: float = 1e-8):
    """Compare hand-written gradients ``analytic`` (one per input, in order) with
    central finite differences of ``f``. See ``tests/tolerances.py`` (FD_*) for why
    these tolerances."""
    numeric = numerical_grads(f, inputs, dout, eps)
    assert len(numeric) == len(analytic) == len(names)
    for name, ours, fd in zip(names, analytic, numeric):
        assert_close(f"{name} (finite differences)", ours, fd, rtol, atol)


# ----------------------------------------------------------------------------------
# hypothesis strategies

float_dtypes = st.sampled_from([np.float64, np.float32])
seeds = st.integers(min_value=0, max_value=2**32 - 1)


@st.composite
def shapes(draw, min_dims: int = 1, max_dims: int = 3, min_side: int = 1,
           max_side: int = 6):
    """Array shapes; sides of 1 (batch 1, T = 1, C = 1) are drawn on purpose."""
    ndim = draw(st.integers(min_dims, max_dims))
    return tuple(draw(st.integers(min_side, max_side)) for _ in range(ndim))


def random_array(rng: np.random.Generator, shape, dtype=np.float64, scale: float = 1.0):
    """Standard-normal values times ``scale``, in ``dtype``."""
    return np.asarray(rng.standard_normal(shape) * scale, dtype=dtype)  # 0-d stays an array


scales = st.sampled_from([1e-3, 1.0, 3.0, 30.0])
