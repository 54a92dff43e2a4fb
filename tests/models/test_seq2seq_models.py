"""EncoderDecoder, cross-attention (MultiHeadAttention with memory) and SpanQA: the NumPy reference's hand-written
backward agrees with torch's autograd, for single layers, whole models and a short run.

Tolerances (the same as the other models, reasons in tests/model_helpers.py):
float64 rtol 1e-7 / atol 1e-9; float32 rtol 1e-4, atol 1e-5 times the tensor's largest
magnitude. Whole run, float64: rtol 1e-8 / atol 1e-12 as in test_models_training.py.
Finite differences (central, h = 1e-6, float64) agree with the hand-written cross-attention
backward to rtol 1e-5 / atol 1e-7: the truncation error is O(h^2) ~ 1e-12 and the
rounding error ~ eps / h ~ 1e-10 relative to the values, both far below.
"""
import dataclasses
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

import minillm.reference as R  # noqa: E402
import minillm.torch_backend as T  # noqa: E402
from minillm.core.config import ModelConfig  # noqa: E402
from minillm.core.init import init_parameters  # noqa: E402
from minillm.store import model_io  # noqa: E402

from model_helpers import assert_model_close, grads, small_configs, to_np  # noqa: E402


def _batch(config, B, S, T_, seed):
    rng = np.random.default_rng(seed)
    src = rng.integers(0, config.vocab_size, (B, S))
    tgt = rng.integers(0, config.vocab_size, (B, T_))
    targets = rng.integers(0, config.vocab_size, (B, T_))
    targets[:, 1:] = np.where(rng.random((B, T_ - 1)) < 0.3, -100, targets[:, 1:])
    lengths = rng.integers(1, S + 1, B)
    mask = np.arange(S)[None, :] < lengths[:, None]                  # (B, S), >= 1 real token
    return src, tgt, targets, mask


def _init_layer(layer, seed, dtype):
    values = init_parameters([(n, tuple(p.shape)) for n, p in layer.named_parameters()], seed, dtype)
    for n, p in layer.named_parameters():
        if hasattr(p, "detach"):
            with torch.no_grad():
                p.copy_(torch.from_numpy(values[n]))
        else:
            p.data[...] = values[n]


@settings(deadline=None)
@given(config=small_configs(), B=st.integers(1, 3), S=st.integers(1, 8), T_=st.integers(1, 8),
       seed=st.integers(0, 2**16), smoothing=st.sampled_from([0.0, 0.1]))
def test_encoder_decoder_logits_loss_and_every_gradient(config, B, S, T_, seed, smoothing):
    src, tgt, targets, mask = _batch(config, B, S, T_, seed)
    ref = R.EncoderDecoder(config, label_smoothing=smoothing, seed=seed % 7)
    tor = T.EncoderDecoder(config, label_smoothing=smoothing, seed=seed % 7)
    assert [n for n, _ in ref.named_parameters()] == [n for n, _ in tor.named_parameters()]
    logits_r, loss_r = ref(src, tgt, targets, mask)
    logits_t, loss_t = tor(src, tgt, targets, mask)
    loss_r.backward()
    loss_t.backward()
    dt = config.dtype
    assert logits_r.dtype == np.dtype(dt)
    assert_model_close("logits", logits_r, logits_t, dt)
    assert_model_close("loss", np.asarray(float(loss_r), dt), loss_t, dt)
    g_r, g_t = grads(ref), grads(tor)
    for name in g_r:
        assert_model_close(f"grad {name}", g_r[name], g_t[name], dt)


@settings(deadline=None)
@given(config=small_configs(), B=st.integers(1, 3), T_=st.integers(1, 8),
       seed=st.integers(0, 2**16), segments=st.booleans())
def test_span_qa_logits_loss_and_every_gradient(config, B, T_, seed, segments):
    rng = np.random.default_rng(seed)
    types = None
    if segments:                                  # BERT's segment embeddings: question 0, context 1
        config = dataclasses.replace(config, type_vocab_size=2)
        types = (np.arange(T_)[None, :] >= rng.integers(0, T_ + 1, B)[:, None]).astype(np.int64)
    idx = rng.integers(0, config.vocab_size, (B, T_))
    lengths = rng.integers(1, T_ + 1, B)
    mask = np.arange(T_)[None, :] < lengths[:, None]
    start = rng.integers(0, lengths)                                  # inside the real tokens
    end = np.minimum(start + rng.integers(0, 3, B), lengths - 1)
    ref, tor = R.SpanQA(config, seed=seed % 5), T.SpanQA(config, seed=seed % 5)
    logits_r, loss_r = ref(idx, start, end, mask, token_type_ids=types)
    logits_t, loss_t = tor(idx, start, end, mask, token_type_ids=types)
    loss_r.backward()
    loss_t.backward()
    dt = config.dtype
    assert logits_r.shape == (B, 2, T_)
    assert_model_close("logits", logits_r, logits_t, dt)
    assert_model_close("loss", np.asarray(float(loss_r), dt), loss_t, dt)
    g_r, g_t = grads(ref), grads(tor)
    for name in g_r:
        assert_model_close(f"grad {name}", g_r[name], g_t[name], dt)


def test_cross_attention_backward_against_finite_differences_and_torch():
    # the decoder's cross-attention: MultiHeadAttention with keys and values from a memory
    rng = np.random.default_rng(0)
    C, H, B, Tq, S = 8, 2, 2, 3, 5
    ref, tor = R.MultiHeadAttention(C, H, "float64"), T.MultiHeadAttention(C, H, "float64")
    for layer in (ref, tor):
        _init_layer(layer, 3, "float64")
    for p in ref.parameters():                                       # larger weights: a real test
        p.data[...] = rng.standard_normal(p.data.shape) * 0.5
    tor.load_state_dict(ref.state_dict())
    x, mem = rng.standard_normal((B, Tq, C)), rng.standard_normal((B, S, C))
    mask = (np.arange(S)[None, :] < np.array([5, 2])[:, None])[:, None, None, :]   # (B,1,1,S)
    dy = rng.standard_normal((B, Tq, C))                             # random upstream gradient
    y = ref(x, mask, memory=mem)
    dx, dmem = ref.backward(dy)

    def f(x_, m_):
        return float((ref(x_, mask, memory=m_) * dy).sum())

    h = 1e-6
    for arr, grad in ((x, dx), (mem, dmem)):
        num = np.zeros_like(arr)
        for i in np.ndindex(arr.shape):
            old = arr[i]
            arr[i] = old + h
            up = f(x, mem)
            arr[i] = old - h
            down = f(x, mem)
            arr[i] = old
            num[i] = (up - down) / (2 * h)
        np.testing.assert_allclose(grad, num, rtol=1e-5, atol=1e-7)
    # the masked memory positions get no gradient
    assert np.all(dmem[1, 2:] == 0)
    # torch: same output and input gradients
    xt = torch.tensor(x, requires_grad=True)
    mt = torch.tensor(mem, requires_grad=True)
    yt = tor(xt, torch.from_numpy(mask), memory=mt)
    (yt * torch.from_numpy(dy)).sum().backward()
    assert_model_close("y", y, yt, "float64")
    assert_model_close("dx", dx, xt.grad, "float64")
    assert_model_close("dmemory", dmem, mt.grad, "float64")
    # every parameter gradient too (the key and value weights read the memory)
    for (name, p_r), (_, p_t) in zip(ref.named_parameters(), tor.named_parameters()):
        assert_model_close(f"grad {name}", p_r.grad, p_t.grad, "float64")
    # without memory the same layer is self-attention again, backward returning dx alone
    ref(x, None)
    dx_self = ref.backward(dy)
    assert isinstance(dx_self, np.ndarray) and dx_self.shape == x.shape


@pytest.mark.parametrize("backend", [R, T], ids=["reference", "torch"])
def test_a_rotary_attention_refuses_a_memory(backend):
    layer = backend.MultiHeadAttention(8, 2, "float64", rope_positions=6)
    x = np.zeros((1, 3, 8)) if backend is R else torch.zeros(1, 3, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match="expected memory=None for a rotary attention"):
        layer(x, None, memory=x)


# Written by the code before issue 19, when the decoder's cross-attention was a class of
# its own (CrossAttention): the checkpoint, and the logits that code computed from it.
CHECKPOINT_BEFORE = Path(__file__).parents[1] / "fixtures" / "encoder_decoder_before_cross_attention_merge"


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_a_checkpoint_written_before_cross_attention_became_multi_head_attention_loads(backend):
    model, ckpt = model_io.load_model(CHECKPOINT_BEFORE, backend)   # strict: every name matched
    assert type(model).__name__ == "EncoderDecoder"
    assert [n for n, _ in model.named_parameters() if ".cross_attn." in n] == [
        f"decoder.0.cross_attn.{p}" for p in ("W_Q", "b_Q", "W_K", "b_K", "W_V", "b_V", "W_O", "b_O")]
    src, tgt = np.array(ckpt.extra["src"]), np.array(ckpt.extra["tgt"])
    logits, _ = model(src, tgt, attention_mask=src != 0)
    want = np.array(ckpt.extra["logits"])
    # within the float64 parity contract, not bit for bit, in both backends: the stored
    # logits were computed on another machine, whose BLAS and NumPy kernels (AVX2 against
    # AVX-512 paths) add the same products in another order (measured 1.4e-17 apart on an
    # AVX-512 CPU); a wrongly matched weight moves the logits by O(1)
    assert_model_close("logits", logits, want, "float64")


def test_source_padding_never_changes_the_logits():
    """Metamorphic: tokens behind the source padding mask are invisible to the decoder."""
    config = ModelConfig(vocab_size=19, block_size=8, d_model=16, n_heads=2, n_layers=2,
                         dtype="float64")
    src, tgt, _, _ = _batch(config, 2, 6, 5, 1)
    mask = np.array([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0]], bool)
    other = src.copy()
    other[~mask] = (other[~mask] + 1) % config.vocab_size
    for backend in (R, T):
        model = backend.EncoderDecoder(config, seed=2)
        a, _ = model(src, tgt, attention_mask=mask)
        b, _ = model(other, tgt, attention_mask=mask)
        np.testing.assert_allclose(to_np(a), to_np(b), rtol=0, atol=1e-12)
        c, _ = model(other, tgt)                                     # without the mask it differs
        assert np.abs(to_np(a) - to_np(c)).max() > 1e-6


def test_whole_run_parity_15_adam_steps_with_dropout_and_label_smoothing():
    config = ModelConfig(vocab_size=21, block_size=8, d_model=16, n_heads=2, n_layers=2,
                         dtype="float64", dropout=0.1)
    data = [_batch(config, 3, 6, 5, 100 + i) for i in range(15)]
    runs = []
    for backend in (R, T):
        model = backend.EncoderDecoder(config, label_smoothing=0.1, seed=4)
        opt = backend.Adam(model.parameters(), lr=3e-3)
        losses = []
        for src, tgt, targets, mask in data:
            _, loss = model(src, tgt, targets, mask)
            loss.backward()
            opt.step()
            opt.zero_grad()
            losses.append(loss.item())
        runs.append((np.array(losses), model_io.model_state(model)))
    (l_r, p_r), (l_t, p_t) = runs
    np.testing.assert_allclose(l_r, l_t, rtol=1e-8, atol=1e-12, err_msg="losses")
    for name in p_r:
        np.testing.assert_allclose(p_r[name], p_t[name], rtol=1e-8, atol=1e-12, err_msg=name)
    assert l_r[-1] < l_r[0]


@pytest.mark.parametrize("kind", ["EncoderDecoder", "SpanQA"])
def test_checkpoint_round_trip_across_backends(kind, tmp_path):
    config = ModelConfig(vocab_size=19, block_size=8, d_model=16, n_heads=2, n_layers=1)
    kwargs = {"label_smoothing": 0.1} if kind == "EncoderDecoder" else {}
    model = getattr(R, kind)(config, seed=3, **kwargs)
    model_io.save_checkpoint(tmp_path / "ck", model)
    loaded, _ = model_io.load_model(tmp_path / "ck", backend="torch")
    assert type(loaded).__name__ == kind
    if kind == "EncoderDecoder":
        assert loaded.label_smoothing == 0.1
    for name, a in model.state_dict().items():
        np.testing.assert_array_equal(a, model_io.model_state(loaded)[name])


@pytest.mark.parametrize("backend", [R, T], ids=["numpy", "torch"])
def test_bad_inputs_raise_value_error(backend):
    config = ModelConfig(vocab_size=19, block_size=8, d_model=16, n_heads=2, n_layers=1)
    with pytest.raises(ValueError, match="label_smoothing"):
        backend.EncoderDecoder(config, label_smoothing=1.5)
    model = backend.EncoderDecoder(config)
    with pytest.raises(ValueError, match="same batch size"):
        model(np.zeros((2, 3), int), np.zeros((3, 3), int))
    with pytest.raises(ValueError, match="block_size"):
        model(np.zeros((2, 3), int), np.zeros((2, 9), int))
    qa = backend.SpanQA(config)
    with pytest.raises(ValueError, match="start_positions and end_positions"):
        qa(np.zeros((2, 3), int), start_positions=np.zeros(2, int))
    with pytest.raises(ValueError, match="start_positions"):
        qa(np.zeros((2, 3), int), np.array([0, 5]), np.array([0, 1]))
    with pytest.raises(ValueError, match="type_vocab_size"):
        qa(np.zeros((2, 3), int), token_type_ids=np.zeros((2, 3), int))
