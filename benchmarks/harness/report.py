"""The Markdown report of a result: the tables of benchmarks/README.md and ``minillm bench``."""
from __future__ import annotations

from .ratios import MIN_ROUNDS, Ratio, measure_for, train_ratio

__all__ = ["format_report"]

MEASURE_WORDS = {"cpu": "CPU time", "wall": "wall-clock time"}


def _counts(counts) -> str:
    counts = [str(c) for c in counts]
    return " and ".join(counts) if len(counts) < 3 else ", ".join(counts[:-1]) + " and " + counts[-1]


def _spread(r: Ratio) -> str:
    return f"[{r.low:.2f}, {r.high:.2f}]" if r.low is not None else f"none ({r.n} < {MIN_ROUNDS} rounds)"


def _header(result: dict) -> list[str]:
    env, info = result["environment"], result["threads"]
    train_counts = list(dict.fromkeys(r.get("threads") for r in result.get("train") or []))
    others = [name for name in ("generate", "attention", "gpu") if result.get(name)]
    measured = []
    if train_counts:
        measured.append(f"train step at {_counts(train_counts)}")
    if others:
        measured.append(f"{_counts(others).replace('generate', 'generation')} at {info['threads']}")
    blas = ", ".join(info.get("blas") or []) or "none found"
    return [f"Machine: {env['cpu']}, {env['cores']} cores; Python {env['python']}, NumPy "
            f"{env['numpy']}, torch {env['torch']}; device {env['device']}"
            + (f" ({env['gpu']})" if env.get("gpu") else ""),
            f"Threads measured: {'; '.join(measured) or info['threads']} (torch's threads and NumPy's "
            f"BLAS set to each count; BLAS: {blas}); load average at start {env.get('load_average_at_start')}",
            ""]


def _train(rows, device) -> list[str]:
    counts = list(dict.fromkeys(r.get("threads") for r in rows))
    of = ", ".join(f"{MEASURE_WORDS[measure_for(n, device)]} at {n} thread{'s' * (n != 1)}" for n in counts)
    lines = [f"Train step (forward, backward, Adam), float32, {rows[0]['n']} interleaved rounds. "
             f"vs torch.nn: the median of the per-round ratios ({of}) and the 95% interval "
             "of that median (benchmarks/harness/ratios.py):", "",
             "| size | L/H/C/T, batch | threads | variant | ms/step (median) | ms (min) | CPU ms (median) "
             "| vs torch.nn | 95% interval | activations MiB | peak MiB |",
             "|---|---|---:|---|---:|---:|---:|---:|---|---:|---:|"]
    for r in rows:
        rel = train_ratio(rows, r["size"], r.get("threads"), r["variant"].split("+")[0], "torch_nn", device)
        ratio_cells = f"{rel.median:.2f}x | {_spread(rel)}" if rel else " | "
        peak = "n/a" if r["peak_mib"] is None else f"{r['peak_mib']:.1f}"
        lines.append(f"| {r['size']} | {r['n_layers']}/{r['n_heads']}/{r['d_model']}/{r['block_size']}, "
                     f"{r['batch_size']} | {r.get('threads')} | {r['variant']} | {r['median_s'] * 1e3:.1f} | "
                     f"{r['min_s'] * 1e3:.1f} | {r['cpu_median_s'] * 1e3:.1f} | {ratio_cells} | "
                     f"{r['activations_mib']:.1f} | {peak} |")
    return lines + [""]


def _generate(rows) -> list[str]:
    lines = [f"Generation (greedy, 1-token prompt, small model), median of {rows[0]['n']} rounds, "
             "each with and without the cache:", "",
             "| backend | KV cache | new tokens | block | threads | seconds | CPU seconds | tokens/s |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['backend']} | {'yes' if r['use_cache'] else 'no'} | {r['new_tokens']} | "
              f"{r['block_size']} | {r.get('threads')} | {r['seconds']:.2f} | {r['cpu_seconds']:.2f} | "
              f"{r['tokens_per_s']:.0f} |" for r in rows]
    return lines + [""]


def _attention(rows) -> list[str]:
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    Ts = sorted({r["T"] for r in rows})
    ms = {(r["T"], r["variant"]): r["median_s"] * 1e3 for r in rows}
    lines = ["Causal attention, forward + backward, B=1, ms (x: time / time at half the T):", "",
             "| T | " + " | ".join(variants) + " |", "|---:|" + "---:|" * len(variants)]
    for i, T_len in enumerate(Ts):
        cells = []
        for name in variants:
            grow = (f" (x{ms[(T_len, name)] / ms[(Ts[i - 1], name)]:.1f})"
                    if i and Ts[i - 1] * 2 == T_len else "")
            cells.append(f"{ms[(T_len, name)]:.2f}{grow}")
        lines.append(f"| {T_len} | " + " | ".join(cells) + " |")
    return lines + [""]


def _gpu(rows) -> list[str]:
    lines = ["GPU, torch backend, bf16, fused attention (MFU: 6N + 12LTC FLOPs per token "
             "over the dense bf16 peak):", "",
             "| GPU | model | batch x T | precision | optimizer | compile | ms/step | tokens/s "
             "| model TFLOP/s | MFU | peak MiB |", "|---|---|---|---|---|---|---:|---:|---:|---:|---:|"]
    for g in rows:
        mfu = "n/a" if g["mfu"] is None else f"{100 * g['mfu']:.1f}%"
        lines.append(f"| {g['gpu']} | {g['size']} | {g['batch_size']} x {g['block_size']} | "
                     f"{g['precision']} | {g['optimizer']} | {'yes' if g['compile'] else 'no'} | "
                     f"{g['step_s'] * 1e3:.1f} | {g['tokens_per_s']:,.0f} | {g['model_tflops']:.1f} | {mfu} | "
                     + ("n/a" if g["peak_mib"] is None else f"{g['peak_mib']:.0f}") + " |")
    return lines + [""]


def _targets(rows) -> list[str]:
    lines = ["Targets (train step: the small models, GPT and Llama-style), the same ratios as above; met or missed when "
             "the whole 95% interval is on one side of the limit, else within noise:", "",
             "| target | threads | of | ratio (median) | 95% interval | rounds | verdict |",
             "|---|---:|---|---:|---|---:|---|"]
    lines += [f"| {t['target']} | {t['threads']} | {MEASURE_WORDS[t['measure']]} | {t['ratio']:.2f} | "
              f"{_spread(Ratio(t['ratio'], t['low'], t['high'], t['n'], t['measure']))} | {t['n']} | "
              f"{t['verdict'] if t['verdict'] != 'missed' else '**missed**'} |" for t in rows]
    return lines + [""]


def format_report(result: dict) -> str:
    """Markdown tables of a :func:`harness.run_all` result (or of the parts a script measured)."""
    device = result["environment"]["device"]
    lines = _header(result)
    if result.get("train"):
        lines += _train(result["train"], device)
    if result.get("generate"):
        lines += _generate(result["generate"])
    if result.get("attention"):
        lines += _attention(result["attention"])
    if result.get("gpu"):
        lines += _gpu(result["gpu"])
    if result.get("targets"):
        lines += _targets(result["targets"])
    return "\n".join(lines)
