"""Batched generation: rows of different lengths decoded together, each as if alone.

- padding never changes a real row's logits: other pad ids give the same logits bit for
  bit (a masked key's weight is exactly 0), and each row's logits, prefill and a cached
  step after it, equal the row's alone (float64: 1e-12, the same sums over other shapes;
  float32: 1e-5 relative), for learned positions, sinusoidal, RoPE and the Llama-style
  decoder (RMSNorm, SwiGLU, grouped-query attention, QK-norm, split-halves RoPE), on the
  reference, the torch explicit path and the torch fast path;
- generate() on a batch gives each row the tokens of its solo run (greedy and seeded
  sampling, with and without the cache, past block_size, stopping at eos), drawn by
  hypothesis over batch sizes and prompt lengths; float64 weights, so that no two logits
  are close enough for rounding to flip an arg-max or a draw;
- DecodeBatch lets rows join and leave between steps (what the server builds on), each
  row still equal to its solo run;
- the KVCache row operations and the errors.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minillm import ModelConfig
from minillm.store.runtime import Runtime
from minillm.train.generation import DecodeBatch, generate

SMALL = dict(vocab_size=37, block_size=12, d_model=32, n_heads=4, n_layers=2, dtype="float64")
CONFIGS = {
    "learned": ModelConfig(**SMALL),
    "sinusoidal-post-norm": ModelConfig(**SMALL, norm_first=False, positional="sinusoidal",
                                        tie_embeddings=True),
    "rope": ModelConfig(**SMALL, positional="rope"),
    "llama": ModelConfig(**SMALL, norm="rms", activation="swiglu", n_kv_heads=2, qk_norm=True,
                         positional="rope", rope_layout="half", rope_theta=5e5, bias=False),
}
# (backend, fused): the reference, torch's explicit formulas, torch's fast path
PATHS = [("numpy", False), ("torch", False), ("torch", True)]
PATH_IDS = ["numpy", "torch-explicit", "torch-fused"]


def _model(path, config, seed=1):
    backend, fused = path
    rt = Runtime(backend, fused=fused)
    return rt, rt.prepare(rt.module.GPT(config, seed=seed)).eval()


def _padded(rows, pad_id=0):
    T = max(len(r) for r in rows)
    ids = np.array([[pad_id] * (T - len(r)) + list(r) for r in rows])                  # (B, T)
    mask = np.array([[False] * (T - len(r)) + [True] * len(r) for r in rows])         # (B, T)
    return ids, mask


ROWS = [[5, 9, 2, 11, 3, 7], [4, 1], [8], [6, 6, 6, 30]]


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("path", PATHS, ids=PATH_IDS)
def test_padding_never_changes_a_real_rows_logits(path, name):
    rt, model = _model(path, CONFIGS[name])
    np_ = rt.to_numpy
    ids, mask = _padded(ROWS)
    step = np.array([[3], [17], [0], [29]])                                           # (B, 1)
    step_mask = np.concatenate([mask, np.ones((len(ROWS), 1), bool)], axis=1)         # (B, T+1)
    with rt.no_grad():
        logits, cache = model.forward_cached(rt.tensor(ids), None, rt.tensor(mask))
        after, _ = model.forward_cached(rt.tensor(step), cache, rt.tensor(step_mask))
        # other pad ids: the same logits at every real position, bit for bit
        other = np.where(mask, ids, (ids * 7 + 13) % 37)
        logits2, cache2 = model.forward_cached(rt.tensor(other), None, rt.tensor(mask))
        after2, _ = model.forward_cached(rt.tensor(step), cache2, rt.tensor(step_mask))
        np.testing.assert_array_equal(np_(logits)[mask], np_(logits2)[mask])
        np.testing.assert_array_equal(np_(after), np_(after2))
        for b, row in enumerate(ROWS):                                                # each row alone
            alone, solo_cache = model.forward_cached(rt.tensor(np.array([row])))
            alone_after, _ = model.forward_cached(rt.tensor(step[b:b + 1]), solo_cache)
            L = len(row)
            # float64: the same terms summed in matrices of other shapes (masked keys add 0)
            np.testing.assert_allclose(np_(logits)[b, -L:], np_(alone)[0], rtol=1e-12, atol=1e-12,
                                       err_msg=f"prefill logits of row {b}")
            np.testing.assert_allclose(np_(after)[b], np_(alone_after)[0], rtol=1e-12, atol=1e-12,
                                       err_msg=f"cached-step logits of row {b}")


@pytest.mark.parametrize("path", PATHS, ids=PATH_IDS)
def test_padding_in_float32_within_rounding(path):
    config = ModelConfig(**{**SMALL, "dtype": "float32"}, norm="rms", activation="swiglu", n_kv_heads=2,
                         qk_norm=True, positional="rope", rope_layout="half", bias=False)
    rt, model = _model(path, config)
    ids, mask = _padded(ROWS)
    with rt.no_grad():
        logits, _ = model.forward_cached(rt.tensor(ids), None, rt.tensor(mask))
        for b, row in enumerate(ROWS):
            alone, _ = model.forward_cached(rt.tensor(np.array([row])))
            # float32 sums regrouped by other shapes: 1e-5 relative, 1e-5 absolute
            np.testing.assert_allclose(rt.to_numpy(logits)[b, -len(row):], rt.to_numpy(alone)[0],
                                       rtol=1e-5, atol=1e-5, err_msg=f"row {b}")


_prompts = st.lists(st.lists(st.integers(0, 36), min_size=1, max_size=15), min_size=1, max_size=5)
_sampling = st.sampled_from([dict(temperature=0.0), dict(temperature=1.0, top_k=10),
                             dict(temperature=0.8, top_p=0.9)])


@pytest.mark.parametrize("name", ["learned", "llama"])
@pytest.mark.parametrize("path", PATHS, ids=PATH_IDS)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prompts=_prompts, sampling=_sampling, n_new=st.integers(0, 9), use_cache=st.booleans(),
       seed=st.integers(0, 2**16))
def test_each_row_of_a_batch_is_its_solo_run(path, name, prompts, sampling, n_new, use_cache, seed):
    # prompts up to 15 tokens and up to 9 new ones: block_size 12 is passed, the window slides
    rt, model = _model(path, CONFIGS[name])
    seeds = [seed + i for i in range(len(prompts))]
    solo = [generate(rt, model, p, n_new, seed=s, use_cache=use_cache, **sampling)
            for p, s in zip(prompts, seeds)]
    # an end token that one row meets early (when there is one): rows then stop apart
    eos = next((r[len(r) // 2] for r in solo if len(r) > 1), None)
    if eos is not None:
        solo = [generate(rt, model, p, n_new, seed=s, use_cache=use_cache, eos_id=eos, **sampling)
                for p, s in zip(prompts, seeds)]
    got = generate(rt, model, prompts, n_new, seed=seeds, use_cache=use_cache, eos_id=eos, **sampling)
    assert got == solo
    for row in got:                                   # nothing after a row's end token
        assert eos not in row[:-1]


def test_a_batch_agrees_between_backends():
    prompts = [[5, 9, 2], [1], list(range(1, 12))]
    results = {}
    for path, pid in zip(PATHS, PATH_IDS):
        rt, model = _model(path, CONFIGS["llama"])
        results[pid] = generate(rt, model, prompts, 10, temperature=0.9, top_k=12, seed=[1, 2, 3])
    assert results["numpy"] == results["torch-explicit"] == results["torch-fused"]
    assert [len(r) for r in results["numpy"]] == [10, 10, 10]


@pytest.mark.parametrize("path", PATHS, ids=PATH_IDS)
def test_rows_join_and_leave_between_steps(path):
    """The server's pattern: requests arrive while others are being decoded, one leaves
    early; every row's tokens equal its solo run."""
    rt, model = _model(path, CONFIGS["llama"])
    requests = {"a": ([5, 9, 2, 11], 9, dict(temperature=0.0), 0),
                "b": ([1, 2], 6, dict(temperature=1.0, top_p=0.9), 4),
                "c": (list(range(3, 12)), 8, dict(temperature=0.7, top_k=5), 9),
                "d": ([7], 5, dict(temperature=0.0), 0)}
    solo = {name: generate(rt, model, p, n, seed=s, **opt) for name, (p, n, opt, s) in requests.items()}
    batch = DecodeBatch(rt, model)
    keys, got = {}, {name: [] for name in requests}

    def join(name):
        p, n, opt, s = requests[name]
        keys[name] = batch.add(p, n, seed=s, **opt)

    join("a")
    for i in range(12):
        if i == 2:
            join("b")
            join("c")
        if i == 4:
            join("d")
        if i == 5:                                     # "c" goes away after 3 tokens
            assert got["c"] == batch.remove(keys["c"])
        out = batch.step()
        for name, key in keys.items():
            if key in out:
                got[name].append(out[key])
        # the cache holds only unfinished rows, as long as the longest of them
        if batch._cache is not None:
            assert batch._cache[0].keys.shape[0] == len(batch._cached) == batch._mask.shape[0]
            assert batch._mask[:, 0].any()
    assert not batch.active
    assert got["a"] == solo["a"] and got["b"] == solo["b"] and got["d"] == solo["d"]
    assert got["c"] == solo["c"][:3]


def test_seeds_per_row():
    rt, model = _model(PATHS[0], CONFIGS["learned"])
    same = generate(rt, model, [[3, 4], [3, 4]], 8, seed=5)
    assert same[0] == same[1] == generate(rt, model, [3, 4], 8, seed=5)
    apart = generate(rt, model, [[3, 4], [3, 4]], 8, seed=[5, 6])
    assert apart[0] == same[0] and apart[1] == generate(rt, model, [3, 4], 8, seed=6)
    assert apart[0] != apart[1]          # these two seeds draw differently (checked once, fixed)
    with pytest.raises(ValueError, match="a list of seeds needs a batch of as many prompts: got 3 seeds for 2"):
        generate(rt, model, [[3, 4], [3, 4]], 8, seed=[1, 2, 3])


def test_a_two_dimensional_array_is_a_batch_and_a_1d_one_a_prompt():
    rt, model = _model(PATHS[0], CONFIGS["learned"])
    rows = np.array([[1, 2, 3], [4, 5, 6]])
    got = generate(rt, model, rows, 4, temperature=0.0)
    assert got == [generate(rt, model, r, 4, temperature=0.0) for r in rows.tolist()]
    assert all(isinstance(t, int) for t in generate(rt, model, rows[0], 4, temperature=0.0))


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_kv_cache_rows_take_left_pad_and_cat(backend):
    rt = Runtime(backend)
    KV = rt.module.KVCache
    keys = np.arange(3 * 2 * 4 * 2, dtype=np.float64).reshape(3, 2, 4, 2)            # (B, H_kv, P, D)
    kv = KV(rt.tensor(keys), rt.tensor(-keys))
    taken = kv.take([2, 0], start=1)
    np.testing.assert_array_equal(rt.to_numpy(taken.keys), keys[[2, 0], :, 1:])
    np.testing.assert_array_equal(rt.to_numpy(taken.values), -keys[[2, 0], :, 1:])
    padded = taken.left_pad(6)
    assert padded.length == 6 and padded.keys.shape == (2, 2, 6, 2)
    np.testing.assert_array_equal(rt.to_numpy(padded.keys)[:, :, :3], 0)
    np.testing.assert_array_equal(rt.to_numpy(padded.keys)[:, :, 3:], keys[[2, 0], :, 1:])
    both = KV.cat([padded, kv.left_pad(6)])
    assert both.keys.shape == (5, 2, 6, 2) and type(both) is KV
    np.testing.assert_array_equal(rt.to_numpy(both.values)[2:, :, 2:], -keys)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_errors(backend):
    rt, model = _model((backend, False), CONFIGS["learned"])
    ids = rt.tensor(np.array([[1, 2, 3]]))
    with pytest.raises(ValueError, match=r"attention_mask"):
        model.forward_cached(ids, None, rt.tensor(np.ones((1, 2), bool)))
    _, cache = model.forward_cached(ids)
    with pytest.raises(ValueError, match=r"attention_mask"):           # must cover cached + new: (1, 4)
        model.forward_cached(rt.tensor(np.array([[4]])), cache, rt.tensor(np.ones((1, 1), bool)))
    with pytest.raises(ValueError, match=r"prompt 1 of the batch: prompt_ids must be in \[0, 37\), "
                                         r"got values in \[0, 99\]"):
        generate(rt, model, [[1, 2], [0, 99]], 3)
    with pytest.raises(ValueError, match=r"prompt 0 of the batch: prompt_ids must be a non-empty"):
        generate(rt, model, [[], [1]], 3)
    with pytest.raises(ValueError, match=r"eos_id must be a token id in \[0, 37\) or None, got 37"):
        generate(rt, model, [1, 2], 3, eos_id=37)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_positions_past_the_rope_tables_are_refused(backend):
    rt, model = _model((backend, False), CONFIGS["rope"])
    attn = model.blocks[0].attn
    x = rt.tensor(np.zeros((1, 2, SMALL["d_model"])))
    with pytest.raises(ValueError, match=r"expected positions below rope_positions=12, got 12"):
        attn.forward_cached(x, None, None, rt.tensor(np.array([[3, 12]])))


def test_the_benchmark_runs_and_its_rows_agree():
    """benchmarks/bench_batched_generation.py on a tiny model, so that it cannot rot (its
    timings are not judged: a shared machine is no place for speed thresholds)."""
    from dataclasses import replace

    import minillm.bench
    minillm.bench.load_harness()                      # benchmarks/ on sys.path
    import bench_batched_generation as script

    config = replace(script._config(True, 3), d_model=16, n_heads=2, n_kv_heads=1, n_layers=1)
    for backend in ("numpy", "torch"):
        row = script.bench(backend, config, new_tokens=3, repeats=1)
        assert row["same_rows"] == 8
        assert row["together"] > 0 and row["alone"] > 0 and row["ratio"] > 0
        assert row["low"] is None and row["verdict"] == "within noise"     # one round: no interval
