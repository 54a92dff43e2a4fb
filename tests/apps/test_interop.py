"""Hugging Face GPT-2 and BERT checkpoints in both minillm backends (minillm.apps.interop).

Random-weight models are built with ``transformers`` from a config (nothing is
downloaded), saved to a temporary folder, loaded into minillm, and compared.

Tolerances (the issue's contract), absolute, on logits and hidden states:

- float32: 1e-5. The weights are drawn at a scale that makes activations O(1)
  (std 0.1, LayerNorm gains 1 + 0.1 z), so 1e-5 is ~100 float32 ulps of the largest
  value: the room NumPy's, torch's and transformers' different summation orders need
  over two layers; a wrong layout (a missing transpose, swapped Q/K) is off by O(1).
- float64: 1e-10, the same reasoning with a float64 ulp of 2.2e-16.

The parity of the new model options between the backends (forward and hand-written
backward against autograd) uses the whole-model tolerances of ``model_helpers``.
"""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import minillm.reference as ref  # noqa: E402
import minillm.torch_backend as tb  # noqa: E402
from minillm.apps.interop import load_hf, read_hf, save_hf, sentence_embeddings  # noqa: E402
from minillm.core.config import ModelConfig  # noqa: E402

from model_helpers import assert_model_close, grads, to_np  # noqa: E402
from parity import assert_close, dump_diff_log  # noqa: E402

TOL = {"float32": 1e-5, "float64": 1e-10}
BACKENDS = ("numpy", "torch")
V, T = 97, 9


@pytest.fixture(scope="module", autouse=True)
def _report_largest_differences():
    """With MINILLM_DIFF_REPORT=path, the largest differences seen are written there."""
    yield
    dump_diff_log()


def _randomize(model, seed):
    """Every parameter at a scale where a layout error shows (std 0.1, gains ~1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            z = torch.randn(p.shape, generator=g, dtype=p.dtype)
            p.copy_(1 + 0.1 * z if "LayerNorm" in name or "ln_" in name and name.endswith("weight")
                    else 0.1 * z)
    return model.eval()


def _gpt2(kind="GPT2LMHeadModel", **over):
    cfg = transformers.GPT2Config(vocab_size=V, n_positions=16, n_embd=32, n_layer=2, n_head=4,
                                  bos_token_id=0, eos_token_id=0, **over)
    return _randomize(getattr(transformers, kind)(cfg), 0)


def _bert(kind="BertModel"):
    cfg = transformers.BertConfig(vocab_size=V, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=4, intermediate_size=48,
                                  max_position_embeddings=16, pad_token_id=0)
    return _randomize(getattr(transformers, kind)(cfg), 1)


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, V, (3, T))
    mask = np.ones((3, T), bool)
    mask[1, 6:] = False                                   # right padding
    mask[2, 3:] = False
    types = (np.arange(T)[None, :] >= 4).astype(np.int64).repeat(3, 0)
    return ids, mask, types


def _np(x):
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def _check(what, ours, theirs, dtype, where=None):
    ours, theirs = _np(ours), _np(theirs)
    if where is not None:
        ours, theirs = ours[where], theirs[where]
    assert_close(what, ours, theirs, 0.0, TOL[dtype])


@pytest.fixture(scope="module")
def gpt2_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gpt2")
    model = _gpt2()
    model.save_pretrained(folder)
    return folder, model


@pytest.fixture(scope="module")
def bert_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bert")
    model = _bert()
    model.save_pretrained(folder)
    return folder, model


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_gpt2_lm_head_logits_and_hidden_states(gpt2_folder, batch, backend, dtype):
    folder, hf = gpt2_folder
    ids = batch[0]
    hf = hf.to(getattr(torch, dtype))
    with torch.no_grad():
        out = hf(torch.from_numpy(ids), output_hidden_states=True)
    model, ckpt = load_hf(folder, backend, dtype=dtype)
    assert (ckpt.architecture, ckpt.model_class) == ("GPT2LMHeadModel", "GPT")
    assert ckpt.config.activation == "gelu_tanh" and ckpt.config.tie_embeddings
    logits, _ = model(ids)
    assert _np(logits).dtype == np.dtype(dtype)
    _check("logits", logits, out.logits, dtype)
    _check("last hidden state", model.encode(ids), out.hidden_states[-1], dtype)
    # the KV cache: the prompt, then one token at a time, gives the same logits
    prompt_logits, cache = model.forward_cached(ids[:, :5])
    _check("cached prompt logits", prompt_logits, out.logits[:, :5], dtype)
    for t in range(5, T):
        step_logits, cache = model.forward_cached(ids[:, t:t + 1], cache)
        _check(f"cached logits at {t}", step_logits[:, 0], out.logits[:, t], dtype)
    hf.float()


def test_gpt2_model_without_head_and_untied_head(tmp_path, batch):
    ids = batch[0]
    base = _gpt2("GPT2Model")
    base.save_pretrained(tmp_path / "base")
    with torch.no_grad():
        h = base(torch.from_numpy(ids)).last_hidden_state
    model, ckpt = load_hf(tmp_path / "base", "numpy")
    assert ckpt.architecture == "GPT2Model"
    _check("GPT2Model hidden state", model.encode(ids), h, "float32")

    untied = _gpt2(tie_word_embeddings=False)
    untied.save_pretrained(tmp_path / "untied")
    with torch.no_grad():
        logits = untied(torch.from_numpy(ids)).logits
    assert not np.array_equal(_np(untied.lm_head.weight), _np(untied.transformer.wte.weight))
    model, ckpt = load_hf(tmp_path / "untied", "torch")
    assert not ckpt.config.tie_embeddings and "lm_head.W" in ckpt.state
    _check("untied logits", model(ids)[0], logits, "float32")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_bert_hidden_states_with_padding_and_token_types(bert_folder, batch, backend, dtype):
    folder, hf = bert_folder
    ids, mask, types = batch
    hf = hf.to(getattr(torch, dtype))
    with torch.no_grad():
        out = hf(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask.astype(np.int64)),
                 token_type_ids=torch.from_numpy(types))
    model, ckpt = load_hf(folder, backend, dtype=dtype)
    assert ckpt.architecture == "BertModel"
    assert ckpt.ignored == ("pooler.dense.bias", "pooler.dense.weight")
    c = ckpt.config
    assert (c.norm_first, c.embedding_norm, c.type_vocab_size, c.activation, c.layer_norm_eps) == \
        (False, True, 2, "gelu", 1e-12)
    h = model.encode(ids, mask, types)
    # padded positions are computed but meaningless; compare the real tokens
    _check("last hidden state", h, out.last_hidden_state, dtype, where=mask)
    hf.float()


@pytest.mark.parametrize("backend", BACKENDS)
def test_bert_masked_lm_logits(tmp_path, batch, backend):
    ids, mask, types = batch
    for dtype in ("float32", "float64"):
        hf = _bert("BertForMaskedLM").to(getattr(torch, dtype))
        hf.save_pretrained(tmp_path / dtype)
        with torch.no_grad():
            out = hf(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask.astype(np.int64)),
                     token_type_ids=torch.from_numpy(types))
        model, ckpt = load_hf(tmp_path / dtype, backend, dtype=dtype)
        assert ckpt.config.lm_head_transform and ckpt.config.lm_head_bias
        logits, _ = model(ids, attention_mask=mask, token_type_ids=types)
        _check(f"masked-LM logits ({dtype})", logits, out.logits, dtype, where=mask)


def _sentence_transformers_folder(folder, bert, normalize):
    bert.save_pretrained(folder)
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize",
                        "type": "sentence_transformers.models.Normalize"})
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 32, "pooling_mode_cls_token": False,
         "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False}))


@pytest.mark.parametrize("backend", BACKENDS)
def test_sentence_transformers_mean_pooling(tmp_path, bert_folder, batch, backend):
    _, hf = bert_folder
    ids, mask, _ = batch
    _sentence_transformers_folder(tmp_path, hf, normalize=True)
    model, ckpt = load_hf(tmp_path, backend)
    assert (ckpt.pooling, ckpt.normalize) == ("mean", True)
    with torch.no_grad():
        h = hf(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask.astype(np.int64)))
    m = torch.from_numpy(mask.astype(np.float32))[:, :, None]
    expected = (h.last_hidden_state * m).sum(1) / m.sum(1)                  # sentence-transformers' mean
    expected = torch.nn.functional.normalize(expected, dim=1)
    e = sentence_embeddings(model, ids, mask, ckpt.pooling, ckpt.normalize)
    _check("sentence embeddings", e, expected, "float32")
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_save_hf_round_trip_through_transformers(tmp_path, batch, backend):
    ids, mask, types = batch
    B = getattr(ref if backend == "numpy" else tb, "GPT")
    gpt = B(ModelConfig(vocab_size=V, block_size=16, d_model=32, n_heads=4, n_layers=2,
                        activation="gelu_tanh", tie_embeddings=True), seed=3)
    gpt.eval()
    assert save_hf(gpt, tmp_path / "gpt") == "GPT2LMHeadModel"
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "gpt").eval()
    with torch.no_grad():
        _check("exported GPT logits", gpt(ids)[0], hf(torch.from_numpy(ids)).logits, "float32")

    Enc = getattr(ref if backend == "numpy" else tb, "TransformerEncoder")
    enc = Enc(ModelConfig(vocab_size=V, block_size=16, d_model=32, n_heads=4, n_layers=2, d_ff=48,
                          norm_first=False, layer_norm_eps=1e-12, tie_embeddings=True,
                          type_vocab_size=2, embedding_norm=True, lm_head_transform=True,
                          lm_head_bias=True), seed=4)
    enc.eval()
    assert save_hf(enc, tmp_path / "bert") == "BertForMaskedLM"
    hf = transformers.BertForMaskedLM.from_pretrained(tmp_path / "bert").eval()
    with torch.no_grad():
        theirs = hf(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask.astype(np.int64)),
                    token_type_ids=torch.from_numpy(types)).logits
    _check("exported BERT logits", enc(ids, attention_mask=mask, token_type_ids=types)[0],
           theirs, "float32", where=mask)
    # and back into minillm: the same state
    again = read_hf(tmp_path / "bert")
    for name, a in enc.state_dict().items():
        np.testing.assert_array_equal(again.state[name], _np(a), err_msg=name)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("kind", ["GPT", "TransformerEncoder"])
def test_new_options_backward_matches_autograd(kind, dtype):
    """The options the checkpoints need, each gradient of the hand-written backward
    against torch's autograd, with a random upstream gradient through the loss."""
    config = ModelConfig(vocab_size=23, block_size=8, d_model=16, n_heads=2, n_layers=2, d_ff=24,
                         norm_first=kind == "GPT", tie_embeddings=kind == "GPT",
                         type_vocab_size=3, embedding_norm=True, lm_head_transform=True,
                         lm_head_bias=True, activation="gelu", dtype=dtype)
    ours, theirs = getattr(ref, kind)(config, seed=5), getattr(tb, kind)(config, seed=5)
    rng = np.random.default_rng(1)
    # move every parameter off its initial value (gains 1, biases 0 hide mistakes)
    state = {n: (a + 0.1 * rng.standard_normal(a.shape)).astype(dtype)
             for n, a in ours.state_dict().items()}
    ours.load_state_dict(state)
    theirs.load_state_dict(state)
    idx = rng.integers(0, 23, (2, 7))
    targets = rng.integers(0, 23, (2, 7))
    extra = {}
    if kind == "TransformerEncoder":
        extra = {"attention_mask": np.arange(7)[None] < np.array([[7], [4]]),
                 "token_type_ids": rng.integers(0, 3, (2, 7))}
    logits, loss = ours(idx, targets, **extra)
    t_logits, t_loss = theirs(idx, targets, **extra)
    assert_model_close("logits", logits, t_logits, dtype)
    assert_model_close("loss", np.asarray(float(loss), dtype=dtype), t_loss, dtype)
    loss.backward()
    t_loss.backward()
    g, tg = grads(ours), grads(theirs)
    assert {"type_emb.W", "emb_ln.gamma", "lm_transform.W", "lm_ln.beta", "b_out"} <= set(g)
    for name in g:
        assert np.abs(g[name]).max() > 0, f"{name} got no gradient"
        assert_model_close(f"d{name}", g[name], tg[name], dtype)
    if kind == "GPT":  # the KV cache goes through the new embedding path too
        full, _ = ours(idx)
        first, cache = ours.forward_cached(idx[:, :4])
        second, _ = theirs.forward_cached(idx[:, :4])
        nxt, _ = ours.forward_cached(idx[:, 4:], cache)
        assert_model_close("cached", np.concatenate([first, nxt], axis=1), full, dtype)
        assert_model_close("cached torch", second, to_np(full[:, :4]), dtype)


def test_old_configs_keep_todays_model():
    """A config.json written before these options loads, and builds the same model."""
    old = {k: v for k, v in ModelConfig().to_dict().items()
           if k not in ("type_vocab_size", "embedding_norm", "lm_head_transform", "lm_head_bias")}
    config = ModelConfig.from_dict(old)
    names = [n for n, _ in ref.GPT(config).named_parameters()]
    assert not any(n.startswith(("type_emb", "emb_ln", "lm_transform", "lm_ln", "b_out")) for n in names)
    with pytest.raises(ValueError, match="type_vocab_size must be an int >= 0"):
        ModelConfig(type_vocab_size=-1)
    with pytest.raises(ValueError, match="token_type_ids given, but the model has no token-type"):
        ref.TransformerEncoder(config).encode(np.zeros((1, 3), int), token_type_ids=np.zeros((1, 3), int))


# -- bad input -------------------------------------------------------------------------------

def test_error_other_architecture(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["MistralForCausalLM"],
                                                      "model_type": "mistral"}))
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match=r"config.json: expected one of the architectures .*LlamaForCausalLM"
                                         r".* got architectures=\['MistralForCausalLM'\]"):
        read_hf(tmp_path)


def test_error_missing_files(tmp_path, gpt2_folder):
    with pytest.raises(ValueError, match="expected config.json in .*no such file"):
        read_hf(tmp_path)
    (tmp_path / "config.json").write_text((gpt2_folder[0] / "config.json").read_text())
    with pytest.raises(ValueError, match="expected model.safetensors"):
        read_hf(tmp_path)
    torch.save({"x": torch.zeros(1)}, tmp_path / "pytorch_model.bin")
    with pytest.raises(ValueError, match="has only pytorch_model.bin.*allow_bin=True"):
        read_hf(tmp_path)
    with pytest.raises(ValueError, match="not a folder"):
        read_hf(tmp_path / "nothing")


def test_pytorch_bin_only_when_asked(tmp_path, gpt2_folder, batch):
    folder, hf = gpt2_folder
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    torch.save(hf.state_dict(), tmp_path / "pytorch_model.bin")
    model, _ = load_hf(tmp_path, "numpy", allow_bin=True)
    with torch.no_grad():
        _check("logits from pytorch_model.bin", model(batch[0])[0],
               hf(torch.from_numpy(batch[0])).logits, "float32")


def test_error_missing_tensor_and_wrong_shape(tmp_path, gpt2_folder):
    from minillm.store import safetensors_io

    folder, _ = gpt2_folder
    tensors = safetensors_io.load_file(folder / "model.safetensors")
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    del tensors["transformer.h.1.mlp.c_fc.weight"]
    safetensors_io.save_file(tensors, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match=r"model.safetensors: missing tensor 'h.1.mlp.c_fc.weight'"):
        read_hf(tmp_path)
    tensors["transformer.h.1.mlp.c_fc.weight"] = np.zeros((32, 100), np.float32)
    safetensors_io.save_file(tensors, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match=r"model.safetensors: tensor 'h.1.mlp.c_fc.weight' has "
                                         r"shape \(32, 100\), but config.json implies \(32, 128\)"):
        read_hf(tmp_path)


def test_error_export_of_a_config_gpt2_cannot_express(tmp_path):
    gpt = ref.GPT(ModelConfig(vocab_size=V, norm_first=False))
    with pytest.raises(ValueError, match="GPT2LMHeadModel needs ModelConfig.norm_first=True"):
        save_hf(gpt, tmp_path)


# -- the CLI: generate --from-hf, embed --from-hf ------------------------------------------

TEXTS = ["The cat sat on the mat.", "A dog barked at the mailman!", "Élan vital, naïve café."]


def _tokenizer_files(folder, kind, lowercase=True):
    """A small vocabulary trained on TEXTS; a cased BERT one (lowercase=False) also sees
    TEXTS lower-cased, so lower-casing a text keeps its words known."""
    tokenizers = pytest.importorskip("tokenizers")
    corpus = TEXTS * 5
    if kind == "gpt2":
        t = tokenizers.ByteLevelBPETokenizer()
        t.train_from_iterator(corpus, vocab_size=300, special_tokens=["<|endoftext|>"], show_progress=False)
    else:
        t = tokenizers.BertWordPieceTokenizer(lowercase=lowercase)
        corpus += [] if lowercase else [x.lower() for x in TEXTS] * 5
        t.train_from_iterator(corpus, vocab_size=150, show_progress=False)
    t.save_model(str(folder))
    return t.get_vocab_size()


def test_cli_generate_from_hf_is_transformers_greedy(tmp_path, capsys):
    from minillm.cli import main
    from minillm.data import GPT2Tokenizer
    from minillm.data.hf_tokenizers import read_tokenizer_folder

    n = _tokenizer_files(tmp_path, "gpt2")
    cfg = transformers.GPT2Config(vocab_size=n, n_positions=32, n_embd=32, n_layer=2, n_head=4,
                                  bos_token_id=0, eos_token_id=0)
    hf = _randomize(transformers.GPT2LMHeadModel(cfg), 2)
    hf.save_pretrained(tmp_path)
    tok = read_tokenizer_folder(tmp_path, expect=GPT2Tokenizer)
    ids = tok.encode("The cat")
    with torch.no_grad():                                          # transformers, greedy
        for _ in range(8):
            nxt = int(hf(torch.tensor([ids])).logits[0, -1].argmax())
            ids.append(nxt)
            if nxt == tok.eos_id:
                break
    expected = tok.decode(ids[len(tok.encode("The cat")):], skip_special_tokens=True)
    for backend in BACKENDS:
        assert main(["generate", "--from-hf", str(tmp_path), "--prompt", "The cat", "--temperature", "0",
                     "--max-new-tokens", "8", "--backend", backend]) == 0
        assert capsys.readouterr().out == "The cat" + expected + "\n"


def test_cli_embed_from_hf(tmp_path, capsys):
    from minillm.cli import main
    from minillm.data import WordPieceTokenizer
    from minillm.data.hf_tokenizers import read_tokenizer_folder

    n = _tokenizer_files(tmp_path, "bert")
    cfg = transformers.BertConfig(vocab_size=n, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=48, max_position_embeddings=32)
    hf = _randomize(transformers.BertModel(cfg), 3)
    hf.save_pretrained(tmp_path)
    tok = read_tokenizer_folder(tmp_path, expect=WordPieceTokenizer)
    rows = [tok.encode(t) for t in TEXTS]
    L = max(map(len, rows))
    ids = torch.tensor([r + [tok.pad_id] * (L - len(r)) for r in rows])
    mask = (torch.arange(L)[None] < torch.tensor([len(r) for r in rows])[:, None]).long()
    with torch.no_grad():
        h = hf(ids, attention_mask=mask).last_hidden_state
    expected = ((h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)).numpy()  # mean pooling
    assert main(["embed", "--from-hf", str(tmp_path), *TEXTS]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["text"] for x in lines] == TEXTS
    # printed with 6 decimals: 5e-7 of rounding on top of the float32 tolerance
    assert_close("printed embeddings", np.array([x["embedding"] for x in lines]),
                 expected.astype(np.float64), 0.0, 1e-5 + 5e-7)
    assert main(["embed", "--from-hf", str(tmp_path), "--backend", "torch", "--out",
                 str(tmp_path / "e.npy"), *TEXTS]) == 0
    _check("saved embeddings", np.load(tmp_path / "e.npy"), expected, "float32")
    assert main(["embed", "--from-hf", str(tmp_path)]) == 2
    assert "expected at least one text" in capsys.readouterr().err
    assert main(["generate", "--from-hf", str(tmp_path)]) == 2    # a BERT folder cannot generate
    assert "generation needs a GPT-2 folder, got BertModel" in capsys.readouterr().err


@pytest.mark.parametrize("backend", BACKENDS)
def test_classifier_fine_tunes_from_a_bert_checkpoint(tmp_path, batch, backend):
    """A SequenceClassifier takes a BertForMaskedLM's body (not its MLM head) and then
    computes, before its own head, exactly the hidden states of transformers' BertModel."""
    ids, mask, types = batch
    hf = _bert("BertForMaskedLM")
    hf.save_pretrained(tmp_path)
    ckpt = read_hf(tmp_path)
    B = ref if backend == "numpy" else tb
    clf = B.SequenceClassifier(ckpt.config, n_classes=3, pooling="cls", seed=0)
    clf.load_encoder_state(ckpt.state)
    clf.eval()
    with torch.no_grad():
        h = hf.bert(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask.astype(np.int64)),
                    token_type_ids=torch.from_numpy(types)).last_hidden_state
    _check("classifier body", clf.encode(ids, mask, types), h, "float32", where=mask)
    assert _np(clf(ids, attention_mask=mask, token_type_ids=types)[0]).shape == (3, 3)


def test_float32_agreement_is_transformers_own_rounding(tmp_path):
    """The reason docs/pretrained.md gives for its float32 figures, checked at GPT-2's width
    (768, 12 heads; one layer, a 1000-token vocabulary to stay quick): each minillm float32
    row of benchmarks/bench_interop_agreement.py is within 10x of transformers' own float32
    against its float64 (the rounding of the same sums, no minillm in it), and the float64
    rows are within 1e-12 relative (float64's unit is 2.2e-16; a layout error is O(1))."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from bench_interop_agreement import measure

    rows = measure(1, 0.1, 16, 0, tmp_path, vocab=1000)
    own = [d for dtype, what, d, _ in rows if what.startswith("transformers float32")][0]
    assert own > 0
    for dtype, what, d, rel in rows:
        if dtype == "float32" and what.startswith("minillm"):
            assert d <= 10 * own, (what, d, own)
        elif dtype == "float64":
            assert rel <= 1e-12, (what, rel)


def test_a_new_family_is_one_module(tmp_path, gpt2_folder, monkeypatch):
    """What issue 25's Llama and Qwen readers will do: a family declared in one place (here,
    in the test) is read by read_hf once it is in FAMILIES, with no other edit."""
    from minillm.apps.interop import families, gpt2
    from minillm.apps.interop.family import Family

    folder, _ = gpt2_folder
    for f in folder.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "architectures": ["ToyLM"],
                                                      "model_type": "toy"}))
    with pytest.raises(ValueError, match=r"expected one of the architectures .* got architectures=\['ToyLM'\]"):
        read_hf(tmp_path)
    toy = Family("toy", ("ToyLM",), "GPT", lambda tensors: "ToyLM",
                 lambda arch, hf, tensors, dtype: gpt2.FAMILY.read("GPT2LMHeadModel", hf, tensors, dtype),
                 gpt2.FAMILY.write, gpt2.FAMILY.is_buffer)
    monkeypatch.setattr(families, "FAMILIES", (*families.FAMILIES, toy))
    ckpt, plain = read_hf(tmp_path), read_hf(folder)
    assert (ckpt.architecture, ckpt.model_class) == ("ToyLM", "GPT")
    assert ckpt.state.keys() == plain.state.keys()
    assert all(np.array_equal(ckpt.state[k], plain.state[k]) for k in plain.state)
