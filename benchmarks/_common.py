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
