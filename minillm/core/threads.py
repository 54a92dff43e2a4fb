"""Thread pools: NumPy's BLAS and torch's OpenMP pool, managed in one place.

A process that runs both backends (a notebook, a parity script, ``minillm bench``) holds
two thread pools: NumPy's BLAS (OpenBLAS in NumPy's wheels, with its own threads) and
torch's intra-op pool (OpenMP). Each, left alone, takes one thread per core. And an
OpenBLAS worker does not sleep when a product ends: it spins, waiting for the next one,
for about 0.1 s (2**28 cycles; ``OPENBLAS_THREAD_TIMEOUT``, read once when NumPy loads).
A torch step that starts in that window shares its cores with the spinning worker, and
on a small machine its OpenMP threads then wait for each other at every barrier. Nothing
outside OpenBLAS can stop the spin safely (its ``blas_thread_shutdown_`` stops the
workers, but after the pool restarted every product ran tens of times slower here).

So, in one place:

- :func:`thread_limit`: torch's pool and NumPy's BLAS to the same count inside the
  block, both restored after (``minillm bench``, the benchmark scripts); ``blas_threads``
  sets NumPy's BLAS to another count than torch's.
- :func:`torch_turn`: torch's work. It sets NumPy's BLAS to one thread, and leaves it
  there: in a process that runs torch, NumPy's products then run on the calling thread,
  no BLAS worker is woken, and none is left spinning when the next torch step starts,
  whatever runs in between (a reference step of a parity script, a notebook's next
  cell). Restoring the count after each turn was not enough: the reference's next
  product woke the workers again, and the torch step after it took 1.76x its time alone
  at two threads; with the count left at one, 0.95x. The reference's matrices at these
  sizes gain little from a second BLAS thread: its step takes about 7% longer on one
  (177 against 166 ms at two threads, benchmarks/bench_two_backends.py).
  An enclosing :func:`thread_limit` block restores its own count when it ends.
  :meth:`minillm.store.runtime.Runtime.threads` enters it for the torch backend (the
  trainer and generation use it), ``minillm bench`` around every torch step.

Measured in benchmarks/README.md, "One process, two backends". This module imports
torch only in :func:`thread_limit`, and only where it is installed.
"""
from __future__ import annotations

import contextlib
import logging
import sys

__all__ = ["thread_limit", "torch_turn", "blas_pools", "training_threads", "check_resume_threads"]

logger = logging.getLogger("minillm")


_state = {}


def _controller():
    """threadpoolctl's view of the thread pools loaded in this process (BLAS libraries
    load with NumPy, before any call here), found once: a scan of the loaded libraries
    takes milliseconds, a limit through the controller microseconds. None where
    threadpoolctl is not installed."""
    if "controller" not in _state:
        try:
            import threadpoolctl
            _state["controller"] = threadpoolctl.ThreadpoolController()
        except ImportError:
            _state["controller"] = None
    return _state["controller"]


def _torch_or_none(import_it: bool = False):
    if not import_it:
        return sys.modules.get("torch")
    try:
        import torch
        return torch
    except ImportError:
        return None


def blas_pools() -> list[str]:
    """What the BLAS libraries loaded in this process are and how many threads each
    uses now, e.g. ``["openblas 0.3.31 (2 threads)"]``; a sentence instead where
    threadpoolctl is not installed."""
    controller = _controller()
    if controller is None:
        return ["NumPy BLAS threads not controlled: threadpoolctl is not installed"]
    return sorted({f"{p['internal_api']} {p['version']} ({p['num_threads']} threads)"
                   for p in controller.info() if p["user_api"] == "blas"})


@contextlib.contextmanager
def thread_limit(n_threads: int, blas_threads: int | None = None):
    """Torch (if installed) limited to ``n_threads`` inside the block, and NumPy's BLAS
    to ``blas_threads`` (default: the same count); both restored after. Yields a dict
    describing what was set. ``blas_threads=1`` is for a process that alternates between
    the backends (see the module docstring).

    Without ``threadpoolctl`` NumPy's BLAS threads cannot be limited from inside the
    process; that is reported in the dict, not hidden (set ``OPENBLAS_NUM_THREADS`` /
    ``OMP_NUM_THREADS`` before starting Python instead).
    """
    if isinstance(n_threads, bool) or not isinstance(n_threads, int) or n_threads < 1:
        raise ValueError(f"n_threads must be an int >= 1, got {n_threads!r}")
    blas_threads = n_threads if blas_threads is None else blas_threads
    if isinstance(blas_threads, bool) or not isinstance(blas_threads, int) or blas_threads < 1:
        raise ValueError(f"blas_threads must be an int >= 1 or None, got {blas_threads!r}")
    info = {"threads": n_threads}
    with contextlib.ExitStack() as stack:
        controller = _controller()
        if controller is not None:
            stack.enter_context(controller.limit(limits=blas_threads, user_api="blas"))
        info["blas"] = blas_pools()
        torch = _torch_or_none(import_it=True)
        if torch is not None:
            before = torch.get_num_threads()
            torch.set_num_threads(n_threads)
            stack.callback(torch.set_num_threads, before)
            info["torch_threads"] = torch.get_num_threads()
        yield info


@contextlib.contextmanager
def torch_turn():
    """Torch's work: NumPy's BLAS set to one thread on entry and left there after the
    block, for the rest of the process or of the enclosing :func:`thread_limit` block
    (see the module docstring). Torch's own thread count is not changed. Without
    threadpoolctl it does nothing."""
    controller = _controller()
    if controller is not None:
        controller.limit(limits=1, user_api="blas")    # not restored: see the module docstring
    yield


def training_threads(backend: str) -> int | None:
    """The thread count a training run's numbers depend on: torch's intra-op threads on
    the torch backend, NumPy's BLAS threads on numpy (``None`` where it cannot be read).

    The same seed gives the same run at the same thread count only: a reduction split
    over another number of threads adds in another order, so the fast path's losses at
    1 and at 2 threads differ in their last digits from the first step on. A run records
    this count (``run.json``'s ``"threads"``) so that a resume at another count is
    reported (:func:`check_resume_threads`)."""
    if backend == "torch":
        torch = _torch_or_none(import_it=True)
        return None if torch is None else int(torch.get_num_threads())
    controller = _controller()
    counts = [] if controller is None else [p["num_threads"] for p in controller.info() if p["user_api"] == "blas"]
    return max(counts) if counts else None


def check_resume_threads(recorded: int | None, current: int | None, run_dir) -> bool:
    """Warn (the ``minillm`` logger) when the run in ``run_dir``, trained at ``recorded``
    threads, is resumed at ``current``; returns whether the counts differ. The resumed
    run goes on, but is not the run an uninterrupted one would have been (see
    :func:`training_threads`). Unknown counts (``None``, runs recorded before the count
    was) are not compared."""
    if recorded is None or current is None or int(recorded) == int(current):
        return False
    logger.warning("%s was trained at %d threads and resumes at %d: it goes on, but not exactly as the "
                   "uninterrupted run (sums split over another number of threads round differently); "
                   "resume it at %d threads (OMP_NUM_THREADS=%d) to continue it exactly",
                   run_dir, int(recorded), int(current), int(recorded), int(recorded))
    return True
