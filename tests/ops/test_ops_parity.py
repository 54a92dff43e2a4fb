"""Parity of the elementary ops: the NumPy reference (hand-written backward) against the
torch backend (autograd), forward AND backward, over hypothesis-drawn shapes, values and
dtypes, with contiguous and non-contiguous inputs and a random upstream gradient.
Then the torch backend against torch.nn.functional, as a third opinion. The ops and how
their inputs are drawn come from tests/ops_catalogue.py (one row per op); the feed-forward
network runs with every activation of ``core.config.ACTIVATIONS``; dropout is tested here
on its own (its mask comes from a generator both backends share)."""
import math

from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import minillm.reference as R
import minillm.torch_backend as T
from minillm.core.config import ACTIVATIONS
from minillm.reference.activations import _erf, _erfc
from ops_catalogue import rows_for

PARITY = "tests/ops/test_ops_parity.py::test_op_parity"
ORACLE = "tests/ops/test_ops_parity.py::test_op_matches_torch_functional"
from parity import (
    assert_close, dump_diff_log, float_dtypes, random_array, scales, seeds, shapes, to_torch,
    make_noncontiguous,
)
from tolerances import limits


@pytest.fixture(scope="module", autouse=True)
def _report_diffs():
    yield
    dump_diff_log()   # only when MINILLM_DIFF_REPORT names a file


def _as_tuple(grads):
    return grads if isinstance(grads, tuple) else (grads,)


def check_parity(op, forward, backward, torch_fn, inputs, differentiable, dtype, rng,
                 noncontiguous=False, **kwargs):
    """Run the reference forward/backward and the torch op on the same inputs, with the
    same random upstream gradient, and compare the output and every gradient.

    ``inputs``: NumPy arrays or None; ``differentiable``: a flag per input (integer ids
    and None get no gradient); ``op`` picks the tolerance."""
    lim = partial(limits, op, dtype)
    ours_in = [make_noncontiguous(a) if (noncontiguous and a is not None) else a
               for a in inputs]
    theirs_in = [None if a is None else
                 to_torch(a, requires_grad=d, noncontiguous=noncontiguous)
                 for a, d in zip(inputs, differentiable)]
    ours, cache = forward(*ours_in, **kwargs)
    theirs = torch_fn(*theirs_in, **kwargs)
    assert ours.dtype == dtype, f"{op}: {dtype.__name__} in, {ours.dtype} out"
    assert_close(f"{op} out", ours, theirs, *lim(theirs))

    dout = random_array(rng, ours.shape, dtype)
    ours_grads = _as_tuple(backward(dout, cache))
    theirs.backward(to_torch(dout))
    wanted = [t for t, d in zip(theirs_in, differentiable) if d]
    assert len(ours_grads) == len(wanted), f"{op}: {len(ours_grads)} gradients returned"
    for i, (g, t) in enumerate(zip(ours_grads, wanted)):
        if t is None:
            assert g is None, f"{op}: gradient {i} should be None for a None input"
            continue
        assert_close(f"{op} grad {i}", g, t.grad, *lim(t.grad))


# ----------------------------------------------------------------------------------
# every op of the catalogue (tests/ops_catalogue.py): softmax, log_softmax, the activations


@pytest.mark.parametrize("op", rows_for(PARITY), ids=repr)
@given(dtype=float_dtypes, seed=seeds, noncontiguous=st.booleans(), data=st.data())
def test_op_parity(op, dtype, seed, noncontiguous, data):
    case = op.case(data, dtype, "parity")
    rng = np.random.default_rng(seed)
    check_parity(op.name, op.forward, op.backward, op.explicit, list(case.inputs),
                 list(case.differentiable), dtype, rng, noncontiguous, **case.kwargs)


def test_erf_matches_math_erf():
    """The reference's own vectorised erf/erfc against the C library's, over the range
    GELU uses; erfc relatively, so that its tails (what GELU needs for x << 0) count."""
    z = np.concatenate([np.linspace(-8.0, 8.0, 4001), [0.0, 1e-300, 2.0, -2.0, 26.0]])
    erf_lib = np.array([math.erf(t) for t in z])
    erfc_lib = np.array([math.erfc(t) for t in z])
    assert_close("erf", _erf(z), erf_lib, rtol=2e-15, atol=1e-300)
    # around |z| = 2, erfc = 1 - erf has ~5e-3 of the magnitude: 1e-16 / 5e-3 = 2e-14
    assert_close("erfc", _erfc(z), erfc_lib, rtol=5e-13, atol=1e-300)
    big = np.linspace(2.0, 26.0, 2001)   # the continued fraction: full relative precision
    assert_close("erfc tail", _erfc(big), np.array([math.erfc(t) for t in big]),
                 rtol=2e-15, atol=0.0)


def test_float32_erfc_matches_math_erfc_within_a_few_ulps():
    """float32's erfc (one Chebyshev fit, computed in float32) against the C library's in
    double precision, relatively wherever the result is a normal float32: measured 5.4
    ulps at most; 8 ulps (9.5e-7) leaves margin for another CPU's exp. Beyond the
    normal range, ±inf and NaN: the formula's values."""
    z = np.linspace(-8.0, 10.5, 20001).astype(np.float32)
    expected = np.array([math.erfc(float(t)) for t in z])
    got = _erfc(z)
    assert got.dtype == np.float32
    normal = expected > np.finfo(np.float32).tiny
    assert_close("float32 erfc", got[normal].astype(np.float64), expected[normal], rtol=8 * np.finfo(np.float32).eps,
                 atol=0.0)
    assert np.all(np.abs(got[~normal]) <= 2 * np.finfo(np.float32).tiny)          # subnormal or 0
    edges = _erfc(np.array([np.inf, -np.inf, np.nan, 0.0], np.float32))
    assert edges[0] == 0.0 and edges[1] == 2.0 and np.isnan(edges[2]) and edges[3] == 1.0


# ----------------------------------------------------------------------------------
# feed_forward, with every activation


@pytest.mark.parametrize("activation", ACTIVATIONS)
@given(lead=shapes(1, 3, max_side=4), d_model=st.integers(1, 6), d_ff=st.integers(1, 10),
       bias=st.booleans(), dtype=float_dtypes, seed=seeds, noncontiguous=st.booleans())
def test_feed_forward_parity(activation, lead, d_model, d_ff, bias, dtype, seed,
                             noncontiguous):
    rng = np.random.default_rng(seed)
    x = random_array(rng, lead + (d_model,), dtype)
    W1 = random_array(rng, (d_model, d_ff), dtype, 1 / math.sqrt(d_model))
    W2 = random_array(rng, (d_ff, d_model), dtype, 1 / math.sqrt(d_ff))
    b1 = random_array(rng, (d_ff,), dtype, 0.1) if bias else None
    b2 = random_array(rng, (d_model,), dtype, 0.1) if bias else None
    check_parity("feed_forward", R.feed_forward_forward, R.feed_forward_backward,
                 T.feed_forward, [x, W1, b1, W2, b2], [True] * 5, dtype, rng,
                 noncontiguous, activation=activation)


# ----------------------------------------------------------------------------------
# dropout: the same numpy generator state gives the same mask in both backends


@given(shape=shapes(1, 3), dtype=float_dtypes, seed=seeds,
       p=st.sampled_from([0.0, 0.1, 0.5, 0.9]), training=st.booleans(),
       noncontiguous=st.booleans())
def test_dropout_parity(shape, dtype, seed, p, training, noncontiguous):
    rng = np.random.default_rng(seed)
    x = random_array(rng, shape, dtype)
    mask_seed = int(rng.integers(2**31))
    lim = partial(limits, "dropout", dtype)
    ours, cache = R.dropout_forward(make_noncontiguous(x) if noncontiguous else x, p,
                                    training, np.random.default_rng(mask_seed))
    x_t = to_torch(x, requires_grad=True, noncontiguous=noncontiguous)
    theirs = T.dropout(x_t, p, training, np.random.default_rng(mask_seed))
    assert ours.dtype == dtype
    assert_close("dropout out", ours, theirs, *lim(theirs))
    if training and p > 0:
        kept = ours != 0
        assert_close("dropout kept values", ours[kept], x[kept] / dtype(1 - p), 1e-6, 0.0)
    else:
        assert_close("dropout identity", ours, x, 0.0, 0.0)
    dout = random_array(rng, shape, dtype)
    theirs.backward(to_torch(dout))
    assert_close("dropout grad", R.dropout_backward(dout, cache), x_t.grad, *lim(x_t.grad))


def test_dropout_torch_generator():
    """A torch.Generator gives a reproducible mask (no cross-backend guarantee)."""
    x = torch.randn(50, 40, dtype=torch.float64)
    a = T.dropout(x, 0.3, rng=torch.Generator().manual_seed(7))
    b = T.dropout(x, 0.3, rng=torch.Generator().manual_seed(7))
    c = T.dropout(x, 0.3, rng=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    kept = a != 0
    assert_close("dropout kept", a[kept], x[kept] / 0.7, 1e-12, 0.0)
    assert 0.2 < 1 - kept.double().mean().item() < 0.4   # 2000 draws, p = 0.3: sd 0.01


# ----------------------------------------------------------------------------------
# third opinion: the torch backend against torch.nn.functional


def _grads(fn, *tensors, dout):
    tensors = [t.detach().clone().requires_grad_(True) for t in tensors]
    out = fn(*tensors)
    out.backward(dout)
    return out.detach(), [t.grad for t in tensors]


@pytest.mark.parametrize("op", rows_for(ORACLE), ids=repr)
@given(dtype=float_dtypes, seed=seeds, data=st.data())
def test_op_matches_torch_functional(op, dtype, seed, data):
    case = op.case(data, dtype, "oracle")
    rng = np.random.default_rng(seed)
    leaves = [None if a is None else to_torch(a, requires_grad=d)
              for a, d in zip(case.inputs, case.differentiable)]
    ours = op.explicit(*leaves, **case.kwargs)
    dout = to_torch(random_array(rng, tuple(ours.shape), dtype))
    ours_grads = torch.autograd.grad(ours, [t for t, d in zip(leaves, case.differentiable) if d and t is not None], dout)
    theirs = op.oracle(*leaves, **case.kwargs)
    theirs_grads = torch.autograd.grad(theirs, [t for t, d in zip(leaves, case.differentiable) if d and t is not None], dout)
    lim = partial(limits, op.name, dtype)
    # F.gelu computes x/2 (1 + erf(x/sqrt2)), which cancels to ~1e-17 absolute where
    # ours keeps erfc's tiny tail: identical up to atol, never relatively for x << 0
    pairs = [("", ours, theirs)] + [(f" d{n}", a, b) for n, a, b in zip(
        [n for n, t, d in zip(case.names, leaves, case.differentiable) if d and t is not None],
        ours_grads, theirs_grads)]
    for name, a, b in pairs:
        rtol, atol = lim(b)
        assert_close(f"{op.name}{name} vs F", a.detach(), b.detach(), rtol, max(atol, 1e-15))
