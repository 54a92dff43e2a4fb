"""Where ``minillm bench`` finds its harness.

The benchmark harness and its ``torch.nn`` yardstick measure the lesson; they are not part
of it, so they live in the repository's ``benchmarks/`` folder (the package
``benchmarks/harness/``, ``benchmarks/yardstick.py``), not in the installed package.
:func:`load_harness` finds that folder beside the package, which is where it is in a
clone installed with ``pip install -e .``; a wheel install has no ``benchmarks/`` and gets
an ``ImportError`` that says so.
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

__all__ = ["load_harness", "BENCHMARKS_DIR"]

# the repository's benchmarks/ folder, beside the package folder in a clone
BENCHMARKS_DIR = Path(__file__).resolve().parents[1] / "benchmarks"


def load_harness(folder: Path | None = None):
    """Import the package ``benchmarks/harness/`` (``folder``: the benchmarks folder,
    default :data:`BENCHMARKS_DIR`) and return it: its ``run_all``, ``format_report`` and
    ``plot_attention`` are what ``minillm bench`` calls. The folder goes on ``sys.path``,
    as when its scripts run, so the harness imports its yardstick the same way.

    Raises ``ImportError`` naming the folder and what to do when it is absent.
    """
    folder = Path(BENCHMARKS_DIR if folder is None else folder).resolve()
    init = folder / "harness" / "__init__.py"
    if not init.is_file():
        raise ImportError(f"minillm bench needs the benchmarks/ folder of a minillm clone, expected "
                          f"{init}, found none: clone the repository and install it "
                          f"with pip install -e . (a wheel install has no benchmarks)")
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    harness = importlib.import_module("harness")
    if Path(harness.__file__).resolve() != init:
        raise ImportError(f"expected the benchmark harness {init}, but 'import harness' "
                          f"gives {harness.__file__}")
    return harness
