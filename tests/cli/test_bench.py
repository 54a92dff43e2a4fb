"""Tests of the benchmark code (benchmarks/harness/, yardstick.py, ``minillm bench``): every
part runs on tiny sizes, so that it cannot rot, and the verdict logic is checked on
synthetic timings. The timings themselves are not judged here (a shared CI machine is no
place for speed thresholds)."""
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import minillm.bench
from minillm.cli import main
from minillm.core.config import architecture_fields

bench = minillm.bench.load_harness()    # benchmarks/harness/ of this checkout; its folder now on sys.path
from harness import gpu, ratios, sizes, targets, train_step  # noqa: E402  (the folder above)
from harness.generation import bench_generate  # noqa: E402
from harness.machine import environment  # noqa: E402

MICRO = sizes.BenchSize("micro", sizes.gpt_config(1, 2, 16, 8, vocab_size=32), 2)


def test_train_rows_cover_every_variant_with_memory_and_rounds():
    rows = train_step.bench_train([MICRO], repeats=2, warmup=1)
    assert [r["variant"] for r in rows] == list(train_step.TRAIN_VARIANTS)
    for r in rows:
        assert r["median_s"] > 0 and r["min_s"] <= r["median_s"] and r["n"] == 2
        assert len(r["wall_s"]) == len(r["cpu_s"]) == 2 and min(r["wall_s"]) == r["min_s"]
        assert r["activations_mib"] > 0, r["variant"]
    ref = rows[0]
    assert ref["peak_mib"] >= ref["activations_mib"]   # the step's peak holds the activations
    assert all(r["peak_mib"] is None for r in rows[1:])  # torch on the CPU: not measurable


def test_explicit_attention_keeps_the_weights_the_fused_kernel_does_not():
    """The explicit path saves softmax weights (B, H, T, T) per layer for the backward."""
    size = sizes.BenchSize("t64", sizes.gpt_config(1, 4, 32, 64, vocab_size=32), 4)
    rows = {r["variant"]: r for r in train_step.bench_train([size], variants=("torch_explicit", "torch_fused"),
                                                            repeats=1, warmup=0)}
    weights_mib = 4 * 4 * 64 * 64 * 4 / 2**20                # B H T T float32 = 0.25 MiB
    saved = rows["torch_explicit"]["activations_mib"] - rows["torch_fused"]["activations_mib"]
    assert saved >= weights_mib * 0.99, saved


def test_generation_same_tokens_with_and_without_cache_in_shared_rounds():
    rows = bench_generate(new_tokens=6, block_size=8, repeats=2)
    assert {(r["backend"], r["use_cache"]) for r in rows} == {
        ("numpy", True), ("numpy", False), ("torch", True), ("torch", False)}
    heads = {tuple(r["tokens_head"]) for r in rows}
    assert len(heads) == 1 and all(r["new_tokens"] == 6 for r in rows)
    assert all(len(r["wall_s"]) == len(r["cpu_s"]) == r["n"] == 2 for r in rows)
    with pytest.raises(ValueError, match="new_tokens must be <= block_size=8"):
        bench_generate(new_tokens=9, block_size=8)


def test_flops_per_token_by_hand():
    c = sizes.gpt_config(2, 2, 8, 4, vocab_size=10)           # d_ff = 32
    n = 2 * (4 * 8 * 8 + 2 * 8 * 32) + 8 * 10                # 1104 weights a token meets
    assert gpu.flops_per_token(c) == 6 * n + 12 * 2 * 4 * 8


# -- the verdicts, on synthetic timings ---------------------------------------------------------

def _binomial_tail(n, k):
    """P(Bin(n, 1/2) <= k - 1), by direct sum."""
    from math import comb
    return sum(comb(n, j) for j in range(k)) / 2**n


@pytest.mark.parametrize("n", range(1, 40))
def test_median_interval_is_the_widest_order_statistics_at_95_percent(n):
    """[x_(k), x_(n+1-k)] covers the median with 1 - 2 P(Bin(n, 1/2) <= k-1): the chosen k
    reaches 95%, k + 1 would not; no interval below 6 samples."""
    x = list(range(100, 100 + n))[::-1]                       # distinct, given out of order
    low, high = ratios.median_interval(x)
    if n < ratios.MIN_ROUNDS:
        assert (low, high) == (None, None) and 1 - 2 * _binomial_tail(n, 1) < 0.95
        return
    k = low - 100 + 1                                         # low is x_(k), 1-based
    assert high == 100 + n - k and 1 <= k
    assert 1 - 2 * _binomial_tail(n, k) >= 0.95
    assert 1 - 2 * _binomial_tail(n, k + 1) < 0.95


def test_six_rounds_give_the_first_interval_and_nine_the_second_and_eighth():
    assert ratios.MIN_ROUNDS == 6
    assert ratios.median_interval([3, 1, 2, 6, 5, 4]) == (1, 6)            # 96.9%: min and max
    assert ratios.median_interval([9, 1, 8, 2, 7, 3, 6, 4, 5]) == (2, 8)   # 96.1%


def _row(size, variant, threads, wall, cpu=None):
    return {"size": size, "variant": variant, "threads": threads, "wall_s": list(wall),
            "cpu_s": list(cpu if cpu is not None else wall)}


def test_ratio_is_taken_per_round_so_shared_load_cancels():
    """Each round's load scales both variants (times from 1 to 9 s): the per-round ratio is
    1/1.1 in every round, so its interval has no width although the times spread 9x."""
    load = [5, 1, 9, 3, 7, 2, 8, 4, 6]
    r = ratios.ratio(_row("s", "a", 2, load), _row("s", "b", 2, [1.1 * x for x in load]), "wall")
    assert r.median == pytest.approx(1 / 1.1) and r.low == pytest.approx(1 / 1.1)
    assert r.high == pytest.approx(1 / 1.1) and r.n == 9 and r.measure == "wall"
    with pytest.raises(ValueError, match="same rounds, got 9 and 8 rounds"):
        ratios.ratio(_row("s", "a", 2, load), _row("s", "b", 2, load[:8]), "wall")


def test_the_measure_is_cpu_time_at_one_thread_on_the_cpu_and_wall_time_otherwise():
    assert ratios.measure_for(1, "cpu") == "cpu"
    assert ratios.measure_for(2, "cpu") == ratios.measure_for(1, "cuda") == ratios.measure_for(None, "cpu") == "wall"


def _judge(median, low, high, limit, better="below", n=9):
    t = targets.Target("a", "b", limit, better)
    return targets.verdict(ratios.Ratio(median, low, high, n, "wall"), t)


def test_verdict_is_met_missed_or_within_noise_by_the_interval():
    assert _judge(1.50, 1.45, 1.58, 1.6) == "met"
    assert _judge(1.70, 1.62, 1.80, 1.6) == "missed"
    assert _judge(1.58, 1.52, 1.66, 1.6) == "within noise"        # median below, interval across
    assert _judge(1.62, 1.55, 1.70, 1.6) == "within noise"        # median above, interval across
    assert _judge(1.50, 1.45, 1.60, 1.6) == "met"                 # at the limit: "at most" holds
    assert _judge(12.0, 10.5, 13.0, 10.0, "above") == "met"
    assert _judge(8.0, 7.0, 9.9, 10.0, "above") == "missed"
    assert _judge(10.5, 9.3, 11.5, 10.0, "above") == "within noise"
    assert _judge(1.0, None, None, 1.6, n=5) == "within noise"    # too few rounds for an interval
    with pytest.raises(ValueError, match="expected 'below' or 'above', got 'under'"):
        targets.Target("a", "b", 1.0, "under")


def test_two_runs_whose_medians_fall_either_side_of_a_limit_do_not_flip():
    """Issue 29's case: the explicit path at 1.55 in one run and 1.75 in the next, limit 1.6.
    Per-round ratios scattered as a loaded machine scatters them: both runs say within noise."""
    noise = [-0.25, 0.1, -0.05, 0.2, 0.0, -0.15, 0.3, -0.1, 0.05]
    verdicts = []
    for centre in (1.55, 1.65):
        num = _row("small", "torch_explicit", 2, [centre + d for d in noise])
        den = _row("small", "torch_nn", 2, [1.0] * 9)
        r = ratios.ratio(num, den, "wall")
        assert r.median == pytest.approx(centre)
        verdicts.append(targets.verdict(r, targets.TRAIN_TARGETS[1]))
    assert targets.TRAIN_TARGETS[1].describe() == "torch_explicit / torch_nn train step <= 1.6"
    assert verdicts == ["within noise", "within noise"]


def _synthetic_run():
    """Rounds of the small model at 1 and 2 threads, whose CPU and wall times differ (the
    measure must be the right one), and generation rows of one backend."""
    train = []
    for n in (1, 2):
        for variant, cpu, wall in [("reference", 3.0, 2.0), ("torch_explicit", 2.0, 3.0),
                                   ("torch_fused+compile", 1.0, 1.0), ("torch_nn", 1.0, 2.0)]:
            wobble = [1.0, 1.02, 0.98, 1.01, 0.99, 1.0, 1.03, 0.97, 1.0]   # the same load for all
            train.append({**_row("small", variant, n, [wall * w for w in wobble], [cpu * w for w in wobble]),
                          "n_layers": 4, "n_heads": 4, "d_model": 128, "block_size": 64, "batch_size": 12,
                          "median_s": wall, "min_s": wall * 0.97, "cpu_median_s": cpu, "n": 9,
                          "activations_mib": 1.0, "peak_mib": None})
    gen = [{"backend": "numpy", "use_cache": c, "new_tokens": 256, "block_size": 256, "threads": 1,
            "seconds": s, "cpu_seconds": s, "tokens_per_s": 256 / s, "n": 9,
            "wall_s": [s * (1 + d) for d in (0, .3, -.2, .1, 0, -.1, .2, -.3, 0)], "cpu_s": [s] * 9}
           for c, s in ((True, 1.0), (False, 4.0))]
    return train, gen


def test_targets_judge_the_measure_of_each_thread_count():
    train, gen = _synthetic_run()
    judged = targets.check_targets(train, gen, "cpu")
    got = [(t["target"], t["threads"], t["measure"], round(t["ratio"], 6), t["verdict"]) for t in judged]
    assert got == [
        ("small: torch_fused / torch_nn train step <= 1.05", 1, "cpu", 1.0, "met"),
        ("small: torch_explicit / torch_nn train step <= 1.6", 1, "cpu", 2.0, "missed"),
        ("small: reference / torch_fused train step <= 2", 1, "cpu", 3.0, "missed"),
        ("small: torch_fused / torch_explicit train step <= 1", 1, "cpu", 0.5, "met"),
        ("small: torch_fused / torch_nn train step <= 1.05", 2, "wall", 0.5, "met"),
        ("small: torch_explicit / torch_nn train step <= 1.6", 2, "wall", 1.5, "met"),
        ("small: reference / torch_fused train step <= 2", 2, "wall", 2.0, "met"),     # exactly at the limit
        ("small: torch_fused / torch_explicit train step <= 1", 2, "wall", round(1 / 3, 6), "met"),
        ("numpy: no cache / KV cache generation, 256 new tokens >= 10", 1, "cpu", 4.0, "missed"),
    ]
    assert all(t["low"] == pytest.approx(t["ratio"]) and t["n"] == 9 for t in judged)   # shared load cancels
    assert [t["limit"] for t in judged[:4]] == [1.05, 1.6, 2.0, 1.0]            # issue 16's targets
    assert targets.check_targets([], []) == []                                  # nothing measured, nothing claimed


def test_report_ratio_column_and_targets_are_one_measure_and_header_names_every_count():
    train, gen = _synthetic_run()
    result = {"environment": environment(), "threads": {"threads": 1, "blas": ["openblas 1"]},
              "train": train, "generate": gen, "targets": targets.check_targets(train, gen, "cpu")}
    report = bench.format_report(result)
    assert "Threads measured: train step at 1 and 2; generation at 1 (" in report
    assert "per-round ratios (CPU time at 1 thread, wall-clock time at 2 threads)" in report
    # explicit / nn: CPU 2.0 at one thread, wall 1.5 at two, in the table and in the targets alike
    assert "| 1 | torch_explicit | 3000.0 | 2910.0 | 2000.0 | 2.00x | [2.00, 2.00] |" in report
    assert "| 2 | torch_explicit | 3000.0 | 2910.0 | 2000.0 | 1.50x | [1.50, 1.50] |" in report
    assert "| small: torch_explicit / torch_nn train step <= 1.6 | 1 | CPU time | 2.00 | [2.00, 2.00] | 9 | **missed** |" in report
    assert "| small: torch_explicit / torch_nn train step <= 1.6 | 2 | wall-clock time | 1.50 | [1.50, 1.50] | 9 | met |" in report
    short = [{**r, "wall_s": r["wall_s"][:3], "cpu_s": r["cpu_s"][:3]} for r in train]
    assert "| 1.00x | none (3 < 6 rounds) |" in bench.format_report({**result, "train": short, "targets": []})


def test_cli_bench_writes_results_report_and_plot(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sizes.SIZES, "tiny", replace(MICRO, name="tiny"))
    code = main(["bench", "--sizes", "tiny", "--repeats", "1", "--new-tokens", "4",
                 "--attention-T", "16", "32", "--no-gpu", "--out", str(tmp_path)])
    assert code == 0
    result = json.loads((tmp_path / "results.json").read_text())
    # both thread counts by default, each path against torch.nn in the same run
    assert sorted({(r["threads"], r["variant"]) for r in result["train"]}) == sorted(
        (n, v) for n in (1, 2) for v in train_step.TRAIN_VARIANTS)
    assert [t["threads"] for t in result["train_threads"]] == [1, 2]
    assert sorted({r["T"] for r in result["attention"]}) == [16, 32]
    # one round: no interval, so every verdict of the KV cache says so (tiny has no train targets)
    assert [t["verdict"] for t in result["targets"]] == ["within noise"] * 2
    report = (tmp_path / "report.md").read_text()
    assert report.startswith("Machine: ")
    assert "Threads measured: train step at 1 and 2; generation and attention at 1 (" in report
    assert "| tiny | 1/2/16/8, 2 | 1 | reference |" in report
    assert "| tiny | 1/2/16/8, 2 | 2 | torch_fused |" in report
    assert "| 1.00x | none (1 < 6 rounds) |" in report                # torch_nn against itself
    assert (tmp_path / "attention_cost.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "written:" in capsys.readouterr().out


def test_gpu_throughput_code_runs_on_the_cpu_with_bf16_autocast():
    """bench_gpu's code path (autocast, fused attention, both optimizers, MFU arithmetic)
    on a tiny model on the CPU, so that the GPU run cannot fail on a typo."""
    rows = gpu.bench_gpu("tiny", batch_size=2, steps=1, warmup=1, device="cpu", peak_flops=1e12)
    assert [r["optimizer"] for r in rows] == ["minillm", "torch_fused"]
    for r in rows:
        expected = r["tokens_per_s"] * gpu.flops_per_token(sizes.SIZES["tiny"].config) / 1e12
        assert r["mfu"] == pytest.approx(expected) and r["peak_mib"] is None
    assert "| minillm | no |" in bench.format_report(
        {"environment": environment(), "threads": {"threads": 1, "blas": []}, "gpu": rows})
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="needs a CUDA device"):
            gpu.bench_gpu("tiny", steps=1)


def test_the_harness_is_the_clones_package_and_minillm_bench_only_finds_it():
    root = Path(__file__).resolve().parents[2]
    assert Path(bench.__file__).resolve() == root / "benchmarks" / "harness" / "__init__.py"
    assert {"run_all", "format_report", "plot_attention"} <= set(dir(bench))   # what minillm bench calls
    assert not hasattr(minillm.bench, "SIZES")                 # no moved names kept alive
    assert minillm.bench.__all__ == ["load_harness", "BENCHMARKS_DIR"]


def test_cli_bench_without_the_benchmarks_folder_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    # a wheel install: no benchmarks/ beside the package
    monkeypatch.setattr(minillm.bench, "BENCHMARKS_DIR", tmp_path / "benchmarks")
    with pytest.raises(ImportError, match="needs the benchmarks/ folder of a minillm clone"):
        minillm.bench.load_harness()
    assert main(["bench", "--sizes", "tiny", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: minillm bench needs the benchmarks/ folder")
    assert "pip install -e ." in err and not (tmp_path / "out").exists()



MICRO_LLAMA = sizes.BenchSize("micro-llama", sizes.gpt_config(1, 4, 16, 8, vocab_size=32,
                                                                **architecture_fields("llama", 4)), 2)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
@pytest.mark.parametrize("sdpa", [False, True])
def test_yardstick_from_minillm_weights_computes_the_same_logits_and_loss(sdpa, arch):
    """The yardsticks start from minillm's initial weights (the harness's torch_nn,
    bench_whole_run.py): the mapping (names, (in, out) against nn.Linear's (out, in)) must
    give the same function, so that it times the same math; for the Llama-style one, also
    RMSNorm, SwiGLU, the key/value heads shared by 2 query heads and split-halves RoPE.
    Float32, the same products in another order: within 1e-5 of the logits' scale (about 1)."""
    from yardstick import PlainGPT, PlainLlama, plain_model   # benchmarks/ is on sys.path (the harness)
    from minillm import torch_backend as TB
    cfg = replace((MICRO if arch == "gpt2" else MICRO_LLAMA).config, n_layers=2)
    assert isinstance(plain_model(cfg), PlainLlama if arch == "llama" else PlainGPT)
    ours = TB.GPT(cfg, seed=3)
    plain = plain_model(cfg, sdpa=sdpa).load_minillm_weights(ours.state_dict())
    idx = torch.from_numpy(np.random.default_rng(0).integers(0, cfg.vocab_size, (3, cfg.block_size)))
    logits, loss = ours(idx, idx)
    plain_logits, plain_loss = plain(idx, idx)
    torch.testing.assert_close(plain_logits, logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(plain_loss, loss, rtol=1e-5, atol=1e-6)
    assert abs(float(plain_model(cfg, sdpa=sdpa)(idx, idx)[1].detach()) - float(loss.detach())) > 1e-3   # the copy did something


def test_the_llama_size_is_timed_against_its_own_yardstick_and_judged():
    """small-llama is the "llama" preset at the small shapes (4 query heads, 2 key/value
    heads); its train rows come from minillm's Llama-style GPT and PlainLlama, and the
    targets are judged on it as on small."""
    llama = sizes.SIZES["small-llama"].config
    assert (llama.n_layers, llama.n_heads, llama.d_model, llama.block_size) == (4, 4, 128, 64)
    assert (llama.kv_heads, llama.norm, llama.activation, llama.rope_layout, llama.bias) == (
        2, "rms", "swiglu", "half", False)
    assert sizes.TARGET_SIZES == ("small", "small-llama")
    steps = train_step.train_steps(MICRO_LLAMA, train_step.TRAIN_VARIANTS, "cpu", False)
    from yardstick import PlainLlama
    assert isinstance(steps["torch_nn"].model, PlainLlama)
    assert steps["torch_fused"].model.config.kv_heads == 2
    train, _ = _synthetic_run()
    both = train + [{**r, "size": "small-llama"} for r in train]
    judged = [t["target"] for t in targets.check_targets(both, [], "cpu")]
    assert judged[:4] == judged[4:8] and judged[0].startswith("small: ")
    assert judged[8:] == [t.replace("small: ", "small-llama: ") for t in judged[:8]]


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_kv_floor_computes_the_cached_step_and_reports_its_ratios(backend):
    """bench_kv_floor.py's floor step must compute forward_cached's logits (it asserts
    so itself, within 1e-4), and its ratios must be of its own timings."""
    import bench_kv_floor                                   # benchmarks/, on sys.path (above)
    row = bench_kv_floor.measure(backend, "tiny", prefix=4, calls=3, repeats=1)
    assert row["step_ms"] > 0 and row["floor_ms"] > 0 and row["full_ms"] > 0
    assert row["gain"] == pytest.approx(row["full_ms"] / row["step_ms"])
    assert row["best_gain"] == pytest.approx(row["full_ms"] / row["floor_ms"])
    # the floor is the fewest operations: fewer Python calls than minillm's step, not none
    assert 0 < row["floor_calls"] < row["step_calls"]
