"""Every hand-written backward of the elementary ops against central finite differences,
in float64, with a random upstream gradient (never all-ones, which hides transposes).

These tests use only the NumPy reference: they prove the backward formulas without
trusting torch. Arrays are small (finite differences cost two forwards per element)."""
import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import minillm.reference as R
from minillm.core.config import ACTIVATIONS
from ops_catalogue import OPS, away_from_kinks, by_name
from parity import check_grad, dump_diff_log, random_array, seeds, shapes
from tolerances import FD, FD_STEP


@pytest.fixture(scope="module", autouse=True)
def _report_diffs():
    yield
    dump_diff_log()   # only when MINILLM_DIFF_REPORT names a file


def _grad_check(forward, backward, inputs, names, rng, **kwargs):
    """Finite differences of ``forward(*inputs)`` against ``backward(dout, cache)``
    for every float input in ``inputs`` (others are held fixed)."""
    out, cache = forward(*inputs, **kwargs)
    dout = random_array(rng, np.shape(out))                     # random upstream gradient
    grads = backward(dout, cache)
    grads = grads if isinstance(grads, tuple) else (grads,)
    float_idx = [i for i, a in enumerate(inputs)
                 if a is not None and np.issubdtype(np.asarray(a).dtype, np.floating)]
    assert len(grads) >= len(float_idx)

    def f(*varied):
        args = list(inputs)
        for i, a in zip(float_idx, varied):
            args[i] = a
        return forward(*args, **kwargs)[0]

    analytic = [g for g in grads if g is not None]
    check_grad(f, [inputs[i] for i in float_idx], dout, analytic,
               [names[i] for i in float_idx], eps=FD_STEP, rtol=FD.rtol, atol=FD.atol)


@pytest.mark.parametrize("op", OPS, ids=repr)
@given(shape=shapes(1, 3, max_side=5), seed=seeds, scale=st.sampled_from([0.5, 3.0, 8.0]),
       data=st.data())
def test_op_gradcheck(op, shape, seed, scale, data):
    kwargs = op.kwargs(data, len(shape))
    rng = np.random.default_rng(seed)
    x = away_from_kinks(op, random_array(rng, shape, scale=scale))
    _grad_check(op.forward, op.backward, [x], ["x"], rng, **kwargs)


@given(lead=shapes(0, 2, max_side=4), C=st.integers(1, 6), seed=seeds,
       label_smoothing=st.sampled_from([0.0, 0.2, 1.0]),
       reduction=st.sampled_from(["mean", "sum", "none"]),
       p_ignore=st.sampled_from([0.0, 0.4]))
def test_cross_entropy_gradcheck(lead, C, seed, label_smoothing, reduction, p_ignore):
    rng = np.random.default_rng(seed)
    logits = random_array(rng, lead + (C,), scale=3.0)
    targets = np.where(rng.random(lead) < p_ignore, -100, rng.integers(0, C, size=lead))
    _grad_check(R.cross_entropy_forward, R.cross_entropy_backward, [logits, targets],
                ["logits", "targets"], rng, label_smoothing=label_smoothing,
                reduction=reduction)


@given(lead=shapes(0, 2, max_side=3), d_in=st.integers(1, 5), d_out=st.integers(1, 5),
       bias=st.booleans(), seed=seeds)
def test_linear_gradcheck(lead, d_in, d_out, bias, seed):
    rng = np.random.default_rng(seed)
    x = random_array(rng, lead + (d_in,))
    W = random_array(rng, (d_in, d_out))
    b = random_array(rng, (d_out,)) if bias else None
    _grad_check(R.linear_forward, R.linear_backward, [x, W, b], ["x", "W", "b"], rng)


@given(lead=shapes(1, 2, max_side=5), V=st.integers(1, 4), d=st.integers(1, 4), seed=seeds)
def test_embedding_gradcheck(lead, V, d, seed):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, V, size=lead)                         # repeated ids likely
    W = random_array(rng, (V, d))
    _grad_check(R.embedding_forward, R.embedding_backward, [ids, W], ["ids", "W"], rng)


@given(shape=shapes(1, 3, max_side=5), seed=seeds, scale=st.sampled_from([0.3, 1.0, 5.0]))
def test_layer_norm_gradcheck(shape, seed, scale):
    rng = np.random.default_rng(seed)
    x = random_array(rng, shape, scale=scale)
    gamma = random_array(rng, shape[-1:])
    beta = random_array(rng, shape[-1:])
    _grad_check(R.layer_norm_forward, R.layer_norm_backward, [x, gamma, beta],
                ["x", "gamma", "beta"], rng, eps=1e-5)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@given(lead=shapes(1, 2, max_side=3), d_model=st.integers(1, 4), d_ff=st.integers(1, 6),
       bias=st.booleans(), seed=seeds)
def test_feed_forward_gradcheck(activation, lead, d_model, d_ff, bias, seed):
    rng = np.random.default_rng(seed)
    x = random_array(rng, lead + (d_model,))
    W1 = random_array(rng, (d_model, d_ff), scale=1 / math.sqrt(d_model))
    W2 = random_array(rng, (d_ff, d_model), scale=1 / math.sqrt(d_ff))
    b1 = random_array(rng, (d_ff,), scale=0.5) if bias else None
    b2 = random_array(rng, (d_model,), scale=0.5) if bias else None
    kinks = list(by_name(activation).kinks)   # keep the hidden layer off the kinks (ReLU's 0)
    if kinks:
        assume(np.min(np.abs(R.linear(x, W1, b1)[..., None] - kinks)) > 1e-3)
    _grad_check(R.feed_forward_forward, R.feed_forward_backward, [x, W1, b1, W2, b2],
                ["x", "W1", "b1", "W2", "b2"], rng, activation=activation)


@given(shape=shapes(1, 3, max_side=5), seed=seeds, p=st.sampled_from([0.0, 0.3, 0.8]),
       training=st.booleans())
def test_dropout_gradcheck(shape, seed, p, training):
    rng = np.random.default_rng(seed)
    x = random_array(rng, shape)
    mask_seed = int(rng.integers(2**31))

    # a fresh generator with the same seed on every call: the same mask each time
    def forward(x):
        return R.dropout_forward(x, p, training, np.random.default_rng(mask_seed))

    _grad_check(forward, R.dropout_backward, [x], ["x"], rng)
