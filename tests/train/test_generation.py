"""Generation: the KV cache changes nothing but the work done; one seed, one text.

- forward_cached, fed the sequence in chunks, gives the logits of a full forward
  (float64: 1e-12 — the same sums in a different grouping; float32: 1e-5 relative);
- generate() gives the same tokens with and without the cache, in both backends,
  for greedy and sampled decoding, also past block_size (where the window slides);
- the two backends give the same tokens for the same seed (float64 weights, so that
  no logit is close enough to another for rounding to flip an arg-max or a draw).
"""
import numpy as np
import pytest
import torch

import minillm.reference as R
import minillm.torch_backend as TB
from minillm import ModelConfig
from minillm.train.generation import generate
from minillm.store.runtime import Runtime

CONFIGS = [
    ModelConfig(vocab_size=37, block_size=16, d_model=32, n_heads=4, n_layers=2, dtype="float64"),
    ModelConfig(vocab_size=37, block_size=16, d_model=32, n_heads=2, n_layers=2, dtype="float64",
                norm_first=False, positional="sinusoidal", tie_embeddings=True, activation="gelu_tanh"),
]


def _np(x):
    return x.detach().numpy() if hasattr(x, "detach") else np.asarray(x)


@pytest.mark.parametrize("config", CONFIGS, ids=["pre-norm", "post-norm-sinusoidal-tied"])
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_forward_cached_in_chunks_equals_full_forward(backend, config):
    rt = Runtime(backend)
    model = rt.module.GPT(config, seed=3).eval()
    ids = np.random.default_rng(0).integers(0, config.vocab_size, size=(2, config.block_size))
    full, _ = model(rt.tensor(ids))
    cache, pieces = None, []
    with rt.no_grad():
        for lo, hi in ((0, 5), (5, 6), (6, 11), (11, 16)):           # prefill, single steps, chunks
            logits, cache = model.forward_cached(rt.tensor(ids[:, lo:hi]), cache)
            pieces.append(_np(logits))
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), _np(full), rtol=1e-12, atol=1e-12)
    assert cache[0][0].shape == (2, config.n_heads, config.block_size, config.d_model // config.n_heads)
    # one named KVCache per layer, holding every position so far
    assert len(cache) == config.n_layers and all(type(kv) is rt.module.KVCache for kv in cache)
    assert [kv.length for kv in cache] == [config.block_size] * config.n_layers
    assert cache[1].keys is cache[1][0] and cache[1].values is cache[1][1]


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_a_cache_of_plain_key_value_pairs_is_read_as_kv_caches(backend):
    rt = Runtime(backend)
    config = CONFIGS[0]
    model = rt.module.GPT(config, seed=3).eval()
    ids = rt.tensor(np.arange(6).reshape(1, 6) % config.vocab_size)
    with rt.no_grad():
        _, cache = model.forward_cached(ids[:, :4])
        named, _ = model.forward_cached(ids[:, 4:], cache)
        plain, _ = model.forward_cached(ids[:, 4:], tuple((kv.keys, kv.values) for kv in cache))
    np.testing.assert_array_equal(_np(plain), _np(named))


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_cache_cannot_grow_past_block_size(backend):
    rt = Runtime(backend)
    config = CONFIGS[0]
    model = rt.module.GPT(config, seed=0).eval()
    _, cache = model.forward_cached(rt.tensor(np.zeros((1, config.block_size), dtype=np.int64)))
    with pytest.raises(ValueError, match=r"expected at most block_size=16 in all, got 17"):
        model.forward_cached(rt.tensor(np.zeros((1, 1), dtype=np.int64)), cache)


@pytest.mark.parametrize("sampling", [dict(temperature=0.0), dict(temperature=1.0, top_k=10),
                                      dict(temperature=0.8, top_p=0.9)], ids=["greedy", "top-k", "top-p"])
def test_same_tokens_with_and_without_cache_in_both_backends(sampling):
    config = CONFIGS[0]
    prompt = [5, 9, 2]
    results = {}
    for backend in ("numpy", "torch"):
        rt = Runtime(backend)
        model = rt.module.GPT(config, seed=1)
        for use_cache in (True, False):
            # 20 new tokens from a 3-token prompt: past block_size 16, so the window slides
            results[backend, use_cache] = generate(rt, model, prompt, 20, seed=7, use_cache=use_cache, **sampling)
    first = results["numpy", True]
    assert len(first) == 20
    for key, tokens in results.items():
        assert tokens == first, f"{key} generated {tokens}, expected {first}"


def test_float32_cache_matches_full_forward():
    config = ModelConfig(vocab_size=50, block_size=12, d_model=32, n_heads=4, n_layers=2)
    for backend in ("numpy", "torch"):
        rt = Runtime(backend)
        model = rt.module.GPT(config, seed=0).eval()
        ids = np.arange(12)[None] % 50
        full, _ = model(rt.tensor(ids))
        with rt.no_grad():
            first, cache = model.forward_cached(rt.tensor(ids[:, :7]))
            rest, _ = model.forward_cached(rt.tensor(ids[:, 7:]), cache)
        got = np.concatenate([_np(first), _np(rest)], axis=1)
        # float32: sums regrouped across the cache boundary; 1e-5 relative, 1e-5 absolute
        np.testing.assert_allclose(got, _np(full), rtol=1e-5, atol=1e-5)
        assert got.dtype == np.float32


def test_generation_stops_at_eos_and_validates():
    config = CONFIGS[0]
    rt = Runtime("numpy")
    model = R.GPT(config, seed=1)
    greedy = generate(rt, model, [5, 9, 2], 10, temperature=0.0)
    eos = greedy[3]
    stopped = generate(rt, model, [5, 9, 2], 10, temperature=0.0, eos_id=eos)
    assert stopped == greedy[:greedy.index(eos) + 1]
    with pytest.raises(ValueError, match=r"prompt_ids must be in \[0, 37\), got values in \[0, 99\]"):
        generate(rt, model, [0, 99], 3)
    with pytest.raises(ValueError, match="non-empty 1-D"):
        generate(rt, model, [], 3)
    with pytest.raises(ValueError, match="max_new_tokens must be an int >= 0"):
        generate(rt, model, [1], -1)


def test_generation_leaves_training_mode_alone():
    model = TB.GPT(CONFIGS[0], seed=0).train()
    generate(Runtime("torch"), model, [1, 2], 2)
    assert model.training
    assert torch.is_grad_enabled()                # no_grad is scoped to generate()
