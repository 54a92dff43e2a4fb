"""Bad input to the elementary ops raises ValueError saying what was expected and what
came, in both backends (the same checks, from minillm/core/_validate.py)."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import minillm.reference as R
import minillm.torch_backend as T
from ops_catalogue import OPS


class Backend:
    """An op module plus how to make its arrays, so one test body serves both."""

    def __init__(self, name, module, array):
        self.name, self.module, self.array = name, module, array

    def __getattr__(self, op):
        return getattr(self.module, op)

    def __repr__(self):
        return self.name


BACKENDS = [
    Backend("reference", R, lambda a, dtype=None: np.asarray(a, dtype=dtype)),
    Backend("torch", T, lambda a, dtype=None: torch.from_numpy(np.asarray(a, dtype=dtype))),
]


@pytest.fixture(params=BACKENDS, ids=repr)
def B(request):
    return request.param


def f64(B, shape):
    return B.array(np.random.default_rng(0).standard_normal(shape))


def ints(B, values):
    return B.array(np.asarray(values, dtype=np.int64))


# ----------------------------------------------------------------------------------


def test_softmax_errors(B):
    with pytest.raises(ValueError, match="expected x to have a floating-point dtype, got int64"):
        B.softmax(ints(B, [[1, 2, 3]]))
    with pytest.raises(ValueError, match=r"expected axis in \[-2, 2\) .* got 2"):
        B.log_softmax(f64(B, (2, 3)), axis=2)
    with pytest.raises(ValueError, match="expected axis to be an int, got 1.0"):
        B.softmax(f64(B, (2, 3)), axis=1.0)
    with pytest.raises(ValueError, match=r"at least one entry along axis 1, got shape \(2, 0\)"):
        B.softmax(f64(B, (2, 0)))
    with pytest.raises(ValueError, match="at least 1 dimension"):
        B.softmax(B.array(np.float64(1.0)))


@pytest.mark.parametrize("op", OPS, ids=repr)
@settings(max_examples=5)
@given(data=st.data())
def test_op_refuses_integer_input(op, data):
    """Every op of the catalogue (tests/ops_catalogue.py), in both backends: its first
    input with a gradient, given as integers, is refused by name."""
    case = op.case(data, np.float64, "parity")
    i = case.differentiable.index(True)
    inputs = list(case.inputs)
    inputs[i] = np.round(inputs[i]).astype(np.int64)
    message = f"expected {case.names[i]} to have a floating-point dtype, got int64"
    with pytest.raises(ValueError, match=message):
        op.forward(*inputs, **case.kwargs)
    with pytest.raises(ValueError, match=message):
        op.explicit(*[None if a is None else torch.from_numpy(np.asarray(a)) for a in inputs], **case.kwargs)


def test_cross_entropy_errors(B):
    logits, targets = f64(B, (2, 3, 5)), ints(B, [[0, 1, 4], [2, -100, 3]])
    B.cross_entropy(logits, targets)   # the valid call the cases below break one by one
    with pytest.raises(ValueError, match="expected logits to have a floating-point dtype, got int64"):
        B.cross_entropy(ints(B, np.zeros((2, 3, 5))), targets)
    with pytest.raises(ValueError, match="expected targets to have an integer dtype, got float64"):
        B.cross_entropy(logits, B.array(np.zeros((2, 3))))
    with pytest.raises(ValueError, match=r"expected targets of shape \(2, 3\) .*got \(3, 2\)"):
        B.cross_entropy(logits, ints(B, np.zeros((3, 2))))
    with pytest.raises(ValueError, match=r"expected every entry of targets in \[0, 5\).*got 5"):
        B.cross_entropy(logits, ints(B, [[0, 1, 5], [2, 3, 4]]))
    with pytest.raises(ValueError, match=r"in \[0, 5\).*ignore_index=-100, got -1"):
        B.cross_entropy(logits, ints(B, [[0, 1, -1], [2, 3, 4]]))
    with pytest.raises(ValueError, match=r"expected reduction to be one of \('mean', 'sum', 'none'\), got 'avg'"):
        B.cross_entropy(logits, targets, reduction="avg")
    with pytest.raises(ValueError, match=r"expected label_smoothing in \[0.0, 1.0\], got 1.5"):
        B.cross_entropy(logits, targets, label_smoothing=1.5)
    with pytest.raises(ValueError, match="expected ignore_index to be an int, got 0.5"):
        B.cross_entropy(logits, targets, ignore_index=0.5)


def test_linear_errors(B):
    x, W, b = f64(B, (2, 3, 4)), f64(B, (4, 5)), f64(B, (5,))
    with pytest.raises(ValueError, match=r"expected x to end in 4 \(d_in of W \(4, 5\)\), got shape \(2, 3, 3\)"):
        B.linear(f64(B, (2, 3, 3)), W, b)
    with pytest.raises(ValueError, match=r"expected b of shape \(5,\) .*got \(4,\)"):
        B.linear(x, W, f64(B, (4,)))
    with pytest.raises(ValueError, match="expected W to have 2 dimension"):
        B.linear(x, f64(B, (4, 5, 1)), b)
    with pytest.raises(ValueError, match=r"expected W to have the dtype of x \(float32\), got float64"):
        B.linear(B.array(np.ones((2, 4)), np.float32), W)


def test_embedding_errors(B):
    W = f64(B, (5, 3))
    with pytest.raises(ValueError, match=r"expected every entry of ids in \[0, 5\) \(V=5 rows of W\), got 5"):
        B.embedding(ints(B, [[0, 5]]), W)
    with pytest.raises(ValueError, match="got -1"):
        B.embedding(ints(B, [[0, -1]]), W)
    with pytest.raises(ValueError, match="expected ids to have an integer dtype, got float64"):
        B.embedding(f64(B, (2,)), W)


def test_layer_norm_errors(B):
    x, g, b = f64(B, (2, 4)), f64(B, (4,)), f64(B, (4,))
    with pytest.raises(ValueError, match=r"expected gamma of shape \(4,\) .*got \(3,\)"):
        B.layer_norm(x, f64(B, (3,)), b)
    with pytest.raises(ValueError, match=r"expected eps in \(0.0, inf\), got -1"):
        B.layer_norm(x, g, b, eps=-1)
    with pytest.raises(ValueError, match="expected beta to have the dtype of x"):
        B.layer_norm(x, g, B.array(np.zeros(4), np.float32))


def test_feed_forward_errors(B):
    x, W1, b1, W2, b2 = f64(B, (2, 4)), f64(B, (4, 6)), f64(B, (6,)), f64(B, (6, 4)), f64(B, (4,))
    with pytest.raises(ValueError, match=r"expected activation to be one of .*got 'swish'"):
        B.feed_forward(x, W1, b1, W2, b2, activation="swish")
    with pytest.raises(ValueError, match=r"expected W2 of shape \(6, 4\) .*got \(4, 6\)"):
        B.feed_forward(x, W1, b1, f64(B, (4, 6)), b2)
    with pytest.raises(ValueError, match=r"expected x to end in 4 \(d_in of W1"):
        B.feed_forward(f64(B, (2, 5)), W1, b1, W2, b2)


def test_dropout_errors(B):
    x = f64(B, (3, 4))
    for p in (1.0, -0.1, 2, float("nan")):
        with pytest.raises(ValueError, match=r"expected p in \[0.0, 1.0\), got"):
            B.dropout(x, p, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="expected rng to be a numpy.random.Generator.*got int"):
        B.dropout(x, 0.5, rng=42)
    with pytest.raises(ValueError, match="expected training to be True or False, got 'yes'"):
        B.dropout(x, 0.5, training="yes")


def test_torch_backend_wants_tensors():
    with pytest.raises(ValueError, match="expected x to be a torch.Tensor, got ndarray"):
        T.softmax(np.ones((2, 3)))
    with pytest.raises(ValueError, match="expected targets to be a torch.Tensor, got list"):
        T.cross_entropy(torch.ones(2, 3), [0, 1])


def test_reference_backward_checks_upstream_shape():
    x = np.random.default_rng(0).standard_normal((2, 3))
    _, cache = R.softmax_forward(x)
    with pytest.raises(ValueError, match=r"expected dy of shape \(2, 3\) .*got \(3, 2\)"):
        R.softmax_backward(np.ones((3, 2)), cache)
    _, cache = R.cross_entropy_forward(x, np.array([0, 1]))
    with pytest.raises(ValueError, match=r"expected dloss of shape \(\) .*got \(2,\)"):
        R.cross_entropy_backward(np.ones(2), cache)
    _, cache = R.linear_forward(x, np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"expected dy of shape \(2, 4\)"):
        R.linear_backward(np.ones((2, 3)), cache)
