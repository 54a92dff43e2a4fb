"""Parity of the elementary ops: the NumPy reference (hand-written backward) against the
torch backend (autograd), forward AND backward, over hypothesis-drawn shapes, values and
dtypes, with contiguous and non-contiguous inputs and a random upstream gradient.
Then the torch backend against torch.nn.functional, as a third opinion."""
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
from ops_catalogue import OPS
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


@pytest.mark.parametrize("op", OPS, ids=repr)
@given(shape=shapes(1, 4), dtype=float_dtypes, scale=scales, seed=seeds,
       noncontiguous=st.booleans(), data=st.data())
def test_op_parity(op, shape, dtype, scale, seed, noncontiguous, data):
    kwargs = op.kwargs(data, len(shape))
    rng = np.random.default_rng(seed)
    x = random_array(rng, shape, dtype, scale)
    for i, kink in enumerate(op.kinks):   # both backends take the row's derivative there
        x.flat[i % x.size] = kink
    check_parity(op.name, op.forward, op.backward, op.explicit, [x], [True], dtype, rng,
                 noncontiguous, **kwargs)


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


# ----------------------------------------------------------------------------------
# cross-entropy


@st.composite
def cross_entropy_case(draw):
    lead = draw(shapes(0, 3, max_side=5))
    C = draw(st.integers(1, 7))
    ignore_index = draw(st.sampled_from([-100, -1, 0]))
    p_ignore = draw(st.sampled_from([0.0, 0.3, 1.0]))
    return lead, C, ignore_index, p_ignore


def _targets(rng, lead, C, ignore_index, p_ignore):
    targets = rng.integers(0, C, size=lead)                     # (...) int64
    ignored = rng.random(lead) < p_ignore
    return np.where(ignored, ignore_index, targets)


@given(case=cross_entropy_case(), dtype=float_dtypes, scale=scales, seed=seeds,
       label_smoothing=st.sampled_from([0.0, 0.1, 0.37, 1.0]),
       reduction=st.sampled_from(["mean", "sum", "none"]), noncontiguous=st.booleans())
def test_cross_entropy_parity(case, dtype, scale, seed, label_smoothing, reduction,
                              noncontiguous):
    lead, C, ignore_index, p_ignore = case
    rng = np.random.default_rng(seed)
    logits = random_array(rng, lead + (C,), dtype, scale)
    targets = _targets(rng, lead, C, ignore_index, p_ignore)
    check_parity("cross_entropy", R.cross_entropy_forward, R.cross_entropy_backward,
                 T.cross_entropy, [logits, targets], [True, False], dtype, rng,
                 noncontiguous, ignore_index=ignore_index,
                 label_smoothing=label_smoothing, reduction=reduction)


# ----------------------------------------------------------------------------------
# linear, embedding, layer_norm, feed_forward


@given(lead=shapes(0, 3, max_side=4), d_in=st.integers(1, 9), d_out=st.integers(1, 9),
       bias=st.booleans(), dtype=float_dtypes, scale=scales, seed=seeds,
       noncontiguous=st.booleans())
def test_linear_parity(lead, d_in, d_out, bias, dtype, scale, seed, noncontiguous):
    rng = np.random.default_rng(seed)
    x = random_array(rng, lead + (d_in,), dtype, scale)
    W = random_array(rng, (d_in, d_out), dtype, 1 / math.sqrt(d_in))
    b = random_array(rng, (d_out,), dtype) if bias else None
    check_parity("linear", R.linear_forward, R.linear_backward, T.linear, [x, W, b],
                 [True, True, True], dtype, rng, noncontiguous)


@given(lead=shapes(0, 3, max_side=6), V=st.integers(1, 5), d=st.integers(1, 6),
       dtype=float_dtypes, seed=seeds, noncontiguous=st.booleans())
def test_embedding_parity(lead, V, d, dtype, seed, noncontiguous):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, V, size=lead)                         # small V: repeated ids
    W = random_array(rng, (V, d), dtype)
    check_parity("embedding", R.embedding_forward, R.embedding_backward, T.embedding,
                 [ids, W], [False, True], dtype, rng, noncontiguous)


def _layer_norm_input(rng, shape, dtype, scale):
    """Rows for layer norm. Float32 keeps only ~eps * |mean| / std of precision per row
    (tolerances.py, layer_norm), so in float32 every row gets std = scale and
    |mean| / std = 3 |N(0, 1)|; in float64 a common offset gives |mean| / std up to 1e3."""
    z = random_array(rng, shape, np.float64)
    if dtype == np.float64:
        return (scale * z + rng.standard_normal()).astype(dtype)
    if shape[-1] > 1:
        z = (z - z.mean(-1, keepdims=True)) / np.maximum(z.std(-1, keepdims=True), 1e-12)
    return (scale * (z + 3.0 * rng.standard_normal())).astype(dtype)


@given(shape=shapes(1, 3, max_side=8), dtype=float_dtypes, scale=scales, seed=seeds,
       eps=st.sampled_from([1e-5, 1e-3]), noncontiguous=st.booleans())
def test_layer_norm_parity(shape, dtype, scale, seed, eps, noncontiguous):
    rng = np.random.default_rng(seed)
    x = _layer_norm_input(rng, shape, dtype, scale)
    gamma = (1.0 + 0.5 * random_array(rng, shape[-1:], np.float64)).astype(dtype)
    beta = random_array(rng, shape[-1:], dtype)
    check_parity("layer_norm", R.layer_norm_forward, R.layer_norm_backward, T.layer_norm,
                 [x, gamma, beta], [True, True, True], dtype, rng, noncontiguous, eps=eps)


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


@given(case=cross_entropy_case(), dtype=float_dtypes, scale=scales, seed=seeds,
       label_smoothing=st.sampled_from([0.0, 0.1, 1.0]),
       reduction=st.sampled_from(["mean", "sum", "none"]))
def test_cross_entropy_matches_torch_functional(case, dtype, scale, seed, label_smoothing,
                                                reduction):
    lead, C, ignore_index, p_ignore = case
    rng = np.random.default_rng(seed)
    logits = to_torch(random_array(rng, lead + (C,), dtype, scale))
    targets = torch.from_numpy(_targets(rng, lead, C, ignore_index, p_ignore))
    counted = int((targets != ignore_index).sum())
    dout = to_torch(random_array(rng, lead if reduction == "none" else (), dtype))
    kw = dict(ignore_index=ignore_index, label_smoothing=label_smoothing, reduction=reduction)
    ours, (dours,) = _grads(lambda z: T.cross_entropy(z, targets, **kw), logits, dout=dout)
    # F.cross_entropy wants the class axis second: flatten the leading axes to (N, C)
    theirs, (dtheirs,) = _grads(
        lambda z: F.cross_entropy(z.reshape(-1, C), targets.reshape(-1), **kw)
        .reshape(ours.shape), logits, dout=dout)
    lim = partial(limits, "cross_entropy", dtype)
    if reduction == "mean" and counted == 0:   # torch gives NaN; the contract says 0.0
        assert ours.item() == 0.0 and torch.isnan(theirs)
        assert torch.all(dours == 0)
        return
    assert_close("cross_entropy vs F", ours, theirs, *lim(theirs))
    assert_close("cross_entropy grad vs F", dours, dtheirs, *lim(dtheirs))


@given(shape=shapes(1, 3, max_side=8), dtype=float_dtypes, scale=scales, seed=seeds)
def test_layer_norm_matches_torch_functional(shape, dtype, scale, seed):
    # C = 1: the exact dx is 0 (x_hat = 0 whatever x is); both our backends give exactly
    # 0 (test_layer_norm_parity), F.layer_norm gives rounding noise of rstd * ulp(dy),
    # ~3e-5 in float32 with eps = 1e-5, which no tolerance scaled to the output can judge
    shape = shape[:-1] + (max(shape[-1], 2),)
    rng = np.random.default_rng(seed)
    x = to_torch(_layer_norm_input(rng, shape, dtype, scale))
    gamma, beta, dout = (to_torch(random_array(rng, s, dtype))
                         for s in [shape[-1:], shape[-1:], shape])
    ours, dours = _grads(lambda *a: T.layer_norm(*a, eps=1e-5), x, gamma, beta, dout=dout)
    theirs, dtheirs = _grads(lambda x, g, b: F.layer_norm(x, shape[-1:], g, b, eps=1e-5),
                             x, gamma, beta, dout=dout)
    lim = partial(limits, "layer_norm", dtype)
    assert_close("layer_norm vs F", ours, theirs, *lim(theirs))
    for name, a, b in zip(["dx", "dgamma", "dbeta"], dours, dtheirs):
        assert_close(f"layer_norm {name} vs F", a, b, *lim(b))


@pytest.mark.parametrize("op", OPS, ids=repr)
@given(shape=shapes(1, 3), dtype=float_dtypes, scale=scales, seed=seeds, data=st.data())
def test_op_matches_torch_functional(op, shape, dtype, scale, seed, data):
    kwargs = op.kwargs(data, len(shape))
    rng = np.random.default_rng(seed)
    x = to_torch(random_array(rng, shape, dtype, scale))
    dout = to_torch(random_array(rng, shape, dtype))
    ours, (dours,) = _grads(lambda t: op.explicit(t, **kwargs), x, dout=dout)
    theirs, (dtheirs,) = _grads(lambda t: op.oracle(t, **kwargs), x, dout=dout)
    lim = partial(limits, op.name, dtype)
    # F.gelu computes x/2 (1 + erf(x/sqrt2)), which cancels to ~1e-17 absolute where
    # ours keeps erfc's tiny tail: identical up to atol, never relatively for x << 0
    for name, a, b in [("", ours, theirs), (" grad", dours, dtheirs)]:
        rtol, atol = lim(b)
        assert_close(f"{op.name}{name} vs F", a, b, rtol, max(atol, 1e-15))
