"""Attention, masks and heads: the two backends agree, and the reference's hand-written
backward agrees with finite differences.

Shapes and values are drawn with hypothesis: T_q != T_k, one head, T = 1, batch 1,
several batch layouts (none, (B,), (B, H), and k/v shared by every head), masks that are
absent, causal, key padding (with empty rows), random, and with fully masked rows, and
non-contiguous inputs.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minillm.reference as ref
from parity import (
    assert_close, check_grad, dump_diff_log, make_noncontiguous, random_array, seeds,
    to_numpy, to_torch,
)
from tolerances import FD, FD_STEP, FLOAT32, tolerance

try:
    import torch
    import minillm.torch_backend as tb
except ImportError:  # the reference tests still run without torch
    torch = tb = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")
MASK_KINDS = ("none", "causal", "padding", "random", "fully_masked_rows")


@pytest.fixture(scope="module", autouse=True)
def _report_largest_differences():
    """With MINILLM_DIFF_REPORT=path, the largest differences seen are written there."""
    yield
    dump_diff_log()


# ----------------------------------------------------------------------------------------
# strategies

@st.composite
def attention_cases(draw, dtypes=(np.float64, np.float32)):
    """q, k, v, mask (NumPy) and a random upstream gradient for the output."""
    mask_kind = draw(st.sampled_from(MASK_KINDS))
    B, H = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    layout = draw(st.sampled_from(["none", "B", "BH", "BH_shared_kv"]))
    q_lead = {"none": (), "B": (B,), "BH": (B, H), "BH_shared_kv": (B, H)}[layout]
    kv_lead = (B, 1) if layout == "BH_shared_kv" else q_lead
    T_q = draw(st.integers(1, 5))
    T_k = draw(st.integers(T_q if mask_kind == "causal" else 1, 6))
    d_k, d_v = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    dtype = draw(st.sampled_from(dtypes))
    scale = draw(st.sampled_from([0.1, 1.0, 3.0]))
    rng = np.random.default_rng(draw(seeds))
    q = random_array(rng, q_lead + (T_q, d_k), dtype, scale)
    k = random_array(rng, kv_lead + (T_k, d_k), dtype, scale)
    v = random_array(rng, kv_lead + (T_k, d_v), dtype)
    scores_shape = q_lead + (T_q, T_k)
    if mask_kind == "none":
        mask = None
    elif mask_kind == "causal":
        mask = ref.causal_mask(T_q, T_k)
    elif mask_kind == "padding":  # key padding per batch row; a length of 0 empties rows
        lengths = rng.integers(0, T_k + 1, size=B)
        mask = ref.length_mask(lengths, T_k)  # (B, T_k)
        mask = mask[:, None, :] if layout == "B" else mask[:, None, None, :]
        if layout == "none":
            mask = mask[0, 0]  # (T_k,)
    elif mask_kind == "random":
        mask = rng.random(scores_shape) < draw(st.sampled_from([0.3, 0.7, 1.0]))
    else:
        mask = rng.random(scores_shape) < 0.6
        mask[..., rng.random(T_q) < 0.5, :] = False
        mask[..., 0, :] = False  # at least one fully masked row
    out_shape = np.broadcast_shapes(q_lead, kv_lead) + (T_q, d_v)
    dout = random_array(rng, out_shape, dtype)
    noncontiguous = draw(st.booleans())
    return q, k, v, mask, dout, noncontiguous


def _ref_inputs(q, k, v, noncontiguous):
    if noncontiguous:
        return tuple(make_noncontiguous(x) for x in (q, k, v))
    return q, k, v


def _torch_inputs(q, k, v, noncontiguous):
    return tuple(to_torch(x, requires_grad=True, noncontiguous=noncontiguous) for x in (q, k, v))


def _torch_mask(mask):
    return None if mask is None else torch.from_numpy(np.array(mask))


# ----------------------------------------------------------------------------------------
# parity: reference vs torch backend, forward and backward

@needs_torch
@given(attention_cases())
def test_attention_parity(case):
    q, k, v, mask, dout, noncontiguous = case
    rtol, atol, _ = tolerance("attention", q.dtype)
    inputs = _ref_inputs(q, k, v, noncontiguous)
    (out, weights), cache = ref.scaled_dot_product_attention_forward(*inputs, mask)
    dq, dk, dv = ref.scaled_dot_product_attention_backward(dout, cache)

    tq, tk, tv = _torch_inputs(q, k, v, noncontiguous)
    t_out, t_weights = tb.scaled_dot_product_attention(tq, tk, tv, _torch_mask(mask))
    t_out.backward(torch.from_numpy(dout))

    assert_close("attention out", out, t_out, rtol, atol)
    assert_close("attention weights", weights, t_weights, rtol, atol)
    assert_close("attention dq", dq, tq.grad, rtol, atol)
    assert_close("attention dk", dk, tk.grad, rtol, atol)
    assert_close("attention dv", dv, tv.grad, rtol, atol)
    np.testing.assert_array_equal(out, ref.scaled_dot_product_attention(*inputs, mask)[0])


@needs_torch
@given(attention_cases())
def test_fused_attention_matches_the_explicit_path(case):
    q, k, v, mask, dout, noncontiguous = case
    rtol, atol, _ = tolerance("fused_attention", q.dtype)
    explicit = _torch_inputs(q, k, v, noncontiguous)
    fused = _torch_inputs(q, k, v, noncontiguous)
    out, _ = tb.scaled_dot_product_attention(*explicit, _torch_mask(mask))
    f_out, f_weights = tb.fused_attention(*fused, _torch_mask(mask))
    assert f_weights is None
    out.backward(torch.from_numpy(dout))
    f_out.backward(torch.from_numpy(dout))
    assert_close("fused out", f_out, out, rtol, atol)
    for name, a, b in zip(("dq", "dk", "dv"), fused, explicit):
        assert_close(f"fused {name}", a.grad, b.grad, rtol, atol)


@needs_torch
@given(seeds, st.sampled_from([np.float64, np.float32]), st.integers(1, 4),
       st.integers(1, 5), st.integers(1, 3), st.integers(1, 4), st.booleans())
def test_heads_parity(seed, dtype, B, T, H, D, noncontiguous):
    rng = np.random.default_rng(seed)
    x = random_array(rng, (B, T, H * D), dtype)
    dout = random_array(rng, (B, H, T, D), dtype)
    split, cache = ref.split_heads_forward(make_noncontiguous(x) if noncontiguous else x, H)
    dx = ref.split_heads_backward(dout, cache)
    tx = to_torch(x, requires_grad=True, noncontiguous=noncontiguous)
    t_split = tb.split_heads(tx, H)
    t_split.backward(torch.from_numpy(dout))
    rtol, atol, _ = FLOAT32["heads"]  # exact in every dtype: reshapes only
    assert_close("split_heads", split, t_split, rtol, atol)
    assert_close("split_heads dx", dx, tx.grad, rtol, atol)

    merged, cache = ref.merge_heads_forward(split)
    dsplit = ref.merge_heads_backward(x, cache)
    t_in = to_torch(split, requires_grad=True)
    t_merged = tb.merge_heads(t_in)
    t_merged.backward(torch.from_numpy(x))
    assert_close("merge_heads", merged, t_merged, rtol, atol)
    assert_close("merge_heads dx", dsplit, t_in.grad, rtol, atol)
    np.testing.assert_array_equal(merged, x)  # merge undoes split


# ----------------------------------------------------------------------------------------
# finite differences (float64, random upstream gradient)

@settings(max_examples=15)
@given(attention_cases(dtypes=(np.float64,)))
def test_attention_backward_matches_finite_differences(case):
    q, k, v, mask, dout, _ = case
    _, cache = ref.scaled_dot_product_attention_forward(q, k, v, mask)
    analytic = ref.scaled_dot_product_attention_backward(dout, cache)

    def out_only(q, k, v):
        return ref.scaled_dot_product_attention(q, k, v, mask)[0]

    check_grad(out_only, [q, k, v], dout, analytic, ["dq", "dk", "dv"],
               eps=FD_STEP, rtol=FD.rtol, atol=FD.atol)


@settings(max_examples=10)
@given(seeds, st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3))
def test_heads_backward_matches_finite_differences(seed, B, T, H, D):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, T, H * D))
    dsplit = rng.standard_normal((B, H, T, D))
    _, cache = ref.split_heads_forward(x, H)
    check_grad(lambda x: ref.split_heads(x, H), [x], dsplit,
               [ref.split_heads_backward(dsplit, cache)], ["split_heads dx"],
               eps=FD_STEP, rtol=FD.rtol, atol=FD.atol)
    heads = rng.standard_normal((B, H, T, D))
    _, cache = ref.merge_heads_forward(heads)
    dmerged = rng.standard_normal((B, T, H * D))
    check_grad(ref.merge_heads, [heads], dmerged, [ref.merge_heads_backward(dmerged, cache)],
               ["merge_heads dx"], eps=FD_STEP, rtol=FD.rtol, atol=FD.atol)


# ----------------------------------------------------------------------------------------
# stability and the empty row

BACKENDS = [pytest.param(ref, id="reference"),
            pytest.param(tb, id="torch", marks=needs_torch)]


def _run(backend, q, k, v, mask, dout):
    """Forward and backward in either backend, everything returned as NumPy."""
    if backend is ref:
        (out, weights), cache = ref.scaled_dot_product_attention_forward(q, k, v, mask)
        return (out, weights) + ref.scaled_dot_product_attention_backward(dout, cache)
    tq, tk, tv = _torch_inputs(q, k, v, False)
    out, weights = tb.scaled_dot_product_attention(tq, tk, tv, _torch_mask(mask))
    out.backward(torch.from_numpy(dout))
    return tuple(to_numpy(t) for t in (out, weights, tq.grad, tk.grad, tv.grad))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("backend", BACKENDS)
def test_scores_of_1e4_stay_finite(backend, dtype):
    rng = np.random.default_rng(1)
    q = (100.0 * np.sign(rng.standard_normal((2, 4, 1)))).astype(dtype)  # d_k = 1
    k = (100.0 * np.sign(rng.standard_normal((2, 5, 1)))).astype(dtype)  # scores +-1e4
    v = rng.standard_normal((2, 5, 3)).astype(dtype)
    dout = rng.standard_normal((2, 4, 3)).astype(dtype)
    for mask in (None, ref.causal_mask(4, 5)):
        results = _run(backend, q, k, v, mask, dout)
        for name, r in zip(("out", "weights", "dq", "dk", "dv"), results):
            assert np.all(np.isfinite(r)), f"{name} has non-finite entries"
        np.testing.assert_allclose(results[1].sum(-1), 1.0, rtol=1e-6)
        assert results[0].dtype == dtype


@pytest.mark.parametrize("backend", BACKENDS)
def test_fully_masked_row_gives_zeros_not_nan(backend):
    rng = np.random.default_rng(2)
    q, k, v = rng.standard_normal((3, 4)), rng.standard_normal((5, 4)), rng.standard_normal((5, 2))
    dout = rng.standard_normal((3, 2))
    mask = np.ones((3, 5), dtype=bool)
    mask[1] = False  # query 1 may attend to nothing
    mask[:, 4] = False  # key 4 is seen by nobody
    out, weights, dq, dk, dv = _run(backend, q, k, v, mask, dout)
    np.testing.assert_array_equal(out[1], 0.0)
    np.testing.assert_array_equal(weights[1], 0.0)
    np.testing.assert_array_equal(dq[1], 0.0)
    np.testing.assert_array_equal(weights[:, 4], 0.0)
    np.testing.assert_array_equal(dk[4], 0.0)
    np.testing.assert_array_equal(dv[4], 0.0)
    np.testing.assert_allclose(weights[[0, 2]].sum(-1), 1.0, rtol=1e-12)
    assert np.all(np.isfinite(dk)) and np.all(np.isfinite(dv))
    # every mask False at once: all zeros
    out, weights, dq, dk, dv = _run(backend, q, k, v, np.zeros((3, 5), bool), dout)
    for r in (out, weights, dq, dk, dv):
        np.testing.assert_array_equal(r, 0.0)


@needs_torch
def test_fused_fully_masked_row_gives_zeros_not_nan():
    rng = np.random.default_rng(3)
    q = to_torch(rng.standard_normal((2, 3, 4)), requires_grad=True)
    k = to_torch(rng.standard_normal((2, 5, 4)), requires_grad=True)
    v = to_torch(rng.standard_normal((2, 5, 2)), requires_grad=True)
    mask = torch.ones(2, 3, 5, dtype=torch.bool)
    mask[0, 1] = False
    out, _ = tb.fused_attention(q, k, v, mask)
    out.backward(torch.from_numpy(rng.standard_normal((2, 3, 2))))
    assert torch.all(out[0, 1] == 0)
    assert torch.all(q.grad[0, 1] == 0)
    for t in (out, q.grad, k.grad, v.grad):
        assert torch.isfinite(t).all()


# ----------------------------------------------------------------------------------------
# metamorphic: the future and the padding never change what they must not

@pytest.mark.parametrize("backend", BACKENDS)
def test_causal_output_ignores_the_future(backend):
    rng = np.random.default_rng(4)
    T, d = 6, 3
    q, k, v = (rng.standard_normal((2, T, d)) for _ in range(3))
    dout = rng.standard_normal((2, T, d))
    out = _run(backend, q, k, v, ref.causal_mask(T), dout)[0]
    k2, v2 = k.copy(), v.copy()
    k2[:, 4:] += 10 * rng.standard_normal((2, T - 4, d))  # change positions 4 and 5
    v2[:, 4:] += 10 * rng.standard_normal((2, T - 4, d))
    out2 = _run(backend, q, k2, v2, ref.causal_mask(T), dout)[0]
    np.testing.assert_array_equal(out[:, :4], out2[:, :4])
    assert not np.allclose(out[:, 4:], out2[:, 4:])  # the change did reach the later rows


@pytest.mark.parametrize("backend", BACKENDS)
def test_padding_never_changes_real_tokens(backend):
    rng = np.random.default_rng(5)
    ids = np.array([[5, 6, 7, 0, 0], [8, 9, 1, 2, 3]])
    key_mask = ref.padding_mask(ids, pad_id=0)[:, None, :]  # (B, 1, T)
    q, k, v = (rng.standard_normal((2, 5, 4)) for _ in range(3))
    dout = rng.standard_normal((2, 5, 4))
    out = _run(backend, q, k, v, key_mask, dout)[0]
    k2, v2 = k.copy(), v.copy()
    k2[0, 3:] = 1e3 * rng.standard_normal((2, 4))
    v2[0, 3:] = 1e3 * rng.standard_normal((2, 4))
    out2 = _run(backend, q, k2, v2, key_mask, dout)[0]
    np.testing.assert_array_equal(out, out2)


# ----------------------------------------------------------------------------------------
# masks

def test_causal_mask_values():
    np.testing.assert_array_equal(ref.causal_mask(4), np.tril(np.ones((4, 4), bool)))
    # aligned at the end: the queries are the last T_q of T_k positions
    np.testing.assert_array_equal(ref.causal_mask(2, 5), np.array([
        [1, 1, 1, 1, 0],
        [1, 1, 1, 1, 1]], bool))
    np.testing.assert_array_equal(ref.causal_mask(1, 7), np.ones((1, 7), bool))
    assert ref.causal_mask(3).dtype == bool


def test_padding_and_length_masks():
    ids = np.array([[4, 5, 0], [0, 7, 0]])
    np.testing.assert_array_equal(ref.padding_mask(ids, 0), [[1, 1, 0], [0, 1, 0]])
    np.testing.assert_array_equal(ref.length_mask(np.array([2, 0, 3]), 3),
                                  [[1, 1, 0], [0, 0, 0], [1, 1, 1]])


@needs_torch
@given(st.integers(1, 6), st.integers(0, 4), seeds)
def test_masks_parity(T_q, extra, seed):
    T_k = T_q + extra
    np.testing.assert_array_equal(to_numpy(tb.causal_mask(T_q, T_k)), ref.causal_mask(T_q, T_k))
    np.testing.assert_array_equal(to_numpy(tb.causal_mask(T_q)), ref.causal_mask(T_q))
    assert tb.causal_mask(T_q).dtype == torch.bool
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 3, size=(2, T_k))
    np.testing.assert_array_equal(to_numpy(tb.padding_mask(torch.from_numpy(ids), 0)),
                                  ref.padding_mask(ids, 0))
    lengths = rng.integers(0, T_k + 1, size=3)
    np.testing.assert_array_equal(to_numpy(tb.length_mask(torch.from_numpy(lengths), T_k)),
                                  ref.length_mask(lengths, T_k))


# ----------------------------------------------------------------------------------------
# bad input: ValueError that names what was expected and what came

def _bad_attention_calls(lib, as_array):
    f32 = np.float32
    q = as_array(np.zeros((2, 3, 4), f32))
    k = as_array(np.zeros((2, 5, 4), f32))
    v = as_array(np.zeros((2, 5, 6), f32))
    calls = [
        (lambda: lib.scaled_dot_product_attention(q, as_array(np.zeros((2, 5, 3), f32)), v),
         r"q has d_k=4 but k has d_k=3"),
        (lambda: lib.scaled_dot_product_attention(q, k, as_array(np.zeros((2, 4, 6), f32))),
         r"k has T_k=5 but v has T_k=4"),
        (lambda: lib.scaled_dot_product_attention(q, k, v, as_array(np.ones((3, 5), f32))),
         r"expected mask to be boolean.*got float32"),
        (lambda: lib.scaled_dot_product_attention(q, k, v, as_array(np.ones((3, 4), bool))),
         r"expected mask broadcastable to .*\(2, 3, 5\), got shape \(3, 4\)"),
        (lambda: lib.scaled_dot_product_attention(q, k, v.astype(np.float64) if lib is ref
                                                  else v.double()),
         r"expected v to have the dtype of q \(float32\), got float64"),
        (lambda: lib.scaled_dot_product_attention(as_array(np.zeros((3, 3, 4), f32)), k, v),
         r"leading dimensions of q, k and v"),
        (lambda: lib.split_heads(as_array(np.zeros((2, 3, 10), f32)), 4),
         r"d_model not divisible by n_heads: expected C % n_heads == 0, got C=10, n_heads=4"),
        (lambda: lib.split_heads(as_array(np.zeros((2, 3, 8), f32)), 0),
         r"expected n_heads to be a positive int, got 0"),
        (lambda: lib.merge_heads(as_array(np.zeros((3, 4), f32))),
         r"expected x to have at least 3 dimension\(s\), got 2"),
        (lambda: lib.causal_mask(4, 2), r"expects T_k >= T_q.*got T_q=4, T_k=2"),
        (lambda: lib.causal_mask(0), r"expected T_q to be a positive int, got 0"),
        (lambda: lib.padding_mask(as_array(np.zeros((2, 3), f32)), 0),
         r"expected ids to have an integer dtype, got float32"),
        (lambda: lib.length_mask(as_array(np.array([1, 5])), 4),
         r"lengths must lie in \[0, T=4\], got min 1, max 5"),
        (lambda: lib.length_mask(as_array(np.array([[1, 2]])), 4),
         r"expected lengths to have 1 dimension\(s\), got 2"),
    ]
    return calls


@pytest.mark.parametrize("backend", ["reference", pytest.param("torch", marks=needs_torch)])
def test_bad_input_raises_value_error(backend):
    lib, as_array = (ref, np.asarray) if backend == "reference" else (tb, torch.from_numpy)
    calls = _bad_attention_calls(lib, as_array)
    if backend == "torch":  # the torch backend takes tensors, not NumPy arrays
        q = np.zeros((3, 4), np.float32)
        calls.append((lambda: tb.scaled_dot_product_attention(q, q, q),
                      r"expected q to be a torch.Tensor, got ndarray"))
        calls.append((lambda: tb.padding_mask(np.zeros((2, 3), np.int64), 0),
                      r"expected ids to be a torch.Tensor"))
    for call, message in calls:
        with pytest.raises(ValueError, match=message):
            call()


def test_backward_checks_the_upstream_gradient_shape():
    rng = np.random.default_rng(6)
    q, k, v = rng.standard_normal((3, 4)), rng.standard_normal((5, 4)), rng.standard_normal((5, 2))
    _, cache = ref.scaled_dot_product_attention_forward(q, k, v)
    with pytest.raises(ValueError, match=r"expected dout of shape \(3, 2\)"):
        ref.scaled_dot_product_attention_backward(np.zeros((3, 4)), cache)
