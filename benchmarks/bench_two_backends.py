"""Benchmark: one process, two backends. Torch's train step alone, and right after a step of the NumPy reference.

    python benchmarks/bench_two_backends.py [--threads 1 2] [--rounds 7] [--size small] [--variant torch_fused]

In one process, at each thread count, the torch train step (the fast path by default) is
timed in rounds of two samples: "alone" (right after another torch step, with no NumPy
product in the 0.3 s before, so every BLAS worker is asleep: as in a torch-only process) and "after the reference" (started right after a reference
train step, inside the ~0.1 s for which OpenBLAS's workers keep spinning; a parity script
or ``minillm bench`` does exactly this). The ratio after / alone is reported for three
settings of the thread pools (minillm/core/threads.py):

- ``same count``: ``thread_limit(n)``, NumPy's BLAS and torch at n threads, nothing else;
- ``torch_turn``: the same, each torch step inside ``torch_turn()``, as the trainer,
  generation and ``minillm bench`` run it: NumPy's BLAS is set to one thread at torch's
  first turn and left there, so the reference's later steps run on one BLAS thread;
- ``blas 1``: ``thread_limit(n, blas_threads=1)`` and ``torch_turn()``: one BLAS thread
  from the start. The reference's step time is reported beside each setting (what NumPy
  loses without its second BLAS thread), and the BLAS column is its count at the end.

Medians of ``--rounds`` samples, wall-clock, with the load average at the start (a loaded
machine makes the 2-thread figures meaningless: say so beside them).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time

from harness.machine import environment  # benchmarks/harness/, beside this script
from harness.sizes import SIZES
from harness.train_step import train_steps

from minillm.core import threads

SETTINGS = ("same count", "torch_turn", "blas 1")


def _timed(step) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def measure(n: int, setting: str, size: str, variant: str, rounds: int, idle_s: float = 0.3) -> dict:
    """Median seconds of the torch step alone and right after a reference step, and of
    the reference step, at ``n`` threads under ``setting``."""
    blas = 1 if setting == "blas 1" else None
    turn = contextlib.nullcontext if setting == "same count" else threads.torch_turn
    with threads.thread_limit(n, blas_threads=blas) as info:
        steps = train_steps(SIZES[size], ("reference", variant), "cpu", False)
        ref, tor = steps["reference"], steps[variant]
        for _ in range(2):                                   # warm-up: first calls, allocator
            ref()
            with turn():
                tor()
        alone, after, ref_times = [], [], []
        for _ in range(rounds):
            time.sleep(idle_s)                               # every BLAS worker asleep by now
            with turn():
                tor()                                        # so that "alone" follows torch work
                alone.append(_timed(tor))                    # (warm caches), as in a torch-only process
            ref_times.append(_timed(ref))
            with turn():
                after.append(_timed(tor))                    # inside the spinning window
        blas_at_end = threads.blas_pools()
    med = statistics.median
    return {"threads": n, "setting": setting, "blas": blas_at_end, "torch_threads": info.get("torch_threads"),
            "alone_ms": med(alone) * 1e3, "after_ms": med(after) * 1e3, "ratio": med(after) / med(alone),
            "reference_ms": med(ref_times) * 1e3, "rounds": rounds}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--size", choices=tuple(SIZES), default="small")
    p.add_argument("--variant", choices=("torch_fused", "torch_explicit", "torch_nn"), default="torch_fused")
    p.add_argument("--settings", nargs="+", choices=SETTINGS, default=list(SETTINGS))
    a = p.parse_args()
    env = environment("cpu")
    rows = [measure(n, s, a.size, a.variant, a.rounds) for n in a.threads for s in a.settings]
    load_end = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    print(f"CPU: {env['cpu']} ({env['cores']} cores); torch {env['torch']}, numpy {env['numpy']}; "
          f"load average at start {env.get('load_average_at_start')}, at end {load_end}\n")
    print(f"Train step of `{a.variant}`, size `{a.size}`, one process; median of {a.rounds} rounds.\n")
    print("| threads | setting | BLAS | torch alone, ms | right after a reference step, ms | ratio | reference step, ms |")
    print("|---:|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['threads']} | {r['setting']} | {', '.join(r['blas'])} | {r['alone_ms']:.1f} | "
              f"{r['after_ms']:.1f} | {r['ratio']:.2f} | {r['reference_ms']:.1f} |")


if __name__ == "__main__":
    main()
