"""The modern decoder in whole models (issue 25): a Llama-style GPT (RMSNorm, SwiGLU,
grouped-query attention with 4 query and 2 key/value heads, QK-norm, RoPE in the split-halves
layout with its own base, no biases) and every mix of those choices, proven like the
GPT-2 and BERT models:

- the same parameter names, shapes, order and bitwise initial values in both backends;
- logits, loss, every gradient and a few Adam steps equal between the reference, the
  torch explicit path and the torch fast path, in float64 within the parity contract
  (rtol 1e-7, atol 1e-9; tests/model_helpers.py);
- the reference's hand-written backward of the attention layer against finite
  differences (tests/tolerances.py FD);
- the KV cache holds n_kv_heads heads: its bytes are n_kv_heads / n_heads of multi-head
  attention's, and decoding with it equals the full forward;
- the two RoPE layouts give the same outputs once W_Q and W_K are permuted;
- ModelConfig's new fields refuse bad values with the value named; models and formats
  that have no place for them refuse them.
"""
import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

import minillm.reference as R  # noqa: E402
import minillm.torch_backend as T  # noqa: E402
from minillm.core.config import ModelConfig  # noqa: E402

from model_helpers import assert_model_close, build, call, grads, make_batch, to_np  # noqa: E402
from parity import check_grad  # noqa: E402
from tolerances import FD, FD_STEP  # noqa: E402

LLAMA = ModelConfig(vocab_size=29, block_size=8, d_model=16, n_heads=4, n_kv_heads=2, n_layers=2,
                    d_ff=24, norm="rms", activation="swiglu", qk_norm=True, positional="rope",
                    rope_layout="half", rope_theta=500000.0, bias=False, dtype="float64",
                    init_std=0.2)


def _three(kind, config, seed):
    """The same model in the reference, the torch explicit path and the torch fast path."""
    return (build(R, kind, config, seed), build(T, kind, config, seed),
            build(T, kind, config, seed).set_fused(True))


def test_llama_style_gpt_parameters_are_the_same_in_both_backends():
    ref, tor, _ = _three("GPT", LLAMA, 3)
    named = [(n, tuple(p.shape)) for n, p in ref.named_parameters()]
    assert named == [(n, tuple(p.shape)) for n, p in tor.named_parameters()]
    for (name, p), (_, q) in zip(ref.named_parameters(), tor.named_parameters()):
        np.testing.assert_array_equal(p.data, to_np(q), err_msg=name)
    block = [(n.split(".", 2)[2], s) for n, s in named if n.startswith("blocks.0.")]
    D = LLAMA.d_head
    assert block == [("ln1.gamma", (16,)), ("attn.W_Q", (16, 16)), ("attn.W_K", (16, 2 * D)),
                     ("attn.W_V", (16, 2 * D)), ("attn.W_O", (16, 16)),
                     ("attn.q_norm.gamma", (D,)), ("attn.k_norm.gamma", (D,)),
                     ("ln2.gamma", (16,)), ("ffn.W_gate", (16, 24)), ("ffn.W_up", (16, 24)),
                     ("ffn.W_down", (24, 16))]
    assert [n for n, _ in named if not n.startswith("blocks.")] == ["tok_emb.W", "ln_f.gamma", "lm_head.W"]
    # GPT-2's scaled initialisation reaches the gated FFN's output projection too
    std = np.std(ref.blocks[0].ffn.W_down.data)
    assert 0.5 < std / (LLAMA.init_std / np.sqrt(2 * LLAMA.n_layers)) < 1.5


def test_llama_style_gpt_logits_loss_gradients_and_adam_steps_agree():
    models = _three("GPT", LLAMA, 5)
    opts = [R.Adam(models[0].parameters(), lr=1e-2)] + [T.Adam(m.parameters(), lr=1e-2) for m in models[1:]]
    rng = np.random.default_rng(0)
    for step in range(4):
        idx = rng.integers(0, LLAMA.vocab_size, (3, LLAMA.block_size))
        targets = rng.integers(0, LLAMA.vocab_size, (3, LLAMA.block_size))
        outs = []
        for model, opt in zip(models, opts):
            logits, loss = model(idx, targets)
            loss.backward()
            outs.append((to_np(logits), float(to_np(loss)), grads(model)))
            opt.step()
            opt.zero_grad()
        (logits, loss, g), others = outs[0], outs[1:]
        assert np.abs(g["blocks.0.attn.W_K"]).max() > 1e-4          # the gradients are not all ~0
        for path, (t_logits, t_loss, t_g) in zip(("explicit", "fused"), others):
            assert_model_close(f"step {step} {path} logits", logits, t_logits, "float64")
            assert_model_close(f"step {step} {path} loss", np.array(loss), np.array(t_loss), "float64")
            for name in g:
                assert_model_close(f"step {step} {path} grad {name}", g[name], t_g[name], "float64")
    for path, model in zip(("explicit", "fused"), models[1:]):
        for (name, p), (_, q) in zip(models[0].named_parameters(), model.named_parameters()):
            assert_model_close(f"{path} {name} after 4 Adam steps", p.data, q, "float64")


@st.composite
def modern_configs(draw):
    """Every modern choice drawn on its own, beside the classic ones."""
    n_heads = draw(st.sampled_from([1, 2, 4]))
    n_kv_heads = draw(st.sampled_from([d for d in (0, 1, 2, 4) if d == 0 or n_heads % d == 0]))
    rope = draw(st.booleans())
    bias = draw(st.booleans())
    return ModelConfig(
        vocab_size=draw(st.integers(11, 30)), block_size=8, d_model=16,
        n_heads=n_heads, n_kv_heads=n_kv_heads, n_layers=draw(st.integers(1, 2)),
        d_ff=draw(st.integers(4, 20)), dtype="float64", init_std=0.3,
        norm=draw(st.sampled_from(["layer", "rms"])), norm_first=draw(st.booleans()),
        activation=draw(st.sampled_from(["swiglu", "silu", "gelu"])),
        qk_norm=draw(st.booleans()), bias=bias, qkv_bias=not bias and draw(st.booleans()),
        head_dim=draw(st.sampled_from([0, 6])),
        positional="rope" if rope else draw(st.sampled_from(["learned", "sinusoidal"])),
        rope_layout=draw(st.sampled_from(["interleaved", "half"])) if rope else "interleaved",
        rope_theta=draw(st.sampled_from([10000.0, 1e6])) if rope else 10000.0,
        tie_embeddings=draw(st.booleans()))


@settings(max_examples=15, deadline=None)
@given(config=modern_configs(), kind=st.sampled_from(["GPT", "TransformerEncoder", "SequenceClassifier"]),
       B=st.integers(1, 3), T_=st.integers(1, 8), seed=st.integers(0, 2**16))
def test_every_mix_of_choices_agrees_reference_explicit_fused(config, kind, B, T_, seed):
    idx, targets, mask = make_batch(kind, config, B, T_, seed)
    outs = []
    for model in _three(kind, config, seed % 7):
        logits, loss = call(model, kind, idx, targets, mask)
        loss.backward()
        outs.append((to_np(logits), to_np(loss), grads(model)))
    (logits, loss, g) = outs[0]
    for path, (t_logits, t_loss, t_g) in zip(("explicit", "fused"), outs[1:]):
        assert_model_close(f"{path} logits", logits, t_logits, "float64")
        assert_model_close(f"{path} loss", np.asarray(loss), t_loss, "float64")
        assert g.keys() == t_g.keys()
        for name in g:
            assert_model_close(f"{path} grad {name}", g[name], t_g[name], "float64")


@pytest.mark.parametrize("qwen", [{}, dict(qkv_bias=True, head_dim=6)], ids=["llama", "qwen"])
def test_attention_layer_backward_matches_finite_differences(qwen):
    """The reference's hand-written backward through QK-norm, the half-layout rotation, the
    sharing of key/value heads (a shared head's gradient sums over its group) and the
    projections without bias (or, Qwen's, with q/k/v biases only and a head size of 6, not
    C / H = 2), for the input and every parameter."""
    rng = np.random.default_rng(0)
    layer = R.MultiHeadAttention(8, 4, "float64", rope_positions=5, n_kv_heads=2, bias=False,
                                 qk_norm=True, rope_theta=100.0, rope_layout="half", **qwen)
    params = dict(layer.named_parameters())
    biases = ["b_K", "b_Q", "b_V"] if qwen else []          # Qwen 2's: none on the output
    assert sorted(params) == ["W_K", "W_O", "W_Q", "W_V", *biases, "k_norm.gamma", "q_norm.gamma"]
    assert params["W_O"].data.shape == (4 * qwen.get("head_dim", 2), 8)
    for p in params.values():
        p.data[...] = rng.standard_normal(p.data.shape) * (0.5 if p.data.ndim == 2 else 1.0) + (p.data.ndim == 1)
    x, mask = rng.standard_normal((2, 5, 8)), R.causal_mask(5)
    dout = rng.standard_normal((2, 5, 8))
    layer(x, mask)
    dx = layer.backward(dout)
    names = list(params)

    def f(x_, *values):
        for name, value in zip(names, values):
            params[name].data[...] = value
        return layer(x_, mask)

    values = [p.data.copy() for p in params.values()]
    check_grad(f, [x] + values, dout, [dx] + [params[n].grad.copy() for n in names],
               ["dx"] + [f"d{n}" for n in names], FD_STEP, FD.rtol, FD.atol)


@pytest.mark.parametrize("backend, fused", [(R, False), (T, False), (T, True)],
                         ids=["reference", "torch-explicit", "torch-fused"])
def test_the_kv_cache_holds_only_the_kv_heads_and_decodes_as_the_forward(backend, fused):
    ids = np.random.default_rng(0).integers(0, LLAMA.vocab_size, (2, LLAMA.block_size))
    nbytes = {}
    for n_kv_heads in (LLAMA.n_heads, 2, 1):
        config = dataclasses.replace(LLAMA, n_kv_heads=n_kv_heads)
        model = backend.GPT(config, seed=1).eval()
        if fused:
            model.set_fused(True)
        full = to_np(model(ids)[0])
        cache, pieces = None, []
        with torch.no_grad():
            for lo, hi in ((0, 3), (3, 4), (4, 7), (7, 8)):
                logits, cache = model.forward_cached(ids[:, lo:hi], cache)
                pieces.append(to_np(logits))
        np.testing.assert_allclose(np.concatenate(pieces, axis=1), full, rtol=1e-12, atol=1e-12)
        assert tuple(cache[0].keys.shape) == (2, n_kv_heads, LLAMA.block_size, LLAMA.d_head)
        nbytes[n_kv_heads] = sum(kv.nbytes for kv in cache)
    # measured, not computed from the config: the bytes the arrays hold
    assert nbytes[2] * 2 == nbytes[LLAMA.n_heads] and nbytes[1] * 4 == nbytes[LLAMA.n_heads]
    assert nbytes[LLAMA.n_heads] == 2 * LLAMA.n_layers * 2 * LLAMA.block_size * LLAMA.d_model * 8


def _to_half_layout(state, config):
    """An interleaved model's state dict for the half layout: the columns of W_Q and W_K
    (and the biases and QK-norm weights that go with them) permuted head by head."""
    D, H, H_kv = config.d_head, config.n_heads, config.kv_heads
    out = dict(state)
    for name, value in state.items():
        leaf = name.rsplit(".", 2)
        if name.endswith(("attn.W_Q", "attn.b_Q")):
            out[name] = value[..., R.rope_layout_permutation(D, H)]
        elif name.endswith(("attn.W_K", "attn.b_K")):
            out[name] = value[..., R.rope_layout_permutation(D, H_kv)]
        elif leaf[-2:] in (["q_norm", "gamma"], ["k_norm", "gamma"]):
            out[name] = value[R.rope_layout_permutation(D)]
    return out


@pytest.mark.parametrize("backend", [R, T], ids=["reference", "torch"])
@pytest.mark.parametrize("bias, qk_norm", [(True, False), (False, True)])
def test_the_two_rope_layouts_agree_after_the_permutation(backend, bias, qk_norm):
    interleaved = dataclasses.replace(LLAMA, rope_layout="interleaved", bias=bias, qk_norm=qk_norm)
    half = dataclasses.replace(interleaved, rope_layout="half")
    a, b = backend.GPT(interleaved, seed=2), backend.GPT(half, seed=9)
    state = {n: to_np(t).copy() for n, t in a.state_dict().items()}
    if bias:   # nonzero biases, so that their permutation is tested too
        rng = np.random.default_rng(1)
        state = {n: v + 0.3 * rng.standard_normal(v.shape) if n.rsplit(".", 1)[-1].startswith("b_") else v
                 for n, v in state.items()}
        a.load_state_dict(state)
    if qk_norm:
        rng = np.random.default_rng(2)
        state = {n: v + rng.standard_normal(v.shape) if "_norm." in n else v for n, v in state.items()}
        a.load_state_dict(state)
    b.load_state_dict(_to_half_layout(state, half))
    ids = np.random.default_rng(0).integers(0, LLAMA.vocab_size, (2, LLAMA.block_size))
    want, got = to_np(a(ids)[0]), to_np(b(ids)[0])
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    # and the layouts are not interchangeable without it
    b.load_state_dict(state)
    assert np.abs(to_np(b(ids)[0]) - want).max() > 1e-3


def test_state_dicts_move_between_backends_unchanged():
    ids = np.random.default_rng(4).integers(0, LLAMA.vocab_size, (2, 6))
    ref, tor = R.GPT(LLAMA, seed=1), T.GPT(LLAMA, seed=2)
    tor.load_state_dict(ref.state_dict())
    assert_model_close("torch loads the reference's", ref(ids)[0], tor(ids)[0], "float64")
    other = R.GPT(LLAMA, seed=3)
    other.load_state_dict(T.GPT(LLAMA, seed=4).state_dict())
    assert_model_close("the reference loads torch's", other(ids)[0], T.GPT(LLAMA, seed=4)(ids)[0], "float64")


def test_classic_configs_are_untouched():
    """A GPT-2 config has no new parameter and the same names as before; an old config
    dict (without the new fields) still loads."""
    config = ModelConfig(vocab_size=11, block_size=4, d_model=8, n_heads=2, n_layers=1)
    names = [n for n, _ in R.GPT(config).named_parameters()]
    assert names == ["tok_emb.W", "pos_emb.W", "blocks.0.ln1.gamma", "blocks.0.ln1.beta",
                     "blocks.0.attn.W_Q", "blocks.0.attn.b_Q", "blocks.0.attn.W_K", "blocks.0.attn.b_K",
                     "blocks.0.attn.W_V", "blocks.0.attn.b_V", "blocks.0.attn.W_O", "blocks.0.attn.b_O",
                     "blocks.0.ln2.gamma", "blocks.0.ln2.beta", "blocks.0.ffn.W1", "blocks.0.ffn.b1",
                     "blocks.0.ffn.W2", "blocks.0.ffn.b2", "ln_f.gamma", "ln_f.beta", "lm_head.W"]
    old = {k: v for k, v in config.to_dict().items()
           if k not in ("norm", "n_kv_heads", "qk_norm", "rope_theta", "rope_layout", "bias")}
    assert ModelConfig.from_dict(old) == config
    assert config.kv_heads == config.n_heads and config.n_kv_heads == 0
    # a copy with more heads stays multi-head attention (0 is not resolved when built)
    assert dataclasses.replace(config, n_heads=4).kv_heads == 4


LLAMA3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
          "original_max_position_embeddings": 8192}


def test_config_rope_scaling_round_trips_as_json():
    """Read back from a checkpoint's JSON, a scaled config is the one written: whole numbers
    given as factors are stored as floats, the original context as an int."""
    import json
    given = {**LLAMA3, "factor": 8, "original_max_position_embeddings": 8192.0}
    c = ModelConfig(positional="rope", rope_scaling=given)
    assert c.rope_scaling == LLAMA3 and type(c.rope_scaling["original_max_position_embeddings"]) is int
    assert ModelConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    with pytest.raises(ValueError, match=r"supports the GPT-2/BERT choices only: .*got rope_scaling="):
        c.require_classic("GPT2LMHeadModel")


@pytest.mark.parametrize("fields, message", [
    (dict(n_heads=4, n_kv_heads=3), r"n_kv_heads=3.*n_heads=4"),
    (dict(n_kv_heads=-1), r"n_kv_heads must be an int >= 0.*-1"),
    (dict(n_kv_heads=True), r"n_kv_heads.*True"),
    (dict(norm="batch"), r"norm must be one of \('layer', 'rms'\), got 'batch'"),
    (dict(activation="geglu"), r"activation must be one of .*'swiglu'.*got 'geglu'"),
    (dict(activation="swiglu", lm_head_transform=True), r"lm_head_transform.*'swiglu'"),
    (dict(qk_norm=1), r"qk_norm must be a bool, got 1"),
    (dict(bias="no"), r"bias must be a bool, got 'no'"),
    (dict(positional="rope", rope_theta=0.0), r"rope_theta must be a finite number > 0, got 0.0"),
    (dict(positional="rope", rope_theta=float("inf")), r"rope_theta.*inf"),
    (dict(positional="rope", rope_layout="split"), r"rope_layout must be one of .*'split'"),
    (dict(rope_theta=5e5), r"rope_theta=500000.0 is read only with positional='rope', got positional='learned'"),
    (dict(rope_layout="half"), r"rope_layout='half' is read only with positional='rope'"),
    (dict(rope_scaling=LLAMA3), r"rope_scaling=\{'rope_type': 'llama3'.* is read only with positional='rope'"),
    (dict(positional="rope", rope_scaling={"rope_type": "yarn", "factor": 4.0}),
     r"rope_scaling must be None or a dict with rope_type one of \('llama3',\), got \{'rope_type': 'yarn'"),
    (dict(positional="rope", rope_scaling=(8.0, 1.0, 4.0, 8192)), r"rope_scaling must be None or a dict"),
    (dict(positional="rope", rope_scaling={k: v for k, v in LLAMA3.items() if k != "factor"}),
     r"rope_scaling of rope_type 'llama3': expected the fields \['rope_type', 'factor', .*got \['high_freq"),
    (dict(positional="rope", rope_scaling={**LLAMA3, "factor": float("nan")}),
     r"rope_scaling\['factor'\] must be a finite number > 0, got nan"),
    (dict(positional="rope", rope_scaling={**LLAMA3, "original_max_position_embeddings": 8192.5}),
     r"rope_scaling\['original_max_position_embeddings'\] must be a finite number > 0, whole, got 8192.5"),
    (dict(positional="rope", rope_scaling={**LLAMA3, "low_freq_factor": 4.0}),
     r"expected high_freq_factor > low_freq_factor, got 4.0 and 4.0"),
])
def test_config_refuses_bad_modern_fields(fields, message):
    base = dict(vocab_size=11, block_size=4, d_model=8, n_heads=2, n_layers=1)
    with pytest.raises(ValueError, match=message):
        ModelConfig(**{**base, **fields})


@pytest.mark.parametrize("backend", [R, T], ids=["reference", "torch"])
def test_models_without_a_place_for_the_modern_fields_refuse_them(backend, tmp_path):
    for fields, named in ((dict(norm="rms"), "norm='rms'"), (dict(n_kv_heads=2), "n_kv_heads=2"),
                          (dict(activation="swiglu"), "activation='swiglu'"), (dict(bias=False), "bias=False")):
        config = dataclasses.replace(LLAMA, **{**dict(norm="layer", n_kv_heads=0, activation="gelu",
                                                      qk_norm=False, bias=True, rope_layout="interleaved",
                                                      rope_theta=10000.0), **fields})
        with pytest.raises(ValueError, match=f"EncoderDecoder.*{named}"):
            backend.EncoderDecoder(config)
    from minillm.apps.interop import save_hf
    with pytest.raises(ValueError, match="GPT2LMHeadModel supports the GPT-2/BERT choices only.*activation='swiglu'"):
        save_hf(backend.GPT(dataclasses.replace(LLAMA, positional="learned", rope_layout="interleaved",
                                                rope_theta=10000.0, norm="layer", qk_norm=False)), tmp_path / "out")
    with pytest.raises(ValueError, match="Qwen3ForCausalLM needs ModelConfig.positional='rope', got 'learned'"):
        save_hf(backend.GPT(dataclasses.replace(LLAMA, positional="learned", rope_layout="interleaved",
                                                rope_theta=10000.0)), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_llama_style_training_step_runs_without_torch():
    from without_torch import OP_HELPERS, assert_ok, run_without_torch
    assert_ok(run_without_torch(OP_HELPERS + f"""
config = minillm.ModelConfig(**{LLAMA.to_dict()!r})
model = ref.GPT(config, seed=0)
opt = ref.Adam(model.parameters(), lr=1e-2)
ids = rng.integers(0, config.vocab_size, (2, 8))
losses = []
for _ in range(3):
    logits, loss = model(ids[:, :-1], ids[:, 1:])
    loss.backward(); opt.step(); opt.zero_grad()
    losses.append(float(loss))
assert losses[-1] < losses[0], losses
assert "torch" not in sys.modules
"""))


def test_the_fast_path_under_bf16_autocast_keeps_close_to_float32():
    """Mixed precision on the CPU (what Runtime(amp=True) does on a GPU): QK-norm gets bf16
    queries and float32 weights and computes in float32, as F.layer_norm does under
    autocast, without falling off F.rms_norm's kernel (a UserWarning would fail here).
    Tolerance: bf16 rounds to 8 significant bits (unit roundoff 2^-9 = 2e-3); the logits
    pass ~20 bf16 roundings in two layers (projections, the QK-norm and SwiGLU products,
    attention), adding up like a random walk, sqrt(20) * 2e-3 = 9e-3 of the logits' norm
    (1e-2 seen). 3e-2 leaves 3x; a wrong formula moves the logits by O(1)."""
    config = dataclasses.replace(LLAMA, dtype="float32")
    model = T.GPT(config, seed=0).set_fused(True)
    ids = torch.from_numpy(np.random.default_rng(0).integers(0, config.vocab_size, (2, 8)))
    want = model(ids)[0].detach()
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits, loss = model(ids, ids)
        loss.backward()
    assert logits.dtype == torch.bfloat16
    error = np.linalg.norm(to_np(logits.float()) - to_np(want)) / np.linalg.norm(to_np(want))
    assert error < 3e-2, f"bf16 logits are {error:.2e} of the float32 ones' norm away"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("fused", [False, True], ids=["explicit", "fused"])
def test_llama_style_gpt_on_cuda_matches_the_reference(fused):
    """float64 on CUDA: the same formulas in other summation orders (cuBLAS) and, fused, the
    GPU's scaled_dot_product_attention with enable_gqa; 1e-9 relative, as tests/models/test_cuda.py."""
    ref, gpu = R.GPT(LLAMA, seed=0), T.GPT(LLAMA, seed=0).set_fused(fused).cuda()
    rng = np.random.default_rng(0)
    x, y = (rng.integers(0, LLAMA.vocab_size, (3, 8)) for _ in range(2))
    logits_r, loss_r = ref(x, y)
    loss_r.backward()
    logits_g, loss_g = gpu(torch.from_numpy(x).cuda(), torch.from_numpy(y).cuda())
    loss_g.backward()
    np.testing.assert_allclose(to_np(logits_g), logits_r, rtol=1e-9, atol=1e-12)
    grads_g = grads(gpu)
    for name, p in ref.named_parameters():
        np.testing.assert_allclose(grads_g[name], p.grad, rtol=1e-9, atol=1e-12, err_msg=name)
    cache = gpu.forward_cached(torch.from_numpy(x).cuda())[1]
    assert tuple(cache[0].keys.shape) == (3, LLAMA.n_kv_heads, 8, LLAMA.d_head)


def test_llama_style_gpt_in_float32_agrees_within_the_models_float32_tolerance():
    """float32: rtol 1e-4, atol 1e-5 x scale (tests/model_helpers.py, with its reason)."""
    config = dataclasses.replace(LLAMA, dtype="float32")
    idx, targets, _ = make_batch("GPT", config, 3, 8, seed=1)
    outs = []
    for model in _three("GPT", config, 2):
        logits, loss = model(idx, targets)
        loss.backward()
        outs.append((to_np(logits), to_np(loss), grads(model)))
    (logits, loss, g) = outs[0]
    for path, (t_logits, t_loss, t_g) in zip(("explicit", "fused"), outs[1:]):
        assert_model_close(f"{path} logits", logits, t_logits, "float32")
        assert_model_close(f"{path} loss", np.float64(loss), np.float64(t_loss), "float32")
        for name in g:
            assert_model_close(f"{path} grad {name}", g[name], t_g[name], "float32")


@pytest.mark.parametrize("saver, loader", [(R, "torch"), (T, "numpy")], ids=["numpy->torch", "torch->numpy"])
def test_a_llama_style_checkpoint_loads_in_the_other_backend(saver, loader, tmp_path):
    from minillm.store import model_io
    model = saver.GPT(LLAMA, seed=6)
    model_io.save_checkpoint(tmp_path / "ckpt", model)
    loaded, ckpt = model_io.load_model(tmp_path / "ckpt", loader)
    assert loaded.config == LLAMA and type(loaded).__name__ == "GPT"
    ids = np.random.default_rng(0).integers(0, LLAMA.vocab_size, (2, 8))
    assert_model_close("logits after the round trip", loaded(ids)[0], model(ids)[0], "float64")


def test_generation_with_the_grouped_kv_cache_is_the_same_in_both_backends():
    """Greedy decoding, float64: with the cache (H_kv heads) and without, in the reference
    and on torch's fast path (what Runtime.prepare picks), the same tokens."""
    from minillm.store.runtime import Runtime
    from minillm.train.generation import generate

    config = dataclasses.replace(LLAMA, block_size=24)
    tokens = []
    for runtime, backend in ((Runtime("numpy"), R), (Runtime("torch"), T)):
        model = runtime.prepare(backend.GPT(config, seed=8))
        for use_cache in (True, False):
            tokens.append(generate(runtime, model, [3, 1, 4], 16, temperature=0.0, use_cache=use_cache))
    assert len(tokens[0]) == 16 and all(t == tokens[0] for t in tokens), tokens
