"""Smoke tests of the benchmark code (benchmarks/harness.py and yardstick.py, ``minillm bench``) on tiny sizes,
so that it cannot rot; the timings themselves are not judged here (a shared CI machine
is no place for speed thresholds), only that every part runs and reports consistently."""
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import minillm.bench
from minillm.cli import main

bench = minillm.bench.load_harness()    # benchmarks/harness.py of this checkout

MICRO = bench.BenchSize("micro", bench._gpt(1, 2, 16, 8, vocab_size=32), 2)


def test_thread_limit_sets_and_restores_torch_threads():
    before = torch.get_num_threads()
    with bench.thread_limit(1) as info:
        assert torch.get_num_threads() == 1 and info["torch_threads"] == 1
        assert info["threads"] == 1 and info["blas"]
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="n_threads must be an int >= 1, got 0"):
        with bench.thread_limit(0):
            pass


def test_train_rows_cover_every_variant_with_memory():
    rows = bench.bench_train([MICRO], repeats=1, warmup=1)
    assert [r["variant"] for r in rows] == list(bench.TRAIN_VARIANTS)
    for r in rows:
        assert r["median_s"] > 0 and r["min_s"] <= r["median_s"] and r["n"] == 1
        assert r["activations_mib"] > 0, r["variant"]
    ref = rows[0]
    assert ref["peak_mib"] >= ref["activations_mib"]   # the step's peak holds the activations
    assert all(r["peak_mib"] is None for r in rows[1:])  # torch on the CPU: not measurable


def test_explicit_attention_keeps_the_weights_the_fused_kernel_does_not():
    """The explicit path saves softmax weights (B, H, T, T) per layer for the backward."""
    size = bench.BenchSize("t64", bench._gpt(1, 4, 32, 64, vocab_size=32), 4)
    rows = {r["variant"]: r for r in bench.bench_train([size], variants=("torch_explicit", "torch_fused"),
                                                       repeats=1, warmup=0)}
    weights_mib = 4 * 4 * 64 * 64 * 4 / 2**20                # B H T T float32 = 0.25 MiB
    saved = rows["torch_explicit"]["activations_mib"] - rows["torch_fused"]["activations_mib"]
    assert saved >= weights_mib * 0.99, saved


def test_generation_same_tokens_with_and_without_cache():
    rows = bench.bench_generate(new_tokens=6, block_size=8)
    assert {(r["backend"], r["use_cache"]) for r in rows} == {
        ("numpy", True), ("numpy", False), ("torch", True), ("torch", False)}
    heads = {tuple(r["tokens_head"]) for r in rows}
    assert len(heads) == 1 and all(r["new_tokens"] == 6 for r in rows)
    with pytest.raises(ValueError, match="new_tokens must be <= block_size=8"):
        bench.bench_generate(new_tokens=9, block_size=8)


def test_flops_per_token_by_hand():
    c = bench._gpt(2, 2, 8, 4, vocab_size=10)                # d_ff = 32
    n = 2 * (4 * 8 * 8 + 2 * 8 * 32) + 8 * 10                # 1104 weights a token meets
    assert bench.flops_per_token(c) == 6 * n + 12 * 2 * 4 * 8


def test_targets_are_ratios_of_the_same_run():
    train = [{"size": "small", "variant": v, "median_s": t}
             for v, t in [("reference", 3.0), ("torch_explicit", 2.0), ("torch_fused+compile", 1.0),
                          ("torch_nn", 1.0)]]
    gen = [{"backend": "numpy", "use_cache": True, "seconds": 1.0, "new_tokens": 256},
           {"backend": "numpy", "use_cache": False, "seconds": 4.0, "new_tokens": 256}]
    targets = bench.check_targets(train, gen)
    assert [(t["ratio"], t["met"]) for t in targets] == [(1.0, True), (2.0, False), (3.0, False), (0.5, True),
                                                         (4.0, False)]
    assert [t["limit"] for t in targets] == [1.05, 1.6, 2.0, 1.0, 10.0]       # issue 16's targets
    assert targets[0]["target"].startswith("torch fused / plain torch.nn")
    assert bench.check_targets([], []) == []                  # nothing measured, nothing claimed


def test_path_ratios_pair_rows_of_the_same_size_and_threads():
    train = [{"size": "small", "variant": v, "threads": n, "median_s": t * n}
             for n in (1, 2) for v, t in [("torch_explicit", 3.0), ("torch_fused", 1.5), ("torch_nn", 2.0)]]
    train.append({"size": "tiny", "variant": "torch_nn", "threads": 1, "median_s": 1.0})  # no pair
    assert bench.path_ratios(train) == [
        {"size": "small", "threads": n, "explicit_over_nn": 1.5, "fused_over_nn": 0.75,
         "fused_over_explicit": 0.5} for n in (1, 2)]


def test_cli_bench_writes_results_report_and_plot(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(bench.SIZES, "tiny", replace(MICRO, name="tiny"))
    code = main(["bench", "--sizes", "tiny", "--repeats", "1", "--new-tokens", "4",
                 "--attention-T", "16", "32", "--no-gpu", "--out", str(tmp_path)])
    assert code == 0
    result = json.loads((tmp_path / "results.json").read_text())
    assert {r["variant"] for r in result["train"]} == set(bench.TRAIN_VARIANTS)
    # both thread counts by default, each path against torch.nn in the same run
    assert sorted({(r["threads"], r["variant"]) for r in result["train"]}) == sorted(
        (n, v) for n in (1, 2) for v in bench.TRAIN_VARIANTS)
    assert [t["threads"] for t in result["train_threads"]] == [1, 2]
    assert sorted({r["T"] for r in result["attention"]}) == [16, 32]
    report = (tmp_path / "report.md").read_text()
    assert report.startswith("Machine: ") and "Threads: 1 (torch: 1;" in report
    assert "| tiny | 1/2/16/8, 2 | 1 | reference |" in report
    assert "| tiny | 1/2/16/8, 2 | 2 | torch_fused |" in report
    assert "| torch_explicit / torch_nn | torch_fused / torch_nn |" in report
    assert "| tiny | 1 |" in report and "| tiny | 2 |" in report
    assert (tmp_path / "attention_cost.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "written:" in capsys.readouterr().out


def test_gpu_throughput_code_runs_on_the_cpu_with_bf16_autocast():
    """bench_gpu's code path (autocast, fused attention, both optimizers, MFU arithmetic)
    on a tiny model on the CPU, so that the GPU run cannot fail on a typo."""
    rows = bench.bench_gpu("tiny", batch_size=2, steps=1, warmup=1, device="cpu", peak_flops=1e12)
    assert [r["optimizer"] for r in rows] == ["minillm", "torch_fused"]
    for r in rows:
        expected = r["tokens_per_s"] * bench.flops_per_token(bench.SIZES["tiny"].config) / 1e12
        assert r["mfu"] == pytest.approx(expected) and r["peak_mib"] is None
    assert "| minillm | no |" in bench.format_report(
        {"environment": bench.environment(), "threads": {"threads": 1, "blas": []}, "gpu": rows})
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="needs a CUDA device"):
            bench.bench_gpu("tiny", steps=1)


def test_the_harness_is_the_clones_and_minillm_bench_is_a_deprecated_shim():
    root = Path(__file__).resolve().parents[1]
    assert Path(bench.__file__).resolve() == root / "benchmarks" / "harness.py"
    with pytest.warns(DeprecationWarning, match="moved to benchmarks/harness.py"):
        sizes = minillm.bench.SIZES                           # the old public names still resolve
    assert sizes is bench.SIZES
    with pytest.raises(AttributeError):
        minillm.bench.no_such_name


def test_cli_bench_without_the_benchmarks_folder_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    # a wheel install: no benchmarks/ beside the package
    monkeypatch.setattr(minillm.bench, "BENCHMARKS_DIR", tmp_path / "benchmarks")
    with pytest.raises(ImportError, match="needs the benchmarks/ folder of a minillm clone"):
        minillm.bench.load_harness()
    assert main(["bench", "--sizes", "tiny", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: minillm bench needs the benchmarks/ folder")
    assert "pip install -e ." in err and not (tmp_path / "out").exists()



@pytest.mark.parametrize("sdpa", [False, True])
def test_yardstick_from_minillm_weights_computes_the_same_logits_and_loss(sdpa):
    """bench_whole_run.py starts the yardstick from minillm's initial weights: the mapping
    (names, (in, out) against nn.Linear's (out, in)) must give the same function. Float32,
    the same products in another order: within 1e-5 of the logits' scale (about 1)."""
    from yardstick import PlainGPT                     # benchmarks/ is on sys.path once the harness loaded
    from minillm import torch_backend as TB
    cfg = replace(MICRO.config, n_layers=2)
    ours = TB.GPT(cfg, seed=3)
    plain = PlainGPT(cfg, sdpa=sdpa).load_minillm_weights(ours.state_dict())
    idx = torch.from_numpy(np.random.default_rng(0).integers(0, cfg.vocab_size, (3, cfg.block_size)))
    logits, loss = ours(idx, idx)
    plain_logits, plain_loss = plain(idx, idx)
    torch.testing.assert_close(plain_logits, logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(plain_loss, loss, rtol=1e-5, atol=1e-6)
    assert abs(float(PlainGPT(cfg, sdpa=sdpa)(idx, idx)[1]) - float(loss)) > 1e-3   # the copy did something


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_kv_floor_computes_the_cached_step_and_reports_its_ratios(backend):
    """bench_kv_floor.py's floor step must compute forward_cached's logits (it asserts
    so itself, within 1e-4), and its ratios must be of its own timings."""
    import bench_kv_floor                                   # benchmarks/, on sys.path (above)
    row = bench_kv_floor.measure(backend, "tiny", prefix=4, calls=3, repeats=1)
    assert row["step_ms"] > 0 and row["floor_ms"] > 0 and row["full_ms"] > 0
    assert row["gain"] == pytest.approx(row["full_ms"] / row["step_ms"])
    assert row["best_gain"] == pytest.approx(row["full_ms"] / row["floor_ms"])
