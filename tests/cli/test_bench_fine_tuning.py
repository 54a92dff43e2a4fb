"""benchmarks/bench_lora.py and bench_packing.py on tiny models, so that they cannot rot:
their counts are exact and checked here; their timings are not judged (a shared machine is
no place for speed thresholds)."""
from dataclasses import replace

import numpy as np
import pytest

import minillm.bench
from minillm.core.config import IGNORE_INDEX

pytest.importorskip("torch")
minillm.bench.load_harness()                          # benchmarks/ on sys.path
import bench_lora  # noqa: E402
import bench_packing  # noqa: E402
from harness.sizes import BenchSize, gpt_config  # noqa: E402

TINY = BenchSize("tiny", gpt_config(2, 2, 16, 8, vocab_size=32), 2)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_lora_bench_counts_what_lora_trains_and_keeps(backend):
    r = bench_lora.bench(backend, repeats=1, warmup=0, size=TINY)
    full, lora = r["counts"]["full"], r["counts"]["lora"]
    C, L = TINY.config.d_model, TINY.config.n_layers
    n_lora = L * len(bench_lora.TARGETS) * bench_lora.RANK * (C + C)      # r (d_in + d_out) per projection
    assert full["trained"] == full["parameters"] and lora["trained"] == n_lora
    assert lora["parameters"] == full["parameters"] + n_lora
    assert full["adam_bytes"] == 2 * 4 * full["trained"] and lora["adam_bytes"] == 2 * 4 * n_lora   # m, v float32
    assert full["grad_bytes"] == 4 * full["parameters"]
    if backend == "torch":                 # autograd: no gradient buffer for a frozen weight
        assert lora["grad_bytes"] == 4 * n_lora
    else:                                  # the reference: adapted projections skip dW (and their biases db)
        assert 4 * n_lora < lora["grad_bytes"] < full["grad_bytes"]
    assert all(len(t["wall_s"]) == 1 and t["median_s"] > 0 for t in r["times"].values())


def test_packing_bench_times_the_same_rounds_and_counts_the_answers():
    vocab_size, pad_id, all_batches = bench_packing.batches(repeats=2, warmup=1, per_task=5)
    config = replace(gpt_config(1, 2, 16, bench_packing.BLOCK, vocab_size=vocab_size), dtype="float32")
    for name, bs in all_batches.items():
        assert len(bs) == 3 and all(b["idx"].shape[0] == bench_packing.ROWS[name] for b in bs)
    assert all(b["idx"].shape[1] == bench_packing.BLOCK and "segment_ids" in b for b in all_batches["packed"])
    rounds = bench_packing.bench("torch", vocab_size, all_batches, warmup=1, config=config)
    for name, rs in rounds.items():
        assert len(rs) == 2
        counted = [int((b["targets"] != IGNORE_INDEX).sum()) for b in all_batches[name][1:]]
        assert [r[2] for r in rs] == counted and all(r[0] > 0 for r in rs)
    padded = all_batches["padded"][1]
    assert (padded["idx"] == pad_id).any() and np.all(padded["targets"][padded["idx"] == pad_id] == IGNORE_INDEX)
