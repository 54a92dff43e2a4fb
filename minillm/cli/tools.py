"""``minillm demo`` (the whole pipeline on the embedded corpora) and ``minillm bench``
(the benchmark harness of a clone)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..store.runtime import BACKENDS, DEFAULT_BACKEND_RULE, DEVICES, default_backend
from .options import POSITIVE_INT, SEED

__all__ = ["add_demo_parser", "add_bench_parser", "cmd_demo", "cmd_bench"]


def cmd_bench(a) -> int:
    from ..bench import load_harness
    bench = load_harness()               # benchmarks/harness.py of the clone; ImportError saying so if absent
    result = bench.run_all(threads=a.threads, sizes=tuple(a.sizes), repeats=a.repeats, device=a.device,
                           compile_model=a.compile, generate=not a.no_generate,
                           attention_Ts=tuple(a.attention_T), new_tokens=a.new_tokens, gpu=a.gpu)
    report = bench.format_report(result)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "results.json").write_text(json.dumps(result, indent=2))
    (a.out / "report.md").write_text(report + "\n")
    if result["attention"]:
        bench.plot_attention(result["attention"], a.out / "attention_cost.png")
    print(report)
    print(f"written: {a.out}/results.json, report.md" + (", attention_cost.png" if result["attention"] else ""))
    return 0


def cmd_demo(a) -> int:
    from ..demo import DemoFailed, run_demo
    try:
        return run_demo(a.out, backend=a.backend, quick=a.quick, seed=a.seed, overwrite=a.overwrite)
    except DemoFailed as e:
        print(f"minillm demo FAILED: {e}", file=sys.stderr)
        return 1


def add_demo_parser(sub, command) -> None:
    p = command(sub, "demo", help="the whole pipeline on the embedded corpora, in a few minutes")
    p.add_argument("--out", type=Path, default=None,
                   help="run folder (default: runs/demo, with --quick runs/demo-quick: a smoke test never "
                        "replaces a full demo)")
    p.add_argument("--overwrite", action="store_true", help="OUT holds a demo: replace it")
    p.add_argument("--backend", choices=BACKENDS, default=default_backend(),
                   help=f"numpy (the reference) or torch (default: %(default)s; every command's: {DEFAULT_BACKEND_RULE})")
    p.add_argument("--seed", type=SEED, default=0, help="random seed")
    p.add_argument("--quick", action="store_true", help="a few steps only (a smoke test)")
    p.set_defaults(func=cmd_demo)


def add_bench_parser(sub, command) -> None:
    p = command(sub, "bench", help="train-step time and memory of both backends, generation, attention cost")
    p.add_argument("--threads", type=POSITIVE_INT, nargs="+", default=[1, 2],
                   help="NumPy BLAS and torch thread counts; the train step is measured at each, the rest "
                        "at the first")
    p.add_argument("--sizes", nargs="+", choices=("tiny", "small", "small-llama", "medium"), help="model sizes to time",
                   default=["tiny", "small", "small-llama", "medium"])
    p.add_argument("--repeats", type=POSITIVE_INT, default=9, help="interleaved rounds of every part (attention: half as "
                                                          "many); a ratio gets a 95%% interval from 6 rounds on")
    p.add_argument("--device", choices=DEVICES, default="cpu", help="the torch variants' device")
    p.add_argument("--compile", action="store_true", help="torch.compile the fast path (slow to start)")
    p.add_argument("--no-generate", action="store_true", help="skip the KV-cache generation benchmark")
    p.add_argument("--new-tokens", type=POSITIVE_INT, default=256, help="generation length = block size")
    p.add_argument("--attention-T", type=POSITIVE_INT, nargs="*", default=[64, 128, 256, 512, 1024, 2048],
                   help="sequence lengths of the attention-cost sweep (none: skip)")
    p.add_argument("--gpu", action=argparse.BooleanOptionalAction, default=None,
                   help="GPT-2-small tokens/s and MFU on CUDA (default: when CUDA is available)")
    p.add_argument("--out", type=Path, default=Path("runs/bench"), help="folder for results (default: %(default)s)")
    p.set_defaults(func=cmd_bench)
