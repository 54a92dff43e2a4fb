"""The torch backend's fast path (torch's kernels, ``set_fused(True)``) against its
explicit path (the formulas) and the NumPy reference.

- every model kind and configuration variant the parity tests draw
  (tests/model_helpers.py: ``small_configs``; GPT, TransformerEncoder,
  SequenceClassifier, EncoderDecoder, SpanQA): logits, loss and every gradient, fast vs
  explicit (float64: ``FAST_PATH_FLOAT64``; float32: ``FLOAT32["fast_path"]``) and fast
  vs reference (the models' parity tolerances);
- the same parameters on both paths: state-dict keys and shapes, and a checkpoint the
  fast path trained and saved loads in the explicit path and in the reference with the
  same logits;
- greedy KV-cache generation gives the same tokens on both paths;
- the loss's contract on the fast path (class axis last, ignore_index, 0.0 with nothing
  counted), ReLU's gradient at 0, T = 1 and fully masked rows;
- the optimizers' foreach step against the explicit one and ``torch.optim``;
- who chooses: ``Runtime(fused=...)`` prepares models and optimizers, the CLI's
  ``--explicit`` selects the formulas and the default is the fast path.

Tolerances and their reasons: tests/tolerances.py.
"""
import dataclasses
import math
import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import minillm.reference as R
import minillm.torch_backend as T
from minillm.core.config import ModelConfig
from minillm.store import model_io
from minillm.store.runtime import Runtime
from minillm.torch_backend.losses import fast_cross_entropy
import minillm.cli.runs as cli_runs
from minillm.store.runs import load_run
from minillm.train.generation import generate
from ops_catalogue import rows_for
from model_helpers import KINDS, assert_model_close, build, call, grads, make_batch, small_configs
from parity import assert_close
from tolerances import AUTOCAST_BF16_LOSS_RTOL, FAST_PATH_FLOAT64, FLOAT64, OPTIM_FOREACH, limits

FAST_FLAGGED = (T.Linear, T.Embedding, T.LayerNorm, T.FeedForward, T.MultiHeadAttention)


def _paths_close(what, fast, explicit, dtype):
    """Fast vs explicit with the fast path's tolerance for ``dtype``."""
    explicit = explicit.detach() if hasattr(explicit, "detach") else torch.as_tensor(explicit)
    if dtype == "float64":
        rtol, atol = FAST_PATH_FLOAT64.rtol, FAST_PATH_FLOAT64.atol
    else:
        rtol, atol = limits("fast_path", dtype, explicit)
    assert_close(what, fast, explicit, rtol, atol)


def _flags(model):
    return [m.fused for m in model.modules() if isinstance(m, FAST_FLAGGED)] + [model.fused]


def _run_three(kind, config, batch, seed=0, **model_kw):
    """(reference, explicit, fast): each ``(logits, loss, grads)`` on the same batch."""
    out = []
    for backend, fused in ((R, None), (T, False), (T, True)):
        model = getattr(backend, kind)(config, seed=seed, **model_kw)
        if fused is not None:
            model.set_fused(fused)
            assert set(_flags(model)) == {fused}
        logits, loss = batch(model)
        loss.backward()
        out.append((logits, loss, grads(model)))
    return out


def _assert_three(out, dtype):
    (l_r, loss_r, g_r), (l_e, loss_e, g_e), (l_f, loss_f, g_f) = out
    _paths_close("logits fast vs explicit", l_f, l_e, dtype)
    _paths_close("loss fast vs explicit", loss_f, loss_e, dtype)
    assert_model_close("logits fast vs reference", l_f, l_r, dtype)
    assert_model_close("loss fast vs reference", loss_f, np.asarray(float(loss_r), dtype), dtype)
    assert g_f.keys() == g_e.keys() == g_r.keys()
    for name in g_f:
        _paths_close(f"grad {name} fast vs explicit", torch.from_numpy(g_f[name]), torch.from_numpy(g_e[name]),
                     dtype)
        assert_model_close(f"grad {name} fast vs reference", g_f[name], g_r[name], dtype)


# ----------------------------------------------------------------------------------------
# whole models: every kind, every drawn configuration, float64 and float32


@settings(deadline=None)
@given(config=small_configs(), kind=st.sampled_from(KINDS), B=st.integers(1, 3), T_=st.integers(1, 8),
       seed=st.integers(0, 2**16))
def test_every_model_kind_fast_vs_explicit_vs_reference(config, kind, B, T_, seed):
    idx, targets, mask = make_batch(kind, config, B, T_, seed)
    out = _run_three(kind, config, lambda m: call(m, kind, idx, targets, mask), seed=seed % 7)
    _assert_three(out, config.dtype)


@settings(deadline=None)
@given(config=small_configs(), B=st.integers(1, 3), S=st.integers(1, 8), T_=st.integers(1, 8),
       seed=st.integers(0, 2**16), smoothing=st.sampled_from([0.0, 0.1]))
def test_encoder_decoder_fast_vs_explicit_vs_reference(config, B, S, T_, seed, smoothing):
    rng = np.random.default_rng(seed)
    src = rng.integers(0, config.vocab_size, (B, S))
    tgt = rng.integers(0, config.vocab_size, (B, T_))
    targets = np.where(rng.random((B, T_)) < 0.8, rng.integers(0, config.vocab_size, (B, T_)), -100)
    mask = np.arange(S)[None, :] < rng.integers(1, S + 1, B)[:, None]
    out = _run_three("EncoderDecoder", config, lambda m: m(src, tgt, targets, mask),
                     seed=seed % 7, label_smoothing=smoothing)
    _assert_three(out, config.dtype)


@settings(deadline=None)
@given(config=small_configs(), B=st.integers(1, 3), T_=st.integers(1, 8), seed=st.integers(0, 2**16),
       segments=st.booleans())
def test_span_qa_fast_vs_explicit_vs_reference(config, B, T_, seed, segments):
    rng = np.random.default_rng(seed)
    types = None
    if segments:
        config = dataclasses.replace(config, type_vocab_size=2)
        types = (np.arange(T_)[None, :] >= rng.integers(0, T_ + 1, B)[:, None]).astype(np.int64)
    idx = rng.integers(0, config.vocab_size, (B, T_))
    lengths = rng.integers(1, T_ + 1, B)
    mask = np.arange(T_)[None, :] < lengths[:, None]
    start = rng.integers(0, lengths)
    end = np.minimum(start + rng.integers(0, 3, B), lengths - 1)
    out = _run_three("SpanQA", config, lambda m: m(idx, start, end, mask, token_type_ids=types), seed=seed % 5)
    _assert_three(out, config.dtype)


@pytest.mark.parametrize("kind", KINDS)
def test_bert_style_head_and_embedding_norm_on_the_fast_path(kind):
    """The options small_configs leaves out: BERT's LM-head transform (an activation and
    a LayerNorm outside the blocks), its output bias, the embedding LayerNorm and
    token types."""
    config = ModelConfig(vocab_size=29, block_size=8, d_model=16, n_heads=2, n_layers=2, d_ff=32,
                         activation="gelu", norm_first=False, embedding_norm=True, lm_head_transform=True,
                         lm_head_bias=True, type_vocab_size=2, dtype="float64")
    idx, targets, mask = make_batch(kind, config, 3, 8, seed=11)
    out = _run_three(kind, config, lambda m: call(m, kind, idx, targets, mask), seed=3)
    _assert_three(out, "float64")


# ----------------------------------------------------------------------------------------
# edges: T = 1, fully masked rows, nothing counted, ReLU at 0


@pytest.mark.parametrize("positional", ["learned", "rope"])
def test_gpt_with_one_token_on_the_fast_path(positional):
    """T = 1: every attention row has one key (the case torch 2.14's clamp broke)."""
    config = ModelConfig(vocab_size=11, block_size=4, d_model=8, n_heads=2, n_layers=2, d_ff=16,
                         positional=positional, dtype="float64")
    rng = np.random.default_rng(8)
    idx, targets = rng.integers(0, 11, (3, 1)), rng.integers(0, 11, (3, 1))
    _assert_three(_run_three("GPT", config, lambda m: m(idx, targets)), "float64")


@pytest.mark.parametrize("kind", ["TransformerEncoder", "SequenceClassifier", "SpanQA"])
def test_a_fully_masked_sequence_on_the_fast_path(kind):
    """A sequence whose attention mask is all False: every attention row of it has nothing
    to attend to, so its outputs are zero on both paths (no NaN), and the gradients
    agree with the explicit path and the reference."""
    config = ModelConfig(vocab_size=13, block_size=6, d_model=8, n_heads=2, n_layers=2, d_ff=16,
                         dtype="float64")
    rng = np.random.default_rng(4)
    idx = rng.integers(0, 13, (2, 5))
    mask = np.ones((2, 5), dtype=bool)
    mask[1] = False                                              # the second sequence: all padding
    if kind == "TransformerEncoder":
        targets = np.full((2, 5), -100)
        targets[0, :3] = rng.integers(0, 13, 3)
        batch = lambda m: m(idx, targets, attention_mask=mask)  # noqa: E731
    elif kind == "SequenceClassifier":
        batch = lambda m: m(idx, labels=np.array([0, 1]), attention_mask=mask)  # noqa: E731
    else:
        batch = lambda m: m(idx, np.array([1, 0]), np.array([2, 0]), mask)  # noqa: E731
    out = _run_three(kind, config, batch)
    for logits, loss, g in out[1:]:
        assert torch.isfinite(logits).all() and torch.isfinite(loss)
        assert all(np.isfinite(a).all() for a in g.values())
    _assert_three(out, "float64")


def test_fast_cross_entropy_keeps_the_contract():
    """Class axis last, -100 ignored, label smoothing, the three reductions, and 0.0
    (with a zero gradient) when nothing is counted, as the explicit cross_entropy."""
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((2, 3, 5)) * 3
    targets = rng.integers(0, 5, (2, 3))
    targets[0, 1] = targets[1, 2] = -100
    for smoothing in (0.0, 0.1):
        for reduction in ("mean", "sum", "none"):
            a, b = (torch.tensor(logits, requires_grad=True) for _ in range(2))
            t = torch.from_numpy(targets)
            fast = fast_cross_entropy(a, t, label_smoothing=smoothing, reduction=reduction)
            explicit = T.cross_entropy(b, t, label_smoothing=smoothing, reduction=reduction)
            assert fast.shape == explicit.shape
            ref = R.cross_entropy(logits, targets, label_smoothing=smoothing, reduction=reduction)
            assert_close(f"{reduction} {smoothing}", fast, np.asarray(ref), FLOAT64.rtol, FLOAT64.atol,
                         check_dtype=False)
            fast.sum().backward()
            explicit.sum().backward()
            _paths_close(f"grad {reduction} {smoothing}", a.grad, b.grad, "float64")
    x = torch.tensor(logits, requires_grad=True)
    loss = fast_cross_entropy(x, torch.full((2, 3), -100))
    loss.backward()
    assert loss.item() == 0.0 and not torch.isnan(loss)
    assert torch.all(x.grad == 0)
    with pytest.raises(ValueError, match="targets"):
        fast_cross_entropy(x, torch.zeros((2, 4), dtype=torch.long))


@pytest.mark.parametrize("op", rows_for("tests/ops/test_fast_path.py::test_fused_kernel_matches_the_explicit_path"),
                         ids=repr)
@given(dtype=st.sampled_from([np.float64, np.float32]), seed=st.integers(0, 2**16), data=st.data())
def test_fused_kernel_matches_the_explicit_path(op, dtype, seed, data):
    """The fast path's kernel (``op.fused``: F.gelu, F.linear, F.layer_norm, ...) against
    the explicit formula, forward and every gradient, on the catalogue's inputs. With the
    op's kinks planted (ReLU's 0 and -0), the fused kernel's derivative there is the one
    the catalogue declares (F.relu's threshold_backward gives [x > 0], the reason
    tests/ops/test_bounds.py lets it be called)."""
    case = op.case(data, dtype, "oracle")     # the inputs a torch.nn.functional kernel is judged on
    inputs = list(case.inputs)
    if op.kinks:
        x = inputs[0] = inputs[0].copy()
        for i, kink in enumerate(k for kink in op.kinks for k in (kink, -kink)):
            x.flat[i % x.size] = kink
    results = []
    for fn in (op.explicit, op.fused):
        leaves = [None if a is None else torch.from_numpy(np.array(a)).requires_grad_(d)
                  for a, d in zip(inputs, case.differentiable)]
        y = fn(*leaves, **case.kwargs)
        dout = torch.from_numpy(np.random.default_rng(seed).standard_normal(tuple(y.shape)).astype(dtype))
        y.backward(dout)
        results.append((y.detach(), [t.grad for t, d in zip(leaves, case.differentiable) if d and t is not None]))
    (y, grads), (y_fast, grads_fast) = results
    assert_close(f"{op.name} fused out", y_fast, y, *limits(op.name, dtype, y))
    for name, g_fast, g in zip([n for n, a, d in zip(case.names, inputs, case.differentiable) if d and a is not None],
                               grads_fast, grads):
        assert_close(f"{op.name} fused d{name}", g_fast, g, *limits(op.name, dtype, g))
    for kink, slope in op.kinks.items():
        at = torch.from_numpy(inputs[0] == kink)
        assert torch.equal(grads_fast[0][at], dout[at] * slope), f"{op.name}: fused derivative at {kink}"


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("op", rows_for("tests/ops/test_fast_path.py::test_fused_kernel_at_nonfinite_points"), ids=repr)
def test_fused_kernel_at_nonfinite_points(op, dtype):
    """The fused kernel is torch's, and at +-inf torch's is not always the formula's
    (``op.fused_departure``: F.gelu is NaN at -inf, and at +inf in float32 on AVX-512
    CPUs). The tests do not adopt it: the explicit path and the reference give the
    formula's limits (tests/ops/test_nonfinite.py). What holds on every CPU: NaN stays NaN,
    and at +-inf the kernel gives the formula's value or, where the row says it departs,
    NaN, never another number. A row that declares no departure must match exactly."""
    x = torch.tensor([math.nan, math.inf, -math.inf, math.inf, -math.inf, 1.0], dtype=dtype)
    fast, formula = op.fused(x), op.formula(x)
    assert torch.isnan(fast[0]) and torch.isnan(formula[0])
    inf = torch.isinf(x)
    same = (fast == formula) | (torch.isnan(fast) & torch.isnan(formula))
    if op.fused_departure:
        assert torch.all(same[inf] | torch.isnan(fast[inf])), (
            f"{op.name}: fused {fast.tolist()}, formula {formula.tolist()}")
    else:
        assert torch.all(same[inf]), f"{op.name}: fused {fast.tolist()}, formula {formula.tolist()}"


# ----------------------------------------------------------------------------------------
# the same parameters: state dicts and checkpoints


@pytest.mark.parametrize("kind", KINDS + ("EncoderDecoder", "SpanQA"))
def test_state_dict_is_the_same_on_both_paths(kind):
    config = ModelConfig(vocab_size=17, block_size=8, d_model=8, n_heads=2, n_layers=2, d_ff=16,
                         tie_embeddings=False, dtype="float32")
    explicit, fast = (getattr(T, kind)(config, seed=1).set_fused(f) for f in (False, True))
    sd_e, sd_f = explicit.state_dict(), fast.state_dict()
    assert list(sd_e) == list(sd_f)
    assert [tuple(v.shape) for v in sd_e.values()] == [tuple(v.shape) for v in sd_f.values()]
    assert all(torch.equal(sd_e[k], sd_f[k]) for k in sd_e)
    ref = getattr(R, kind)(config, seed=1)
    assert list(ref.state_dict()) == list(sd_f)


def test_a_checkpoint_trained_on_the_fast_path_loads_in_the_explicit_path_and_the_reference(tmp_path):
    config = ModelConfig(vocab_size=19, block_size=8, d_model=16, n_heads=2, n_layers=2, d_ff=32,
                         activation="gelu_tanh", dtype="float64")
    rt = Runtime("torch")
    model = rt.prepare(T.GPT(config, seed=2))
    opt = rt.prepare_optimizer(T.AdamW(list(model.parameters()), lr=1e-2))
    assert all(_flags(model)) and opt.foreach
    rng = np.random.default_rng(0)
    for _ in range(3):                                           # a few foreach AdamW steps
        idx = torch.from_numpy(rng.integers(0, 19, (2, 8)))
        _, loss = model(idx, idx)
        loss.backward()
        opt.step()
        opt.zero_grad()
    model_io.save_checkpoint(tmp_path, model, opt, step=3)
    x = rng.integers(0, 19, (2, 8))
    with torch.no_grad():
        logits_fast, _ = model(x)
    explicit, _ = model_io.load_model(tmp_path, "torch")
    assert not any(_flags(explicit))                             # the library builds explicit models
    ref, _ = model_io.load_model(tmp_path, "numpy")
    with torch.no_grad():
        logits_explicit, _ = explicit(x)
    logits_ref, _ = ref(x)
    _paths_close("explicit logits", logits_fast, logits_explicit, "float64")
    assert_model_close("reference logits", logits_fast, logits_ref, "float64")
    # the optimizer state resumes on the explicit step too
    opt_e = T.AdamW(list(explicit.parameters()), lr=1e-2)
    model_io.resume(tmp_path, explicit, opt_e)
    assert opt_e.state_dict().keys() == opt.state_dict().keys()
    for s_e, s_f in zip(opt_e.state_dict()["state"], opt.state_dict()["state"]):
        np.testing.assert_array_equal(s_e["m"], s_f["m"])
        np.testing.assert_array_equal(s_e["v"], s_f["v"])


# ----------------------------------------------------------------------------------------
# generation with the KV cache


@pytest.mark.parametrize("positional", ["learned", "rope"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_cached_greedy_generation_is_the_same_on_both_paths(positional, dtype):
    config = ModelConfig(vocab_size=23, block_size=16, d_model=16, n_heads=2, n_layers=2, d_ff=32,
                         positional=positional, init_std=0.3, dtype=dtype)
    tokens = {}
    for fused in (False, True):
        rt = Runtime("torch", fused=fused)
        model = rt.prepare(T.GPT(config, seed=3))
        assert set(_flags(model)) == {fused}
        tokens[fused] = generate(rt, model, [1, 2, 3], 12, temperature=0.0, use_cache=True)
    ref = generate(Runtime("numpy"), R.GPT(config, seed=3), [1, 2, 3], 12, temperature=0.0, use_cache=True)
    assert tokens[True] == tokens[False] == ref and len(ref) == 12


def test_forward_cached_matches_forward_on_the_fast_path():
    config = ModelConfig(vocab_size=23, block_size=8, d_model=16, n_heads=4, n_layers=2, dtype="float64")
    model = T.GPT(config, seed=4).set_fused(True)
    idx = torch.from_numpy(np.random.default_rng(1).integers(0, 23, (2, 8)))
    full, _ = model(idx)
    first, cache = model.forward_cached(idx[:, :5])
    rest, _ = model.forward_cached(idx[:, 5:], cache)
    _paths_close("cached logits", torch.cat([first, rest], dim=1), full, "float64")


def test_the_fast_paths_cache_grows_in_place_and_never_changes_a_cache_given_out():
    """Under no_grad the fast path writes each new position into the room its cache
    buffer keeps (no copy of the held ones: the same storage step after step), and a
    second continuation of one prefix, while the first is alive, goes to a new buffer: both
    continuations keep their own keys, each equal to the explicit path's torch.cat. With
    gradients on it concatenates (autograd may have saved the buffer), and backward works."""
    config = ModelConfig(vocab_size=23, block_size=16, d_model=16, n_heads=4, n_kv_heads=2, n_layers=2,
                         positional="rope", dtype="float64")
    fast, explicit = T.GPT(config, seed=4).set_fused(True), T.GPT(config, seed=4)
    idx = torch.from_numpy(np.random.default_rng(1).integers(0, 23, (2, 9)))
    with torch.no_grad():
        _, cache = fast.forward_cached(idx[:, :5])
        _, theirs = explicit.forward_cached(idx[:, :5])
        storage = cache[0].keys.data_ptr()
        for t in range(5, 8):                                   # one token at a time, in place
            _, cache = fast.forward_cached(idx[:, t:t + 1], cache)
            _, theirs = explicit.forward_cached(idx[:, t:t + 1], theirs)
            assert cache[0].keys.data_ptr() == storage and cache[0].length == t + 1
        for ours, exp in zip(cache, theirs):
            torch.testing.assert_close(ours.keys, exp.keys, rtol=0, atol=1e-12)
            torch.testing.assert_close(ours.values, exp.values, rtol=0, atol=1e-12)
        a_logits, a = fast.forward_cached(idx[:, 8:9], cache)            # two continuations
        b_logits, b = fast.forward_cached(idx[:, :1], cache)
        assert a[0].keys.data_ptr() == storage and b[0].keys.data_ptr() != storage
        for one, token in ((a, idx[:, 8:9]), (b, idx[:, :1])):          # each is its own
            _, exp = explicit.forward_cached(token, theirs)
            for ours, e in zip(one, exp):
                torch.testing.assert_close(ours.keys, e.keys, rtol=0, atol=1e-12)
        full = torch.cat([idx[:, :8], idx[:, 8:9]], dim=1)
        _paths_close("the first continuation's logits", a_logits[:, 0], fast(full)[0][:, -1], "float64")
    logits, with_grad = fast.forward_cached(idx[:, 8:9], cache)         # gradients on: a copy
    assert with_grad[0].keys.data_ptr() != storage
    logits.sum().backward()
    assert fast.tok_emb.W.grad is not None



@pytest.mark.parametrize("fields", [
    dict(norm_first=False, positional="learned"),                              # post-norm, biases
    dict(norm="rms", activation="swiglu", positional="rope", rope_layout="half", bias=False,
         n_kv_heads=2, qk_norm=True),                                          # Llama/Qwen 3-style
], ids=["post-norm", "llama-qk-norm"])
def test_the_fast_paths_generation_step_is_its_step_with_gradients(fields):
    """Without gradient the fast path's cached attention is MultiHeadAttention._decode
    (views for the heads, the cache appended in place); with gradients it is the step the
    explicit path has (split_heads, torch.cat). Both give the same logits and caches: a
    prefix of 3 (the causal mask among new positions), then one token each of a
    left-padded batch (the padding mask, each row's own positions)."""
    config = ModelConfig(vocab_size=23, block_size=16, d_model=16, n_heads=4, n_layers=2,
                         dtype="float64", **fields)
    model = T.GPT(config, seed=5).set_fused(True)
    idx = torch.from_numpy(np.random.default_rng(2).integers(0, 23, (2, 5)))
    mask = torch.tensor([[False, True, True, True, True], [True] * 5])          # row 0: padded
    steps = {}
    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            first, cache = model.forward_cached(idx[:, :3], None, mask[:, :3])
            second, cache = model.forward_cached(idx[:, 3:4], cache, mask[:, :4])
            third, cache = model.forward_cached(idx[:, 4:5], cache, mask)
        steps[grad] = (torch.cat([first, second, third], dim=1), cache)
    (no_grad, no_grad_cache), (with_grad, grad_cache) = steps[False], steps[True]
    _paths_close("logits without gradient", no_grad, with_grad, "float64")
    for ours, theirs in zip(no_grad_cache, grad_cache):
        _paths_close("cached keys", ours.keys, theirs.keys, "float64")
        _paths_close("cached values", ours.values, theirs.values, "float64")


# ----------------------------------------------------------------------------------------
# the optimizers' foreach step


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("cls_name,kwargs", [
    ("Adam", {"lr": 1e-2}), ("Adam", {"lr": 3e-3, "betas": (0.8, 0.99), "weight_decay": 0.1}),
    ("AdamW", {"lr": 1e-2, "weight_decay": 0.1}), ("SGD", {"lr": 1e-2, "momentum": 0.9, "weight_decay": 0.05}),
])
def test_foreach_step_follows_the_explicit_step_and_torch_optim_for_300_steps(dtype, cls_name, kwargs):
    tdtype = getattr(torch, dtype)
    shapes = [(5, 3), (7,), (2, 2, 2), ()]
    gen = torch.Generator().manual_seed(0)
    init = [torch.randn(s, dtype=tdtype, generator=gen) for s in shapes]
    sides = {k: [torch.nn.Parameter(x.clone()) for x in init] for k in ("explicit", "foreach", "torch")}
    opts = {"explicit": getattr(T, cls_name)(sides["explicit"], **kwargs),
            "foreach": getattr(T, cls_name)(sides["foreach"], **kwargs),
            "torch": getattr(torch.optim, cls_name)(sides["torch"], foreach=False, **kwargs)}
    opts["foreach"].foreach = True
    for step in range(300):
        gs = [torch.randn(s, dtype=tdtype, generator=gen) * scale for s, scale in zip(shapes, (1, 1e-3, 10, 0.5))]
        for name, params in sides.items():
            for i, (p, g) in enumerate(zip(params, gs)):
                p.grad = None if (i == 1 and step % 3 == 0) else g.clone()   # its own t lags
            opts[name].step()
    tol = OPTIM_FOREACH[dtype]
    for i, (f, e, t) in enumerate(zip(sides["foreach"], sides["explicit"], sides["torch"])):
        scale = max(1.0, float(e.detach().abs().max()))
        assert_close(f"{cls_name} param {i} foreach vs explicit", f.detach(), e.detach(), tol.rtol, tol.atol * scale)
        assert_close(f"{cls_name} param {i} foreach vs torch.optim", f.detach(), t.detach(), tol.rtol,
                     tol.atol * scale)
        assert float((f.detach() - init[i]).abs().max()) > 1e-3       # the run moved it
    sd_f, sd_e = opts["foreach"].state_dict(), opts["explicit"].state_dict()
    assert sd_f.keys() == sd_e.keys() and sd_f["step"] == sd_e["step"] == 300
    assert [s["step"] for s in sd_f["state"]] == [s["step"] for s in sd_e["state"]] == [300, 200, 300, 300]


# ----------------------------------------------------------------------------------------
# who chooses the path


def test_models_are_built_explicit_and_runtime_prepare_chooses():
    config = ModelConfig(vocab_size=11, block_size=4, d_model=8, n_heads=2, n_layers=1)
    for kind in KINDS + ("EncoderDecoder", "SpanQA"):
        model = getattr(T, kind)(config)
        assert not any(_flags(model)), kind                      # T.GPT(config) mirrors the reference
        assert all(_flags(Runtime("torch").prepare(model))), kind
        assert not any(_flags(Runtime("torch", fused=False).prepare(model))), kind
    ref = R.GPT(config)
    assert Runtime("numpy", fused=True).prepare(ref) is ref      # ignored by numpy
    opt = T.Adam(list(T.GPT(config).parameters()))
    assert opt.foreach is False
    assert Runtime("torch").prepare_optimizer(opt).foreach is True
    assert Runtime("torch", fused=False).prepare_optimizer(opt).foreach is False
    with pytest.raises(ValueError, match="fused to be a bool"):
        Runtime("torch", fused="yes")
    with pytest.raises(ValueError, match="fused to be a bool"):
        T.GPT(config).set_fused(1)


def test_trainer_and_train_config_follow_the_runtime(tmp_path):
    from minillm.train.tasks import CausalLMData
    from minillm.train.training import TrainConfig, Trainer
    config = ModelConfig(vocab_size=11, block_size=8, d_model=8, n_heads=2, n_layers=1)
    tc = TrainConfig(steps=2, warmup_steps=0, eval_every=2, checkpoint_every=2)
    data = CausalLMData(np.arange(200) % 11, 8, 2, 0)
    for fused in (True, False):
        rt = Runtime("torch", fused=fused)
        model = T.GPT(config)                                    # built explicit, not prepared
        opt = T.AdamW(list(model.parameters()))                  # built with the explicit step
        trainer = Trainer(rt, model, opt, data, tc, progress=False)
        assert set(_flags(trainer.model)) == {fused} and trainer.optimizer.foreach is fused
        assert tc.optimizer(rt, model).foreach is fused


def test_bf16_autocast_runs_on_the_fast_path():
    """Under autocast F.linear computes in bf16 while the weights stay float32; the fast
    path's checks accept those mixed dtypes, and the loss stays near float32's."""
    config = ModelConfig(vocab_size=31, block_size=8, d_model=16, n_heads=2, n_layers=2, activation="gelu",
                         lm_head_transform=True, lm_head_bias=True)
    idx = torch.from_numpy(np.random.default_rng(0).integers(0, 31, (2, 8)))
    for kind in ("GPT", "TransformerEncoder"):
        model = getattr(T, kind)(config).set_fused(True)
        _, loss32 = model(idx, idx)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits, loss = model(idx, idx)
        assert logits.dtype in (torch.bfloat16, torch.float32)
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters())
        assert abs(loss.item() - loss32.item()) <= AUTOCAST_BF16_LOSS_RTOL * loss32.item()


# ----------------------------------------------------------------------------------------
# the CLI: --explicit selects the formulas, the default is the fast path

TINY = ["--d-model", "16", "--n-layers", "1", "--n-heads", "2", "--block-size", "8", "--batch-size", "2",
        "--steps", "2", "--eval-every", "2"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from minillm.cli import main
    base = tmp_path_factory.mktemp("fastcli")
    (base / "corpus.txt").write_text("the cat sat on the mat. " * 40, encoding="utf-8")
    assert main(["prepare", "--corpus", str(base / "corpus.txt"), "--tokenizer", "char",
                 "--out", str(base / "data")]) == 0
    return base


@pytest.mark.parametrize("explicit", [False, True])
def test_cli_pretrain_explicit_flag_selects_the_path(prepared, monkeypatch, explicit):
    from minillm.cli import main
    from minillm.train.training import Trainer
    seen = []

    class Recording(Trainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seen.append((self.model, self.optimizer))

    from minillm.train import entry
    monkeypatch.setattr(entry, "Trainer", Recording)       # the one training entry builds the trainer
    out = prepared / f"run_{explicit}"
    assert main(["pretrain", "--data", str(prepared / "data"), "--backend", "torch", "--out", str(out), *TINY]
                + (["--explicit"] if explicit else [])) == 0
    (model, opt), = seen
    assert set(_flags(model)) == {not explicit} and opt.foreach is (not explicit)
    assert json.loads((out / "run.json").read_text())["fused"] is (not explicit)


@pytest.mark.parametrize("explicit", [False, True])
def test_cli_generate_and_serve_pass_the_path_on(monkeypatch, tmp_path, explicit):
    try:
        from minillm import serving
    except ImportError:  # the core run on the oldest torch installs no `serve` extra
        pytest.skip("needs the serve extra (pip install 'minillm[serve]')")
    from minillm.cli import main
    calls = {}
    class Stream(list):                                    # no tokens, no prompt cut: only the runtime is seen
        dropped = block_size = 0
        chat = False                                       # a continuation, not a chat answer

        @classmethod
        def of_run(cls, run, prompt, rt, **options):
            calls.setdefault("generate", rt)
            return cls()

    monkeypatch.setattr(cli_runs, "TextStream", Stream)
    monkeypatch.setattr(serving, "serve", lambda run, rt, **k: calls.setdefault("serve", rt))
    flag = ["--explicit"] if explicit else []
    assert main(["generate", str(tmp_path), "--backend", "torch", *flag]) == 0
    assert main(["serve", str(tmp_path), "--backend", "torch", *flag]) == 0
    assert calls["generate"].fused is (not explicit) and calls["serve"].fused is (not explicit)


def test_load_run_model_prepares_on_the_path_asked_for(prepared):
    from minillm.cli import main
    run = prepared / "run_loaded"             # its own run: under xdist the pretrain test may run elsewhere
    assert main(["pretrain", "--data", str(prepared / "data"), "--backend", "torch", "--out", str(run), *TINY]) == 0
    for fused in (True, False):
        model = load_run(run, Runtime("torch", fused=fused)).model
        assert set(_flags(model)) == {fused}
