"""The optional dependencies and the extra that installs each.

``import minillm`` needs only NumPy; everything else comes with an extra of
``pyproject.toml``. A missing one ends in one line that names the extra to install,
never in Python's bare ``No module named 'anyio'`` (which says neither why the module
is wanted nor how to get it).
"""
from __future__ import annotations

import importlib

# top-level module -> the extra that installs it (pyproject.toml's [project.optional-dependencies])
EXTRAS = {
    "torch": "torch",
    "fastapi": "serve", "uvicorn": "serve", "anyio": "serve", "starlette": "serve", "pydantic": "serve",
    "matplotlib": "pipeline", "tqdm": "pipeline", "nltk": "pipeline",
    "regex": "hf", "ml_dtypes": "hf",
}


def missing_extra(exc: ImportError, what: str, extra: str) -> ImportError:
    """An ImportError for ``exc`` that says ``what`` needs the module and which extra installs it.

    The module named is the one that failed (``exc.name``): FastAPI present without
    anyio names anyio, not FastAPI.
    """
    missing = (exc.name or "").split(".")[0] or "a module"
    return ImportError(f"{what} needs {missing}, which is not installed: pip install 'minillm[{extra}]' "
                       f"(in a clone of the repository: pip install -e '.[{extra}]')")


def import_optional(name: str, what: str, extra: str | None = None):
    """``importlib.import_module(name)``, or :func:`missing_extra`'s one-line error."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise missing_extra(exc, what, extra or EXTRAS[name.split(".")[0]]) from exc
