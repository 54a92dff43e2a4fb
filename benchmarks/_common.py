"""Shared by the benchmark scripts: the thread setting and the report.

Every script runs under :func:`harness.thread_limit` (benchmarks/harness.py) (NumPy's BLAS and torch set
to the same count, default 1) and prints the same Markdown as ``minillm bench``.
"""
from __future__ import annotations

import argparse

import harness as bench  # benchmarks/harness.py, beside this script


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--threads", type=int, default=1, help="NumPy BLAS and torch threads (default: %(default)s)")
    p.add_argument("--device", choices=("cpu", "cuda", "mps"), default="cpu", help="the torch variants' device")
    return p


def report(threads_info: dict, device: str, **parts) -> None:
    result = {"environment": bench.environment(device), "threads": threads_info, **parts}
    print(bench.format_report(result))
