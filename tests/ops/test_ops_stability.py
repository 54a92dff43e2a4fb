"""Numerical edges, in both backends: huge logits, all targets ignored, constant rows,
extreme activations. Everything stays finite; the two backends still agree."""
from functools import partial

import numpy as np
import pytest
import torch

import minillm.reference as R
import minillm.torch_backend as T
from minillm.core.config import ACTIVATIONS
from ops_catalogue import rows_for
from parity import assert_close, dump_diff_log, random_array, to_torch
from tolerances import limits, tolerance

DTYPES = [np.float64, np.float32]


@pytest.fixture(scope="module", autouse=True)
def _report_diffs():
    yield
    dump_diff_log()   # only when MINILLM_DIFF_REPORT names a file


def _torch_forward_backward(fn, x, dout, *args, **kwargs):
    x_t = to_torch(x, requires_grad=True)
    out = fn(x_t, *args, **kwargs)
    out.backward(to_torch(dout))
    return out.detach(), x_t.grad


def _huge_logits(dtype, shape=(3, 4, 7)):
    """Logits of +-1e4 (exp would overflow even float64 without the max shift)."""
    rng = np.random.default_rng(0)
    return (np.sign(rng.standard_normal(shape)) * 1e4
            + rng.standard_normal(shape)).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_cross_entropy_huge_logits_finite(dtype, reduction, label_smoothing):
    rng = np.random.default_rng(1)
    logits = _huge_logits(dtype)
    targets = rng.integers(0, 7, size=(3, 4))
    targets[0, 0] = -100
    kw = dict(label_smoothing=label_smoothing, reduction=reduction)
    loss, cache = R.cross_entropy_forward(logits, targets, **kw)
    dloss = random_array(rng, np.shape(loss), dtype)
    dlogits = R.cross_entropy_backward(dloss, cache)
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(dlogits))
    # targets whose logit is ~2e4 below the top one cost ~2e4: large, but not inf
    assert np.max(loss) > 1e3
    loss_t, dlogits_t = _torch_forward_backward(
        lambda z: T.cross_entropy(z, torch.from_numpy(targets), **kw), logits, dloss)
    assert torch.all(torch.isfinite(loss_t)) and torch.all(torch.isfinite(dlogits_t))
    lim = partial(limits, "cross_entropy", dtype)
    assert_close("cross_entropy huge out", loss, loss_t, *lim(loss_t))
    assert_close("cross_entropy huge grad", dlogits, dlogits_t, *lim(dlogits_t))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.3])
def test_cross_entropy_all_ignored_is_zero(dtype, reduction, label_smoothing):
    """No counted target: loss 0.0 (torch's own function gives NaN for "mean") and
    zero gradients, in both backends."""
    rng = np.random.default_rng(2)
    logits = random_array(rng, (2, 3, 5), dtype)
    targets = np.full((2, 3), -100)
    kw = dict(label_smoothing=label_smoothing, reduction=reduction)
    loss, cache = R.cross_entropy_forward(logits, targets, **kw)
    dloss = random_array(rng, np.shape(loss), dtype)
    dlogits = R.cross_entropy_backward(dloss, cache)
    assert loss.dtype == dtype and np.all(loss == 0.0)
    assert dlogits.dtype == dtype and np.all(dlogits == 0.0)
    loss_t, dlogits_t = _torch_forward_backward(
        lambda z: T.cross_entropy(z, torch.from_numpy(targets), **kw), logits, dloss)
    assert torch.all(loss_t == 0.0) and torch.all(dlogits_t == 0.0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_softmax_of_huge_values_finite(dtype, op):
    big = np.finfo(dtype).max / 4   # a shift by the max keeps every exp in (0, 1]
    x = np.array([[big, -big, 0.0, big / 2], [1e4, 1e4, -1e4, 3.0],
                  [-big, -big, -big, -big]], dtype=dtype)
    dout = random_array(np.random.default_rng(3), x.shape, dtype)
    out, cache = getattr(R, f"{op}_forward")(x)
    dx = getattr(R, f"{op}_backward")(dout, cache)
    out_t, dx_t = _torch_forward_backward(getattr(T, op), x, dout)
    for name, a in [("out", out), ("dx", dx), ("torch out", out_t), ("torch dx", dx_t)]:
        assert np.all(np.isfinite(np.asarray(a))), f"{op} {name} not finite: {a}"
    probs = out if op == "softmax" else np.exp(out)
    assert_close(f"{op} rows sum to 1", probs.sum(axis=-1), np.ones(3, dtype), 1e-6, 0.0)
    assert_close(f"{op} equal rows uniform", probs[2], np.full(4, 0.25, dtype), 1e-6, 0.0)
    tol = tolerance(op, dtype)   # unscaled atol: outputs of 1e38 sit beside O(1) ones
    assert_close(f"{op} huge out", out, out_t, tol.rtol, tol.atol)
    assert_close(f"{op} huge grad", dx, dx_t, tol.rtol, tol.atol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", rows_for("tests/ops/test_ops_stability.py::test_op_at_extremes"), ids=repr)
def test_op_at_extremes(dtype, op):
    """Huge and tiny finite inputs stay finite in both backends, which agree, and far from
    0 the op follows its limits at +-inf (``op.at_infinity``; for the activations ReLU's:
    ~0 with slope ~0 on the left, the identity with slope 1 on the right). "Far" on the
    left is where the tail underflows to 0 in both dtypes: GELU's e^{-x^2/2} by -60, SiLU's
    x e^{x} only by ~-750 (-60 e^{-60} = -5e-25), hence -800."""
    x = np.array([-1e4, -800.0, -60.0, -40.0, -10.0, -1e-30, 0.0, 1e-30, 10.0, 40.0, 1e4], dtype=dtype)
    dout = random_array(np.random.default_rng(4), x.shape, dtype)
    out, cache = op.forward(x)
    dx = op.backward(dout, cache)
    out_t, dx_t = _torch_forward_backward(op.explicit, x, dout)
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(dx))
    assert torch.all(torch.isfinite(out_t)) and torch.all(torch.isfinite(dx_t))
    if op.at_infinity is not None:
        far = np.r_[0, 1, len(x) - 2, len(x) - 1]              # -1e4, -800, 40, 1e4
        tail, slope = _torch_forward_backward(op.at_infinity, x[far], dout[far])
        assert_close(f"{op.name} tails", out[far], tail, 1e-7, 1e-30)
        assert_close(f"{op.name} slopes at the tails", dx[far], slope, 1e-7, 1e-30)
    lim = partial(limits, op.name, dtype)
    assert_close(f"{op.name} extremes out", out, out_t, *lim(out_t))
    assert_close(f"{op.name} extremes grad", dx, dx_t, *lim(dx_t))


def test_gelu_keeps_its_tail_for_very_negative_x():
    """x Phi(x) for x = -10 is -7.6e-23, not the 0 that 1 + erf(x / sqrt 2) cancels to."""
    x = np.array([-10.0, -20.0])
    expected = np.array([-7.619853024160526e-23, -5.507248237212468e-88])  # mpmath, 30 digits
    assert_close("gelu tail", R.gelu(x), expected, 1e-12, 0.0)
    assert_close("torch gelu tail", T.gelu(torch.from_numpy(x)), expected, 1e-12, 0.0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_norm_constant_rows_finite(dtype):
    """var = 0: x_hat = 0 (eps keeps rstd finite), y = beta, gradients finite."""
    rng = np.random.default_rng(5)
    x = np.full((2, 3, 6), 7.5, dtype=dtype)
    x[1] = 1e4
    gamma, beta = random_array(rng, (6,), dtype), random_array(rng, (6,), dtype)
    dout = random_array(rng, x.shape, dtype)
    y, cache = R.layer_norm_forward(x, gamma, beta)
    dx, dgamma, dbeta = R.layer_norm_backward(dout, cache)
    assert all(np.all(np.isfinite(a)) for a in (y, dx, dgamma, dbeta))
    assert_close("layer_norm constant row", y, np.broadcast_to(beta, x.shape), 0.0, 1e-6)
    x_t, g_t, b_t = (to_torch(a, requires_grad=True) for a in (x, gamma, beta))
    T.layer_norm(x_t, g_t, b_t).backward(to_torch(dout))
    lim = partial(limits, "layer_norm", dtype)
    for name, a, b in [("dx", dx, x_t.grad), ("dgamma", dgamma, g_t.grad),
                       ("dbeta", dbeta, b_t.grad)]:
        assert_close(f"layer_norm constant {name}", a, b, *lim(b))


@pytest.mark.parametrize("dtype", DTYPES)
def test_float32_stays_float32_through_backward(dtype):
    """dtype in = dtype out, for every output and every gradient of the reference."""
    rng = np.random.default_rng(6)
    x = random_array(rng, (2, 3, 4), dtype)
    W1, W2 = random_array(rng, (4, 5), dtype), random_array(rng, (5, 4), dtype)
    b1, b2 = random_array(rng, (5,), dtype), random_array(rng, (4,), dtype)
    checks = []
    for activation in ACTIVATIONS:
        out, cache = R.feed_forward_forward(x, W1, b1, W2, b2, activation)
        checks += [out, *R.feed_forward_backward(random_array(rng, out.shape, dtype), cache)]
    out, cache = R.layer_norm_forward(x, W2[0], b2)
    checks += [out, *R.layer_norm_backward(out, cache)]
    loss, cache = R.cross_entropy_forward(x, rng.integers(0, 4, (2, 3)), label_smoothing=0.1)
    checks += [loss, R.cross_entropy_backward(np.asarray(1.5, dtype), cache)]
    out, cache = R.dropout_forward(x, 0.5, rng=rng)
    checks += [out, R.dropout_backward(out, cache)]
    out, cache = R.embedding_forward(np.array([[0, 3]]), W1)
    checks += [out, R.embedding_backward(out, cache)]
    for i, a in enumerate(checks):
        assert a.dtype == dtype, f"output {i}: {dtype.__name__} in, {a.dtype} out"
