"""LoRA adapters on a model by name (minillm.store.lora_adapters): the two backends
agree, only the adapters train and the frozen weights stay equal bit for bit, merge and
unmerge, bad targets; PEFT's layout, proven by peft itself: it loads our adapters onto
the transformers model that save_hf wrote and gives our logits and our gradients."""
import json

import numpy as np
import pytest

import minillm.reference as ref
from minillm.store.lora_adapters import add_lora, lora_parameters, lora_targets, merge_lora, unmerge_lora
from minillm.store.peft_adapters import load_adapters, save_adapters
from minillm.core.config import ModelConfig
from parity import assert_close

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")
import minillm.torch_backend as tb  # noqa: E402
from minillm.apps.interop import save_hf  # noqa: E402

V, T = 40, 8
# Tolerances. Both sides compute the same float64 formulas through different kernels
# and summation orders (NumPy/BLAS, torch, transformers' GPT-2 with PEFT's LoRA layers,
# which computes (x A) B as we do):
# logits O(0.1..1) agree to ~1e-15 per op, a few layers deep, so 1e-10 (the issue's
# figure) leaves five orders; gradients are sums over B*T positions and V classes, so
# rtol 1e-9 with atol 1e-12 for entries that cancel to ~0. float32: 1e-5, the issue's
# figure, ~100 ulps of the O(1) logits after two layers (tests/tolerances.py, "linear").


def _config(dtype="float64", **over):
    return ModelConfig(**{**dict(vocab_size=V, block_size=16, d_model=16, n_heads=4, n_layers=2,
                                 d_ff=32, activation="gelu_tanh", tie_embeddings=True, dropout=0.0,
                                 dtype=dtype), **over})


def _ids(seed=0, B=2):
    rng = np.random.default_rng(seed)
    return rng.integers(0, V, size=(B, T)), rng.integers(0, V, size=(B, T))


def _np(p):
    if isinstance(p, np.ndarray):
        return p
    return p.data if hasattr(p, "accumulate") else p.detach().cpu().numpy()


def _randomise_B(model, seed=5):
    """Adapters start with B = 0 (the base map); a test of the adapted map needs B != 0."""
    rng = np.random.default_rng(seed)
    for name, p in lora_parameters(model):
        if name.endswith(".B"):
            _np(p)[...] = rng.standard_normal(p.shape) * 0.5


TARGETS = ("W_Q", "W_V", "W_O", "W1", "W2")


def test_both_backends_attach_the_same_adapters_and_agree_float64():
    idx, targets = _ids()
    models = [ref.GPT(_config(), seed=1), tb.GPT(_config(), seed=1)]
    for m in models:
        assert add_lora(m, TARGETS, r=2, alpha=4.0, seed=7) == [
            f"blocks.{i}.{p}" for i in range(2) for p in ("attn.W_Q", "attn.W_V", "attn.W_O", "ffn.W1", "ffn.W2")]
        _randomise_B(m)
    r_names = [n for n, _ in lora_parameters(models[0])]
    assert r_names == [n for n, _ in lora_parameters(models[1])]
    assert r_names[:2] == ["blocks.0.attn.lora_W_Q.A", "blocks.0.attn.lora_W_Q.B"]
    logits, loss = models[0](idx, targets)
    loss.backward()
    t_logits, t_loss = models[1](torch.from_numpy(idx), torch.from_numpy(targets))
    t_loss.backward()
    assert_close("logits", t_logits, logits, 1e-10, 1e-10)
    for (name, p), (_, q) in zip(lora_parameters(models[0]), lora_parameters(models[1])):
        np.testing.assert_array_equal(q.detach().numpy(), p.data, err_msg=f"{name} (init)")
        assert_close(f"d{name}", q.grad, p.grad, 1e-9, 1e-11)
    # torch: autograd computes nothing for the frozen weights
    assert all(p.grad is None for n, p in models[1].named_parameters() if ".lora_" not in n)
    # reference: an adapted projection's W and b get no gradient
    assert models[0].blocks[0].attn.W_Q.grad is None and models[0].blocks[0].attn.b_O.grad is None


@pytest.mark.parametrize("backend", [ref, tb], ids=["numpy", "torch"])
def test_only_adapters_train_and_frozen_weights_stay_bit_for_bit(backend):
    model = backend.GPT(_config("float32"), seed=2)
    frozen = {n: np.array(_np(p), copy=True) for n, p in model.named_parameters()}
    add_lora(model, ("W_Q", "W_V"), r=4, alpha=8.0, seed=3)
    params = [p for _, p in lora_parameters(model)]
    assert len(params) == 2 * 2 * 2            # 2 layers x (Q, V) x (A, B)
    opt = backend.AdamW(params, lr=1e-2)
    idx, targets = _ids(1)
    if backend is tb:
        idx, targets = torch.from_numpy(idx), torch.from_numpy(targets)
    first = None
    for _ in range(4):
        opt.zero_grad()
        _, loss = model(idx, targets)
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    assert model(idx, targets)[1].item() < first            # the adapters learned something
    for n, p in model.named_parameters():
        if ".lora_" not in n:
            np.testing.assert_array_equal(_np(p), frozen[n], err_msg=n)


@pytest.mark.parametrize("backend", [ref, tb], ids=["numpy", "torch"])
def test_merge_and_unmerge_on_a_model(backend):
    model = backend.GPT(_config(), seed=2)
    model.eval()
    add_lora(model, ("W_Q", "W_K", "W_V", "W_O"), r=2, alpha=2.0)
    _randomise_B(model)
    idx, _ = _ids(2)
    x = idx if backend is ref else torch.from_numpy(idx)
    adapted = np.array(_np(model(x)[0]))
    W0 = {n: np.array(_np(p), copy=True) for n, p in model.named_parameters() if n.endswith("W_Q")}
    merge_lora(model)
    assert not np.array_equal(_np(model.blocks[0].attn.W_Q), W0["blocks.0.attn.W_Q"])
    # x (W + sAB) against xW + s(xA)B: the same sums in another order, float64
    np.testing.assert_allclose(_np(model(x)[0]), adapted, rtol=1e-10, atol=1e-12)
    unmerge_lora(model)
    for n, W in W0.items():   # (W + D) - D: within one rounding of |W| + |D|, float64 eps
        m = model.blocks[int(n.split(".")[1])].attn
        D = np.abs(m.lora_W_Q.scale * (_np(m.lora_W_Q.A) @ _np(m.lora_W_Q.B)))
        assert (np.abs(_np(m.W_Q) - W) <= np.finfo(np.float64).eps * (np.abs(W) + D)).all(), n


@pytest.mark.parametrize("backend", [ref, tb], ids=["numpy", "torch"])
def test_lora_parameters_are_the_named_parameters_of_the_adapters(backend):
    model = backend.GPT(_config(), seed=0)
    add_lora(model, ("W_V", "W2"), r=2)
    names = [n for n, _ in lora_parameters(model)]
    assert names == [n for n, _ in model.named_parameters() if ".lora_" in n]
    assert names[:4] == ["blocks.0.attn.lora_W_V.A", "blocks.0.attn.lora_W_V.B",
                         "blocks.0.ffn.lora_W2.A", "blocks.0.ffn.lora_W2.B"]
    layer = backend.LoRALinear(4, 3, r=2)
    assert [n for n, _ in lora_parameters(layer)] == ["lora.A", "lora.B"]


def test_a_target_that_matches_nothing_lists_the_layer_names():
    model = ref.GPT(_config(), seed=0)
    with pytest.raises(ValueError, match=r"'ffn\.W3' matches no projection.*blocks\.0\.attn\.W_Q, "
                                         r"blocks\.0\.attn\.W_K, .*blocks\.0\.ffn\.W1"):
        add_lora(model, ("W_Q", "ffn.W3"))
    assert all(getattr(m, f"lora_{p}") is None for m, p in lora_targets(model).values())  # nothing attached
    with pytest.raises(ValueError, match=r"1\.\.16 .*got r=17"):
        add_lora(model, "W_Q", r=17)
    assert add_lora(model, "blocks.1.attn.W_[QO]", r=1) == ["blocks.1.attn.W_Q", "blocks.1.attn.W_O"]
    with pytest.raises(ValueError, match="already"):
        add_lora(model, "W_O")


def _peft_model(tmp_path, model, dtype):
    save_hf(model, tmp_path / "base")
    save_adapters(model, tmp_path / "adapter")
    torch_dtype = getattr(torch, dtype)
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "base", dtype=torch_dtype,
                                                      attn_implementation="eager")
    return peft.PeftModel.from_pretrained(hf, tmp_path / "adapter", is_trainable=True)


@pytest.mark.parametrize("backend,dtype,tol", [(ref, "float64", 1e-10), (tb, "float64", 1e-10),
                                               (tb, "float32", 1e-5)], ids=["numpy-64", "torch-64", "torch-32"])
@pytest.mark.parametrize("rank_stabilised", [False, True])
def test_peft_loads_our_adapters_and_gives_our_logits(tmp_path, backend, dtype, tol, rank_stabilised):
    model = backend.GPT(_config(dtype), seed=4)
    model.eval()
    add_lora(model, TARGETS, r=2, alpha=3.0, rank_stabilised=rank_stabilised, seed=1)
    _randomise_B(model)
    pm = _peft_model(tmp_path, model, dtype).eval()
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["target_modules"] == [f"transformer.h.{i}.{m}" for i in range(2)
                                        for m in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")]
    idx, _ = _ids(3)
    with torch.no_grad():
        theirs = pm(torch.from_numpy(idx)).logits
        base = pm.get_base_model()
    ours = model(idx if backend is ref else torch.from_numpy(idx))[0]
    assert_close("logits through peft", ours, theirs, tol, tol)
    with torch.no_grad(), pm.disable_adapter():     # a check that can fail: the adapters matter
        plain = base(torch.from_numpy(idx)).logits
    assert np.abs(_np(ours) - plain.numpy()).max() > 1e-3


def test_our_gradients_of_A_and_B_equal_peft_float64(tmp_path):
    model = ref.GPT(_config(), seed=4)
    add_lora(model, TARGETS, r=2, alpha=3.0, seed=1)
    _randomise_B(model)
    pm = _peft_model(tmp_path, model, "float64").train()
    idx, targets = _ids(4)
    _, loss = model(idx, targets)
    loss.backward()
    logits = pm(torch.from_numpy(idx)).logits
    t_loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), torch.from_numpy(targets).reshape(-1))
    t_loss.backward()
    assert_close("loss", np.float64(float(loss)), np.float64(t_loss.item()), 1e-12, 1e-12)
    grads = {n: p.grad for n, p in pm.named_parameters() if p.requires_grad}
    C = model.config.d_model
    for i in range(2):
        attn = model.blocks[i].attn
        pre = f"base_model.model.transformer.h.{i}.attn"
        gA = grads[f"{pre}.c_attn.lora_A.default.weight"].numpy().T               # (C, 2r)
        gB = grads[f"{pre}.c_attn.lora_B.default.weight"].numpy().T               # (2r, 3C)
        assert_close(f"h.{i} dA_Q", attn.lora_W_Q.A.grad, gA[:, 0:2], 1e-9, 1e-12)
        assert_close(f"h.{i} dA_V", attn.lora_W_V.A.grad, gA[:, 2:4], 1e-9, 1e-12)
        assert_close(f"h.{i} dB_Q", attn.lora_W_Q.B.grad, gB[0:2, 0:C], 1e-9, 1e-12)
        assert_close(f"h.{i} dB_V", attn.lora_W_V.B.grad, gB[2:4, 2 * C:3 * C], 1e-9, 1e-12)
        gA = grads[f"{pre}.c_proj.lora_A.default.weight"].numpy().T
        gB = grads[f"{pre}.c_proj.lora_B.default.weight"].numpy().T
        assert_close(f"h.{i} dA_O", attn.lora_W_O.A.grad, gA, 1e-9, 1e-12)
        assert_close(f"h.{i} dB_O", attn.lora_W_O.B.grad, gB, 1e-9, 1e-12)
        ffn = model.blocks[i].ffn
        for ours, module in ((ffn.lora_W1, "mlp.c_fc"), (ffn.lora_W2, "mlp.c_proj")):
            gA = grads[f"base_model.model.transformer.h.{i}.{module}.lora_A.default.weight"].numpy().T
            gB = grads[f"base_model.model.transformer.h.{i}.{module}.lora_B.default.weight"].numpy().T
            assert_close(f"h.{i} {module} dA", ours.A.grad, gA, 1e-9, 1e-12)
            assert_close(f"h.{i} {module} dB", ours.B.grad, gB, 1e-9, 1e-12)


@pytest.mark.parametrize("backend", [ref, tb], ids=["numpy", "torch"])
def test_adapters_save_alone_and_load_back(tmp_path, backend):
    """The arrays come back bit for bit: with one scale per GPT-2 module, the factor that
    folds an adapter's scale into c_attn's is exactly 1.0."""
    model = backend.GPT(_config(), seed=4)
    add_lora(model, TARGETS, r=2, alpha=3.0, dropout=0.1, seed=1)
    _randomise_B(model)
    written = save_adapters(model, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    assert written == [f"transformer.h.{i}.{m}" for i in range(2)
                       for m in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")]
    other = backend.GPT(_config(), seed=4)
    assert sorted(load_adapters(other, tmp_path)) == sorted(
        f"blocks.{i}.{p}" for i in range(2) for p in ("attn.W_Q", "attn.W_V", "attn.W_O", "ffn.W1", "ffn.W2"))
    for (n, p), (m, q) in zip(lora_parameters(model), lora_parameters(other)):
        assert n == m
        np.testing.assert_array_equal(_np(q), _np(p), err_msg=n)
    a, b = model.blocks[0].attn.lora_W_V, other.blocks[0].attn.lora_W_V
    assert (a.r, a.alpha, a.scale, a.p) == (b.r, b.alpha, b.scale, b.p)
    deeper = backend.GPT(_config(n_layers=1), seed=4)
    with pytest.raises(ValueError, match="blocks.1.attn.W_Q, which this GPT does not have"):
        load_adapters(deeper, tmp_path)
    assert not lora_parameters(deeper)                         # nothing half-attached
    wider = backend.GPT(_config(d_model=32, d_ff=32), seed=4)
    with pytest.raises(ValueError, match=r"is \(16, r\) x \(r, 16\) but blocks.0.attn.W_Q is \(32, 32\)"):
        load_adapters(wider, tmp_path)


def test_a_peft_file_without_our_blocks_loads_as_the_same_map(tmp_path):
    """A c_attn adapter written by PEFT itself (no minillm metadata): Q, K and V each get
    the whole A and their columns of B, which computes what PEFT computes."""
    model = ref.GPT(_config(), seed=4)
    model.eval()
    add_lora(model, ("W_Q", "W_V"), r=2, alpha=3.0, seed=1)
    _randomise_B(model)
    pm = _peft_model(tmp_path, model, "float64").eval()
    pm.save_pretrained(tmp_path / "by_peft")          # PEFT's own writer
    other = ref.GPT(_config(), seed=4)
    other.eval()
    load_adapters(other, tmp_path / "by_peft")
    assert other.blocks[0].attn.lora_W_K.r == 4                # c_attn's whole rank
    idx, _ = _ids(6)
    with torch.no_grad():
        theirs = pm(torch.from_numpy(idx)).logits
    assert_close("logits", other(idx)[0], theirs, 1e-10, 1e-10)


def _llama_config(dtype="float64"):
    return _config(dtype, norm="rms", activation="swiglu", n_kv_heads=2, qk_norm=True,
                   positional="rope", bias=False)


@pytest.mark.parametrize("fused", [False, True], ids=["explicit", "fused"])
def test_gated_feed_forward_and_grouped_attention_adapters_agree_float64(fused):
    idx, targets = _ids(7)
    r_model, t_model = ref.GPT(_llama_config(), seed=3), tb.GPT(_llama_config(), seed=3)
    t_model.set_fused(fused)
    for m in (r_model, t_model):
        add_lora(m, ("W_gate", "W_up", "W_down", "W_K", "W_O"), r=2, alpha=2.0, dropout=0.2, seed=2)
        _randomise_B(m)
    _, loss = r_model(idx, targets)
    loss.backward()
    _, t_loss = t_model(torch.from_numpy(idx), torch.from_numpy(targets))
    t_loss.backward()
    assert_close("loss", np.float64(t_loss.item()), np.float64(float(loss)), 1e-10, 1e-12)
    pairs = list(zip(lora_parameters(r_model), lora_parameters(t_model)))
    assert len(pairs) == 2 * 5 * 2
    for (name, p), (_, q) in pairs:
        assert_close(f"d{name}", q.grad, p.grad, 1e-8, 1e-11)
