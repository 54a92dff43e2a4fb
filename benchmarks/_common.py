"""Shared by the benchmark scripts: the thread setting and the report.

Every script runs under :func:`minillm.core.threads.thread_limit` (NumPy's BLAS and torch
set to the same count, default 1) and prints the same Markdown as ``minillm bench``
(:func:`harness.report.format_report`, benchmarks/harness/).
"""
from __future__ import annotations

import argparse

from harness.machine import environment  # benchmarks/harness/, beside this script
from harness.report import format_report


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--threads", type=int, default=1, help="NumPy BLAS and torch threads (default: %(default)s)")
    p.add_argument("--device", choices=("cpu", "cuda", "mps"), default="cpu", help="the torch variants' device")
    return p


def report(threads_info: dict, device: str, **parts) -> None:
    result = {"environment": environment(device), "threads": threads_info, **parts}
    print(format_report(result))


def rounds_parser(description: str) -> argparse.ArgumentParser:
    """The options of a benchmark that times variants in interleaved rounds, at each of
    several thread counts, in both backends (bench_lora.py, bench_packing.py)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeats", type=int, default=9, help="interleaved rounds (default: %(default)s)")
    p.add_argument("--backends", nargs="+", default=["numpy", "torch"], choices=("numpy", "torch"))
    return p


def print_machine() -> None:
    """One line: the CPU, its cores, NumPy's and torch's versions and the load at start."""
    env = environment("cpu")
    print(f"Machine: {env['cpu']}, {env['cores']} cores; NumPy {env['numpy']}, torch {env['torch']}; "
          f"load average at start {env.get('load_average_at_start')}")
