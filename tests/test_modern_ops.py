"""The modern decoder's ops (issue 25): SiLU, RMSNorm, the gated (SwiGLU) feed-forward,
grouped-query attention's ``repeat_kv`` and RoPE's split-halves layout, proven like every
other op:

- parity: the reference, the torch explicit path and the torch fast path (``F.silu``,
  ``F.rms_norm``, ``F.linear``, ``F.scaled_dot_product_attention(enable_gqa=True)``)
  give the same outputs and gradients (random upstream gradient) on shapes and values
  drawn by hypothesis, in float64 within the parity contract (``tests/tolerances.py``
  FLOAT64: rtol 1e-7, atol 1e-9);
- finite differences confirm each hand-written backward of the reference (FD: step 1e-6,
  rtol 1e-6, atol 1e-7, the reason in tests/tolerances.py);
- non-finite inputs: NaN and +-inf at the positions torch's own kernel puts them;
- independent oracles where one exists: Hugging Face's ``rotate_half`` formula for the
  half layout, the per-group loop for grouped-query attention;
- bad input: a ValueError naming what was expected and what came.
"""
import importlib
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import minillm.reference as R  # noqa: E402
import minillm.torch_backend as T  # noqa: E402
from minillm.core.init import rotary_tables  # noqa: E402
# the modules themselves (the package's attribute of the same name is the exported op)
t_act, t_att, t_ffn, t_rms = (importlib.import_module(f"minillm.torch_backend.{name}")
                              for name in ("activations", "attention", "feed_forward", "rms_norm"))

from parity import assert_close, check_grad, random_array, scales, seeds, shapes, to_numpy, to_torch  # noqa: E402
from tolerances import FD, FD_STEP, FLOAT64  # noqa: E402

RTOL, ATOL = FLOAT64.rtol, FLOAT64.atol
SETTINGS = settings(max_examples=25, deadline=None)


def torch_run(fn, arrays, dout, noncontiguous=False):
    """``fn`` on torch copies of ``arrays`` (None stays None): the output and the gradient
    of every array input for the upstream gradient ``dout``."""
    leaves = [None if a is None else to_torch(a, requires_grad=True, noncontiguous=noncontiguous)
              for a in arrays]
    out = fn(*leaves)
    out.backward(to_torch(dout))
    return out, [None if t is None else t.grad for t in leaves]


def assert_all_close(what, ours, theirs):
    for i, (a, b) in enumerate(zip(ours, theirs)):
        if a is None or b is None:
            assert a is None and b is None, f"{what}[{i}]: one gradient is None"
            continue
        assert_close(f"{what}[{i}]", a, b, RTOL, ATOL)


# ----------------------------------------------------------------------------------------
# SiLU


def test_silu_never_overflows_and_its_limits():
    # exp(800) overflows float64: the sigmoid is written with exp(-|x|) so that nothing does
    x = np.array([-800.0, -40.0, 0.0, 40.0, 800.0])
    with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
        y, cache = R.silu_forward(x)
        dx = R.silu_backward(np.ones_like(x), cache)
    np.testing.assert_array_equal(y[[2, 4]], [0.0, 800.0])
    assert abs(y[0]) == 0.0 and -40 * math.exp(-40) * 1.001 < y[1] < 0
    np.testing.assert_allclose(dx[[0, 2, 4]], [0.0, 0.5, 1.0], rtol=0, atol=1e-300)
    # at the branch point of the sigmoid, 0 and -0, the derivative is 1/2 in all three
    # (the explicit path selects -x or x; no abs, whose derivative at 0 is a convention)
    zeros = np.array([0.0, -0.0])
    for fn in (T.silu, t_act.fast_silu):
        _, (grad,) = torch_run(fn, [zeros], np.ones(2))
        np.testing.assert_array_equal(to_numpy(grad), [0.5, 0.5])
    np.testing.assert_array_equal(R.silu_backward(np.ones(2), R.silu_forward(zeros)[1]), [0.5, 0.5])


# ----------------------------------------------------------------------------------------
# RMSNorm


@SETTINGS
@given(shape=shapes(), seed=seeds, scale=scales, noncontiguous=st.booleans())
def test_rms_norm_parity_and_fast_path(shape, seed, scale, noncontiguous):
    rng = np.random.default_rng(seed)
    x = random_array(rng, shape, scale=scale)
    gamma = random_array(rng, shape[-1:])
    dout = random_array(rng, shape)
    y, cache = R.rms_norm_forward(x, gamma, 1e-5)
    grads = R.rms_norm_backward(dout, cache)
    for name, fn in (("explicit", T.rms_norm), ("fast", t_rms.fast_rms_norm)):
        t_y, t_grads = torch_run(lambda a, g: fn(a, g, 1e-5), [x, gamma], dout, noncontiguous)
        assert_close(f"rms_norm {name} y", y, t_y, RTOL, ATOL)
        assert_all_close(f"rms_norm {name} grads", grads, t_grads)


@SETTINGS
@given(shape=shapes(max_side=4), seed=seeds, eps=st.sampled_from([1e-5, 1e-6, 0.1]))
def test_rms_norm_backward_matches_finite_differences(shape, seed, eps):
    rng = np.random.default_rng(seed)
    x, gamma, dout = random_array(rng, shape), random_array(rng, shape[-1:]), random_array(rng, shape)
    grads = R.rms_norm_backward(dout, R.rms_norm_forward(x, gamma, eps)[1])
    check_grad(lambda a, g: R.rms_norm(a, g, eps), [x, gamma], dout, list(grads),
               ["rms_norm dx", "rms_norm dgamma"], FD_STEP, FD.rtol, FD.atol)


def test_rms_norm_is_the_formula_and_has_unit_rms():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5)) * 7
    y = R.rms_norm(x, np.ones(5), eps=1e-12)
    np.testing.assert_allclose(np.sqrt((y * y).mean(axis=-1)), 1.0, rtol=1e-10)
    # no mean is subtracted: a constant row stays constant (layer norm would give zeros)
    np.testing.assert_allclose(R.rms_norm(np.full((1, 4), 3.0), np.ones(4), 1e-12), np.ones((1, 4)))


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
def test_rms_norm_puts_non_finite_values_where_torch_does(value):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 6))
    x[1, 2] = value
    gamma = rng.standard_normal(6)
    with np.errstate(all="ignore"):
        checks = (("rms_norm", R.rms_norm(x, gamma), T.rms_norm(to_torch(x), to_torch(gamma)),
                   F.rms_norm(to_torch(x), (6,), to_torch(gamma), 1e-5)),)
    for name, ours, explicit, oracle in checks:
        oracle = to_numpy(oracle)
        for who, got in (("reference", ours), ("explicit", to_numpy(explicit))):
            for kind, test in (("NaN", np.isnan), ("+inf", np.isposinf), ("-inf", np.isneginf)):
                assert np.array_equal(test(got), test(oracle)), f"{name} {who}: {kind} at other places"
            finite = np.isfinite(oracle)
            assert_close(f"{name} {who} finite", got[finite], oracle[finite], RTOL, ATOL)
    # a non-finite entry stays in its own row: the other rows are the finite rows' norm
    np.testing.assert_array_equal(checks[0][1][[0, 2]], R.rms_norm(x[[0, 2]], gamma))
    assert not np.isfinite(checks[0][1][1, 2])


# ----------------------------------------------------------------------------------------
# the gated (SwiGLU) feed-forward


def _gated_arrays(rng, shape, d_ff, scale, bias):
    C = shape[-1]
    arrays = [random_array(rng, shape, scale=scale)]
    for d_in, d_out in ((C, d_ff), (C, d_ff), (d_ff, C)):
        arrays += [random_array(rng, (d_in, d_out), scale=0.5),
                   random_array(rng, (d_out,)) if bias else None]
    return arrays


@SETTINGS
@given(shape=shapes(min_dims=1, max_dims=3), d_ff=st.integers(1, 7), seed=seeds,
       scale=scales, bias=st.booleans(), activation=st.sampled_from(["silu", "gelu", "relu"]))
def test_gated_feed_forward_parity_and_fast_path(shape, d_ff, seed, scale, bias, activation):
    rng = np.random.default_rng(seed)
    arrays = _gated_arrays(rng, shape, d_ff, scale, bias)
    dout = random_array(rng, shape)
    out, cache = R.gated_feed_forward_forward(*arrays, activation=activation)
    grads = R.gated_feed_forward_backward(dout, cache)
    for name, fn in (("explicit", T.gated_feed_forward), ("fast", t_ffn.fast_gated_feed_forward)):
        t_out, t_grads = torch_run(lambda *a: fn(*a, activation=activation), arrays, dout)
        assert_close(f"gated_feed_forward {name} out", out, t_out, RTOL, ATOL)
        assert_all_close(f"gated_feed_forward {name} grads", grads, t_grads)


@SETTINGS
@given(shape=shapes(min_dims=1, max_dims=2, max_side=3), d_ff=st.integers(1, 4), seed=seeds)
def test_gated_feed_forward_backward_matches_finite_differences(shape, d_ff, seed):
    rng = np.random.default_rng(seed)
    arrays = _gated_arrays(rng, shape, d_ff, 1.0, True)
    dout = random_array(rng, shape)
    grads = R.gated_feed_forward_backward(dout, R.gated_feed_forward_forward(*arrays)[1])
    names = ["dx", "dW_gate", "db_gate", "dW_up", "db_up", "dW_down", "db_down"]
    check_grad(R.gated_feed_forward, arrays, dout, list(grads), names, FD_STEP, FD.rtol, FD.atol)


def test_swiglu_is_the_papers_formula():
    """Shazeer 2020, eq. 6: FFN_SwiGLU(x, W, V, W2) = (Swish_1(xW) * xV) W2, written out."""
    rng = np.random.default_rng(1)
    x, W, V, W2 = (rng.standard_normal(s) for s in ((4, 3), (3, 5), (3, 5), (5, 3)))
    swish = lambda z: z / (1 + np.exp(-z))   # noqa: E731
    np.testing.assert_allclose(R.gated_feed_forward(x, W, None, V, None, W2, None),
                               (swish(x @ W) * (x @ V)) @ W2, rtol=1e-13, atol=1e-14)


# ----------------------------------------------------------------------------------------
# grouped-query attention


@st.composite
def gqa_inputs(draw):
    H_kv, G = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    B, T_q, D = draw(st.integers(1, 2)), draw(st.integers(1, 5)), draw(st.sampled_from([1, 2, 4]))
    T_k = draw(st.integers(T_q, T_q + 3))
    rng = np.random.default_rng(draw(seeds))
    q = random_array(rng, (B, H_kv * G, T_q, D), scale=draw(scales))
    k, v = random_array(rng, (B, H_kv, T_k, D)), random_array(rng, (B, H_kv, T_k, D))
    mask = draw(st.sampled_from(["none", "causal", "random"]))
    if mask == "none":
        mask = None
    elif mask == "causal":
        mask = R.causal_mask(T_q, T_k)
    else:   # per batch and head, with fully masked rows among them
        mask = rng.random((B, H_kv * G, T_q, T_k)) < 0.6
    return q, k, v, G, mask, random_array(rng, (B, H_kv * G, T_q, D))


def _reference_gqa(q, k, v, G, mask, dout):
    """The reference's grouped-query attention, forward and hand-written backward."""
    (k_rep, c_k), (v_rep, c_v) = R.repeat_kv_forward(k, G), R.repeat_kv_forward(v, G)
    (out, _), cache = R.scaled_dot_product_attention_forward(q, k_rep, v_rep, mask)
    dq, dk_rep, dv_rep = R.scaled_dot_product_attention_backward(dout, cache)
    return out, (dq, R.repeat_kv_backward(dk_rep, c_k), R.repeat_kv_backward(dv_rep, c_v))


@SETTINGS
@given(inputs=gqa_inputs())
def test_grouped_query_attention_parity_explicit_and_enable_gqa(inputs):
    q, k, v, G, mask, dout = inputs
    out, grads = _reference_gqa(q, k, v, G, mask, dout)
    t_mask = None if mask is None else torch.from_numpy(mask)

    def explicit(q_, k_, v_):
        return T.scaled_dot_product_attention(q_, T.repeat_kv(k_, G), T.repeat_kv(v_, G), t_mask)[0]

    def fast(q_, k_, v_):
        return t_att.fast_grouped_attention(q_, k_, v_, t_mask)

    for name, fn in (("explicit", explicit), ("fast (enable_gqa)", fast)):
        t_out, t_grads = torch_run(fn, [q, k, v], dout)
        assert_close(f"gqa {name} out", out, t_out, RTOL, ATOL)
        assert_all_close(f"gqa {name} grads", grads, t_grads)


@SETTINGS
@given(inputs=gqa_inputs())
def test_grouped_query_attention_is_each_group_attending_to_its_own_head(inputs):
    """An oracle without repeat_kv: query head h attends with key/value head h // G, and the
    gradient of a shared head is the sum of its group's gradients."""
    q, k, v, G, mask, dout = inputs
    out, (dq, dk, dv) = _reference_gqa(q, k, v, G, mask, dout)
    dk_sum, dv_sum = np.zeros_like(k), np.zeros_like(v)
    for h in range(q.shape[1]):
        m = None if mask is None else (mask if mask.ndim == 2 else mask[:, h])
        (o_h, _), c_h = R.scaled_dot_product_attention_forward(q[:, h], k[:, h // G], v[:, h // G], m)
        assert_close(f"head {h} out", out[:, h], o_h, RTOL, ATOL)
        dq_h, dk_h, dv_h = R.scaled_dot_product_attention_backward(dout[:, h], c_h)
        assert_close(f"head {h} dq", dq[:, h], dq_h, RTOL, ATOL)
        dk_sum[:, h // G] += dk_h
        dv_sum[:, h // G] += dv_h
    assert_close("dk = sum over the group", dk, dk_sum, RTOL, ATOL)
    assert_close("dv = sum over the group", dv, dv_sum, RTOL, ATOL)


@SETTINGS
@given(shape=shapes(min_dims=3, max_dims=4, max_side=3), n_rep=st.integers(1, 3), seed=seeds)
def test_repeat_kv_parity_and_finite_differences(shape, n_rep, seed):
    rng = np.random.default_rng(seed)
    x = random_array(rng, shape)
    out_shape = shape[:-3] + (shape[-3] * n_rep,) + shape[-2:]
    dout = random_array(rng, out_shape)
    out, cache = R.repeat_kv_forward(x, n_rep)
    assert out.shape == out_shape
    dx = R.repeat_kv_backward(dout, cache)
    t_out, (t_dx,) = torch_run(lambda a: T.repeat_kv(a, n_rep), [x], dout)
    assert_close("repeat_kv out", out, t_out, RTOL, ATOL)
    assert_close("repeat_kv dx", dx, t_dx, RTOL, ATOL)
    check_grad(lambda a: R.repeat_kv(a, n_rep), [x], dout, [dx], ["repeat_kv dx"],
               FD_STEP, FD.rtol, FD.atol)
    # the definition: query head h reads head h // G (the order of torch's enable_gqa and
    # Hugging Face's repeat_kv, which the enable_gqa parity test above holds us to)
    for h in range(out.shape[-3]):
        np.testing.assert_array_equal(out[..., h, :, :], x[..., h // n_rep, :, :])


# ----------------------------------------------------------------------------------------
# RoPE: split halves, the base, the permutation between the layouts


def _rotate_half(x):
    """Hugging Face Llama's ``rotate_half``: (-x2, x1) for the halves x1, x2 of the last axis."""
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


@SETTINGS
@given(lead=shapes(min_dims=0, max_dims=2, max_side=3), T_=st.integers(1, 6),
       half=st.integers(1, 4), seed=seeds, base=st.sampled_from([10000.0, 500000.0, 1e6, 7.0]))
def test_rope_half_parity_finite_differences_and_the_rotate_half_formula(lead, T_, half, seed, base):
    rng = np.random.default_rng(seed)
    shape = tuple(lead) + (T_, 2 * half)
    x, dout = random_array(rng, shape), random_array(rng, shape)
    cos, sin = rotary_tables(T_, 2 * half, "float64", base)
    y, cache = R.rope_half_forward(x, cos, sin)
    dx = R.rope_half_backward(dout, cache)
    t_cos, t_sin = torch.from_numpy(cos), torch.from_numpy(sin)
    t_y, (t_dx,) = torch_run(lambda a: T.rope_half(a, t_cos, t_sin), [x], dout)
    assert_close("rope_half y", y, t_y, RTOL, ATOL)
    assert_close("rope_half dx", dx, t_dx, RTOL, ATOL)
    check_grad(lambda a: R.rope_half(a, cos, sin), [x], dout, [dx], ["rope_half dx"],
               FD_STEP, FD.rtol, FD.atol)
    # Hugging Face's formula: q * cos + rotate_half(q) * sin, with cos, sin repeated twice
    cos2, sin2 = torch.cat([t_cos, t_cos], -1), torch.cat([t_sin, t_sin], -1)
    hf = torch.from_numpy(x) * cos2 + _rotate_half(torch.from_numpy(x)) * sin2
    assert_close("rope_half vs rotate_half", y, hf, RTOL, ATOL)


@SETTINGS
@given(n_heads=st.integers(1, 3), half=st.integers(1, 4), T_=st.integers(1, 5), seed=seeds)
def test_the_layout_permutation_takes_interleaved_to_half(n_heads, half, T_, seed):
    D = 2 * half
    p = R.rope_layout_permutation(D)
    np.testing.assert_array_equal(p, to_numpy(T.rope_layout_permutation(D)))
    np.testing.assert_array_equal(R.rope_layout_permutation(D, n_heads),
                                  to_numpy(T.rope_layout_permutation(D, n_heads)))
    assert sorted(R.rope_layout_permutation(D, n_heads)) == list(range(n_heads * D))
    rng = np.random.default_rng(seed)
    x = random_array(rng, (2, n_heads, T_, D))
    cos, sin = rotary_tables(T_, D, "float64")
    assert_close("rope_half(x[p]) == rope(x)[p]", R.rope_half(x[..., p], cos, sin),
                 R.rope(x, cos, sin)[..., p], RTOL, ATOL)
    # columns of a projection, head by head: splitting the permuted columns into heads is
    # permuting each head's dimensions
    W = random_array(rng, (3, n_heads * D))
    cols = R.rope_layout_permutation(D, n_heads)
    np.testing.assert_array_equal(R.split_heads(W[None, :, cols], n_heads),
                                  R.split_heads(W[None], n_heads)[..., p])


def test_rope_theta_sets_the_base():
    cos, sin = rotary_tables(4, 6, "float64", 500000.0)
    theta = 500000.0 ** (-np.arange(0, 6, 2) / 6)
    np.testing.assert_allclose(np.arctan2(sin[1], cos[1]), theta, rtol=1e-14)


# ----------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize("backend", [R, T], ids=["reference", "torch"])
def test_bad_input_names_what_was_expected(backend):
    arr = (lambda a: a) if backend is R else torch.from_numpy
    x = arr(np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"gamma.*\(4,\)"):
        backend.rms_norm(x, arr(np.ones(3)))
    with pytest.raises(ValueError, match="eps"):
        backend.rms_norm(x, arr(np.ones(4)), eps=0.0)
    with pytest.raises(ValueError, match="W_up"):
        backend.gated_feed_forward(x, arr(np.ones((4, 3))), None, arr(np.ones((4, 2))), None,
                                   arr(np.ones((3, 4))), None)
    with pytest.raises(ValueError, match="W_down"):
        backend.gated_feed_forward(x, arr(np.ones((4, 3))), None, arr(np.ones((4, 3))), None,
                                   arr(np.ones((2, 4))), None)
    with pytest.raises(ValueError, match="activation"):
        backend.gated_feed_forward(x, arr(np.ones((4, 3))), None, arr(np.ones((4, 3))), None,
                                   arr(np.ones((3, 4))), None, activation="swish")
    with pytest.raises(ValueError, match="n_rep"):
        backend.repeat_kv(arr(np.zeros((1, 2, 3, 4))), 0)
    cos, sin = (arr(t) for t in rotary_tables(3, 4, "float64"))
    with pytest.raises(ValueError, match="even last dimension"):
        backend.rope_half(arr(np.zeros((3, 5))), cos, sin)
    with pytest.raises(ValueError, match="even d_head"):
        backend.rope_layout_permutation(5)
    with pytest.raises(ValueError, match="n_kv_heads must divide n_heads.*n_kv_heads=3.*n_heads=4"):
        backend.MultiHeadAttention(16, 4, "float64", n_kv_heads=3)
    with pytest.raises(ValueError, match="rope_layout"):
        backend.MultiHeadAttention(16, 4, "float64", 8, rope_layout="split")
