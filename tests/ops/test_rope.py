"""RoPE (rotary position embedding, Su et al. 2021; ``positional="rope"``) in both backends.

- the op: the hand-written ``rope_backward`` against central finite differences and
  against torch's autograd; the forward of the two backends (float64 and float32,
  contiguous and strided), and against an independent complex-number form of RoFormer's
  interleaved pairs, :math:`(x_{2i} + i x_{2i+1}) e^{i m \\theta_i}`;
- the property RoPE exists for: :math:`R_m q \\cdot R_n k` depends on n - m only;
  the rotation keeps every pair's norm; position 0 is the identity;
- ``rotary_tables``: shapes, :math:`\\theta_i = \\mathrm{base}^{-2i/D}`, known values, an
  odd head size refused;
- bad input: ValueError naming what was expected and what came, in both backends (that
  the ops skip their checks inside a model: tests/ops/test_checks_once.py, RoPE included);
- models: no position parameters, checkpoints across backends, logits and every gradient
  equal between backends, the KV cache, EncoderDecoder, and that RoPE is really on
  (order matters; switching it off in attention changes the outputs; left padding moves
  every position and changes nothing, which absolute positions cannot do);
- export to GPT-2 / BERT layouts is refused.

Tolerances:

- float64 between backends: the parity contract's rtol 1e-7 / atol 1e-9
  (docs/architecture.md; ``tolerances.FLOAT64``, ``model_helpers``); float32:
  ``tolerances.FLOAT32["rope"]`` (reason written there).
- finite differences: ``tolerances.FD`` (central, step 1e-6, float64).
- the offset property and the complex form, float64: the angle m theta is computed in
  float64 and rounds to ~1 ulp of m theta <= 64, so cos/sin carry an absolute error
  ~64 * 1.1e-16 ~ 7e-15; a score (a sum over D <= 16 products of O(|q||k|/D)) then moves
  by <= ~1e-13 |q||k|. 1e-11 |q||k| leaves 100x; a wrong angle or pair is O(|q||k|).
- invariances of whole models (shift, permutation with RoPE off), float64: rtol/atol
  1e-10. With RoPE the shifted positions rotate by other angles, so the sums differ by
  rounding (~1e-14 after two layers, as above); a real dependence on absolute position
  is O(1e-2) at the init scale used (init_std 0.3, so that attention is not uniform).
"""
import dataclasses
import itertools

import numpy as np
import pytest
from hypothesis import find, given
from hypothesis import strategies as st

import minillm.reference as R
from minillm.core.config import ModelConfig
from minillm.core.init import rotary_tables
from minillm.store import model_io

from model_helpers import POSITIONALS, assert_model_close, grads, small_configs, to_np
from parity import (
    assert_close, check_grad, dump_diff_log, make_noncontiguous, random_array, scales, seeds,
    shapes, to_torch,
)
from tolerances import FD, FD_STEP, FLOAT64, limits

torch = pytest.importorskip("torch")
import minillm.torch_backend as T  # noqa: E402


F64 = (FLOAT64.rtol, FLOAT64.atol)
INVARIANCE = dict(rtol=1e-10, atol=1e-10)


@pytest.fixture(scope="module", autouse=True)
def _report_diffs():
    yield
    dump_diff_log()   # only when MINILLM_DIFF_REPORT names a file


def _angles(rng, T_, half, scale=3.0):
    """Random tables cos, sin (T, D/2) of arbitrary angles (not only m theta_i)."""
    A = rng.standard_normal((T_, half)) * scale
    return np.cos(A), np.sin(A)


@st.composite
def rope_case(draw, max_lead=2, max_T=5, max_half=4):
    lead = draw(shapes(0, max_lead, max_side=3))
    return lead, draw(st.integers(1, max_T)), draw(st.integers(1, max_half))


# ----------------------------------------------------------------------------------
# the op


@given(case=rope_case(), seed=seeds, real_tables=st.booleans())
def test_rope_backward_equals_finite_differences_and_autograd(case, seed, real_tables):
    lead, T_, half = case
    rng = np.random.default_rng(seed)
    x = random_array(rng, lead + (T_, 2 * half))
    cos, sin = rotary_tables(T_, 2 * half, "float64") if real_tables else _angles(rng, T_, half)
    y, cache = R.rope_forward(x, cos, sin)
    dy = random_array(rng, y.shape)                              # random upstream gradient
    dx = R.rope_backward(dy, cache)
    check_grad(lambda x: R.rope(x, cos, sin), [x], dy, [dx], ["rope dx"],
               eps=FD_STEP, rtol=FD.rtol, atol=FD.atol)
    x_t = to_torch(x, requires_grad=True)
    T.rope(x_t, to_torch(cos), to_torch(sin)).backward(to_torch(dy))
    assert_close("rope dx vs autograd", dx, x_t.grad, *F64)


@given(case=rope_case(max_lead=3, max_T=6), dtype=st.sampled_from([np.float64, np.float32]),
       scale=scales, seed=seeds, noncontiguous=st.booleans())
def test_rope_forward_and_backward_agree_between_backends(case, dtype, scale, seed, noncontiguous):
    lead, T_, half = case
    rng = np.random.default_rng(seed)
    x = random_array(rng, lead + (T_, 2 * half), dtype, scale)
    cos, sin = (t.astype(dtype) for t in _angles(rng, T_, half))
    ours, cache = R.rope_forward(make_noncontiguous(x) if noncontiguous else x, cos, sin)
    x_t = to_torch(x, requires_grad=True, noncontiguous=noncontiguous)
    theirs = T.rope(x_t, to_torch(cos), to_torch(sin))
    assert ours.dtype == dtype and theirs.dtype == x_t.dtype
    assert_close("rope out", ours, theirs, *limits("rope", dtype, theirs))
    dy = random_array(rng, ours.shape, dtype)
    theirs.backward(to_torch(dy))
    dx = R.rope_backward(dy, cache)
    assert dx.dtype == dtype
    assert_close("rope grad", dx, x_t.grad, *limits("rope", dtype, x_t.grad))


@given(case=rope_case(), seed=seeds, base=st.sampled_from([10000.0, 100.0, 2.0]))
def test_rope_is_roformers_interleaved_complex_rotation(case, seed, base):
    """An independent form: pair i of position m as the complex number x_{2i} + i x_{2i+1},
    multiplied by e^{i m theta_i} (RoFormer, section 3.2.2). The 'rotate halves' layout
    of GPT-NeoX (pairs (x_i, x_{i+D/2})) or a rotation the other way fails this."""
    lead, T_, half = case
    D = 2 * half
    rng = np.random.default_rng(seed)
    x = random_array(rng, lead + (T_, D))
    theta = base ** (-np.arange(half) * 2.0 / D)                 # (D/2,)
    z = (x[..., 0::2] + 1j * x[..., 1::2]) * np.exp(1j * np.arange(T_)[:, None] * theta)
    expected = np.stack([z.real, z.imag], axis=-1).reshape(x.shape)
    cos, sin = rotary_tables(T_, D, "float64", base=base)
    for name, got in (("reference", R.rope(x, cos, sin)),
                      ("torch", T.rope(to_torch(x), to_torch(cos), to_torch(sin)))):
        assert_close(f"rope ({name}) vs complex form", got, expected, 0.0, 1e-11 * max(1.0, np.abs(x).max()))


# ----------------------------------------------------------------------------------
# what RoPE is for


def _rotate_one(v, m, D, base=10000.0):
    """The single vector v (D,) rotated to position m."""
    cos, sin = rotary_tables(m + 1, D, "float64", base)
    return R.rope(v[None, :], cos[m:m + 1], sin[m:m + 1])[0]


@given(half=st.integers(1, 8), m=st.integers(0, 63), n=st.integers(0, 63), shift=st.integers(0, 63),
       seed=seeds, base=st.sampled_from([10000.0, 10.0]))
def test_scores_depend_only_on_the_offset(half, m, n, shift, seed, base):
    D = 2 * half
    rng = np.random.default_rng(seed)
    q, k = rng.standard_normal(D), rng.standard_normal(D)
    tol = 1e-11 * np.linalg.norm(q) * np.linalg.norm(k)
    score = _rotate_one(q, m, D, base) @ _rotate_one(k, n, D, base)
    shifted = _rotate_one(q, m + shift, D, base) @ _rotate_one(k, n + shift, D, base)
    assert abs(score - shifted) <= tol, (score, shifted)
    # R_m q . R_n k = q . R_{n-m} k: only the offset, whichever is larger
    if n >= m:
        relative = q @ _rotate_one(k, n - m, D, base)
    else:
        relative = _rotate_one(q, m - n, D, base) @ k
    assert abs(score - relative) <= tol, (score, relative)


def test_the_offset_does_change_the_score():
    """So that the test above is not satisfied by a rotation that does nothing."""
    rng = np.random.default_rng(0)
    q, k = rng.standard_normal(8), rng.standard_normal(8)
    scores = [_rotate_one(q, 0, 8) @ _rotate_one(k, n, 8) for n in range(6)]
    assert min(abs(a - b) for a, b in itertools.combinations(scores, 2)) > 1e-3


@given(case=rope_case(max_lead=3, max_T=8), seed=seeds, scale=scales)
def test_rotation_keeps_each_pairs_norm_and_position_0_is_the_identity(case, seed, scale):
    lead, T_, half = case
    rng = np.random.default_rng(seed)
    x = random_array(rng, lead + (T_, 2 * half), scale=scale)
    cos, sin = rotary_tables(T_, 2 * half, "float64")
    for name, y in (("reference", R.rope(x, cos, sin)),
                    ("torch", to_np(T.rope(to_torch(x), to_torch(cos), to_torch(sin))))):
        pair_norm = np.hypot(x[..., 0::2], x[..., 1::2])                     # (..., T, D/2)
        assert_close(f"{name} pair norms", np.hypot(y[..., 0::2], y[..., 1::2]), pair_norm, 1e-13, 1e-300)
        np.testing.assert_array_equal(y[..., 0, :], x[..., 0, :], err_msg=f"{name}: position 0 moved")
        if T_ > 1:   # ... and the later positions do move
            assert not np.allclose(y[..., 1:, :], x[..., 1:, :], rtol=1e-6, atol=1e-6 * scale)


# ----------------------------------------------------------------------------------
# rotary_tables


def test_rotary_tables_shapes_dtypes_and_known_values():
    cos, sin = rotary_tables(5, 8)
    assert cos.shape == sin.shape == (5, 4) and cos.dtype == sin.dtype == np.float32
    cos64, sin64 = rotary_tables(5, 8, "float64")
    assert cos64.dtype == np.float64
    np.testing.assert_array_equal(cos, cos64.astype(np.float32))       # float64 first, then cast
    np.testing.assert_array_equal(cos64[0], np.ones(4))                 # position 0: angle 0
    np.testing.assert_array_equal(sin64[0], np.zeros(4))
    # theta_i = 10000^(-2i/8) = 1, 0.1, 0.01, 0.001; position 3 turns by 3 theta_i
    theta = np.array([1.0, 0.1, 0.01, 0.001])
    np.testing.assert_allclose(cos64[3], np.cos(3 * theta), rtol=1e-15, atol=1e-16)
    np.testing.assert_allclose(sin64[3], np.sin(3 * theta), rtol=1e-15, atol=1e-16)
    assert sin64[1, 0] == np.sin(1.0) and cos64[1, 0] == np.cos(1.0)
    # the angle at position 1 is theta_i itself, for any base and head size
    for D, base in ((2, 10000.0), (6, 500.0), (16, 10000.0)):
        c, s = rotary_tables(2, D, "float64", base)
        np.testing.assert_allclose(np.arctan2(s[1], c[1]), base ** (-np.arange(0, D, 2) / D), rtol=1e-14)
    c, s = rotary_tables(4, 4, "float64", base=100.0)                   # theta = 1, 0.1
    np.testing.assert_allclose(np.arctan2(s[2], c[2]), [2.0, 0.2], rtol=1e-14)
    assert rotary_tables(0, 4)[0].shape == (0, 2)


@pytest.mark.parametrize("head_size", [1, 3, 5, 17])
def test_rotary_tables_refuse_an_odd_head_size(head_size):
    with pytest.raises(ValueError, match=rf"expected an even head size for RoPE .*got {head_size}$"):
        rotary_tables(4, head_size)


# ----------------------------------------------------------------------------------
# bad input


class Backend:
    def __init__(self, name, module, array):
        self.name, self.module, self.array = name, module, array

    def __repr__(self):
        return self.name


BACKENDS = [
    Backend("reference", R, lambda a: np.asarray(a)),
    Backend("torch", T, lambda a: torch.from_numpy(np.asarray(a))),
]


@pytest.fixture(params=BACKENDS, ids=repr)
def B(request):
    return request.param


def test_rope_errors(B):
    rng = np.random.default_rng(0)
    x = B.array(rng.standard_normal((2, 3, 4)))
    cos, sin = (B.array(t) for t in rotary_tables(3, 4, "float64"))
    B.module.rope(x, cos, sin)                         # the valid call the cases below break
    with pytest.raises(ValueError, match=r"expected x with an even last dimension \(RoPE rotates pairs\), "
                                         r"got shape \(2, 3, 5\)"):
        B.module.rope(B.array(rng.standard_normal((2, 3, 5))), cos, sin)
    with pytest.raises(ValueError, match=r"expected cos of shape \(3, 2\) \(\(T, D/2\) for x \(\.\.\., T, D\)\), "
                                         r"got \(4, 2\)"):
        B.module.rope(x, B.array(np.ones((4, 2))), sin)
    with pytest.raises(ValueError, match=r"expected sin of shape \(3, 2\) .*got \(3, 4\)"):
        B.module.rope(x, cos, B.array(np.zeros((3, 4))))
    with pytest.raises(ValueError, match=r"expected cos to have the dtype of x \(float32\), got float64"):
        B.module.rope(B.array(rng.standard_normal((2, 3, 4)).astype(np.float32)), cos, sin)
    with pytest.raises(ValueError, match=r"expected sin to have the dtype of x \(float64\), got float32"):
        B.module.rope(x, cos, B.array(np.zeros((3, 2), np.float32)))
    with pytest.raises(ValueError, match="expected x to have a floating-point dtype, got int64"):
        B.module.rope(B.array(np.zeros((2, 3, 4), np.int64)), cos, sin)
    with pytest.raises(ValueError, match="expected cos to have a floating-point dtype, got int64"):
        B.module.rope(x, B.array(np.ones((3, 2), np.int64)), sin)
    with pytest.raises(ValueError, match=r"expected x to have at least 2 dimension\(s\), got 1"):
        B.module.rope(B.array(np.zeros(4)), cos, sin)


def test_torch_rope_wants_tensors():
    x = torch.zeros(3, 4, dtype=torch.float64)
    cos, sin = (torch.from_numpy(t) for t in rotary_tables(3, 4, "float64"))
    with pytest.raises(ValueError, match="expected x to be a torch.Tensor, got ndarray"):
        T.rope(np.zeros((3, 4)), cos, sin)
    with pytest.raises(ValueError, match="expected cos to be a torch.Tensor, got ndarray"):
        T.rope(x, cos.numpy(), sin)


def test_reference_rope_forward_and_backward_agree_on_a_strided_head_view():
    """What MultiHeadAttention passes: split_heads' transposed view (B, H, T, D)."""
    rng = np.random.default_rng(1)
    q = R.split_heads(rng.standard_normal((2, 5, 12)), 3)                 # (2, 3, 5, 4), a view
    assert not q.flags.c_contiguous
    cos, sin = rotary_tables(5, 4, "float64")
    y, cache = R.rope_forward(q, cos, sin)
    np.testing.assert_array_equal(y, R.rope(np.ascontiguousarray(q), cos, sin))
    dy = rng.standard_normal(y.shape)
    np.testing.assert_array_equal(R.rope_backward(dy, cache), R.rope_backward(np.ascontiguousarray(dy), cache))


def test_reference_rope_backward_checks_the_upstream_shape():
    x = np.zeros((2, 3, 4))
    _, cache = R.rope_forward(x, *rotary_tables(3, 4, "float64"))
    with pytest.raises(ValueError, match=r"expected dy of shape \(2, 3, 4\)"):
        R.rope_backward(np.ones((5, 3, 4)), cache)


def test_model_config_refuses_an_odd_head_size_with_rope():
    with pytest.raises(ValueError, match=r"positional='rope' rotates pairs .*expected an even head size "
                                         r"\(head_dim, or d_model / n_heads\), got 12 / 4 = 3"):
        ModelConfig(vocab_size=11, block_size=8, d_model=12, n_heads=4, positional="rope")
    with pytest.raises(ValueError, match="got 9 / 1 = 9"):
        ModelConfig(vocab_size=11, block_size=8, d_model=9, n_heads=1, positional="rope")
    for positional in ("learned", "sinusoidal"):     # an odd head size is fine without RoPE
        ModelConfig(vocab_size=11, block_size=8, d_model=12, n_heads=4, positional=positional)
    assert ModelConfig(vocab_size=11, d_model=12, n_heads=3, positional="rope").positional == "rope"


@pytest.mark.parametrize("backend", [R, T], ids=["reference", "torch"])
def test_multi_head_attention_refuses_rope_with_an_odd_head_size(backend):
    with pytest.raises(ValueError, match="expected an even head size for RoPE .*got 3"):
        backend.MultiHeadAttention(12, 4, "float64", rope_positions=8)
    backend.MultiHeadAttention(12, 4, "float64")                       # without RoPE: fine


# ----------------------------------------------------------------------------------
# models

CONFIG = ModelConfig(vocab_size=19, block_size=8, d_model=16, n_heads=2, n_layers=2,
                     positional="rope", dtype="float64")
ALL_KINDS = ("GPT", "TransformerEncoder", "SequenceClassifier", "SpanQA", "EncoderDecoder")


def _run(model, kind, rng, config, B_=2, T_=8):
    """Logits and loss of one batch with targets (and a padding mask where the kind takes one)."""
    V = config.vocab_size
    idx = rng.integers(0, V, (B_, T_))
    lengths = np.array([T_, max(2, T_ - 3)])[:B_]                  # padding, >= 2 real tokens
    mask = np.arange(T_)[None, :] < lengths[:, None]
    if kind == "GPT":
        return model(idx, rng.integers(0, V, (B_, T_)))
    if kind == "TransformerEncoder":
        return model(idx, rng.integers(0, V, (B_, T_)), attention_mask=mask)
    if kind == "SequenceClassifier":
        return model(idx, labels=rng.integers(0, 2, B_), attention_mask=mask)
    if kind == "SpanQA":
        start = np.zeros(B_, dtype=np.int64)
        return model(idx, start, start + 1, mask)
    tgt = rng.integers(0, V, (B_, T_ - 2))
    return model(idx, tgt, rng.integers(0, V, (B_, T_ - 2)), mask)


def test_the_model_strategy_draws_rope_and_only_even_head_sizes():
    assert "rope" in POSITIONALS
    find(small_configs(), lambda c: c.positional == "rope")            # rope is reachable
    for n_heads, mult in itertools.product([1, 2, 4], [2, 4, 8]):     # every head size drawn
        d_model = max(n_heads * mult, 8)
        assert (d_model // n_heads) % 2 == 0, (n_heads, mult)


@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest.mark.parametrize("backend", [R, T], ids=["reference", "torch"])
def test_a_rope_model_has_no_position_parameters(backend, kind):
    names = [n for n, _ in getattr(backend, kind)(CONFIG, seed=0).named_parameters()]
    assert names and not [n for n in names if "pos" in n]
    learned = [n for n, _ in getattr(backend, kind)(dataclasses.replace(CONFIG, positional="learned"),
                                                     seed=0).named_parameters()]
    assert [n for n in learned if "pos" in n]                          # the check can fail
    assert set(names) == {n for n in learned if "pos" not in n}        # nothing else changed
    model = getattr(backend, kind)(CONFIG, seed=0)
    assert list(model.state_dict()) == names                           # tables neither trained nor saved
    attn = [m for m in model.modules() if type(m).__name__ == "MultiHeadAttention"      # the self-attentions,
            and (getattr(m, "rope_tables", None) is not None or getattr(m, "rotary", False))]  # all rotary
    assert attn and len(attn) == CONFIG.n_layers * (1 + (kind == "EncoderDecoder"))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("kind", ALL_KINDS)
def test_logits_and_every_gradient_agree_between_backends(kind, dtype):
    """float64: the parity contract's 1e-7 / 1e-9 (docs/architecture.md); float32: model_helpers' whole-model tolerance."""
    base = dataclasses.replace(CONFIG, dtype=dtype)
    for config in (base, dataclasses.replace(base, d_model=16, n_heads=4, norm_first=False,
                                             activation="gelu_tanh", init_std=0.3)):
        ref, tor = getattr(R, kind)(config, seed=4), getattr(T, kind)(config, seed=4)
        logits_r, loss_r = _run(ref, kind, np.random.default_rng(5), config)
        logits_t, loss_t = _run(tor, kind, np.random.default_rng(5), config)
        assert logits_r.dtype == np.dtype(dtype) and logits_t.dtype == getattr(torch, dtype)
        assert_model_close(f"{kind} rope logits", logits_r, logits_t, dtype)
        assert_model_close(f"{kind} rope loss", np.asarray(float(loss_r), dtype), loss_t.detach(), dtype)
        loss_r.backward()
        loss_t.backward()
        g_r, g_t = grads(ref), grads(tor)
        assert g_r.keys() == g_t.keys()
        for name in g_t:
            assert_model_close(f"{kind} rope grad {name}", g_r[name], g_t[name], dtype)
        assert np.abs(g_r["blocks.0.attn.W_Q" if kind != "EncoderDecoder"
                          else "decoder.0.self_attn.W_Q"]).max() > 0


@pytest.mark.parametrize("saver, loader", [(R, "torch"), (T, "numpy")], ids=["numpy->torch", "torch->numpy"])
@pytest.mark.parametrize("kind", ["GPT", "EncoderDecoder"])
def test_checkpoint_round_trip_across_backends(saver, loader, kind, tmp_path):
    model = getattr(saver, kind)(CONFIG, seed=2)
    model_io.save_checkpoint(tmp_path / "ck", model)
    loaded, _ = model_io.load_model(tmp_path / "ck", loader)
    assert type(loaded).__name__ == kind and loaded.config.positional == "rope"
    saved = model_io.model_state(model)
    assert list(model_io.model_state(loaded)) == list(saved)
    for name, a in saved.items():
        np.testing.assert_array_equal(model_io.model_state(loaded)[name], a, err_msg=name)
    # the rotation is rebuilt on load: the same logits as the model that was saved
    assert_close("logits after load", to_np(_run(loaded, kind, np.random.default_rng(0), CONFIG)[0]),
                 to_np(_run(model, kind, np.random.default_rng(0), CONFIG)[0]), *F64)


@pytest.mark.parametrize("backend", [R, T], ids=["reference", "torch"])
def test_forward_cached_in_chunks_equals_the_full_forward(backend):
    """float64, 1e-12 as in tests/train/test_generation.py: the same sums, grouped otherwise. Had
    each chunk been rotated from position 0 (not P), the keys would be off by O(1)."""
    config = dataclasses.replace(CONFIG, init_std=0.3)
    model = backend.GPT(config, seed=3).eval()
    ids = np.random.default_rng(0).integers(0, config.vocab_size, (2, config.block_size))
    full = to_np(model(ids)[0])
    cache, pieces = None, []
    with torch.no_grad():
        for lo, hi in ((0, 3), (3, 4), (4, 7), (7, 8)):
            logits, cache = model.forward_cached(ids[:, lo:hi], cache)
            pieces.append(to_np(logits))
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), full, rtol=1e-12, atol=1e-12)
    # the cache keeps rotated keys: rotating it back by -m theta gives the plain keys
    x = to_np(model.tok_emb(ids) if backend is R else model.tok_emb(torch.from_numpy(ids)))
    block = model.blocks[0]
    h = to_np(block.ln1(x if backend is R else torch.from_numpy(x)))
    attn = block.attn
    W_K, b_K = (to_np(attn.W_K.data), to_np(attn.b_K.data)) if backend is R else (to_np(attn.W_K), to_np(attn.b_K))
    k = R.split_heads(h @ W_K + b_K, config.n_heads)                   # (B, H, T, D), unrotated
    cos, sin = rotary_tables(config.block_size, config.d_model // config.n_heads, "float64")
    np.testing.assert_allclose(to_np(cache[0][0]), R.rope(k, cos, sin), rtol=1e-12, atol=1e-12)


def test_forward_cached_agrees_between_backends_and_in_float32():
    config = dataclasses.replace(CONFIG, dtype="float32", init_std=0.3)
    ids = np.random.default_rng(1).integers(0, config.vocab_size, (1, 8))
    out = {}
    for name, backend in (("reference", R), ("torch", T)):
        model = backend.GPT(config, seed=0).eval()
        with torch.no_grad():
            first, cache = model.forward_cached(ids[:, :5])
            rest, _ = model.forward_cached(ids[:, 5:], cache)
        out[name] = np.concatenate([to_np(first), to_np(rest)], axis=1)
        assert out[name].dtype == np.float32
        # float32: regrouped sums across the cache boundary, as in test_generation.py
        np.testing.assert_allclose(out[name], to_np(model(ids)[0]), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["reference"], out["torch"], rtol=1e-4, atol=1e-5 * np.abs(out["torch"]).max())


def test_generation_gives_the_same_tokens_with_and_without_cache_in_both_backends():
    """Past block_size the window slides and every kept token's position changes: the
    cache is rebuilt then, so the tokens stay those of the full forward (float64)."""
    from minillm.store.runtime import Runtime
    from minillm.train.generation import generate
    config = dataclasses.replace(CONFIG, init_std=0.3)
    tokens = {}
    for backend in ("numpy", "torch"):
        rt = Runtime(backend)
        model = rt.module.GPT(config, seed=1)
        for use_cache in (True, False):
            tokens[backend, use_cache] = generate(rt, model, [5, 9, 2], 14, temperature=0.8, top_k=10,
                                                  seed=7, use_cache=use_cache)
    first = tokens["numpy", True]
    assert len(first) == 14 and len(set(first)) > 1
    assert all(t == first for t in tokens.values()), tokens


def test_fast_path_with_rope_matches_the_explicit_path():
    model = T.GPT(dataclasses.replace(CONFIG, init_std=0.3), seed=5)
    idx = np.random.default_rng(5).integers(0, CONFIG.vocab_size, (2, 8))
    logits, loss = model(idx, idx)
    loss.backward()
    explicit = grads(model)
    model.zero_grad()
    logits_f, loss_f = model.set_fused(True)(idx, idx)
    loss_f.backward()
    assert_close("fused rope logits", logits_f, logits, *F64)
    for name, g in grads(model).items():
        assert_close(f"fused rope grad {name}", g, explicit[name], *F64)


def test_a_short_training_run_is_the_same_in_both_backends():
    """Eight AdamW steps with dropout on: the same losses and parameters (float64, rtol 1e-8 /
    atol 1e-12 as in tests/models/test_models_training.py), and the loss goes down."""
    config = dataclasses.replace(CONFIG, dropout=0.1, init_std=0.1)
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, config.vocab_size, (4, 8)) for _ in range(8)]
    losses, params = {}, {}
    for backend in (R, T):
        model = backend.GPT(config, seed=0)
        opt = backend.AdamW(model.parameters(), lr=3e-2, weight_decay=0.01)
        run = []
        for idx in batches * 2:
            _, loss = model(idx[:, :-1], idx[:, 1:])
            loss.backward()
            opt.step()
            opt.zero_grad()
            run.append(float(loss.item()))
        losses[backend], params[backend] = run, model_io.model_state(model)
    np.testing.assert_allclose(losses[R], losses[T], rtol=1e-8, atol=1e-12)
    for name, p in params[T].items():
        np.testing.assert_allclose(params[R][name], p, rtol=1e-8, atol=1e-12, err_msg=name)
    assert np.mean(losses[R][-4:]) < np.mean(losses[R][:4])


def _attention_layers(model):
    return [m for m in model.modules() if type(m).__name__ == "MultiHeadAttention"]


def _rope_off(model):
    """Switch the rotation off in every self-attention (the attribute each backend tests)."""
    for m in _attention_layers(model):
        if hasattr(m, "rotary"):
            m.rotary = False
        else:
            m.rope_tables = None
    return model


@pytest.mark.parametrize("backend", [R, T], ids=["reference", "torch"])
def test_rope_is_really_on_order_matters_and_switching_it_off_changes_the_outputs(backend):
    """Without positions an encoder is permutation-equivariant (permuting the tokens permutes
    the outputs) and a one-layer GPT's last logit ignores the order of the tokens before
    it (with two layers the earlier positions' causal prefixes already differ); RoPE
    must break both. The same model with the rotation switched off restores both, so the
    difference is RoPE's."""
    config = dataclasses.replace(CONFIG, init_std=0.3)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, config.vocab_size, (2, 8))
    perm = np.array([3, 0, 6, 1, 7, 2, 5, 4])
    last_perm = np.array([4, 2, 0, 6, 1, 5, 3, 7])                     # keeps the last token
    enc = backend.TransformerEncoder(config, seed=1)
    gpt = backend.GPT(dataclasses.replace(config, n_layers=1), seed=1)
    on = {"enc": to_np(enc(idx)[0]), "enc_p": to_np(enc(idx[:, perm])[0]),
          "gpt": to_np(gpt(idx)[0])[:, -1], "gpt_p": to_np(gpt(idx[:, last_perm])[0])[:, -1]}
    _rope_off(enc), _rope_off(gpt)
    off = {"enc": to_np(enc(idx)[0]), "enc_p": to_np(enc(idx[:, perm])[0]),
           "gpt": to_np(gpt(idx)[0])[:, -1], "gpt_p": to_np(gpt(idx[:, last_perm])[0])[:, -1]}
    np.testing.assert_allclose(off["enc_p"], off["enc"][:, perm], **INVARIANCE)
    np.testing.assert_allclose(off["gpt_p"], off["gpt"], **INVARIANCE)
    for a, b in ((on["enc_p"], on["enc"][:, perm]), (on["gpt_p"], on["gpt"]),
                 (on["enc"], off["enc"]), (on["gpt"], off["gpt"])):
        assert np.abs(a - b).max() > 1e-3 * np.abs(b).max()


@pytest.mark.parametrize("backend", [R, T], ids=["reference", "torch"])
def test_left_padding_moves_every_position_and_changes_nothing(backend):
    """Masked pads in front shift each real token by n_pad places. Scores depend on
    offsets only, so an encoder's outputs at the real tokens stay; with learned
    positions they change (the control that lets this fail)."""
    rng = np.random.default_rng(7)
    real = rng.integers(0, CONFIG.vocab_size, (2, 5))
    for n_pad in (1, 3):
        padded = np.concatenate([rng.integers(0, CONFIG.vocab_size, (2, n_pad)), real], axis=1)
        mask = np.arange(5 + n_pad)[None, :] >= n_pad
        mask = np.broadcast_to(mask, padded.shape).copy()
        results = {}
        for positional in ("rope", "learned"):
            config = dataclasses.replace(CONFIG, positional=positional, init_std=0.3)
            model = backend.TransformerEncoder(config, seed=0)
            a = to_np(model(real)[0])
            b = to_np(model(padded, attention_mask=mask)[0])[:, n_pad:]
            results[positional] = (a, b)
        np.testing.assert_allclose(*reversed(results["rope"]), **INVARIANCE)
        a, b = results["learned"]
        assert np.abs(a - b).max() > 1e-3 * np.abs(a).max()


@pytest.mark.parametrize("backend", [R, T], ids=["reference", "torch"])
def test_encoder_decoder_rotates_self_attention_only(backend):
    """Cross-attention never rotates: left-padding the source (masked) moves every source
    position, and with RoPE in the encoder's and decoder's self-attention only, the
    decoder's logits do not move. Had cross-attention rotated queries by target positions
    and keys by source positions, they would."""
    config = dataclasses.replace(CONFIG, init_std=0.3)
    model = backend.EncoderDecoder(config, seed=0)
    cross = [block.cross_attn for block in model.decoder]
    assert cross and not [m for m in cross
                          if getattr(m, "rope_tables", None) is not None or getattr(m, "rotary", False)]
    rng = np.random.default_rng(3)
    src, tgt = rng.integers(0, config.vocab_size, (2, 5)), rng.integers(0, config.vocab_size, (2, 6))
    padded = np.concatenate([rng.integers(0, config.vocab_size, (2, 2)), src], axis=1)
    mask = np.broadcast_to(np.arange(7) >= 2, (2, 7)).copy()
    a = to_np(model(src, tgt)[0])
    b = to_np(model(padded, tgt, attention_mask=mask)[0])
    np.testing.assert_allclose(b, a, **INVARIANCE)
    # and the decoder's own positions do matter: its self-attention rotates
    for block in model.decoder:
        _rope_off(block)
    c = to_np(model(src, tgt)[0])
    assert np.abs(c - a).max() > 1e-3 * np.abs(a).max()


def test_multi_head_attention_with_rope_backward_equals_finite_differences():
    """The layer's hand-written backward (rope_backward on dq and dk, then the projections)
    against central finite differences, w.r.t. x and the query/key weights, float64."""
    rng = np.random.default_rng(0)
    mha = R.MultiHeadAttention(4, 2, "float64", rope_positions=5)
    for p in mha.parameters():
        p.data[...] = rng.standard_normal(p.data.shape)
    x = rng.standard_normal((1, 4, 4))
    mask = R.causal_mask(4)
    dy = rng.standard_normal((1, 4, 4))
    mha(x, mask)
    dx = mha.backward(dy)

    def f(x, W_Q, W_K):
        saved = mha.W_Q.data.copy(), mha.W_K.data.copy()
        mha.W_Q.data[...], mha.W_K.data[...] = W_Q, W_K
        out = mha(x, mask)
        mha.W_Q.data[...], mha.W_K.data[...] = saved
        return out

    check_grad(f, [x, mha.W_Q.data, mha.W_K.data], dy, [dx, mha.W_Q.grad, mha.W_K.grad],
               ["mha dx", "mha dW_Q", "mha dW_K"], eps=FD_STEP, rtol=FD.rtol, atol=FD.atol)


def test_torch_attention_keeps_its_tables_as_buffers_that_follow_the_dtype():
    """Weights of std 0.5 (not the init's 0.02), so that the scores, and with them the
    rotation, visibly shape the output."""
    rng = np.random.default_rng(0)
    weights = {n: rng.standard_normal(tuple(p.shape)) * 0.5
               for n, p in R.MultiHeadAttention(8, 2, "float64").named_parameters()}
    x = rng.standard_normal((2, 6, 8))
    ref = R.MultiHeadAttention(8, 2, "float64", rope_positions=6)
    for n, p in ref.named_parameters():
        p.data[...] = weights[n]
    y_ref = ref(x)
    mhas = {}
    for dtype in ("float64", "float32"):
        mha = T.MultiHeadAttention(8, 2, dtype, rope_positions=6)
        assert {n for n, _ in mha.named_buffers()} == {"rope_cos", "rope_sin"}
        assert "rope_cos" not in mha.state_dict() and mha.rope_cos.shape == (6, 2)
        assert mha.rope_cos.dtype == getattr(torch, dtype)
        with torch.no_grad():
            for n, p in mha.named_parameters():
                p.copy_(torch.from_numpy(weights[n]))
        mhas[dtype] = mha
    assert_close("torch vs reference MHA (rope)", mhas["float64"](torch.from_numpy(x)), y_ref, *F64)
    y32 = mhas["float32"](torch.from_numpy(x).float())
    # float32: products over C = 8 and a softmax, ~1e-6 relative; 1e-5 of the largest output
    assert_close("float32 vs float64 MHA", y32.double(), y_ref, 0.0, 1e-5 * np.abs(y_ref).max())
    _rope_off(ref)
    assert np.abs(ref(x) - y_ref).max() > 1e-2 * np.abs(y_ref).max()   # the rotation mattered
    # .double() moves the buffers too (they hold the float32-rounded angles then: ~6e-8)
    doubled = mhas["float32"].double()
    assert doubled.rope_cos.dtype == torch.float64
    assert_close("float32-built, doubled MHA", doubled(torch.from_numpy(x)), y_ref, 0.0, 1e-6 * np.abs(y_ref).max())
    # under autocast (bfloat16 products; linear's float32 bias makes q float32 again) the
    # rotation still runs and stays close: bfloat16 keeps 8 bits, ~4e-3 relative per
    # product, a few of them chained, so 5e-2 of the largest output
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y_bf = doubled.float()(torch.from_numpy(x).float())
    assert torch.isfinite(y_bf).all()
    assert_close("bf16 autocast vs float32", y_bf.float(), y32, 0.0, 5e-2 * y32.abs().max().item(),
                 check_dtype=False)


# ----------------------------------------------------------------------------------
# export to pretrained layouts


def test_export_of_a_rope_model_to_gpt2_or_bert_is_refused(tmp_path):
    from minillm.apps.interop import save_hf
    gpt = R.GPT(dataclasses.replace(CONFIG, dtype="float32"), seed=0)
    with pytest.raises(ValueError, match="GPT2LMHeadModel needs ModelConfig.positional='learned', got 'rope'"):
        save_hf(gpt, tmp_path / "gpt2")
    bert_config = dataclasses.replace(CONFIG, norm_first=False, embedding_norm=True, type_vocab_size=2,
                                      dtype="float32")
    with pytest.raises(ValueError, match="BertModel needs ModelConfig.positional='learned', got 'rope'"):
        save_hf(R.TransformerEncoder(bert_config, seed=0), tmp_path / "bert")
    assert not (tmp_path / "gpt2").exists() or not any((tmp_path / "gpt2").iterdir())


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_attention_refuses_more_positions_than_its_tables_and_names_rope_positions(backend):
    mod = R if backend == "numpy" else T
    attn = mod.MultiHeadAttention(8, 2, "float64", rope_positions=4)
    x = np.zeros((1, 6, 8))
    x = x if backend == "numpy" else torch.from_numpy(x)
    with pytest.raises(ValueError, match=r"expected at most rope_positions=4 positions, got 6"):
        attn(x)
    with pytest.raises(ValueError, match=r"expected at most rope_positions=4 positions, got 5"):
        attn.forward_cached(x[:, :1], attn.forward_cached(x[:, :4])[1])


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("bad", [-1, 2.0, True, "8"])
def test_attention_refuses_a_rope_positions_that_is_not_a_count(backend, bad):
    mod = R if backend == "numpy" else T
    with pytest.raises(ValueError, match=r"expected rope_positions to be an int >= 0, got"):
        mod.MultiHeadAttention(8, 2, "float64", rope_positions=bad)
