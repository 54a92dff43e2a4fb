"""Non-finite values (NaN, +inf, -inf) through every op and optimizer, in both backends,
against torch's own functions on the same input.

The rule (docs/architecture.md, "Non-finite values"): where an input holds NaN or +-inf,
each backend's output has NaN, +inf and -inf at exactly the positions where torch's own
function has them, and the same finite values everywhere else. The oracles are
``torch.softmax``, ``torch.log_softmax``, ``F.relu``, ``F.gelu``, ``F.silu``,
``F.layer_norm``, ``F.rms_norm``, ``F.linear``, ``F.embedding``, ``F.cross_entropy``,
``F.dropout``'s product, the complex product for both RoPE layouts (as LLaMA writes it),
the head-by-head definition of ``repeat_kv``, the masked_fill + softmax composition for
attention, ``torch.optim.SGD/Adam/AdamW`` and ``torch.nn.utils.clip_grad_norm_``.
Gradients are compared the same way, with a finite upstream gradient and, for the
elementwise ops, with a non-finite one too. Every op of the catalogue is driven here:
the one-input ops on fixed rows of non-finite values (``test_op_nonfinite_values``), the
ops of several inputs on their drawn calls with NaN, +inf, -inf planted in one input
(``test_multi_input_op_nonfinite_values``); where a row states that its gradients group
non-finite terms otherwise than torch's kernel (``nonfinite_gradients``: layer norm with
an infinite gain, the gated feed-forward), they are checked never to hide a NaN.

The activations are the exception to "where torch has them": at +inf and -inf their
value and slope are the formula's limits (``at_infinity`` in tests/ops_catalogue.py;
GELU(-inf) = SiLU(-inf) = 0, not torch's -inf * 0 = NaN), and torch's F.gelu and F.silu
are compared only at finite points: F.gelu's vectorised float32 kernel gives NaN at +inf on
AVX-512 CPUs and inf on others, F.silu's gradient is NaN at +-inf (``fused_departure`` in
the catalogue): a value that depends on the CPU, or is NaN where the limit exists, is no truth.

The documented choices where minillm differs from torch are tested as such: a query row
with nothing to attend to gives zero weights and output (torch: NaN); a mean
cross-entropy with no counted target is 0.0 (torch: NaN); a masked-out key is ignored
even when it is not finite.

Tolerances for the finite values: those of tests/tolerances.py for the op and dtype (the
same formulas and the same rounding as the parity tests); the non-finite positions are
compared exactly. The optimizers use test_optim.py's float64 bound, atol 1e-10.

One difference is kept and marked ``xfail(strict=True)`` with its reason (the catalogue's
``explicit_nonfinite_upstream``): the explicit GELU and SiLU are products differentiated
by autograd, so an infinite upstream gradient at x = 0 gives NaN where the formula gives
inf (finite upstream gradients match).
If it ever stops differing, the strict mark fails and is to be removed.
"""
import logging
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import minillm.reference as R
import minillm.torch_backend as T
from minillm.core.schedule import warmup_cosine
from parity import to_numpy, to_torch
from minillm.core.config import ACTIVATIONS
from ops_catalogue import ELEMENTWISE, ROWWISE, by_name, rows, rows_for
from tolerances import limits

NAN, INF = math.nan, math.inf
DTYPES = [np.float64, np.float32]


@pytest.fixture(autouse=True)
def _quiet_numpy():
    """NumPy warns on 'invalid value' (inf - inf, 0 * inf): expected here, not a failure."""
    with np.errstate(all="ignore"):
        yield


def assert_same_nonfinite(name, ours, theirs, op, dtype):
    """NaN, +inf and -inf at the same positions, finite values within ``op``'s tolerance."""
    ours = np.asarray(to_numpy(ours), dtype=np.float64)
    theirs = np.asarray(to_numpy(theirs), dtype=np.float64)
    assert ours.shape == theirs.shape, f"{name}: shape {ours.shape} vs torch's {theirs.shape}"
    for kind, test in (("NaN", np.isnan), ("+inf", np.isposinf), ("-inf", np.isneginf)):
        a, b = test(ours), test(theirs)
        assert np.array_equal(a, b), (
            f"{name}: {kind} at {np.argwhere(a).tolist()}, torch has it at {np.argwhere(b).tolist()}"
            f"\nours:  {ours}\ntorch: {theirs}")
    finite = np.isfinite(theirs)
    if finite.any():
        rtol, atol = limits(op, dtype, theirs[finite])
        np.testing.assert_allclose(ours[finite], theirs[finite], rtol=rtol, atol=atol,
                                   err_msg=f"{name}: finite values differ")


def assert_nonfinite_covers(name, ours, theirs, op, dtype):
    """Weaker, for gradients of a forward that is already NaN (see the attention tests):
    ours is non-finite wherever torch's is (a NaN is never hidden), and where both are
    finite they agree."""
    ours = np.asarray(to_numpy(ours), dtype=np.float64)
    theirs = np.asarray(to_numpy(theirs), dtype=np.float64)
    hidden = ~np.isfinite(theirs) & np.isfinite(ours)
    assert not hidden.any(), f"{name}: finite at {np.argwhere(hidden).tolist()} where torch is not"
    both = np.isfinite(ours) & np.isfinite(theirs)
    if both.any():
        rtol, atol = limits(op, dtype, theirs[both])
        np.testing.assert_allclose(ours[both], theirs[both], rtol=rtol, atol=atol, err_msg=name)


def _torch_grads(fn, arrays, dout):
    """``fn`` on leaf tensors of ``arrays``, backward with ``dout``: (out, [grads])."""
    leaves = [to_torch(a, requires_grad=True) for a in arrays]
    out = fn(*leaves)
    out.backward(to_torch(dout))
    return out.detach(), [t.grad for t in leaves]


# Rows of C = 5 logits / features: one non-finite entry of each kind, whole rows of one
# kind, +inf beside -inf, a single finite entry among -inf, and a finite row (unaffected).
ROWS = np.array([
    [1.0, NAN, 2.0, 0.5, -1.0],
    [1.0, INF, 2.0, 0.5, -1.0],
    [1.0, -INF, 2.0, 0.5, -1.0],
    [-INF] * 5,
    [INF] * 5,
    [NAN] * 5,
    [INF, -INF, 0.0, 1.0, 2.0],
    [INF, INF, 1.0, 0.0, 2.0],
    [-INF, -INF, 3.0, -INF, -INF],
    [0.3, -1.2, 2.0, 0.5, 1.0],
])
# Elementwise: the three non-finite values, signed zeros, huge and ordinary values.
ELEMENTS = np.array([[NAN, INF, -INF, 0.0, -0.0, -1.0, 3.0, 1e30, -1e30, 50.0, -50.0, 0.7]])


def _upstream(shape, kind, dtype, seed=0):
    """A finite random upstream gradient, or one with NaN, +inf, -inf planted in it."""
    d = np.random.default_rng(seed).standard_normal(shape)
    if kind == "nonfinite":
        flat = d.reshape(-1)
        flat[0::5], flat[1::7], flat[3::11] = NAN, INF, -INF
    return d.astype(dtype)


# ----------------------------------------------------------------------------- elementwise
# and row-wise ops, from the catalogue (tests/ops_catalogue.py)

def _ln_params(dtype):
    return np.array([1.0, 2.0, 0.5, 1.0, -1.5], dtype=dtype), np.array([0.0, 1.0, 0.0, -1.0, 0.2], dtype=dtype)


def _op_cases():
    for op in rows_for("tests/ops/test_nonfinite.py::test_op_nonfinite_values"):
        for dtype in DTYPES:
            for dout in ("finite", "nonfinite"):
                for side in ("reference", "torch_backend"):
                    marks = []
                    if op.explicit_nonfinite_upstream and (dout, side) == ("nonfinite", "torch_backend"):
                        marks = [pytest.mark.xfail(strict=True, reason=op.explicit_nonfinite_upstream)]
                    yield pytest.param(op, dtype, dout, side, marks=marks,
                                       id=f"{op.name}-{np.dtype(dtype).name}-{dout}-{side}")


@pytest.mark.parametrize("op,dtype,dout_kind,side", list(_op_cases()))
def test_op_nonfinite_values(op, dtype, dout_kind, side):
    """The expected values are ``op.formula``: torch's function at finite points and, for
    an elementwise op, the formula's limits at +-inf (``op.at_infinity``), never a
    kernel's value there (``op.fused_departure`` says where torch's differs). A row-wise
    op's non-finite values are torch's arithmetic, as docs/architecture.md documents."""
    x = (ROWS if op.kind == ROWWISE else ELEMENTS).astype(dtype)
    dout = _upstream(x.shape, dout_kind, dtype)
    expected, (expected_dx,) = _torch_grads(op.formula, [x], dout)
    if side == "reference":
        out, cache = op.forward(x)
        dx = op.backward(dout, cache)
    else:
        out, (dx,) = _torch_grads(op.explicit, [x], dout)
    assert_same_nonfinite(f"{op.name} forward", out, expected, op.name, dtype)
    assert_same_nonfinite(f"{op.name} backward", dx, expected_dx, op.name, dtype)


def _multi_cases():
    for op in rows_for("tests/ops/test_nonfinite.py::test_multi_input_op_nonfinite_values"):
        for side in ("reference", "torch_backend"):
            yield pytest.param(op, side, id=f"{op.name}-{side}")


@pytest.mark.parametrize("op,side", list(_multi_cases()))
@given(dtype=st.sampled_from(DTYPES), data=st.data())
def test_multi_input_op_nonfinite_values(op, side, dtype, data):
    """An op of several inputs, on the catalogue's drawn call with NaN, +inf and -inf
    planted in one of its differentiable inputs (the values and the places drawn too),
    and a finite random upstream gradient: the output and every gradient hold NaN, +inf
    and -inf where ``op.formula`` (torch.nn.functional's kernels, an activation's limits
    at +-inf) holds them, and the same finite values elsewhere."""
    case = op.case(data, dtype, "oracle")     # the inputs a torch.nn.functional kernel is judged on
    inputs = [None if a is None else np.array(a) for a in case.inputs]
    planted = [i for i, (a, d) in enumerate(zip(inputs, case.differentiable)) if d and a is not None]
    i = data.draw(st.sampled_from(planted), label="planted in")
    flat = inputs[i].reshape(-1)
    values = data.draw(st.lists(st.sampled_from([NAN, INF, -INF]), min_size=1, max_size=3), label="values")
    for value in values:
        flat[data.draw(st.integers(0, flat.size - 1), label="at")] = value
    with_grad = [d and a is not None for a, d in zip(inputs, case.differentiable)]
    leaves = [None if a is None else to_torch(a, requires_grad=g) for a, g in zip(inputs, with_grad)]
    expected = op.formula(*leaves, **case.kwargs)
    dout = _upstream(tuple(expected.shape), "finite", dtype)
    expected_grads = torch.autograd.grad(expected, [t for t, g in zip(leaves, with_grad) if g],
                                         to_torch(dout))
    if side == "reference":
        out, cache = op.forward(*inputs, **case.kwargs)
        grads = op.backward(dout, cache)
        grads = [g for g, w in zip(grads if isinstance(grads, tuple) else (grads,),
                                   [w for w, d in zip(with_grad, case.differentiable) if d]) if w]
    else:
        leaves = [None if a is None else to_torch(a, requires_grad=g) for a, g in zip(inputs, with_grad)]
        out = op.explicit(*leaves, **case.kwargs)
        grads = torch.autograd.grad(out, [t for t, g in zip(leaves, with_grad) if g], to_torch(dout))
    assert_same_nonfinite(f"{op.name} forward", out, expected.detach(), op.name, dtype)
    names = [n for n, g in zip(case.names, with_grad) if g]
    compare = assert_nonfinite_covers if op.nonfinite_gradients else assert_same_nonfinite
    for name, g, e in zip(names, grads, expected_grads):
        compare(f"{op.name} d{name} ({case.names[i]} planted)", g, e, op.name, dtype)


def test_the_activations_limits_at_infinity_are_the_formulas():
    """The limits the catalogue declares, written out: GELU(x) = x Phi(x) -> x, slope -> 1
    as x -> +inf, and -> 0, slope -> 0 as x -> -inf (tanh form alike); the same in float32
    and float64 and on every CPU, since no kernel's value at +-inf is taken."""
    x = np.array([INF, -INF, INF, -INF])
    dout = np.array([2.0, 2.0, INF, INF])
    for op in rows(ELEMENTWISE):
        for dtype in DTYPES:
            out, (dx,) = _torch_grads(op.formula, [x.astype(dtype)], dout.astype(dtype))
            np.testing.assert_array_equal(to_numpy(out), [INF, 0.0, INF, 0.0], err_msg=op.name)
            np.testing.assert_array_equal(to_numpy(dx), [2.0, 0.0, INF, 0.0], err_msg=op.name)


def test_softmax_of_a_row_of_minus_inf_is_nan_as_in_torch():
    """The choice written down: plain softmax follows torch (a row of -inf is 0/0 = NaN,
    a row with one +inf is NaN); only attention turns an empty row into zeros."""
    x = np.array([[-INF, -INF, -INF], [0.0, INF, 1.0], [0.0, -INF, 0.0]])
    for out in (R.softmax(x), T.softmax(torch.tensor(x))):
        out = to_numpy(out)
        assert np.isnan(out[0]).all() and np.isnan(out[1]).all()
        np.testing.assert_array_equal(out[2], [0.5, 0.0, 0.5])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("where", ["x", "gamma", "beta"])
@pytest.mark.parametrize("side", ["reference", "torch_backend"])
def test_layer_norm_matches_torch(dtype, where, side):
    gamma, beta = _ln_params(dtype)
    x = ROWS.astype(dtype) if where == "x" else ROWS[-1:].repeat(3, axis=0).astype(dtype)
    if where != "x":
        planted = gamma if where == "gamma" else beta
        planted[1], planted[2], planted[4] = NAN, INF, -INF
    dy = _upstream(x.shape, "finite", dtype)

    def oracle(x_, g_, b_):
        return F.layer_norm(x_, (x_.shape[-1],), g_, b_)

    expected, expected_grads = _torch_grads(oracle, [x, gamma, beta], dy)
    if side == "reference":
        out, cache = R.layer_norm_forward(x, gamma, beta)
        grads = R.layer_norm_backward(dy, cache)
    else:
        out, grads = _torch_grads(T.layer_norm, [x, gamma, beta], dy)
    assert_same_nonfinite("layer_norm forward", out, expected, "layer_norm", dtype)
    for name, g, e in zip(("dx", "dgamma", "dbeta"), grads, expected_grads):
        assert_same_nonfinite(f"layer_norm {name}", g, e, "layer_norm", dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("where", ["x", "W", "b", "dy"])
@pytest.mark.parametrize("side", ["reference", "torch_backend"])
def test_linear_matches_torch(dtype, where, side):
    rng = np.random.default_rng(3)
    x, W, b = (rng.standard_normal(s).astype(dtype) for s in ((4, 3), (3, 2), (2,)))
    planted = {"x": x, "W": W, "b": b}.get(where)
    if planted is not None:
        flat = planted.reshape(-1)
        flat[0], flat[-1] = NAN, INF
        if flat.size > 2:
            flat[1] = -INF
    dy = _upstream((4, 2), "nonfinite" if where == "dy" else "finite", dtype)
    expected, expected_grads = _torch_grads(lambda x_, W_, b_: F.linear(x_, W_.T, b_), [x, W, b], dy)
    if side == "reference":
        out, cache = R.linear_forward(x, W, b)
        grads = R.linear_backward(dy, cache)
    else:
        out, grads = _torch_grads(T.linear, [x, W, b], dy)
    assert_same_nonfinite("linear forward", out, expected, "linear", dtype)
    for name, g, e in zip(("dx", "dW", "db"), grads, expected_grads):
        assert_same_nonfinite(f"linear {name}", g, e, "linear", dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("side", ["reference", "torch_backend"])
def test_embedding_matches_torch(dtype, side):
    W = np.random.default_rng(4).standard_normal((5, 3)).astype(dtype)
    W[1, 0], W[2, :], W[3, 2] = NAN, INF, -INF           # row 4 is never looked up
    ids = np.array([[1, 2, 1], [0, 3, 0]])
    dout = _upstream(ids.shape + (3,), "nonfinite", dtype)
    ids_t = torch.from_numpy(ids)
    expected, (expected_dW,) = _torch_grads(lambda W_: F.embedding(ids_t, W_), [W], dout)
    if side == "reference":
        out, cache = R.embedding_forward(ids, W)
        dW = R.embedding_backward(dout, cache)
    else:
        out, (dW,) = _torch_grads(lambda W_: T.embedding(ids_t, W_), [W], dout)
    assert_same_nonfinite("embedding forward", out, expected, "embedding", dtype)
    assert_same_nonfinite("embedding dW", dW, expected_dW, "embedding", dtype)
    assert np.isfinite(to_numpy(dW)[4]).all() and not to_numpy(dW)[4].any()  # untouched row


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dout_kind", ["finite", "nonfinite"])
@pytest.mark.parametrize("side", ["reference", "torch_backend"])
def test_rope_matches_the_complex_product(dtype, dout_kind, side):
    from minillm.core.init import rotary_tables
    T_, D = 3, 4
    cos, sin = (np.asarray(t, dtype=dtype) for t in rotary_tables(T_, D))
    x = np.random.default_rng(5).standard_normal((2, T_, D)).astype(dtype)
    # position 0 rotates by 0 (sin = 0): inf * 0 is still NaN, in the product as in torch's
    x[0, 0, 0], x[0, 1, 3], x[1, 2, 1], x[1, 0, 2] = INF, NAN, -INF, -INF
    dy = _upstream(x.shape, dout_kind, dtype)
    rope = by_name("rope")   # its oracle: the complex product, as LLaMA writes it
    expected, (expected_dx,) = _torch_grads(lambda x_: rope.oracle(x_, to_torch(cos), to_torch(sin)),
                                            [x], dy)
    if side == "reference":
        out, cache = R.rope_forward(x, cos, sin)
        dx = R.rope_backward(dy, cache)
    else:
        out, (dx,) = _torch_grads(lambda x_: T.rope(x_, to_torch(cos), to_torch(sin)), [x], dy)
    assert_same_nonfinite("rope forward", out, expected, "rope", dtype)
    assert_same_nonfinite("rope backward", dx, expected_dx, "rope", dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_keeps_nonfinite_values_visible_as_torch(dtype):
    """A dropped NaN or inf is NaN (x * 0), as in F.dropout's product: dropout never hides
    a non-finite value. Both backends draw the same mask from the same generator."""
    x = np.tile(np.array([NAN, INF, -INF, 1.0], dtype=dtype), 8)
    p = 0.5
    ours = R.dropout(x, p, rng=np.random.default_rng(7))
    theirs = T.dropout(torch.from_numpy(x.copy()), p, rng=np.random.default_rng(7))
    keep = np.random.default_rng(7).random(x.shape) >= p
    assert keep.any() and (~keep).any()
    expected = torch.from_numpy(x) * torch.from_numpy(keep) * (1.0 / (1.0 - p))
    assert_same_nonfinite("reference dropout", ours, expected, "dropout", dtype)
    assert_same_nonfinite("torch_backend dropout", theirs, expected, "dropout", dtype)
    # torch's own dropout, whatever its mask: no non-finite input comes out finite
    dropped = F.dropout(torch.from_numpy(x), p, training=True).numpy()
    assert not np.isfinite(dropped[~np.isfinite(x)]).any()


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("side", ["reference", "torch_backend"])
def test_feed_forward_matches_torch(activation, side):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((4, 3))
    x[0, 1], x[2, 0], x[3, 2] = NAN, INF, -INF
    W1, b1, W2, b2 = (rng.standard_normal(s) for s in ((3, 6), (6,), (6, 3), (3,)))
    act = by_name(activation).formula      # torch's activation, the formula's limits at +-inf
    dy = _upstream((4, 3), "finite", np.float64)

    def oracle(x_, W1_, b1_, W2_, b2_):
        return F.linear(act(F.linear(x_, W1_.T, b1_)), W2_.T, b2_)

    expected, expected_grads = _torch_grads(oracle, [x, W1, b1, W2, b2], dy)
    if side == "reference":
        out, cache = R.feed_forward_forward(x, W1, b1, W2, b2, activation)
        grads = R.feed_forward_backward(dy, cache)
    else:
        out, grads = _torch_grads(lambda *a: T.feed_forward(*a, activation=activation),
                                  [x, W1, b1, W2, b2], dy)
    assert_same_nonfinite("feed_forward forward", out, expected, "feed_forward", np.float64)
    for i, (g, e) in enumerate(zip(grads, expected_grads)):
        assert_same_nonfinite(f"feed_forward grad {i}", g, e, "feed_forward", np.float64)


# ----------------------------------------------------------------------------- cross-entropy

CE_LOGITS = np.array([
    [1.0, NAN, 2.0, 0.5],
    [1.0, INF, 2.0, 0.5],
    [1.0, -INF, 2.0, 0.5],     # -inf at another class: finite loss (inf with smoothing)
    [1.0, 2.0, -INF, 0.5],     # -inf at the target: loss inf
    [-INF] * 4,
    [1.0, NAN, 2.0, 3.0],      # ignored in one target set: its NaN must not reach the mean
    [1.0, 2.0, 3.0, 4.0],
])
CE_TARGETS = {
    "all counted": [0, 0, 0, 2, 1, 2, 3],
    "NaN row ignored": [0, 0, 0, 2, 1, -100, 3],
    "only finite rows": [-100, -100, 0, -100, -100, -100, 3],
    "one -inf logit": [-100, -100, 0, -100, -100, -100, -100],
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("targets", list(CE_TARGETS))
@pytest.mark.parametrize("side", ["reference", "torch_backend"])
def test_cross_entropy_matches_torch(dtype, label_smoothing, reduction, targets, side):
    logits = CE_LOGITS.astype(dtype)
    t = np.array(CE_TARGETS[targets])
    kw = dict(label_smoothing=label_smoothing, reduction=reduction)
    dloss = _upstream((len(t),) if reduction == "none" else (), "finite", dtype)
    t_t = torch.from_numpy(t)
    expected, (expected_d,) = _torch_grads(lambda z: F.cross_entropy(z, t_t, **kw), [logits], dloss)
    if side == "reference":
        loss, cache = R.cross_entropy_forward(logits, t, **kw)
        d = R.cross_entropy_backward(dloss, cache)
    else:
        loss, (d,) = _torch_grads(lambda z: T.cross_entropy(z, t_t, **kw), [logits], dloss)
    assert_same_nonfinite("cross_entropy loss", loss, expected, "cross_entropy", dtype)
    assert_same_nonfinite("cross_entropy dlogits", d, expected_d, "cross_entropy", dtype)


def test_cross_entropy_minus_inf_logit_without_smoothing_is_finite():
    """The regression behind the reference fix: 0 * (the smoothing term, inf) was NaN."""
    logits = np.array([[1.0, -INF, 2.0]])
    expected = float(F.cross_entropy(torch.tensor(logits), torch.tensor([0])))
    assert math.isfinite(expected)
    assert float(R.cross_entropy(logits, np.array([0]))) == pytest.approx(expected, rel=1e-12)
    assert float(T.cross_entropy(torch.tensor(logits), torch.tensor([0]))) == pytest.approx(expected, rel=1e-12)


def test_cross_entropy_with_nothing_counted_is_zero_not_nan():
    """The documented choice (DESIGN.md, architecture.md): torch's mean over no target is
    0/0 = NaN; minillm's is 0.0, even when the ignored logits are NaN."""
    logits = np.array([[NAN, 1.0], [INF, 0.0]])
    t = np.array([-100, -100])
    assert math.isnan(float(F.cross_entropy(torch.tensor(logits), torch.tensor(t))))
    assert float(R.cross_entropy(logits, t)) == 0.0
    assert float(T.cross_entropy(torch.tensor(logits), torch.tensor(t))) == 0.0


# ----------------------------------------------------------------------------- attention

def _attention_oracle(q, k, v, mask):
    """The textbook composition: masked_fill(-inf), torch.softmax, product with V."""
    s = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if mask is not None:
        s = s.masked_fill(~mask, -INF)
    w = torch.softmax(s, dim=-1)
    return w @ v, w


# query 0 sees keys 0-1, query 1 keys 0-2, query 2 everything (no empty row here)
PARTIAL_MASK = np.array([[True, True, False, False], [True, True, True, False], [True] * 4])


def _qkv(seed, planted=None, value=None):
    rng = np.random.default_rng(seed)
    arrs = {"q": rng.standard_normal((2, 3, 2)), "k": rng.standard_normal((2, 4, 2)),
            "v": rng.standard_normal((2, 4, 2))}
    if planted is not None:
        name, index = planted
        arrs[name][index] = value
    return arrs


def _attention_both(side, arrs, mask, dout):
    """``(out, weights, [dq, dk, dv])`` of one backend's attention."""
    if side == "reference":
        (out, w), cache = R.scaled_dot_product_attention_forward(arrs["q"], arrs["k"], arrs["v"], mask)
        return out, w, R.scaled_dot_product_attention_backward(dout, cache)
    leaves = {n: to_torch(a, requires_grad=True) for n, a in arrs.items()}
    out, w = T.scaled_dot_product_attention(leaves["q"], leaves["k"], leaves["v"],
                                            None if mask is None else torch.from_numpy(mask))
    out.backward(to_torch(dout))
    return out.detach(), w.detach(), [leaves[n].grad for n in "qkv"]


def _oracle_both(arrs, mask, dout):
    leaves = {n: to_torch(a, requires_grad=True) for n, a in arrs.items()}
    out, w = _attention_oracle(leaves["q"], leaves["k"], leaves["v"],
                               None if mask is None else torch.from_numpy(mask))
    out.backward(to_torch(dout))
    return out.detach(), w.detach(), [leaves[n].grad for n in "qkv"]


# keys 0 and 1 may be attended by every query of PARTIAL_MASK
ALLOWED_PLACES = [("q", (0, 0, 0)), ("k", (0, 1, 0)), ("v", (1, 1, 1)), ("k", (1, 0, 1))]

@pytest.mark.parametrize("value", [NAN, INF, -INF], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("planted", ALLOWED_PLACES, ids=lambda p: f"{p[0]}{list(p[1])}")
@pytest.mark.parametrize("masked", [False, True], ids=["no-mask", "partial-mask"])
@pytest.mark.parametrize("side", ["reference", "torch_backend"])
def test_attention_matches_torch_where_the_value_is_attended(side, masked, planted, value):
    """The forward matches exactly. Unmasked, so do the gradients. With a mask, the
    gradients of a forward that is already NaN may be NaN at more places than
    torch's (masked_fill's backward zeroes the masked scores' gradient even where
    softmax's is NaN; minillm's does not); they are never finite where torch's is not."""
    # with seed 9, two infinite keys (k[0,1,0] = inf, k[1,0,1] = -inf) score -inf for one
    # query whose other allowed key then carries all the weight: a row summing to exactly
    # 1, where a clamp(min=1) guard lost the gradient on torch 2.14 (tests/ops/test_bounds.py)
    arrs = _qkv(9, planted, value)
    mask = PARTIAL_MASK if masked else None
    dout = _upstream((2, 3, 2), "finite", np.float64)
    out, w, grads = _attention_both(side, arrs, mask, dout)
    e_out, e_w, e_grads = _oracle_both(arrs, mask, dout)
    assert_same_nonfinite("attention out", out, e_out, "attention", np.float64)
    assert_same_nonfinite("attention weights", w, e_w, "attention", np.float64)
    compare = assert_nonfinite_covers if masked else assert_same_nonfinite
    for name, g, e in zip(("dq", "dk", "dv"), grads, e_grads):
        compare(f"attention {name}", g, e, "attention", np.float64)


@pytest.mark.parametrize("value", [NAN, INF, -INF], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("side", ["reference", "torch_backend"])
def test_attention_ignores_a_masked_out_nonfinite_key(side, value):
    """Key 3 is masked for queries 0 and 1 of batch 0: its non-finite entry changes
    nothing for them, as masked_fill gives. (Query 2 sees it and is NaN, as torch.)
    The queries' first feature has the sign of ``value``, so a masked score is NaN or
    +inf (never -inf, which adding -inf would leave harmless)."""
    arrs = _qkv(10, ("k", (0, 3, 0)), value)
    arrs["q"][0, :, 0] = np.abs(arrs["q"][0, :, 0]) * (-1.0 if value < 0 else 1.0)
    dout = _upstream((2, 3, 2), "finite", np.float64)
    out, w, grads = _attention_both(side, arrs, PARTIAL_MASK, dout)
    e_out, e_w, _ = _oracle_both(arrs, PARTIAL_MASK, dout)
    assert_same_nonfinite("attention out", out, e_out, "attention", np.float64)
    assert_same_nonfinite("attention weights", w, e_w, "attention", np.float64)
    assert np.isfinite(to_numpy(out)[0, :2]).all()


@pytest.mark.parametrize("side", ["reference", "torch_backend"])
def test_attention_multiplies_a_masked_nonfinite_value_by_zero_as_torch(side):
    """A masked-out value vector still enters ``A V`` with weight 0, and 0 * inf is NaN:
    minillm, like torch, does not special-case it."""
    arrs = _qkv(11, ("v", (0, 3, 1)), INF)
    dout = _upstream((2, 3, 2), "finite", np.float64)
    out, w, _ = _attention_both(side, arrs, PARTIAL_MASK, dout)
    e_out, e_w, _ = _oracle_both(arrs, PARTIAL_MASK, dout)
    assert_same_nonfinite("attention out", out, e_out, "attention", np.float64)
    assert np.isnan(to_numpy(out)[0, :2, 1]).all()


@pytest.mark.parametrize("value", [NAN, INF, -INF], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("side", ["reference", "torch_backend"])
def test_attention_empty_row_is_zero_even_with_a_nonfinite_query(side, value):
    """The documented choice: a query with nothing to attend to gets zero weights and
    zero output (torch's composition gives NaN), whatever its own values are."""
    arrs = _qkv(12, ("q", (1, 2, 0)), value)
    mask = PARTIAL_MASK.copy()
    mask[2] = False                                            # query 2 attends to nothing
    dout = _upstream((2, 3, 2), "finite", np.float64)
    out, w, grads = _attention_both(side, arrs, mask, dout)
    e_out, _, _ = _oracle_both(arrs, mask, dout)
    assert np.isnan(to_numpy(e_out)[:, 2]).all()               # torch: NaN
    np.testing.assert_array_equal(to_numpy(out)[:, 2], 0.0)
    np.testing.assert_array_equal(to_numpy(w)[:, 2], 0.0)
    np.testing.assert_array_equal(to_numpy(grads[0])[:, 2], 0.0)          # dq of that row
    assert np.isfinite(to_numpy(out)).all() and np.isfinite(to_numpy(w)).all()
    # dq and dv stay finite; dk = dS^T q multiplies the row's zero dS by its NaN / inf
    # query, and 0 * inf is NaN in any matrix product (torch's too)
    assert np.isfinite(to_numpy(grads[0])).all() and np.isfinite(to_numpy(grads[2])).all()


def test_fused_attention_follows_torchs_kernel_not_the_choices_above():
    """``fused_attention`` is F.scaled_dot_product_attention, whose mask is additive: a
    masked NaN key is NaN for every query (as the kernel gives), and an empty row whose
    query is NaN stays NaN (NaN * 0). Documented in docs/architecture.md."""
    arrs = {n: to_torch(a) for n, a in _qkv(16, ("k", (0, 3, 0)), NAN).items()}
    mask = torch.from_numpy(PARTIAL_MASK)
    out, _ = T.fused_attention(arrs["q"], arrs["k"], arrs["v"], mask)
    kernel = F.scaled_dot_product_attention(arrs["q"], arrs["k"], arrs["v"], attn_mask=mask)
    assert_same_nonfinite("fused_attention out", out, kernel, "attention", np.float64)
    assert torch.isnan(out[0]).all() and torch.isfinite(out[1]).all()
    arrs = {n: to_torch(a) for n, a in _qkv(16, ("q", (1, 2, 0)), NAN).items()}
    empty = torch.from_numpy(PARTIAL_MASK).clone()
    empty[2] = False
    out, _ = T.fused_attention(arrs["q"], arrs["k"], arrs["v"], empty)
    assert torch.isnan(out[1, 2]).all() and (out[0, 2] == 0).all()


@pytest.mark.parametrize("side", ["reference", "torch_backend"])
def test_attention_gradient_of_a_query_with_a_single_key_is_zero(side):
    """Finite inputs, found on the way: under a causal mask query 0 sees only key 0, its
    weight is 1 whatever q is, so dL/dq_0 = 0 exactly (torch's composition agrees)."""
    arrs = _qkv(15)
    arrs["q"], arrs["k"], arrs["v"] = arrs["q"][:, :3], arrs["k"][:, :3], arrs["v"][:, :3]
    mask = np.tril(np.ones((3, 3), dtype=bool))
    dout = _upstream((2, 3, 2), "finite", np.float64)
    _, _, grads = _attention_both(side, arrs, mask, dout)
    _, _, e_grads = _oracle_both(arrs, mask, dout)
    np.testing.assert_array_equal(to_numpy(e_grads[0])[:, 0], 0.0)
    np.testing.assert_array_equal(to_numpy(grads[0])[:, 0], 0.0)
    for name, g, e in zip(("dq", "dk", "dv"), grads, e_grads):
        assert_same_nonfinite(f"attention {name}", g, e, "attention", np.float64)


# ----------------------------------------------------------------------------- optimizers

SIDES = {
    "reference": (R, lambda a: R.Parameter(np.array(a, copy=True)),
                  lambda p, g: setattr(p, "grad", np.array(g, copy=True)), lambda p: p.data),
    "torch_backend": (T, lambda a: torch.nn.Parameter(torch.tensor(a)),
                      lambda p, g: setattr(p, "grad", torch.tensor(g)), lambda p: p.detach().numpy()),
}
OPTIMIZERS = [
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.1}),
    ("Adam", {"lr": 0.01}),
    ("Adam", {"lr": 0.01, "weight_decay": 0.1}),
    ("AdamW", {"lr": 0.01, "weight_decay": 0.1}),
]


def _plant(a, value, where):
    a = np.array(a, copy=True)
    a.reshape(-1)[where] = value
    return a


@pytest.mark.parametrize("cls_name,kwargs", OPTIMIZERS, ids=lambda c: str(c))
@pytest.mark.parametrize("case", ["grad nan", "grad inf", "grad -inf", "param nan", "param inf"])
@pytest.mark.parametrize("side", list(SIDES))
def test_optimizer_step_matches_torch_optim(side, cls_name, kwargs, case):
    """Four steps; the non-finite gradient comes at step 2 only (so the state carries it
    on), the non-finite parameter is there from the start. Compared after every step."""
    mod, make, set_grad, values = SIDES[side]
    rng = np.random.default_rng(13)
    init = [rng.standard_normal((3, 2)), rng.standard_normal(4)]
    grads = [[rng.standard_normal(a.shape) for a in init] for _ in range(4)]
    what, kind = case.split()
    value = {"nan": NAN, "inf": INF, "-inf": -INF}[kind]
    if what == "param":
        init[0] = _plant(init[0], value, [1, 4])
    else:
        grads[1][0] = _plant(grads[1][0], value, [1, 4])
    ours, theirs = [make(a) for a in init], [torch.nn.Parameter(torch.tensor(a)) for a in init]
    opt = getattr(mod, cls_name)(ours, **kwargs)
    yardstick = getattr(torch.optim, cls_name)(theirs, **kwargs)
    for step, gs in enumerate(grads):
        for p, q, g in zip(ours, theirs, gs):
            set_grad(p, g)
            q.grad = torch.tensor(g)
        opt.step()
        yardstick.step()
        for i, (p, q) in enumerate(zip(ours, theirs)):
            a, b = np.asarray(values(p)), q.detach().numpy()
            assert_same_nonfinite(f"{cls_name} param {i} after step {step + 1}", a, b,
                                  "optim", np.float64)
            np.testing.assert_allclose(a[np.isfinite(b)], b[np.isfinite(b)], rtol=0, atol=1e-10)
    assert not np.isfinite(np.asarray(values(ours[0]))).all()  # the case did reach the parameter


# ----------------------------------------------------------------------------- clipping

@pytest.mark.parametrize("value", [NAN, INF, -INF], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("max_norm", [1.0, 1e6, INF], ids=["1", "1e6", "inf"])
@pytest.mark.parametrize("side", list(SIDES))
def test_clip_grad_norm_matches_torch(side, max_norm, value, caplog):
    """torch scales by clamp(max_norm / (norm + 1e-6), max=1): NaN norm -> every gradient
    NaN; inf norm -> coefficient 0, so 0 where finite and NaN where inf; max_norm = inf
    with an inf norm -> inf / inf = NaN."""
    mod, make, set_grad, _ = SIDES[side]
    rng = np.random.default_rng(14)
    grads = [_plant(rng.standard_normal((3, 2)), value, [2]), rng.standard_normal(4)]
    ours = [make(np.zeros_like(g)) for g in grads]
    theirs = [torch.nn.Parameter(torch.zeros(g.shape, dtype=torch.float64)) for g in grads]
    for p, q, g in zip(ours, theirs, grads):
        set_grad(p, g)
        q.grad = torch.tensor(g)
    with caplog.at_level(logging.WARNING, logger="minillm"):
        total = mod.clip_grad_norm(ours, max_norm)
    expected = float(torch.nn.utils.clip_grad_norm_(theirs, max_norm))
    assert isinstance(total, float)
    assert (math.isnan(total) and math.isnan(expected)) or total == expected
    assert "clip_grad_norm: the gradient norm is" in caplog.text
    for i, (p, q) in enumerate(zip(ours, theirs)):
        assert_same_nonfinite(f"grad {i}", to_numpy(p.grad), q.grad, "optim", np.float64)


@pytest.mark.parametrize("side", list(SIDES))
def test_clip_grad_norm_error_if_nonfinite(side):
    """Raises as torch does (RuntimeError), names the norm, and changes no gradient."""
    mod, make, set_grad, _ = SIDES[side]
    grads = [np.array([1.0, NAN, 2.0]), np.array([3.0, 4.0])]
    ours = [make(np.zeros_like(g)) for g in grads]
    theirs = [torch.nn.Parameter(torch.zeros(g.shape, dtype=torch.float64)) for g in grads]
    for p, q, g in zip(ours, theirs, grads):
        set_grad(p, g)
        q.grad = torch.tensor(g)
    with pytest.raises(RuntimeError, match="non-finite"):
        torch.nn.utils.clip_grad_norm_(theirs, 1.0, error_if_nonfinite=True)
    with pytest.raises(RuntimeError, match=r"total L2 norm of the gradients is nan"):
        mod.clip_grad_norm(ours, 1.0, error_if_nonfinite=True)
    for p, g in zip(ours, grads):
        np.testing.assert_array_equal(to_numpy(p.grad), g)     # untouched (NaN == NaN here)
    # finite gradients: the flag changes nothing
    finite = [make(np.zeros(2))]
    set_grad(finite[0], np.array([3.0, 4.0]))
    assert mod.clip_grad_norm(finite, 1.0, error_if_nonfinite=True) == 5.0
    np.testing.assert_allclose(to_numpy(finite[0].grad), [0.6, 0.8], rtol=1e-6)


@pytest.mark.parametrize("side", list(SIDES))
def test_clip_grad_norm_bad_flag_and_bad_max_norm(side):
    mod, make, set_grad, _ = SIDES[side]
    params = [make(np.zeros(2))]
    set_grad(params[0], np.array([3.0, 4.0]))
    with pytest.raises(ValueError, match="error_if_nonfinite to be a bool, got 1"):
        mod.clip_grad_norm(params, 1.0, error_if_nonfinite=1)
    with pytest.raises(TypeError):  # keyword-only: torch's third positional is norm_type
        mod.clip_grad_norm(params, 1.0, True)
    for bad in (NAN, -INF):
        with pytest.raises(ValueError, match="expected max_norm > 0.0"):
            mod.clip_grad_norm(params, bad)


@pytest.mark.parametrize("side", list(SIDES))
def test_clip_grad_norm_with_infinite_max_norm_only_measures(side):
    """max_norm = inf is what the trainer passes for grad_clip=None: nothing is scaled."""
    mod, make, set_grad, _ = SIDES[side]
    params = [make(np.zeros(2))]
    set_grad(params[0], np.array([3e5, 4e5]))
    assert mod.clip_grad_norm(params, INF) == pytest.approx(5e5, rel=1e-15)
    np.testing.assert_array_equal(to_numpy(params[0].grad), [3e5, 4e5])


@pytest.mark.parametrize("bad", [NAN, INF, -INF])
@pytest.mark.parametrize("arg", ["max_lr", "min_lr"])
def test_schedule_refuses_nonfinite_rates(arg, bad):
    kw = dict(max_lr=1e-3, warmup_steps=2, total_steps=10, min_lr=0.0)
    kw[arg] = bad
    with pytest.raises(ValueError, match=f"expected {arg} to be a finite number"):
        warmup_cosine(3, **kw)


@pytest.mark.parametrize("side", list(SIDES))
@pytest.mark.parametrize("bad", [NAN, INF])
def test_optimizers_refuse_nonfinite_hyper_parameters(side, bad):
    mod, make, _, _ = SIDES[side]
    for cls_name, kwargs in (("SGD", {"lr": bad}), ("Adam", {"lr": bad}),
                             ("Adam", {"eps": bad}), ("AdamW", {"weight_decay": bad})):
        with pytest.raises(ValueError, match="expected"):
            getattr(mod, cls_name)([make(np.zeros(2))], **kwargs)
