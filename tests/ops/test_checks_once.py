"""Input checks are paid once: at a model's entry, not inside every op of every layer.

The contract (``minillm/core/_validate.py``, ``trusted`` and ``checking``):

- an op called directly, in either backend, checks its inputs and raises the
  ``ValueError`` that names what was expected and what came (tests/ops/test_ops_errors.py
  has the full list; a few are repeated here next to their ``trusted`` counterpart);
- inside ``trusted()`` the ops call no check at all: every ``require_*`` helper is
  spied on, in ``_validate`` and in every backend module that imported one by name,
  and a model's forward and backward (every model kind, both backends, both torch
  paths) must call them only outside the trusted block, at the model's entry;
- a model given bad input raises at its entry, before any layer runs, naming what was
  expected and what came (ids, targets, masks, the KV cache, the decoder's memory);
- the flag is restored when a trusted block is left by an exception, nests, and is
  per thread: a model running in one thread never switches off another thread's checks.

Also kept from the earlier fast checks: ``linear`` under autocast promotes the bf16
product plus the float32 bias to float32, as the formula's sum does.
"""
import dataclasses
import sys
import threading

import numpy as np
import pytest

import minillm.reference as R
from minillm.core import _validate as v
from minillm.core.config import ModelConfig

torch = pytest.importorskip("torch")
import minillm.torch_backend as T  # noqa: E402

CONFIG = ModelConfig(vocab_size=19, block_size=8, d_model=16, n_heads=2, n_layers=2,
                     dtype="float64", type_vocab_size=2, dropout=0.1)
BACKENDS = {"reference": (R, np.asarray), "torch": (T, torch.as_tensor)}


# -- spying on every check ---------------------------------------------------------------

@pytest.fixture
def checks(monkeypatch):
    """Every call of a ``require_*`` helper, as ``(name, checking() at the call)``."""
    calls = []
    modules = [v] + [m for name, m in list(sys.modules.items())
                     if name.startswith(("minillm.reference.", "minillm.torch_backend."))]
    for name in [n for n in dir(v) if n.startswith("require_")]:
        original = getattr(v, name)

        def spy(*args, _original=original, _name=name, **kwargs):
            calls.append((_name, v.checking()))
            return _original(*args, **kwargs)

        for module in modules:
            if getattr(module, name, None) is original:
                monkeypatch.setattr(module, name, spy)
    return calls


def _inside_trusted(calls):
    return [name for name, checking in calls if not checking]


def _run_model(backend, kind, fused, config=CONFIG):
    """Forward and backward of one small batch of ``kind``, with every optional input."""
    M, array = BACKENDS[backend]
    rng = np.random.default_rng(0)
    B, T_ = 2, 6
    idx = array(rng.integers(0, CONFIG.vocab_size, (B, T_)))
    mask = array(np.arange(T_)[None, :] < np.array([[T_], [4]]))
    types = array(rng.integers(0, 2, (B, T_)))
    model = getattr(M, kind)(config, seed=0)
    if backend == "torch":
        model.set_fused(fused)
    if kind == "GPT":                          # the other entries first: they overwrite
        _, cache = model.forward_cached(idx[:, :3])  # the reference layers' caches
        model.forward_cached(idx[:, 3:4], cache)
        _, loss = model(idx, array(rng.integers(0, CONFIG.vocab_size, (B, T_))))
    elif kind == "TransformerEncoder":
        model.encode(idx, mask, types)
        _, loss = model(idx, array(rng.integers(0, CONFIG.vocab_size, (B, T_))), mask, types)
    elif kind == "SequenceClassifier":
        _, loss = model(idx, array(np.array([0, 1])), mask, types)
    elif kind == "SpanQA":
        _, loss = model(idx, array(np.array([1, 2])), array(np.array([2, 3])), mask, types)
    else:
        model.decode(idx[:, :2], model.encode(idx, mask), mask)
        _, loss = model(idx, idx[:, :5], array(rng.integers(0, CONFIG.vocab_size, (B, 5))), mask)
    loss.backward()


MODEL_CASES = [(b, k, f) for b in BACKENDS
               for k in ("GPT", "TransformerEncoder", "SequenceClassifier", "SpanQA", "EncoderDecoder")
               for f in ((False, True) if b == "torch" else (False,))]


@pytest.mark.parametrize("positional", ["learned", "rope"])
@pytest.mark.parametrize("backend, kind, fused", MODEL_CASES,
                         ids=[f"{b}-{k}{'-fused' if f else ''}" for b, k, f in MODEL_CASES])
def test_a_model_checks_at_its_entry_and_its_layers_check_nothing(checks, backend, kind, fused, positional):
    _run_model(backend, kind, fused, dataclasses.replace(CONFIG, positional=positional))
    assert _inside_trusted(checks) == [], "an op checked its inputs inside a model"
    entry = {name for name, _ in checks}
    assert {"require_integer", "require_index_range"} <= entry, entry   # the ids, at the entry
    assert v.checking()


def test_the_spy_sees_the_ops_own_checks(checks):
    """Without a model around them the same ops do call the helpers (so the test above
    would notice an op checking inside a model)."""
    x, W = torch.zeros(2, 3, dtype=torch.float64), torch.zeros(3, 4, dtype=torch.float64)
    q = torch.zeros(1, 2, 3, 4, dtype=torch.float64)
    T.linear(x, W)
    T.scaled_dot_product_attention(q, q, q, T.causal_mask(3))
    R.layer_norm(np.zeros((2, 3)), np.ones(3), np.zeros(3))
    names = {name for name, checking in checks if checking}
    assert {"require_tensor", "require_last_dim", "require_broadcastable", "require_shape"} <= names
    with v.trusted():
        n = len(checks)
        T.linear(x, W)
        T.scaled_dot_product_attention(q, q, q, T.causal_mask(3))
        R.layer_norm(np.zeros((2, 3)), np.ones(3), np.zeros(3))
    assert len(checks) == n


# -- direct calls: the named errors; inside trusted(): none ------------------------------

def _direct_cases(M, array):
    """(op call with input only the checks reject, the error's text): each computes
    without error when not checked, so the trusted run shows the check is really skipped."""
    x = array(np.arange(6.0).reshape(2, 3) ** 2)           # rows of different entries
    q = array(np.ones((2, 3, 4)))
    return [
        (lambda: M.layer_norm(x, array(np.ones(3)), array(np.zeros(3)), eps=0.0),
         r"expected eps in \(0.0, inf\), got 0.0"),
        (lambda: M.linear(x, array(np.ones((3, 4))), array(np.ones(1))),
         r"expected b of shape \(4,\) \(d_out of W \(3, 4\)\), got \(1,\)"),
        (lambda: M.dropout(x, 0.5, training="yes", rng=np.random.default_rng(0)),
         "expected training to be True or False, got 'yes'"),
        (lambda: M.cross_entropy(x, array(np.array([0, 1])), label_smoothing=1.5),
         r"expected label_smoothing in \[0.0, 1.0\], got 1.5"),
        (lambda: M.feed_forward(x, array(np.ones((3, 5))), array(np.ones(1)), array(np.ones((5, 3))), None),
         r"expected b1 of shape \(5,\) \(d_out of W1 \(3, 5\)\), got \(1,\)"),
        (lambda: M.rope(array(np.ones((3, 4))), array(np.ones((1, 2))), array(np.zeros((1, 2)))),
         r"expected cos of shape \(3, 2\) \(\(T, D/2\) for x \(\.\.\., T, D\)\), got \(1, 2\)"),
        (lambda: M.scaled_dot_product_attention(q, q, q, array(np.ones((1, 2, 3, 3), dtype=bool))),
         r"expected mask broadcastable to the scores \(\.\.\., T_q, T_k\) \(2, 3, 3\), got shape \(1, 2, 3, 3\)"),
    ]


@pytest.mark.parametrize("backend", BACKENDS)
def test_direct_calls_raise_the_named_error_and_trusted_skips_it(backend):
    M, array = BACKENDS[backend]
    for call, message in _direct_cases(M, array):
        with pytest.raises(ValueError, match=message):
            call()
        with v.trusted():
            call()                                         # not checked: it just computes
        with pytest.raises(ValueError, match=message):     # and the checks are back
            call()


@pytest.mark.parametrize("backend", BACKENDS)
def test_trusted_layer_norm_computes_the_formula_it_was_given(backend):
    """eps = 0 is refused by the check; inside trusted() the op computes with it, which
    is (x - mu) / sigma exactly: a real value, not a skipped computation."""
    M, array = BACKENDS[backend]
    x = np.array([[1.0, 2.0, 4.0], [0.0, -1.0, 3.0]])
    with v.trusted():
        y = np.asarray(M.layer_norm(array(x), array(np.ones(3)), array(np.zeros(3)), eps=0.0))
    expected = (x - x.mean(-1, keepdims=True)) / x.std(-1, keepdims=True)
    np.testing.assert_allclose(y, expected, rtol=1e-13, atol=1e-14)  # float64, a few ulps


# -- a model with bad input: raises at its entry, naming expected and got -------------------

def _bad_model_inputs(M, array):
    ids = array(np.zeros((2, 4), dtype=np.int64))
    gpt, enc, qa = M.GPT(CONFIG), M.TransformerEncoder(CONFIG), M.SpanQA(CONFIG)
    s2s = M.EncoderDecoder(CONFIG)
    _, cache = gpt.forward_cached(ids)
    memory = s2s.encode(ids)
    return [
        (lambda: gpt(array(np.full((2, 4), 19))), r"expected every entry of idx in \[0, 19\) "
                                                  r"\(vocab_size=19\), got 19"),
        (lambda: gpt(array(np.zeros((1, 9), dtype=np.int64))),
         r"expected idx with 1 to block_size=8 positions, got shape \(1, 9\)"),
        (lambda: gpt(array(np.zeros((2, 4)))), "expected idx to have an integer dtype, got float64"),
        (lambda: gpt(ids, array(np.zeros((2, 3), dtype=np.int64))),
         r"expected targets of shape \(2, 4\), got \(2, 3\)"),
        (lambda: enc(ids, attention_mask=array(np.ones((2, 5), dtype=bool))),
         r"expected attention_mask of shape \(2, 4\) \(True at real tokens\), got \(2, 5\)"),
        (lambda: gpt.forward_cached(ids[:1, :1], cache),
         r"expected cache\[0\]\[0\] of shape \(1, 2, 4, 8\) .*, got \(2, 2, 4, 8\)"),
        (lambda: gpt.forward_cached(ids[:, :1], cache[:1]),
         "expected cache to be what forward_cached returned, one .K, V. pair for each of the "
         "n_layers=2 layers, got tuple of length 1"),
        (lambda: gpt.forward_cached(ids[:, :1], (cache[0], (cache[1][0], cache[1][1][:, :, :3]))),
         r"expected cache\[1\]\[1\] of shape \(2, 2, 4, 8\) .*, got \(2, 2, 3, 8\)"),
        (lambda: s2s.decode(ids[:1], memory),
         r"expected memory of shape \(1, 4, 16\) \(\(B, S, d_model\), B as in tgt_idx\), got \(2, 4, 16\)"),
        (lambda: s2s.decode(ids, memory[..., :8]), r"expected memory of shape \(2, 4, 16\)"),
        (lambda: qa(ids, array(np.array([0, 4])), array(np.array([0, 1]))),
         r"expected every entry of start_positions in \[0, 4\).*got 4"),
    ]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_model_with_bad_input_raises_at_its_entry(checks, backend):
    M, array = BACKENDS[backend]
    for call, message in _bad_model_inputs(M, array):
        checks.clear()
        with pytest.raises(ValueError, match=message):
            call()
        assert _inside_trusted(checks) == [], "the error came from inside the model"
        assert v.checking()


# -- the flag: exceptions, nesting, threads -------------------------------------------------

def test_trusted_is_left_by_an_exception_and_nests():
    assert v.checking()
    with pytest.raises(KeyError):
        with v.trusted():
            assert not v.checking()
            raise KeyError("inside")
    assert v.checking()
    with v.trusted():
        with v.trusted():
            assert not v.checking()
        assert not v.checking()                            # the outer block still holds
    assert v.checking()


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_error_inside_a_model_restores_the_checks(backend, monkeypatch):
    """A layer that fails mid-forward (here: a patched block) leaves the checks on."""
    M, array = BACKENDS[backend]
    model = M.GPT(CONFIG)

    def broken(*args, **kwargs):
        assert not v.checking()                            # we are inside the model
        raise RuntimeError("a layer failed")

    monkeypatch.setattr(model.blocks[0], "forward", broken)
    if backend == "torch":                                 # nn.Module calls forward through __call__
        monkeypatch.setattr(model.blocks[0], "__call__", broken, raising=False)
        model.blocks[0].forward = broken
    with pytest.raises(RuntimeError, match="a layer failed"):
        model(array(np.zeros((1, 3), dtype=np.int64)))
    assert v.checking()
    with pytest.raises(ValueError, match="expected eps in"):
        M.layer_norm(array(np.ones((2, 3))), array(np.ones(3)), array(np.zeros(3)), eps=0.0)


def test_trusted_is_per_thread():
    """While one thread is inside trusted(), another still checks its direct calls."""
    inside, done = threading.Event(), threading.Event()
    seen = {}

    def model_thread():
        with v.trusted():
            seen["model thread checking"] = v.checking()
            inside.set()
            done.wait(10)

    worker = threading.Thread(target=model_thread)
    worker.start()
    try:
        assert inside.wait(10)
        assert v.checking()
        with pytest.raises(ValueError, match=r"expected eps in \(0.0, inf\), got 0.0"):
            T.layer_norm(torch.ones(2, 3), torch.ones(3), torch.zeros(3), eps=0.0)
    finally:
        done.set()
        worker.join(10)
    assert seen == {"model thread checking": False}


# -- kept from the fast checks ----------------------------------------------------------------

def test_linear_under_autocast_still_promotes_the_bias_sum():
    x, W, b = torch.randn(3, 4), torch.randn(4, 5), torch.randn(5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = T.linear(x, W, b)
    assert y.dtype == torch.float32  # bf16 product + float32 bias, promoted (not in place)
    assert torch.equal(y, (x.bfloat16() @ W.bfloat16()).float() + b)


def test_reference_loss_refuses_backward_after_forward_cached():
    """forward_cached overwrites the layers' caches: a loss from before it can no longer
    be differentiated, and says so instead of mixing two calls' caches."""
    model = R.GPT(CONFIG)
    ids = np.zeros((2, 4), dtype=np.int64)
    _, loss = model(ids, ids)
    model.forward_cached(ids[:, :1])
    with pytest.raises(RuntimeError, match="the model ran another forward after this loss"):
        loss.backward()
