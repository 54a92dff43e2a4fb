"""Where ``minillm bench`` finds its harness, and the old ``minillm.bench`` names for one release.

The benchmark harness and its ``torch.nn`` yardstick measure the lesson; they are not part
of it, so they live in the repository's ``benchmarks/`` folder (``benchmarks/harness.py``,
``benchmarks/yardstick.py``), not in the installed package. :func:`load_harness` finds
that folder beside the package, which is where it is in a clone installed with
``pip install -e .``; a wheel install has no ``benchmarks/`` and gets an ``ImportError``
that says so.

Deprecated: ``minillm.bench.bench_train`` and the other names this module held until
it moved still resolve (to the harness, with a ``DeprecationWarning``) for one release;
import them from ``benchmarks/harness.py`` instead.
"""
from __future__ import annotations

import importlib
import sys
import warnings
from pathlib import Path

__all__ = ["load_harness", "BENCHMARKS_DIR"]

# the repository's benchmarks/ folder, beside the package folder in a clone
BENCHMARKS_DIR = Path(__file__).resolve().parents[1] / "benchmarks"
# the public names minillm.bench had before the harness moved
_MOVED = ("SIZES", "BenchSize", "thread_limit", "environment", "bench_train", "bench_generate",
          "bench_attention", "bench_gpu", "check_targets", "path_ratios", "format_report", "run_all",
          "TRAIN_VARIANTS", "TARGET_SIZE", "plot_attention", "flops_per_token")


def load_harness(folder: Path | None = None):
    """Import ``benchmarks/harness.py`` (``folder``: the benchmarks folder, default
    :data:`BENCHMARKS_DIR`) and return the module. The folder goes on ``sys.path``, as
    when its scripts run, so the harness imports its yardstick the same way.

    Raises ``ImportError`` naming the folder and what to do when it is absent.
    """
    folder = Path(BENCHMARKS_DIR if folder is None else folder).resolve()
    if not (folder / "harness.py").is_file():
        raise ImportError(f"minillm bench needs the benchmarks/ folder of a minillm clone, expected "
                          f"{folder / 'harness.py'}, found none: clone the repository and install it "
                          f"with pip install -e . (a wheel install has no benchmarks)")
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    harness = importlib.import_module("harness")
    if Path(harness.__file__).resolve().parent != folder:
        raise ImportError(f"expected the benchmark harness {folder / 'harness.py'}, but 'import harness' "
                          f"gives {harness.__file__}")
    return harness


def __getattr__(name: str):
    """The names of the old ``minillm.bench``, from the harness, with a DeprecationWarning."""
    if name in _MOVED:
        warnings.warn(f"minillm.bench.{name} moved to benchmarks/harness.py (minillm.bench.load_harness()"
                      f".{name}); minillm.bench keeps it for one release", DeprecationWarning, stacklevel=2)
        return getattr(load_harness(), name)
    raise AttributeError(f"module 'minillm.bench' has no attribute {name!r}")
