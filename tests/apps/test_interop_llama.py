"""Llama, Qwen 2 and Qwen 3 folders in and out (issue 25, item 2), against ``transformers``.

Each folder is a random-weight model that ``transformers`` builds offline here (2 layers,
hidden 64, 4 query heads sharing 2 key/value heads; Qwen 3 with head_dim 24, not 64/4;
"llama31" a Llama with Llama 3.1's RoPE scaling, its original context shrunk to 32
positions so that, within the 12 positions compared, the scaling moves every one of its
three kinds of frequency: kept, blended and stretched).
Proven: the logits in float64 and float32 on the three paths (reference, torch explicit,
torch fused), 32 greedy tokens with the KV cache, one training step's loss and every
gradient, bfloat16/float16 and sharded folders, ``save_hf`` read back by ``transformers``,
and the refusals of what is not read.

Tolerances, relative to the largest logit or gradient: float64 1e-10 (the same sums in
another order: ~1e-15 per operation, far below); float32 1e-5 (float32's rounding of the
same sums, ~1e-7 per operation over a few hundred terms). In float64, ``transformers``
computes RMSNorm and RoPE's angles in float32 whatever the model's dtype (their
``forward`` casts), so :func:`_transformers_in_float64` replaces those two forwards by
the same formulas in the input's dtype: what is compared is then the model, not float32's
rounding inside ``transformers``. Llama 3.1's scaled frequencies have no float64 form in
``transformers`` (it computes them in float32): there they are minillm's
(``rope_frequencies``), proven equal to ``transformers``' own within float32's rounding by
:func:`test_llama3_frequencies_are_transformers`.
"""
from __future__ import annotations

import contextlib
import json
import struct

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from minillm.apps.interop import load_hf, read_hf, save_hf  # noqa: E402
from minillm.apps.interop import llama as llama_family  # noqa: E402
from minillm.apps.interop.files import from_state  # noqa: E402
from minillm.core.config import ModelConfig  # noqa: E402
from minillm.core.init import rope_frequencies  # noqa: E402
from minillm.store.runtime import Runtime  # noqa: E402
from minillm.train.generation import generate  # noqa: E402

from model_helpers import grads, to_np  # noqa: E402
from parity import assert_close, dump_diff_log  # noqa: E402

TOL = {"float32": 1e-5, "float64": 1e-10}
V, T = 97, 12
SHAPES = dict(vocab_size=V, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
              bos_token_id=None, eos_token_id=None, pad_token_id=None)
# Llama 3.1's fields, its original context 8192 shrunk to 32: with D = 16 and base 500000 the
# wavelengths 2 pi theta_i^-1 are 6.3 (< 32/4: kept), 32.4 (between 32/4 and 32/0.5: blended),
# 167, ... (> 64: stretched 8x)
LLAMA3_SCALING = {"factor": 8.0, "low_freq_factor": 0.5, "high_freq_factor": 4.0,
                  "original_max_position_embeddings": 32}
# family -> (config class, model class, modeling module, its own settings)
FAMILIES = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", "llama",
              dict(rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
                   tie_word_embeddings=False)),
    "llama31": ("LlamaConfig", "LlamaForCausalLM", "llama",
                dict(rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, **LLAMA3_SCALING},
                     tie_word_embeddings=False)),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", "qwen2",
              dict(rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
                   tie_word_embeddings=True)),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", "qwen3",
              dict(rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}, head_dim=24,
                   tie_word_embeddings=False)),
}
PATHS = ("numpy", "torch explicit", "torch fused")


@pytest.fixture(scope="module", autouse=True)
def _report_largest_differences():
    """With MINILLM_DIFF_REPORT=path, the largest differences seen are written there."""
    yield
    dump_diff_log()


def _hf_model(family, dtype=torch.float32, **over):
    config_class, model_class, _, own = FAMILIES[family]
    cfg = getattr(transformers, config_class)(**{**SHAPES, **own, **over})
    model = getattr(transformers, model_class)(cfg)
    g = torch.Generator().manual_seed(sorted(FAMILIES).index(family))
    with torch.no_grad():   # every weight at a scale where a layout error shows: std 0.1, gains ~1
        for name, p in model.named_parameters():
            z = torch.randn(p.shape, generator=g, dtype=torch.float64)
            p.copy_(1 + 0.1 * z if "norm" in name else 0.1 * z)
    return model.to(dtype).eval()


@contextlib.contextmanager
def _transformers_in_float64(family):
    """RMSNorm and RoPE's tables of ``transformers`` in the input's dtype (see the module
    docstring): the same formulas, :math:`\\gamma \\odot x / \\sqrt{\\overline{x^2}+\\epsilon}`
    and :math:`\\theta^{-2i/D} t`, without their cast to float32."""
    _, _, module, own = FAMILIES[family]
    modeling = __import__(f"transformers.models.{module}.modeling_{module}", fromlist=["x"])
    prefix = {"llama": "Llama", "qwen2": "Qwen2", "qwen3": "Qwen3"}[module]
    params = own["rope_parameters"]
    theta = params["rope_theta"]

    def rms_norm(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))

    def rotary(self, x, position_ids):
        D = 2 * self.inv_freq.shape[0]
        if params["rope_type"] == "llama3":      # see the module docstring
            inv_freq = torch.from_numpy(rope_frequencies(D, theta, {"rope_type": "llama3", **LLAMA3_SCALING}))
        else:
            inv_freq = 1.0 / theta ** (torch.arange(0, D, 2, dtype=torch.float64) / D)    # (D/2,)
        angles = position_ids[..., None].to(torch.float64) * inv_freq                # (B, T, D/2)
        both = torch.cat((angles, angles), dim=-1)                                   # (B, T, D)
        return both.cos().to(x.dtype), both.sin().to(x.dtype)

    norm_class, rope_class = getattr(modeling, f"{prefix}RMSNorm"), getattr(modeling, f"{prefix}RotaryEmbedding")
    saved = norm_class.forward, rope_class.forward
    norm_class.forward, rope_class.forward = rms_norm, rotary
    try:
        yield
    finally:
        norm_class.forward, rope_class.forward = saved


def _hf_context(family, dtype):
    return _transformers_in_float64(family) if dtype == "float64" else contextlib.nullcontext()


def _load(folder, path, dtype):
    model, ckpt = load_hf(folder, "numpy" if path == "numpy" else "torch", dtype=dtype)
    if path == "torch fused":
        model.set_fused(True)
    return model, ckpt


def _close(what, ours, theirs, dtype):
    """Within TOL[dtype] of the largest magnitude of ``theirs``."""
    ours, theirs = to_np(ours), to_np(theirs)
    assert_close(what, ours, theirs, 0.0, TOL[dtype] * float(np.abs(theirs).max()))


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    out = {}
    for family in FAMILIES:
        folder = tmp_path_factory.mktemp(family)
        model = _hf_model(family)
        model.save_pretrained(folder)
        out[family] = folder, model
    return out


@pytest.fixture(scope="module")
def ids():
    return np.random.default_rng(0).integers(0, V, (2, T))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_logits_and_cached_logits(folders, ids, family, path, dtype):
    folder, hf = folders[family]
    hf = hf.to(getattr(torch, dtype))
    with _hf_context(family, dtype), torch.no_grad():
        theirs = hf(torch.from_numpy(ids)).logits
    hf.float()
    model, ckpt = _load(folder, path, dtype)
    assert ckpt.architecture == FAMILIES[family][1] and ckpt.model_class == "GPT"
    assert ckpt.ignored == ()
    logits, _ = model(ids)
    assert to_np(logits).dtype == np.dtype(dtype)
    _close(f"{family} logits", logits, theirs, dtype)
    prompt_logits, cache = model.forward_cached(ids[:, :5])      # the prompt, then one at a time
    _close("cached prompt logits", prompt_logits, theirs[:, :5], dtype)
    for t in range(5, T):
        step, cache = model.forward_cached(ids[:, t:t + 1], cache)
        _close(f"cached logits at {t}", step[:, 0], theirs[:, t], dtype)


def test_what_each_config_reads(folders):
    """The fields that make each family what it is land in ModelConfig."""
    configs = {family: read_hf(folders[family][0]).config for family in FAMILIES}
    for c in configs.values():
        assert (c.norm, c.activation, c.positional, c.rope_layout, c.bias) == (
            "rms", "swiglu", "rope", "half", False)
        assert (c.n_heads, c.kv_heads, c.layer_norm_eps) == (4, 2, 1e-6)
    assert (configs["llama"].rope_theta, configs["llama"].tie_embeddings) == (500000.0, False)
    assert configs["llama"].rope_scaling is None
    assert configs["llama31"].rope_scaling == {"rope_type": "llama3", **LLAMA3_SCALING}
    qwen2 = configs["qwen2"]
    assert (qwen2.qkv_bias, qwen2.qk_norm, qwen2.tie_embeddings) == (True, False, True)
    assert (configs["qwen3"].qk_norm, configs["qwen3"].head_dim, configs["qwen3"].d_head) == (True, 24, 24)
    assert configs["llama"].head_dim == 0 and configs["llama"].d_head == 16
    from minillm.apps.interop import qwen           # Qwen 3 without head_dim: transformers' 128
    hf = {k: v for k, v in json.loads((folders["qwen3"][0] / "config.json").read_text()).items()
          if k != "head_dim"}
    assert qwen.QWEN3_FAMILY.read("Qwen3ForCausalLM", hf, {}, "float32")[0].d_head == 128
    assert transformers.Qwen3Config(**{k: v for k, v in hf.items() if k != "architectures"}).head_dim == 128


def test_llama3_frequencies_are_transformers():
    """Llama 3.1's scaled frequencies (``rope_frequencies``) are ``transformers``' own
    (``ROPE_INIT_FUNCTIONS["llama3"]``, computed in float32): within 1e-6 relative, float32's
    rounding of a power and a few products (~1e-7 each). At Llama 3.1's own settings
    (D = 128, base 500000, factor 8, 1 and 4, context 8192) and at the test folders', each
    with kept, blended and stretched frequencies, so that every branch is compared."""
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    for D, theta, scaling in ((128, 500000.0, dict(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                                    original_max_position_embeddings=8192)),
                              (16, 500000.0, LLAMA3_SCALING)):
        cfg = transformers.LlamaConfig(hidden_size=4 * D, num_attention_heads=4, max_position_embeddings=64,
                                       rope_parameters={"rope_type": "llama3", "rope_theta": theta, **scaling})
        theirs = ROPE_INIT_FUNCTIONS["llama3"](cfg, "cpu")[0].double().numpy()            # (D/2,)
        ours = rope_frequencies(D, theta, {"rope_type": "llama3", **scaling})            # (D/2,)
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=0)
        plain = rope_frequencies(D, theta)
        kinds = {"kept": np.isclose(ours, plain, rtol=1e-12), "stretched": np.isclose(ours, plain / scaling["factor"], rtol=1e-12)}
        kinds["blended"] = ~(kinds["kept"] | kinds["stretched"])
        assert all(k.any() for k in kinds.values()), {k: int(m.sum()) for k, m in kinds.items()}


def test_llama3_scaling_changes_the_logits(folders, ids):
    """The scaling is read and used: the same weights with plain RoPE give other logits."""
    folder = folders["llama31"][0]
    scaled, _ = load_hf(folder, "numpy", dtype="float64")
    plain = read_hf(folder)
    from dataclasses import replace
    import minillm.reference as ref
    model = ref.GPT(replace(plain.config, rope_scaling=None, dtype="float64"))
    model.load_state_dict({k: np.asarray(a, np.float64) for k, a in plain.state.items()})
    a, b = to_np(scaled(ids)[0]), to_np(model(ids)[0])
    assert np.abs(a - b).max() > 1e-3 * np.abs(a).max()


def test_a_transformers_4_config_reads_the_same(folders, tmp_path):
    """transformers 4 wrote ``rope_theta`` and ``rope_scaling`` at the top level, where 5
    writes ``rope_parameters``."""
    folder = folders["qwen3"][0]
    _edit_config(folder, tmp_path, rope_parameters=None, rope_theta=1000000.0, rope_scaling=None,
                 torch_dtype="float32")
    assert read_hf(tmp_path).config == read_hf(folder).config
    _edit_config(folder, tmp_path, rope_parameters=None, rope_theta=250000.0)
    assert read_hf(tmp_path).config.rope_theta == 250000.0
    folder = folders["llama31"][0]              # Llama 3.1's own config.json, as 4.x wrote it
    _edit_config(folder, tmp_path, rope_parameters=None, rope_theta=500000.0,
                 rope_scaling={"type": "llama3", **LLAMA3_SCALING})
    assert read_hf(tmp_path).config == read_hf(folder).config


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_greedy_generation_with_the_cache_is_transformers(folders, family, path):
    """32 greedy tokens, token for token. float64 on both sides, so that no two logits
    within float32's rounding of each other decide a token."""
    folder, hf = folders[family]
    prompt = [5, 17, 42, 3, 88, 61, 9, 30]
    hf = hf.to(torch.float64)
    with _transformers_in_float64(family), torch.no_grad():
        out = hf.generate(torch.tensor([prompt]), max_new_tokens=32, do_sample=False,
                          attention_mask=torch.ones(1, len(prompt), dtype=torch.long))
    hf.float()
    theirs = out[0, len(prompt):].tolist()
    model, _ = _load(folder, path, "float64")
    ours = generate(Runtime("numpy" if path == "numpy" else "torch"), model, prompt, 32, temperature=0)
    assert len(theirs) == 32 and ours == theirs


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_one_training_step_gradients_are_transformers(folders, ids, family, path):
    """Loss and every gradient in float64, mapped onto transformers' names by the family's
    name table (a tied head's gradient is the embedding's, in both)."""
    folder, hf = folders[family]
    hf = hf.to(torch.float64).train()
    with _transformers_in_float64(family):    # its own loss casts the logits to float32: ours
        logits = hf(torch.from_numpy(ids)).logits                                     # (B, T, V)
        hf_loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, V),
                                                    torch.from_numpy(ids[:, 1:]).reshape(-1))
        hf_loss.backward()
    theirs = {name: p.grad.numpy().copy() for name, p in hf.named_parameters()}
    hf.zero_grad()
    hf.float().eval()
    model, ckpt = _load(folder, path, "float64")
    model.train()
    targets = np.concatenate([ids[:, 1:], np.full((len(ids), 1), -100)], axis=1)   # next token
    _, loss = model(ids, targets)
    loss.backward()
    _close("loss", np.float64(loss.item() if hasattr(loss, "item") else loss), hf_loss.detach(), "float64")
    ours = from_state(llama_family.table(ckpt.config, ckpt.config.tie_embeddings), grads(model))
    assert sorted(ours) == sorted(theirs)
    for name in theirs:
        _close(f"gradient of {name}", ours[name], theirs[name], "float64")


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_and_sharded_folders(tmp_path, dtype):
    """bfloat16 (most current checkpoints) and float16 folders, one file and sharded, give
    the weights transformers gives when it casts them to float32."""
    hf = _hf_model("qwen2").to(getattr(torch, dtype))
    hf.save_pretrained(tmp_path / "single")
    hf.save_pretrained(tmp_path / "sharded", max_shard_size="40KB")
    index = json.loads((tmp_path / "sharded" / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    theirs = {name: p.detach().float().numpy() for name, p in hf.named_parameters()}
    for where in ("single", "sharded"):
        ckpt = read_hf(tmp_path / where)
        ours = from_state(llama_family.table(ckpt.config, ckpt.config.tie_embeddings), ckpt.state)
        assert sorted(ours) == sorted(theirs)
        for name in theirs:
            assert ours[name].dtype == np.float32
            np.testing.assert_array_equal(ours[name], theirs[name], err_msg=f"{where}: {name}")


def _minillm_config(family, **over):
    own = {"llama": {}, "llama31": dict(rope_scaling={"rope_type": "llama3", **LLAMA3_SCALING}),
           "qwen2": dict(qkv_bias=True, tie_embeddings=True),
           "qwen3": dict(qk_norm=True, head_dim=24)}[family]
    return ModelConfig(**{**dict(vocab_size=V, block_size=64, d_model=64, n_heads=4, n_kv_heads=2,
                                 n_layers=2, d_ff=96, activation="swiglu", norm="rms",
                                 positional="rope", rope_layout="half", rope_theta=50000.0,
                                 bias=False, layer_norm_eps=1e-6), **own, **over})


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_save_hf_round_trip_through_transformers(tmp_path, ids, family, backend):
    import minillm.reference as ref
    import minillm.torch_backend as tb

    config = _minillm_config(family)
    gpt = (ref if backend == "numpy" else tb).GPT(config, seed=7)
    rng = np.random.default_rng(7)     # std 0.1, gains 1 + 0.1 z: where a layout error shows
    gpt.load_state_dict({k: ((1 if k.endswith("gamma") else 0) + 0.1 * rng.standard_normal(v.shape)).astype(
        np.float32) for k, v in gpt.state_dict().items()})
    gpt.eval()
    assert save_hf(gpt, tmp_path) == FAMILIES[family][1]
    hf = getattr(transformers, FAMILIES[family][1]).from_pretrained(tmp_path).eval()
    with torch.no_grad():
        _close(f"exported {family} logits", gpt(ids)[0], hf(torch.from_numpy(ids)).logits, "float32")
    again = read_hf(tmp_path)
    assert again.config == config
    for name, a in gpt.state_dict().items():
        np.testing.assert_array_equal(again.state[name], to_np(a), err_msg=name)


# -- what is not read is refused, naming the file and the field ----------------------------

def _edit_config(src, dst, **changes):
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    config = json.loads((dst / "config.json").read_text())
    config.update(changes)
    (dst / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("family, changes, message", [
    ("llama", dict(architectures=["MistralForCausalLM"], model_type="mistral"),
     r"expected one of the architectures .*LlamaForCausalLM.* got architectures=\['MistralForCausalLM'\]"),
    ("llama", dict(rope_parameters=None, rope_scaling={"rope_type": "llama3", "factor": 8.0}),
     r"rope_scaling of rope_type 'llama3': expected the fields .* \(missing: \['low_freq_factor', "
     r"'high_freq_factor', 'original_max_position_embeddings'\]\)"),
    ("llama", dict(rope_parameters={"rope_type": "llama3", "rope_theta": 5e5, "factor": 8.0}),
     r"rope_parameters of rope_type 'llama3': expected the fields .* \(missing: "),
    ("llama", dict(rope_parameters={"rope_type": "yarn", "rope_theta": 5e5, "factor": 4.0}),
     r"expected rope_parameters with rope_type 'default' \(plain RoPE\) or one of \('llama3',\), "
     r"got rope_type='yarn'"),
    ("llama", dict(rope_parameters=None, rope_scaling={"type": "linear", "factor": 2.0}),
     r"expected rope_scaling with rope_type .* got rope_type='linear'"),
    ("llama", dict(rope_parameters={"rope_type": "default", "rope_theta": 5e5, "partial_rotary_factor": 0.5}),
     r"rope_parameters of rope_type 'default': .* \(not read: \['partial_rotary_factor'\]\)"),
    ("llama", dict(rope_parameters={"rope_type": "llama3", "rope_theta": 5e5, **LLAMA3_SCALING, "factor": -8.0}),
     r"config.json: rope_parameters\['factor'\] must be a finite number > 0, got -8.0"),
    ("llama", dict(rope_scaling={"rope_type": "llama3", **LLAMA3_SCALING}),
     "expected rope_parameters .* or rope_scaling .*, got both"),
    ("llama", dict(attention_bias=True), "expected attention_bias=False"),
    ("llama", dict(mlp_bias=True), "expected mlp_bias=False"),
    ("llama", dict(hidden_act="gelu"), "expected hidden_act='silu'"),
    ("llama", dict(attention_dropout=0.1), "expected attention_dropout=0.0"),
    ("qwen2", dict(use_sliding_window=True, sliding_window=4), "expected use_sliding_window=False"),
    ("qwen3", dict(layer_types=["full_attention", "sliding_attention"]),
     "expected layer_types of 'full_attention' only"),
    ("qwen3", dict(attention_bias=True), "expected attention_bias=False"),
])
def test_a_field_not_read_is_refused(folders, tmp_path, family, changes, message):
    _edit_config(folders[family][0], tmp_path, **changes)
    with pytest.raises(ValueError, match=message) as info:
        read_hf(tmp_path)
    assert "config.json" in str(info.value)


def test_a_missing_shard_and_an_unknown_dtype_are_refused(tmp_path):
    hf = _hf_model("llama")
    hf.save_pretrained(tmp_path / "sharded", max_shard_size="40KB")
    shards = sorted((tmp_path / "sharded").glob("model-*.safetensors"))
    shards[-1].unlink()
    with pytest.raises(ValueError, match=rf"model.safetensors.index.json names the shard {shards[-1].name}, "
                                         r"which is not in"):
        read_hf(tmp_path / "sharded")

    folder = tmp_path / "fp8"
    hf.save_pretrained(folder)
    data = (folder / "model.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    name = "model.norm.weight"          # 64 float32 values: the bytes of 256 F8_E4M3 ones
    header[name] = {**header[name], "dtype": "F8_E4M3", "shape": [256]}
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(text)) + text + data[8 + n:])
    with pytest.raises(ValueError, match=rf"model.safetensors: tensor '{name}' has dtype 'F8_E4M3'; "
                                         r"expected one of \[.*'BF16'"):
        read_hf(folder)


def test_a_config_these_architectures_cannot_express_is_refused(tmp_path):
    import minillm.reference as ref

    gpt = ref.GPT(_minillm_config("llama", rope_layout="interleaved"))
    with pytest.raises(ValueError, match=r"LlamaForCausalLM needs ModelConfig.rope_layout='half', "
                                         r"got 'interleaved' \(minillm.reference.rope_layout_permutation"):
        save_hf(gpt, tmp_path)
    gpt = ref.GPT(_minillm_config("qwen2", qk_norm=True))
    with pytest.raises(ValueError, match="Qwen2ForCausalLM needs ModelConfig.qk_norm=False, got True"):
        save_hf(gpt, tmp_path)
    assert not any(tmp_path.iterdir())     # nothing half-written


def test_config_fields_qwen_needs_are_checked():
    with pytest.raises(ValueError, match="expected bias=False with it, got bias=True"):
        ModelConfig(qkv_bias=True)
    with pytest.raises(ValueError, match="head_dim must be an int >= 0"):
        ModelConfig(head_dim=-1)
    with pytest.raises(ValueError, match="expected an even head size"):
        ModelConfig(positional="rope", head_dim=7)
    c = ModelConfig(d_model=62, n_heads=4, head_dim=16)     # 62 % 4 matters only without it
    assert c.d_head == 16
    with pytest.raises(ValueError, match=r"GPT2LMHeadModel supports .* got bias=False, qkv_bias=True, head_dim=16"):
        ModelConfig(d_model=62, n_heads=4, head_dim=16, bias=False, qkv_bias=True).require_classic(
            "GPT2LMHeadModel")
