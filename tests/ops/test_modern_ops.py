"""The modern decoder's ops (issue 25) beyond what the op catalogue proves.

SiLU, RMSNorm, the gated (SwiGLU) feed-forward, ``repeat_kv`` and both RoPE layouts are
rows of tests/ops_catalogue.py, which drives their parity (reference, explicit and fast
path, hypothesis-drawn, random upstream gradient), finite differences, non-finite values,
integer-input refusal and fast-path tests. Here are the checks no row can state:

- independent formulas: SiLU's tails without overflow, RMSNorm's unit root mean square,
  the SwiGLU paper's equation, Hugging Face's ``rotate_half``, grouped-query attention as
  each query head attending to its own key/value head (no ``repeat_kv``);
- grouped-query attention through the fast path's ``enable_gqa`` kernel, which replaces
  ``repeat_kv`` and so has no row of its own;
- the permutation between the RoPE layouts, and ``rope_theta``;
- bad input beyond integer arrays: a ValueError naming what was expected and what came.

float64 comparisons use the parity contract (``tests/tolerances.py`` FLOAT64: rtol 1e-7,
atol 1e-9).
"""
import importlib
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

import minillm.reference as R  # noqa: E402
import minillm.torch_backend as T  # noqa: E402
from minillm.core.init import rotary_tables  # noqa: E402
# the modules themselves (the package's attribute of the same name is the exported op)
t_act, t_att = (importlib.import_module(f"minillm.torch_backend.{name}")
                for name in ("activations", "attention"))

from parity import assert_close, random_array, scales, seeds, shapes, to_numpy, to_torch  # noqa: E402
from tolerances import FLOAT64  # noqa: E402

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
    # at the branch point of the reference's sigmoid, 0 and -0, the derivative is 1/2 in all
    # three (the reference selects -x or x, no abs, whose derivative at 0 is a convention;
    # the explicit path's torch.sigmoid has no branch)
    zeros = np.array([0.0, -0.0])
    for fn in (T.silu, t_act.fast_silu):
        _, (grad,) = torch_run(fn, [zeros], np.ones(2))
        np.testing.assert_array_equal(to_numpy(grad), [0.5, 0.5])
    np.testing.assert_array_equal(R.silu_backward(np.ones(2), R.silu_forward(zeros)[1]), [0.5, 0.5])


# ----------------------------------------------------------------------------------------
# RMSNorm


def test_rms_norm_is_the_formula_and_has_unit_rms():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5)) * 7
    y = R.rms_norm(x, np.ones(5), eps=1e-12)
    np.testing.assert_allclose(np.sqrt((y * y).mean(axis=-1)), 1.0, rtol=1e-10)
    # no mean is subtracted: a constant row stays constant (layer norm would give zeros)
    np.testing.assert_allclose(R.rms_norm(np.full((1, 4), 3.0), np.ones(4), 1e-12), np.ones((1, 4)))


# ----------------------------------------------------------------------------------------
# the gated (SwiGLU) feed-forward


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


# ----------------------------------------------------------------------------------------
# RoPE: split halves, the base, the permutation between the layouts


def _rotate_half(x):
    """Hugging Face Llama's ``rotate_half``: (-x2, x1) for the halves x1, x2 of the last axis."""
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


@SETTINGS
@given(lead=shapes(min_dims=0, max_dims=2, max_side=3), T_=st.integers(1, 6),
       half=st.integers(1, 4), seed=seeds, base=st.sampled_from([10000.0, 500000.0, 1e6, 7.0]))
def test_rope_half_is_hugging_faces_rotate_half(lead, T_, half, seed, base):
    """Hugging Face Llama's formula: q * cos + rotate_half(q) * sin, with cos and sin each
    repeated twice along the last axis (its parity, gradient and non-finite values are the
    catalogue's: tests/ops_catalogue.py, row rope_half)."""
    x = random_array(np.random.default_rng(seed), tuple(lead) + (T_, 2 * half))
    cos, sin = rotary_tables(T_, 2 * half, "float64", base)
    t_cos, t_sin = torch.from_numpy(cos), torch.from_numpy(sin)
    cos2, sin2 = torch.cat([t_cos, t_cos], -1), torch.cat([t_sin, t_sin], -1)
    hf = torch.from_numpy(x) * cos2 + _rotate_half(torch.from_numpy(x)) * sin2
    assert_close("reference rope_half vs rotate_half", R.rope_half(x, cos, sin), hf, RTOL, ATOL)
    assert_close("torch rope_half vs rotate_half", T.rope_half(torch.from_numpy(x), t_cos, t_sin), hf,
                 RTOL, ATOL)


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
