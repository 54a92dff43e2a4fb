"""Interleaved rounds: every variant timed once per round, so that they share the machine's load.

Each round calls every step once, in turn, and records its wall-clock and process-CPU
seconds. The rounds are kept (``wall_s``, ``cpu_s``): a ratio of two variants is then
taken per round (minillm's verdicts, :mod:`harness.ratios`), where both calls met the
same load, rather than of two medians from different moments.

Threads: every torch step runs in :func:`minillm.core.threads.torch_turn` (which leaves
NumPy's BLAS at one thread); the reference's step runs on ``reference_blas`` BLAS threads
(as many as torch has), followed, outside the timed region, by a pause long enough for
OpenBLAS's workers to stop spinning, so that each row is its variant's own time (what
the spin costs the next torch step is ``bench_two_backends.py``'s measure).
"""
from __future__ import annotations

import contextlib
import statistics
import time

from minillm.core.threads import torch_turn

__all__ = ["reference_turn", "interleaved_times", "summary"]

BLAS_SPIN_S = 0.15     # an OpenBLAS worker spins ~0.1 s after a product (minillm/core/threads.py)


@contextlib.contextmanager
def reference_turn(blas_threads: int | None):
    """The reference's step on ``blas_threads`` BLAS threads (None: as set), in a process
    where every torch turn leaves BLAS at one: the count raised inside and restored
    after, then, past the timed region, a pause for the workers to stop spinning, so
    that the next variant starts as in a process that runs only its own backend."""
    if blas_threads is None:
        yield
        return
    import threadpoolctl
    with threadpoolctl.threadpool_limits(limits=blas_threads, user_api="blas"):
        yield
    if blas_threads > 1:
        time.sleep(BLAS_SPIN_S)


def summary(wall_s: list[float], cpu_s: list[float]) -> dict:
    """The rounds of one variant and their medians: ``median_s`` and ``min_s`` of the
    wall-clock seconds, ``cpu_median_s`` of the process CPU seconds, ``n`` rounds."""
    return {"median_s": statistics.median(wall_s), "min_s": min(wall_s),
            "cpu_median_s": statistics.median(cpu_s), "n": len(wall_s),
            "wall_s": list(wall_s), "cpu_s": list(cpu_s)}


def interleaved_times(steps: dict, repeats: int, warmup: int, sync, reference_blas: int | None = None) -> dict:
    """:func:`summary` of each of ``steps`` (name -> zero-argument call) over ``repeats``
    rounds after ``warmup`` untimed ones, one call of each per round. With one thread on
    a CPU, the CPU time is the step's own work: it does not count the time other
    processes on a shared machine held the core. The step named "reference" runs in
    :func:`reference_turn`, every other in ``torch_turn()``."""
    def turn(name):
        return reference_turn(reference_blas) if name == "reference" else torch_turn()

    for _ in range(warmup):
        for name, step in steps.items():
            with turn(name):
                step()
    sync()
    wall = {name: [] for name in steps}
    cpu = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            with turn(name):
                start, start_cpu = time.perf_counter(), time.process_time()
                step()
                sync()
                wall[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
    return {name: summary(wall[name], cpu[name]) for name in steps}
