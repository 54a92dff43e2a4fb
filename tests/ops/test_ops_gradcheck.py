"""Every hand-written backward of the elementary ops against central finite differences,
in float64, with a random upstream gradient (never all-ones, which hides transposes).

These tests run only the NumPy reference: they prove the backward formulas without
trusting torch (the ops and their inputs come from tests/ops_catalogue.py, which also
names each op's torch functions). Arrays are small (finite differences cost two forwards
per element)."""
import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import minillm.reference as R
from minillm.core.config import ACTIVATIONS
from ops_catalogue import by_name, rows_for
from parity import check_grad, dump_diff_log, random_array, seeds, shapes
from tolerances import FD, FD_STEP


@pytest.fixture(scope="module", autouse=True)
def _report_diffs():
    yield
    dump_diff_log()   # only when MINILLM_DIFF_REPORT names a file


def _grad_check(forward, backward, inputs, names, rng, differentiable=None, **kwargs):
    """Finite differences of ``forward(*inputs)`` against ``backward(dout, cache)``
    for every float input in ``inputs`` that is ``differentiable`` (a flag per input,
    default all; the others, such as RoPE's tables, are held fixed)."""
    out, cache = forward(*inputs, **kwargs)
    dout = random_array(rng, np.shape(out))                     # random upstream gradient
    grads = backward(dout, cache)
    grads = grads if isinstance(grads, tuple) else (grads,)
    differentiable = differentiable or (True,) * len(inputs)
    float_idx = [i for i, (a, d) in enumerate(zip(inputs, differentiable))
                 if d and a is not None and np.issubdtype(np.asarray(a).dtype, np.floating)]
    assert len(grads) >= len(float_idx)

    def f(*varied):
        args = list(inputs)
        for i, a in zip(float_idx, varied):
            args[i] = a
        return forward(*args, **kwargs)[0]

    analytic = [g for g in grads if g is not None]
    check_grad(f, [inputs[i] for i in float_idx], dout, analytic,
               [names[i] for i in float_idx], eps=FD_STEP, rtol=FD.rtol, atol=FD.atol)


@pytest.mark.parametrize("op", rows_for("tests/ops/test_ops_gradcheck.py::test_op_gradcheck"), ids=repr)
@given(seed=seeds, data=st.data())
def test_op_gradcheck(op, seed, data):
    case = op.case(data, np.float64, "gradcheck")
    rng = np.random.default_rng(seed)
    _grad_check(op.forward, op.backward, list(case.inputs), list(case.names), rng,
                case.differentiable, **case.kwargs)


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
