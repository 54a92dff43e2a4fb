"""Layers: each reference layer's forward and hand-written backward against its torch
twin (same parameter names and shapes), with a random upstream gradient; the one-cache
rule; the Module registry; the initialisation rules.

Tolerances: float64, the parity contract's rtol 1e-7 / atol 1e-9 (docs/architecture.md;
observed ~1e-15).
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minillm.reference as R
from minillm.core import init
from minillm.core.config import ACTIVATIONS, ModelConfig

from parity import assert_close

torch = pytest.importorskip("torch")
import minillm.torch_backend as T  # noqa: E402

RTOL, ATOL = 1e-7, 1e-9


def twins(make_ref, make_torch, rng):
    """A reference layer with random float64 parameters and its torch twin, equal."""
    ref, tor = make_ref(), make_torch()
    assert [(n, p.shape) for n, p in ref.named_parameters()] == \
           [(n, tuple(p.shape)) for n, p in tor.named_parameters()]
    for name, p in ref.named_parameters():
        p.data[...] = rng.standard_normal(p.shape)
    tor.load_state_dict(ref.state_dict())
    return ref, tor


def compare(ref, tor, x, forward_args=(), ids=False, seed=0):
    """Forward both, backward a random upstream gradient, compare outputs and grads."""
    rng = np.random.default_rng(seed)
    xt = torch.from_numpy(x.copy())
    if not ids:
        xt.requires_grad_(True)
    targs = [torch.from_numpy(a) if isinstance(a, np.ndarray) else a for a in forward_args]
    y_r = ref(x, *forward_args)
    y_t = tor(xt, *targs)
    assert_close("layer output", y_r, y_t.detach().numpy(), RTOL, ATOL)
    dy = rng.standard_normal(y_r.shape)                       # random, never all-ones
    dx = ref.backward(dy)
    y_t.backward(torch.from_numpy(dy))
    if not ids:
        assert_close("dx", dx, xt.grad.numpy(), RTOL, ATOL)
    tor_params = dict(tor.named_parameters())
    for name, p in ref.named_parameters():
        assert_close(f"d{name}", p.grad, tor_params[name].grad.numpy(), RTOL, ATOL)


@settings(max_examples=15)
@given(d_in=st.integers(1, 9), d_out=st.integers(1, 9), bias=st.booleans(),
       shape=st.sampled_from([(3,), (2, 3), (2, 1, 4)]), seed=st.integers(0, 2**16))
def test_linear(d_in, d_out, bias, shape, seed):
    rng = np.random.default_rng(seed)
    ref, tor = twins(lambda: R.Linear(d_in, d_out, bias, "float64"),
                     lambda: T.Linear(d_in, d_out, bias, "float64"), rng)
    assert ref.W.shape == (d_in, d_out)
    compare(ref, tor, rng.standard_normal(shape + (d_in,)), seed=seed)


@settings(max_examples=10)
@given(V=st.integers(1, 12), d=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_embedding_with_repeated_ids(V, d, seed):
    rng = np.random.default_rng(seed)
    ref, tor = twins(lambda: R.Embedding(V, d, "float64"), lambda: T.Embedding(V, d, "float64"), rng)
    ids = rng.integers(0, V, (3, 5))                          # repeats add up in dW
    compare(ref, tor, ids, ids=True, seed=seed)


@settings(max_examples=10)
@given(d=st.integers(2, 10), seed=st.integers(0, 2**16))
def test_layer_norm(d, seed):
    rng = np.random.default_rng(seed)
    ref, tor = twins(lambda: R.LayerNorm(d, 1e-5, "float64"),
                     lambda: T.LayerNorm(d, 1e-5, "float64"), rng)
    compare(ref, tor, 3 * rng.standard_normal((2, 3, d)) + 1, seed=seed)


@settings(max_examples=10)
@given(activation=st.sampled_from(ACTIVATIONS), seed=st.integers(0, 2**16))
def test_feed_forward(activation, seed):
    rng = np.random.default_rng(seed)
    ref, tor = twins(lambda: R.FeedForward(6, 10, activation, "float64"),
                     lambda: T.FeedForward(6, 10, activation, "float64"), rng)
    compare(ref, tor, rng.standard_normal((2, 4, 6)), seed=seed)


@settings(max_examples=15)
@given(n_heads=st.sampled_from([1, 2, 4]), T_=st.integers(1, 6),
       mask_kind=st.sampled_from(["none", "causal", "padding", "both"]),
       seed=st.integers(0, 2**16))
def test_multi_head_attention(n_heads, T_, mask_kind, seed):
    rng = np.random.default_rng(seed)
    C = 8
    ref, tor = twins(lambda: R.MultiHeadAttention(C, n_heads, "float64"),
                     lambda: T.MultiHeadAttention(C, n_heads, "float64"), rng)
    x = rng.standard_normal((2, T_, C)) * 0.5
    mask = None
    if mask_kind in ("causal", "both"):
        mask = R.causal_mask(T_)                              # (T, T)
    if mask_kind in ("padding", "both"):
        pad = (np.arange(T_)[None, :] < rng.integers(1, T_ + 1, 2)[:, None])[:, None, None, :]
        mask = pad if mask is None else mask & pad            # (B, 1, T, T)
    compare(ref, tor, x, (mask,), seed=seed)


@pytest.mark.parametrize("norm_first", [True, False])
def test_transformer_block_pre_and_post_norm(norm_first):
    rng = np.random.default_rng(1)
    config = ModelConfig(vocab_size=11, block_size=8, d_model=8, n_heads=2, n_layers=1,
                         d_ff=12, norm_first=norm_first, dtype="float64")
    ref, tor = twins(lambda: R.TransformerBlock(config, np.random.default_rng(0)),
                     lambda: T.TransformerBlock(config, np.random.default_rng(0)), rng)
    compare(ref, tor, rng.standard_normal((2, 5, 8)), (R.causal_mask(5),))


def test_each_layer_keeps_one_cache_and_backward_uses_the_last_call():
    rng = np.random.default_rng(0)
    layer = R.Linear(3, 2, dtype="float64")
    layer.W.data[...] = rng.standard_normal((3, 2))
    x1, x2 = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    layer(x1)
    layer(x2)
    dy = rng.standard_normal((4, 2))
    layer.backward(dy)
    np.testing.assert_allclose(layer.W.grad, x2.T @ dy)       # the second call's input
    caches = [k for k in vars(layer) if "cache" in k]
    assert caches == ["_cache"]                               # one cache, not a list
    layer.backward(dy)                                        # gradients accumulate
    np.testing.assert_allclose(layer.W.grad, 2 * x2.T @ dy)
    layer.zero_grad()
    assert layer.W.grad is None


def test_module_registry_train_eval_and_state_dict():
    config = ModelConfig(vocab_size=11, block_size=8, d_model=8, n_heads=2, n_layers=2,
                         positional="sinusoidal")
    model = R.GPT(config)
    names = [n for n, _ in model.named_parameters()]
    assert names[0] == "tok_emb.W" and names[1].startswith("blocks.0.ln1")
    assert not any("pos" in n for n in names)                 # sinusoidal: a buffer
    assert model.pos_table.shape == (8, 8)
    assert all(m.training for m in model.modules())
    model.eval()
    assert not any(m.training for m in model.modules())
    state = model.state_dict()
    state["tok_emb.W"][...] = 0                               # a copy, not the weights
    assert np.abs(model.tok_emb.W.data).sum() > 0


def test_init_rules_and_scaled_residual_projections():
    shapes = [("blocks.0.attn.W_O", (64, 64)), ("blocks.0.attn.W_Q", (64, 64)),
              ("blocks.0.ffn.W2", (256, 64)), ("blocks.0.ln1.gamma", (64,)),
              ("blocks.0.ln1.beta", (64,)), ("blocks.0.ffn.b1", (256,))]
    v = init.init_parameters(shapes, seed=0, n_layers=8, scale_residual=True)
    assert np.all(v["blocks.0.ln1.gamma"] == 1) and np.all(v["blocks.0.ln1.beta"] == 0)
    assert np.all(v["blocks.0.ffn.b1"] == 0)
    assert abs(v["blocks.0.attn.W_Q"].std() - 0.02) < 0.002
    assert abs(v["blocks.0.attn.W_O"].std() - 0.02 / 4) < 0.0005   # 0.02 / sqrt(2 * 8)
    assert abs(v["blocks.0.ffn.W2"].std() - 0.02 / 4) < 0.0005
    again = init.init_parameters(shapes, seed=0, n_layers=8, scale_residual=True)
    assert all(np.array_equal(v[n], again[n]) for n in v)
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        init.init_parameters(shapes, seed=-1)
    wide = init.init_parameters(shapes, seed=0, n_layers=8, scale_residual=True, std=0.125)
    np.testing.assert_allclose(wide["blocks.0.attn.W_Q"], v["blocks.0.attn.W_Q"] * (0.125 / 0.02), rtol=1e-6)
    assert np.array_equal(wide["blocks.0.ffn.b1"], v["blocks.0.ffn.b1"])
    P = init.sinusoidal_positions(4, 6, "float64")
    np.testing.assert_allclose(P[1, 0], np.sin(1.0))
    np.testing.assert_allclose(P[1, 3], np.cos(1.0 / 10000 ** (2 / 6)))


@pytest.mark.parametrize("kind", ["GPT", "SpanQA", "EncoderDecoder"])
def test_init_std_scales_every_weight_alike_in_both_backends(kind):
    """``ModelConfig.init_std``: the same draws times sigma / 0.02 (exactly, up to the
    float32 cast: rtol 1e-6), biases and LayerNorm untouched, both backends equal."""
    base = ModelConfig(vocab_size=32, block_size=8, d_model=16, n_heads=2, n_layers=2)
    wide = ModelConfig(**{**base.to_dict(), "init_std": 0.25})
    small = dict(getattr(R, kind)(base, seed=3).named_parameters())
    for name, p in getattr(R, kind)(wide, seed=3).named_parameters():
        scale = 1.0 if name.endswith("gamma") else 0.25 / 0.02     # gamma stays 1, biases 0
        np.testing.assert_allclose(p.data, small[name].data * scale, rtol=1e-6, err_msg=name)
    for (name, p), (_, q) in zip(getattr(R, kind)(wide, seed=3).named_parameters(),
                                 getattr(T, kind)(wide, seed=3).named_parameters()):
        assert np.array_equal(p.data, q.detach().numpy()), name
    for bad in (0, -0.1, float("inf"), float("nan"), True, "0.02"):
        with pytest.raises(ValueError, match="init_std must be a finite number > 0"):
            ModelConfig(init_std=bad)
