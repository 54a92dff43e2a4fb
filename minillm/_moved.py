"""The modules' old import paths, kept working for one release (0.1 -> 0.2).

minillm's modules sat flat in ``minillm/`` until the layers got their folders
(``core``, ``store``, ``train``, ``apps``; docs/architecture.md). ``import
minillm.pipeline`` (or ``from minillm.runtime import Runtime``) still works: it
imports the module from its new place, warns once with a ``DeprecationWarning``
naming that place, and both names refer to the same module object, so classes,
functions and monkeypatches are shared. Remove this file in 0.3.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

MOVED = {
    "config": "core", "_validate": "core", "_optional": "core", "init": "core", "schedule": "core",
    "metrics": "core", "text_metrics": "core", "progress": "core", "plots": "core",
    "runtime": "store", "safetensors_io": "store", "checkpoint": "store", "model_io": "store",
    "interop": "apps",
    "tasks": "train", "training": "train", "evaluation": "train", "sampling": "train",
    "generation": "train", "pipeline": "train",
    "translation": "apps", "question_answering": "apps", "input_checks": "apps",
}


def new_name(old: str) -> str | None:
    """``"minillm.pipeline"`` -> ``"minillm.train.pipeline"``; None when not moved."""
    package, _, name = old.partition(".")
    if package != "minillm" or name not in MOVED:
        return None
    return f"minillm.{MOVED[name]}.{name}"


class _OldPathFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers an import of an old path with the module at its new one."""

    def find_spec(self, fullname, path=None, target=None):
        if new_name(fullname) is None:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        target = new_name(spec.name)
        warnings.warn(f"{spec.name} moved to {target}; the old name works until minillm 0.3",
                      DeprecationWarning, stacklevel=2)
        return importlib.import_module(target)

    def exec_module(self, module):
        pass  # the module at the new path is already executed


def install() -> None:
    if not any(isinstance(f, _OldPathFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _OldPathFinder())   # before any path finder: the old files are gone
