"""Metamorphic properties of the models, in both backends:

- causality: changing tokens after position t never changes GPT's logits at or before t;
- padding: whatever sits in the padded positions, the encoder's (and the classifier's)
  outputs at the real tokens do not change;
- batch order: permuting the examples of a batch permutes the results, nothing else.

Tolerance: float64, rtol 1e-12 / atol 1e-12. The changed inputs produce different
numbers only through rounding (BLAS may block a matrix product differently when other
rows change), which stays ~1e-15; any real leak of information is of order 1e-2.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minillm.reference as R
from minillm.core.config import ModelConfig

from model_helpers import small_configs, to_np

try:
    import minillm.torch_backend as T
    BACKENDS = [R, T]
except ImportError:  # pragma: no cover
    BACKENDS = [R]

TOL = dict(rtol=1e-12, atol=1e-12)
backends = st.sampled_from(BACKENDS)


@settings(max_examples=15)
@given(config=small_configs(dtypes=("float64",)), backend=backends,
       seed=st.integers(0, 2**16), data=st.data())
def test_future_tokens_never_change_earlier_gpt_logits(config, backend, seed, data):
    rng = np.random.default_rng(seed)
    T_ = data.draw(st.integers(2, config.block_size))
    t = data.draw(st.integers(0, T_ - 2))
    model = backend.GPT(config, seed=seed).eval()
    idx = rng.integers(0, config.vocab_size, (2, T_))
    changed = idx.copy()
    changed[:, t + 1:] = rng.integers(0, config.vocab_size, (2, T_ - t - 1))
    a, _ = model(idx)
    b, _ = model(changed)
    a, b = to_np(a), to_np(b)
    np.testing.assert_allclose(b[:, : t + 1], a[:, : t + 1], **TOL)
    # ... and the change is visible later on, so the test can fail
    if not np.array_equal(changed, idx):
        assert not np.allclose(b[:, t + 1:], a[:, t + 1:], rtol=1e-6, atol=1e-9)


@settings(max_examples=15)
@given(config=small_configs(dtypes=("float64",)), backend=backends,
       kind=st.sampled_from(["TransformerEncoder", "SequenceClassifier"]),
       seed=st.integers(0, 2**16), data=st.data())
def test_padding_never_changes_outputs_at_real_tokens(config, backend, kind, seed, data):
    rng = np.random.default_rng(seed)
    n_real = data.draw(st.integers(1, config.block_size - 1))
    n_pad = data.draw(st.integers(1, config.block_size - n_real))
    model = getattr(backend, kind)(config, seed=seed).eval()
    real = rng.integers(0, config.vocab_size, (1, n_real))
    padded = np.concatenate([real, rng.integers(0, config.vocab_size, (1, n_pad))], axis=1)
    mask = np.arange(n_real + n_pad)[None, :] < n_real
    a, _ = model(real)
    b, _ = model(padded, attention_mask=mask)
    a, b = to_np(a), to_np(b)
    if kind == "TransformerEncoder":
        b = b[:, :n_real]
    np.testing.assert_allclose(b, a, **TOL)
    # other pad contents: still the same
    padded[:, n_real:] = rng.integers(0, config.vocab_size, (1, n_pad))
    c, _ = model(padded, attention_mask=mask)
    c = to_np(c)[:, :n_real] if kind == "TransformerEncoder" else to_np(c)
    np.testing.assert_allclose(c, a, **TOL)


@settings(max_examples=10)
@given(config=small_configs(dtypes=("float64",)), backend=backends,
       kind=st.sampled_from(["GPT", "TransformerEncoder", "SequenceClassifier"]),
       seed=st.integers(0, 2**16))
def test_batch_order_changes_no_example(config, backend, kind, seed):
    rng = np.random.default_rng(seed)
    B, T_ = 4, config.block_size
    model = getattr(backend, kind)(config, seed=seed).eval()
    idx = rng.integers(0, config.vocab_size, (B, T_))
    perm = rng.permutation(B)
    if kind == "GPT":
        a, _ = model(idx)
        b, _ = model(idx[perm])
    else:
        mask = np.arange(T_)[None, :] < rng.integers(1, T_ + 1, B)[:, None]
        a, _ = model(idx, attention_mask=mask)
        b, _ = model(idx[perm], attention_mask=mask[perm])
    np.testing.assert_allclose(to_np(b), to_np(a)[perm], **TOL)


def test_the_causal_mask_is_really_applied_and_the_encoder_sees_both_ways():
    """A GPT at position 0 ignores position 1; an encoder at position 0 does not."""
    config = ModelConfig(vocab_size=13, block_size=4, d_model=8, n_heads=2, n_layers=1,
                         dtype="float64")
    for backend in BACKENDS:
        gpt, enc = backend.GPT(config, seed=0), backend.TransformerEncoder(config, seed=0)
        x, y = np.array([[1, 2, 3]]), np.array([[1, 7, 3]])
        np.testing.assert_allclose(to_np(gpt(x)[0])[:, 0], to_np(gpt(y)[0])[:, 0], **TOL)
        assert not np.allclose(to_np(enc(x)[0])[:, 0], to_np(enc(y)[0])[:, 0], rtol=1e-6)
