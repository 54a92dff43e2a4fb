"""Gradients exactly at the points where a careless implementation leans on a library's
convention: a ``clamp`` at its bound, ties in a ``max``, a ``where`` whose other side is
not finite, ``relu`` at 0.

torch 2.14 changed what ``clamp`` passes back at its bound (zero instead of the
gradient), and the explicit attention of that time, which guarded its denominator with
``.clamp(min=1.0)``, silently lost the gradient of every row with one key to attend to
(the first row of every causal mask) and, in float32, of every row whose other weights
underflow. Nothing in either backend may depend on such a convention now; these tests
put each op and a whole model exactly at those points and compare, in float64:

- the reference's hand-written backward with central finite differences,
- the torch backend's autograd gradient with finite differences (``gradcheck``),
- the two backends with each other, and the fused path with the explicit one.

All the functions here are smooth at the points tested (softmax is smooth where its
maximum is tied; attention where one key is left or the other weights underflow; layer
norm and RMSNorm where a row is constant or zero, thanks to eps), so finite differences
are the truth. Every op of tests/ops_catalogue.py is put at such a point: the elementwise
ones at their kinks and at 0, the others with an all-zero input. The
one true kink, ReLU at 0, has its derivative defined as 0 (torch.relu's choice), written
as the mask ``[x > 0]`` in both backends, and tested to be exactly that.

The float32 cases compare with the float64 reference: underflow to 0 in float32 is what
a trained model's peaked attention does, and it must not change the gradient by more
than float32's own rounding (tolerances.py: FLOAT32 ops).
"""
import math
import pathlib
import re

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import minillm.reference as R
import minillm.torch_backend as T
from minillm.core.config import ModelConfig
from ops_catalogue import rows_for
from parity import assert_close, check_grad, to_numpy
from tolerances import FD, FD_STEP, FLOAT64, tolerance

RNG_SEED = 20261130


def _torch64(a, grad=True):
    return torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=grad)


# ----------------------------------------------------------------------------------------
# attention: one key, T = 1, all-equal scores, fully masked rows, float32 underflow


def _attention_cases():
    """(name, q, k, v, mask) in float64, each exactly at a point a guard could get wrong."""
    rng = np.random.default_rng(RNG_SEED)
    n = rng.standard_normal
    causal3 = np.tril(np.ones((3, 3), dtype=bool))
    padded = np.ones((2, 1, 3, 3), dtype=bool)
    padded[1, :, :, 2] = False  # the second sequence's last key is padding
    padded[1, :, 2, :] = False  # and its last query may attend to nothing
    one_key = np.zeros((4, 4), dtype=bool)
    one_key[:, 1] = True  # every row has exactly one key
    return [
        # the case: row 0 of a causal mask sums to exactly 1
        ("causal 3x3", n((1, 3, 4)), n((1, 3, 4)), n((1, 3, 2)), causal3),
        ("T=1, causal", n((2, 1, 4)), n((2, 1, 4)), n((2, 1, 3)), np.ones((1, 1), bool)),
        ("T=1, no mask", n((2, 1, 4)), n((2, 1, 4)), n((2, 1, 3)), None),
        ("one key per row", n((2, 4, 3)), n((2, 4, 3)), n((2, 4, 2)), one_key),
        # q = 0: every score 0, a tie between all keys in the max
        ("all-equal scores", np.zeros((2, 3, 4)), n((2, 3, 4)), n((2, 3, 2)), causal3),
        # equal keys: ties in the max with a non-zero query
        ("tied keys", n((1, 3, 4)), np.repeat(n((1, 1, 4)), 3, axis=1), n((1, 3, 2)), None),
        ("fully masked row", n((2, 1, 3, 4)), n((2, 1, 3, 4)), n((2, 1, 3, 2)), padded),
        ("zero inputs", np.zeros((1, 3, 2)), np.zeros((1, 3, 2)), np.zeros((1, 3, 2)), causal3),
    ]


ATTENTION_CASES = _attention_cases()


def _reference_attention_grads(q, k, v, mask, dout):
    (out, _), cache = R.scaled_dot_product_attention_forward(q, k, v, mask)
    return out, R.scaled_dot_product_attention_backward(dout, cache)


def _torch_attention_grads(fn, q, k, v, mask, dout, dtype=torch.float64):
    qt, kt, vt = (torch.tensor(a, dtype=dtype, requires_grad=True) for a in (q, k, v))
    mt = None if mask is None else torch.from_numpy(mask)
    out, _ = fn(qt, kt, vt, mt)
    out.backward(torch.tensor(dout, dtype=dtype))
    return out, (qt.grad, kt.grad, vt.grad)


@pytest.mark.parametrize("case", ATTENTION_CASES, ids=[c[0] for c in ATTENTION_CASES])
def test_attention_at_the_bounds_matches_finite_differences(case):
    name, q, k, v, mask = case
    rng = np.random.default_rng(1)
    out = R.scaled_dot_product_attention(q, k, v, mask)[0]
    dout = rng.standard_normal(out.shape)
    _, ref_grads = _reference_attention_grads(q, k, v, mask, dout)

    def f(q_, k_, v_):
        return R.scaled_dot_product_attention(q_, k_, v_, mask)[0]

    check_grad(f, [q, k, v], dout, list(ref_grads), ["dq", "dk", "dv"],
               eps=FD_STEP, rtol=FD.rtol, atol=FD.atol)
    mt = None if mask is None else torch.from_numpy(mask)
    assert torch.autograd.gradcheck(
        lambda a, b, c: T.scaled_dot_product_attention(a, b, c, mt)[0],
        (_torch64(q), _torch64(k), _torch64(v)), eps=FD_STEP, atol=FD.atol, rtol=FD.rtol)


@pytest.mark.parametrize("case", ATTENTION_CASES, ids=[c[0] for c in ATTENTION_CASES])
def test_attention_at_the_bounds_backends_agree(case):
    """Explicit torch, fused torch and the reference: the same output and gradients."""
    name, q, k, v, mask = case
    dout = np.random.default_rng(2).standard_normal(q.shape[:-1] + v.shape[-1:])
    ref_out, ref_grads = _reference_attention_grads(q, k, v, mask, dout)
    for path, fn in (("explicit", T.scaled_dot_product_attention),
                     ("fused", T.fused_attention)):
        out, grads = _torch_attention_grads(fn, q, k, v, mask, dout)
        assert_close(f"{name} {path} out", out, ref_out, FLOAT64.rtol, FLOAT64.atol)
        for g_name, ours, theirs in zip(("dq", "dk", "dv"), grads, ref_grads):
            assert_close(f"{name} {path} {g_name}", ours, theirs, FLOAT64.rtol, FLOAT64.atol)


def test_attention_first_causal_row_gets_its_query_gradient():
    """The issue's measurement, as a number: row 0 of a 3x3 causal mask attends to one
    key, so its output is v_0 whatever q_0 is, and dq_0 is exactly 0; the rows below
    have a non-zero dq. (The clamp guard on torch 2.14 gave row 0 a dq off by 2.98 on
    this kind of case, from the gradient lost through the clamped sum.)"""
    name, q, k, v, mask = ATTENTION_CASES[0]
    dout = np.random.default_rng(3).standard_normal((1, 3, 2))
    _, (dq, dk, dv) = _torch_attention_grads(T.scaled_dot_product_attention, q, k, v, mask, dout)
    assert torch.all(dq[0, 0] == 0)
    assert torch.all(dq[0, 1:].abs().sum(-1) > 1e-3)
    # d out_0 / d v_0 = 1: all of row 0's upstream gradient reaches v_0
    _, (_, _, dv_ref) = _reference_attention_grads(q, k, v, mask, dout)
    assert_close("dv", dv, dv_ref, FLOAT64.rtol, FLOAT64.atol)


@pytest.mark.parametrize("path", ["explicit", "fused"])
def test_attention_float32_underflow_keeps_its_gradient(path):
    """Rows whose other weights underflow to 0 in float32 sum to exactly 1; their
    gradients must still be the float64 reference's, to float32's attention tolerance.

    Keys are unit vectors e_j; query i scores 141 on its own key (400 / sqrt 8) and 0 on
    the others, a gap beyond float32's e^-104, so even rows are one-hot in float32. Odd
    rows also score 139 on key i - 1 (a gap of 2), so their gradient is
    not trivially zero. A guard that loses the gradient through the row's sum (the clamp
    of torch 2.14) gives even rows dq_i = dA_i k_i / sqrt(8) instead of ~0."""
    T_, d = 5, 8
    k = np.eye(T_, d)[None]                                   # (1, T, d), unit keys
    q = 400.0 * np.eye(T_, d)[None]                           # (1, T, d)
    for i in range(1, T_, 2):
        q[0, i, i - 1] = 139.0 * math.sqrt(d)
    v = np.random.default_rng(4).standard_normal((1, T_, 3))
    mask = np.tril(np.ones((T_, T_), dtype=bool))
    weights32 = R.scaled_dot_product_attention(q.astype(np.float32), k.astype(np.float32),
                                               v.astype(np.float32), mask)[1]
    assert np.all(weights32[0, 0::2].max(-1) == 1.0)         # even rows: one-hot in float32
    assert np.all(weights32[0, 1::2].max(-1) < 1.0)          # odd rows: two keys
    dout = np.random.default_rng(5).standard_normal((1, T_, 3))
    _, ref_grads = _reference_attention_grads(q, k, v, mask, dout)
    fn = T.scaled_dot_product_attention if path == "explicit" else T.fused_attention
    f32 = [a.astype(np.float32) for a in (q, k, v)]
    _, grads = _torch_attention_grads(fn, *f32, mask, dout.astype(np.float32),
                                      dtype=torch.float32)
    _, ref32_grads = _reference_attention_grads(*f32, mask, dout.astype(np.float32))
    tol = tolerance("attention", np.float32)
    for g_name, ours, ref32, ref64 in zip(("dq", "dk", "dv"), grads, ref32_grads, ref_grads):
        ours = to_numpy(ours).astype(np.float64)
        scale = float(np.abs(ref64).max())                    # the gradient's own size
        assert scale > 1e-3
        assert_close(f"{path} {g_name} vs float64 reference", ours / scale, ref64 / scale,
                     tol.rtol, tol.atol)
        assert_close(f"{path} {g_name} vs float32 reference", ours / scale,
                     ref32.astype(np.float64) / scale, tol.rtol, tol.atol)


# ----------------------------------------------------------------------------------------
# softmax, log-softmax, cross-entropy: ties in the max, all-equal, zeros, one class

TIED = {
    "two tied maxima": np.array([[2.0, 2.0, -1.0], [0.5, 3.0, 3.0]]),
    "all equal": np.full((2, 4), 1.5),
    "zeros": np.zeros((3, 3)),
    "one class": np.array([[0.7], [-2.0]]),
    "large tied": np.array([[1e4, 1e4, -1e4]]),
}


@pytest.mark.parametrize("name", list(TIED))
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_softmax_at_ties(op, name):
    x = TIED[name]
    dout = np.random.default_rng(5).standard_normal(x.shape)
    y, cache = getattr(R, f"{op}_forward")(x)
    dx = getattr(R, f"{op}_backward")(dout, cache)
    if name != "large tied":  # at |x| = 1e4, finite differences' rounding (1e4 * 1e-16 / 1e-6)
        check_grad(lambda a: getattr(R, op)(a), [x], dout, [dx], ["dx"], eps=FD_STEP,
                   rtol=FD.rtol, atol=FD.atol)
    xt = _torch64(x)
    yt = getattr(T, op)(xt)
    yt.backward(torch.from_numpy(dout))
    assert_close(f"{op} {name}", yt, y, FLOAT64.rtol, FLOAT64.atol)
    assert_close(f"{op} {name} dx", xt.grad, dx, FLOAT64.rtol, FLOAT64.atol)
    if name != "large tied":  # exceeds FD's tolerance, as above
        assert torch.autograd.gradcheck(getattr(T, op), (_torch64(x),), eps=FD_STEP,
                                        atol=FD.atol, rtol=FD.rtol)


@pytest.mark.parametrize("name", list(TIED))
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_at_ties(name, smoothing):
    logits = TIED[name]
    C = logits.shape[-1]
    targets = np.arange(logits.shape[0]) % C
    loss, cache = R.cross_entropy_forward(logits, targets, label_smoothing=smoothing)
    dlogits = R.cross_entropy_backward(np.asarray(1.0), cache)
    check_grad(lambda a: R.cross_entropy(a, targets, label_smoothing=smoothing), [logits],
               np.asarray(1.0), [dlogits], ["dlogits"], eps=FD_STEP, rtol=FD.rtol, atol=FD.atol)
    lt = _torch64(logits)
    tt = torch.from_numpy(targets)
    loss_t = T.cross_entropy(lt, tt, label_smoothing=smoothing)
    loss_t.backward()
    assert_close(f"cross_entropy {name}", loss_t, loss, FLOAT64.rtol, FLOAT64.atol)
    assert_close(f"cross_entropy {name} grad", lt.grad, dlogits, FLOAT64.rtol, FLOAT64.atol)
    # torch's own kernel as a third opinion (class axis second there)
    lf = _torch64(logits)
    torch.nn.functional.cross_entropy(lf, tt, label_smoothing=smoothing).backward()
    assert_close(f"F.cross_entropy {name} grad", lt.grad, lf.grad, FLOAT64.rtol, FLOAT64.atol)


def test_cross_entropy_with_nothing_counted_has_zero_gradient():
    """N = 0: the loss is 0.0 (the contract), its gradient exactly 0, not NaN."""
    logits = _torch64(np.random.default_rng(6).standard_normal((3, 4)))
    loss = T.cross_entropy(logits, torch.full((3,), -100))
    loss.backward()
    assert loss.item() == 0.0 and torch.all(logits.grad == 0)
    ref_loss, cache = R.cross_entropy_forward(logits.detach().numpy(), np.full(3, -100))
    assert float(ref_loss) == 0.0
    assert np.all(R.cross_entropy_backward(np.asarray(1.0), cache) == 0)


# ----------------------------------------------------------------------------------------
# layer norm on constant rows; activations at 0


@pytest.mark.parametrize("rows", ["constant", "zeros", "one feature"])
def test_layer_norm_where_the_variance_is_zero(rows):
    rng = np.random.default_rng(7)
    x = {"constant": np.full((2, 5), 3.0), "zeros": np.zeros((2, 5)),
         "one feature": rng.standard_normal((3, 1))}[rows]
    C = x.shape[-1]
    gamma, beta = rng.standard_normal(C), rng.standard_normal(C)
    dout = rng.standard_normal(x.shape)
    y, cache = R.layer_norm_forward(x, gamma, beta)
    grads = R.layer_norm_backward(dout, cache)
    check_grad(lambda a, g, b: R.layer_norm(a, g, b), [x, gamma, beta], dout, list(grads),
               ["dx", "dgamma", "dbeta"], eps=FD_STEP, rtol=FD.rtol, atol=FD.atol)
    xt, gt, bt = _torch64(x), _torch64(gamma), _torch64(beta)
    yt = T.layer_norm(xt, gt, bt)
    yt.backward(torch.from_numpy(dout))
    assert_close("layer_norm", yt, y, FLOAT64.rtol, FLOAT64.atol)
    for name, ours, theirs in zip(("dx", "dgamma", "dbeta"), (xt.grad, gt.grad, bt.grad), grads):
        assert_close(f"layer_norm {name}", ours, theirs, FLOAT64.rtol, FLOAT64.atol)


@pytest.mark.parametrize("op", rows_for("tests/ops/test_bounds.py::test_op_derivative_at_its_kinks_and_at_zero"), ids=repr)
def test_op_derivative_at_its_kinks_and_at_zero(op):
    """At a kink (ReLU's 0, and -0) both backends take the derivative the catalogue
    declares (ReLU: [x > 0], torch.relu's choice), written as a selection, so no release's
    convention for max(0, x) can change it. Where the op is smooth at 0, both backends'
    derivative around 0 is the finite differences' (GELU's 1/2)."""
    x = np.array([0.0, -0.0, 1e-8, -1e-8, -1.0, 2.0])
    dout = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    dx_ref = op.backward(dout, op.forward(x)[1])
    xt = _torch64(x)
    op.explicit(xt).backward(torch.from_numpy(dout))
    for kink, slope in op.kinks.items():
        at = (x == kink)                                      # 0.0 == -0.0: both zeros
        assert at.any(), f"{op.name}: the kink {kink} is not among the points"
        np.testing.assert_array_equal(dx_ref[at], dout[at] * slope, err_msg=f"{op.name} reference")
        np.testing.assert_array_equal(xt.grad.numpy()[at], dout[at] * slope, err_msg=f"{op.name} torch")
    if 0.0 not in op.kinks:
        smooth = _torch64(x[:4])
        fd = [np.array([(op.forward(np.array([t + FD_STEP]))[0][0] - op.forward(np.array([t - FD_STEP]))[0][0])
                        / (2 * FD_STEP) for t in x[:4]])]
        np.testing.assert_allclose(dx_ref[:4] / dout[:4], fd[0], rtol=FD.rtol, atol=FD.atol)
        assert_close(op.name, xt.grad, dx_ref, FLOAT64.rtol, FLOAT64.atol)
        assert torch.autograd.gradcheck(op.explicit, (smooth,), eps=FD_STEP, atol=FD.atol, rtol=FD.rtol)


@pytest.mark.parametrize("op", rows_for("tests/ops/test_bounds.py::test_op_at_a_zero_input"), ids=repr)
@given(data=st.data())
def test_op_at_a_zero_input(op, data):
    """Every op that is not elementwise, with its first input all zeros (the rest drawn):
    every row constant, so a norm's variance or mean square is 0 (eps alone keeps it
    finite), softmax's maximum is tied across the row, a rotation has nothing to rotate.
    In float64, the reference's backward is finite differences', and the explicit path's
    and the fused kernel's autograd gradients are the reference's."""
    case = op.case(data, np.float64, "gradcheck")
    inputs = list(case.inputs)
    inputs[0] = np.zeros_like(inputs[0])
    out, cache = op.forward(*inputs, **case.kwargs)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16), label="dout seed"))
    dout = rng.standard_normal(np.shape(out))                  # a random upstream gradient
    grads = op.backward(dout, cache)
    grads = grads if isinstance(grads, tuple) else (grads,)
    varied = [i for i, (a, d) in enumerate(zip(inputs, case.differentiable)) if d and a is not None]
    ours = [g for g in grads if g is not None]
    assert len(ours) == len(varied), f"{op.name}: {len(ours)} gradients for {len(varied)} inputs"

    def f(*values):
        args = list(inputs)
        for i, a in zip(varied, values):
            args[i] = a
        return op.forward(*args, **case.kwargs)[0]

    check_grad(f, [inputs[i] for i in varied], dout, ours,
               [f"{op.name} d{case.names[i]}" for i in varied], eps=FD_STEP, rtol=FD.rtol, atol=FD.atol)
    for path, fn in (("explicit", op.explicit), ("fused", op.fused)):
        if fn is None:
            continue
        leaves = [None if a is None else torch.tensor(a, requires_grad=i in varied)
                  for i, a in enumerate(inputs)]
        out_t = fn(*leaves, **case.kwargs)
        torch_grads = torch.autograd.grad(out_t, [leaves[i] for i in varied], torch.from_numpy(dout))
        assert_close(f"{op.name} {path} out", out_t, out, FLOAT64.rtol, FLOAT64.atol)
        for i, g_t, g in zip(varied, torch_grads, ours):
            assert_close(f"{op.name} {path} d{case.names[i]}", g_t, g, FLOAT64.rtol, FLOAT64.atol)


# ----------------------------------------------------------------------------------------
# a whole model at T = 1 and with peaked attention


@pytest.mark.parametrize("T_", [1, 2])
@pytest.mark.parametrize("positional", ["learned", "rope"])
def test_gpt_gradients_at_short_sequences_agree(T_, positional):
    """A float64 GPT on sequences of 1 and 2 tokens (every first row has one key):
    the same loss and every parameter's gradient in both backends."""
    config = ModelConfig(vocab_size=11, block_size=4, d_model=8, n_heads=2, n_layers=2,
                         d_ff=16, positional=positional, dtype="float64")
    rng = np.random.default_rng(8)
    idx = rng.integers(0, 11, (3, T_))
    targets = rng.integers(0, 11, (3, T_))
    ref, tor = R.GPT(config, seed=0), T.GPT(config, seed=0)
    _, loss = ref(idx, targets)
    loss.backward()
    _, loss_t = tor(torch.from_numpy(idx), torch.from_numpy(targets))
    loss_t.backward()
    assert_close("loss", loss_t, np.asarray(loss.item()), FLOAT64.rtol, FLOAT64.atol,
                 check_dtype=False)
    ref_params = dict(ref.named_parameters())
    for name, p in tor.named_parameters():
        assert_close(f"grad {name}", p.grad, ref_params[name].grad, FLOAT64.rtol, 1e-12)


# ----------------------------------------------------------------------------------------
# the kind, by construction: no bound guard in the torch backend's differentiable code

_BOUND_CALL = re.compile(r"\b(clamp|clamp_min|clamp_max|clip|maximum|minimum|fmax|fmin)\s*\(|"
                         r"\.abs\(|torch\.abs\(|F\.relu\(|torch\.relu\(|\.relu\(")


# (file, the line's code) -> why this call is not a bound guard. Exact lines, so that
# any other use of the same function still fails the test.
NOT_A_GUARD = {
    ("activations.py", "return F.relu(x)"):
        "the fast path's activation kernel, ReLU itself rather than a guard; its gradient at "
        "0 is 0 by definition (threshold_backward on the output), the same [x > 0] as the "
        "explicit relu; tests/ops/test_fast_path.py checks it at 0 and -0",
}


def test_torch_backend_has_no_bound_guards_on_differentiable_values():
    """Every clamp/clip/maximum/minimum/abs/relu call in the torch backend must be on a
    value with no gradient (an integer count, a mask) and say so with a ``no gradient``
    comment on its line, or be listed in NOT_A_GUARD with its reason. A new guard on a
    differentiable value fails here, before it can fail on the next torch release."""
    root = pathlib.Path(T.__file__).parent
    offending, allowed_seen = [], set()
    for path in sorted(root.glob("*.py")):
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if (path.name, code.strip()) in NOT_A_GUARD:
                allowed_seen.add((path.name, code.strip()))
                continue
            if _BOUND_CALL.search(code) and "no gradient" not in line:
                offending.append(f"{path.name}:{lineno}: {line.strip()}")
    assert not offending, "bound guards on differentiable values:\n" + "\n".join(offending)
    assert allowed_seen == set(NOT_A_GUARD), (
        f"NOT_A_GUARD lists lines that no longer exist: {sorted(set(NOT_A_GUARD) - allowed_seen)}")
