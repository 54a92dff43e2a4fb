"""Whole-model parity: the NumPy reference and the torch backend build the same
parameters from the same seed and compute the same logits, loss and gradients.

Tolerances: see ``tests/model_helpers.py`` (float64: the parity contract's rtol 1e-7 /
atol 1e-9, docs/architecture.md; float32: rtol 1e-4, atol 1e-5, with the reason written
there).
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

import minillm.reference as R  # noqa: E402
import minillm.torch_backend as T  # noqa: E402
from minillm.core.config import ModelConfig  # noqa: E402

from parity import dump_diff_log  # noqa: E402

from model_helpers import (  # noqa: E402
                           KINDS, assert_model_close, build, call, grads, make_batch, small_configs, to_np,
)


@pytest.fixture(scope="module", autouse=True)
def _write_diff_report():
    """The largest differences seen, as JSON, when $MINILLM_DIFF_REPORT names a file."""
    yield
    dump_diff_log()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("tie", [False, True])
@pytest.mark.parametrize("positional", ["learned", "sinusoidal"])
def test_same_names_shapes_order_and_bitwise_same_init(kind, tie, positional):
    config = ModelConfig(vocab_size=17, block_size=8, d_model=16, n_heads=4, n_layers=2,
                         tie_embeddings=tie, positional=positional)
    ref, tor = build(R, kind, config, seed=3), build(T, kind, config, seed=3)
    ref_named = [(n, tuple(p.shape), str(p.data.dtype)) for n, p in ref.named_parameters()]
    tor_named = [(n, tuple(p.shape), str(p.dtype).replace("torch.", ""))
                 for n, p in tor.named_parameters()]
    assert ref_named == tor_named
    for (name, p), (_, q) in zip(ref.named_parameters(), tor.named_parameters()):
        np.testing.assert_array_equal(p.data, to_np(q), err_msg=name)
    # the same through state_dict (torch's state dict has no buffer of positions)
    assert list(ref.state_dict()) == list(tor.state_dict()) == [n for n, *_ in ref_named]
    names = [n for n, *_ in ref_named]
    assert ("pos_emb.W" in names) == (positional == "learned")
    head = "head.W" if kind == "SequenceClassifier" else "lm_head.W"
    assert (head in names) == (kind == "SequenceClassifier" or not tie)


def test_another_seed_gives_other_weights_and_init_rules():
    config = ModelConfig(vocab_size=17, block_size=8, d_model=16, n_heads=2, n_layers=2)
    a, b = R.GPT(config, seed=0), R.GPT(config, seed=1)
    assert not np.array_equal(a.tok_emb.W.data, b.tok_emb.W.data)
    for name, p in a.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "gamma":
            assert np.all(p.data == 1), name
        elif leaf.startswith("b"):
            assert np.all(p.data == 0), name
        else:
            assert p.data.dtype == np.float32
            assert 0.0 < p.data.std() < 0.03, name


@given(config=small_configs(), kind=st.sampled_from(KINDS), B=st.integers(1, 3),
       T_=st.integers(1, 8), seed=st.integers(0, 2**16))
def test_logits_loss_and_every_gradient_agree(config, kind, B, T_, seed):
    ref, tor = build(R, kind, config, seed), build(T, kind, config, seed)
    idx, targets, mask = make_batch(kind, config, B, T_, seed)
    logits_r, loss_r = call(ref, kind, idx, targets, mask)
    logits_t, loss_t = call(tor, kind, idx, targets, mask)
    dt = config.dtype
    assert logits_r.dtype == np.dtype(dt) and str(logits_t.dtype) == f"torch.{dt}"
    assert_model_close(f"{kind} logits", logits_r, logits_t, dt)
    assert isinstance(loss_r, float) and loss_t.dtype == logits_t.dtype
    assert_model_close(f"{kind} loss", np.asarray(loss_r, dtype=dt), loss_t, dt)
    loss_r.backward()
    loss_t.backward()
    g_r, g_t = grads(ref), grads(tor)
    for name in g_t:
        assert g_r[name].dtype == np.dtype(dt), name
        assert_model_close(f"{kind} grad {name}", g_r[name], g_t[name], dt)


@settings(max_examples=10)
@given(config=small_configs(dtypes=("float64",)), kind=st.sampled_from(KINDS),
       seed=st.integers(0, 2**16))
def test_dropout_masks_are_the_same_in_both_backends(config, kind, seed):
    """Dropout draws from the model's numpy Generator in the same order in both backends,
    so a training-mode forward with dropout > 0 still agrees."""
    import dataclasses

    config = dataclasses.replace(config, dropout=0.3)
    ref, tor = build(R, kind, config, seed), build(T, kind, config, seed)
    idx, targets, mask = make_batch(kind, config, 2, 6, seed)
    for _ in range(2):  # the generators advance identically, call after call
        logits_r, loss_r = call(ref, kind, idx, targets, mask)
        logits_t, loss_t = call(tor, kind, idx, targets, mask)
        assert_model_close("dropout logits", logits_r, logits_t, "float64")
        loss_r.backward()
        loss_t.backward()
    for name, g in grads(tor).items():
        assert_model_close(f"dropout grad {name}", grads(ref)[name], g, "float64")
    # dropout really acted: train and eval outputs differ, eval is deterministic
    ref.eval()
    tor.eval()
    e1, _ = call(ref, kind, idx, targets, mask)
    e2, _ = call(ref, kind, idx, targets, mask)
    np.testing.assert_array_equal(e1, e2)
    assert not np.allclose(e1, logits_r)
    assert_model_close("eval logits", e1, call(tor, kind, idx, targets, mask)[0], "float64")


@pytest.mark.parametrize("kind", KINDS)
def test_fast_path_matches_the_explicit_path(kind):
    """The whole fast path (set_fused; tests/ops/test_fast_path.py covers every variant)."""
    config = ModelConfig(vocab_size=23, block_size=8, d_model=16, n_heads=4, n_layers=2,
                         dtype="float64")
    model = build(T, kind, config, seed=5)
    idx, targets, mask = make_batch(kind, config, 3, 8, seed=5)
    logits, loss = call(model, kind, idx, targets, mask)
    loss.backward()
    explicit = grads(model)
    model.zero_grad()
    model.set_fused(True)
    assert all(m.fused for m in model.modules() if isinstance(m, T.MultiHeadAttention))
    logits_f, loss_f = call(model, kind, idx, targets, mask)
    loss_f.backward()
    assert_model_close("fused logits", logits_f, logits, "float64")
    for name, g in grads(model).items():
        assert_model_close(f"fused grad {name}", g, explicit[name], "float64")
    assert not hasattr(build(R, kind, config), "set_fused")  # torch only


def test_tied_embedding_gradient_sums_both_uses():
    """With tied weights, d(tok_emb.W) = (input use) + (output use); check against the
    untied model, whose two matrices hold the same values."""
    tied = ModelConfig(vocab_size=19, block_size=8, d_model=16, n_heads=2, n_layers=1,
                       dtype="float64", tie_embeddings=True)
    untied = ModelConfig(**{**tied.to_dict(), "tie_embeddings": False})
    a, b = R.GPT(tied, seed=2), R.GPT(untied, seed=2)
    state = a.state_dict()
    state["lm_head.W"] = state["tok_emb.W"].T.copy()
    b.load_state_dict(state)
    idx, targets, _ = make_batch("GPT", tied, 2, 8, seed=2)
    la, loss_a = a(idx, targets)
    lb, loss_b = b(idx, targets)
    np.testing.assert_allclose(la, lb, rtol=1e-12, atol=1e-14)
    loss_a.backward()
    loss_b.backward()
    summed = b.tok_emb.W.grad + b.lm_head.W.grad.T
    np.testing.assert_allclose(a.tok_emb.W.grad, summed, rtol=1e-10, atol=1e-14)
