"""Build the notebooks (``notebooks/NN_name.ipynb``) from their sources (``notebooks/src/NN_name.py``).

The sources are plain Python in the "percent" format that jupytext and most editors
understand: ``# %%`` starts a code cell, ``# %% [markdown]`` a Markdown cell whose lines
are comments (``# `` is stripped). The committed ``.ipynb`` files carry no outputs (see
CONTRIBUTING.md); they are what readers open and what CI executes.

    python notebooks/build.py           # rewrite every .ipynb from its source
    python notebooks/build.py --check   # exit 1 if an .ipynb differs from its source

Only ``nbformat`` is needed (``pip install 'minillm[notebooks]'``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "src"
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def parse_cells(text: str) -> list[tuple[str, str]]:
    """``[(kind, source)]`` with kind "code" or "markdown", in order.

    Lines before the first ``# %%`` marker (the source file's own header) are dropped.
    """
    cells: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("# %%"):
            kind = "markdown" if "[markdown]" in line else "code"
            cells.append((kind, []))
        elif cells:
            kind, lines = cells[-1]
            if kind == "markdown":
                if line and not line.startswith("#"):
                    raise ValueError(f"a Markdown cell line must start with '#', got {line!r}")
                line = line[2:] if line.startswith("# ") else line[1:]
            lines.append(line)
    return [(kind, "\n".join(lines).strip("\n")) for kind, lines in cells]


def build(source: Path) -> nbformat.NotebookNode:
    """The notebook of one source file: no outputs, stable cell ids."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = {"name": "python"}
    for i, (kind, text) in enumerate(parse_cells(source.read_text(encoding="utf-8"))):
        if not text:
            raise ValueError(f"{source.name}: cell {i} is empty")
        new = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
        cell = new(text)
        cell["id"] = f"{source.stem[:2]}-{i:02d}"       # stable ids: rebuilding changes nothing
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def render(nb: nbformat.NotebookNode) -> str:
    return nbformat.writes(nb) + "\n"


def sources() -> list[Path]:
    return sorted(SOURCES.glob("[0-9][0-9]_*.py"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 on a difference")
    args = parser.parse_args(argv)
    stale = []
    for src in sources():
        target = HERE / f"{src.stem}.ipynb"
        text = render(build(src))
        current = target.read_text(encoding="utf-8") if target.exists() else None
        if current == text:
            continue
        stale.append(target.name)
        if not args.check:
            target.write_text(text, encoding="utf-8")
    orphans = sorted({p.stem for p in HERE.glob("*.ipynb")} - {s.stem for s in sources()})
    if args.check:
        for name in stale:
            print(f"{name} differs from src/{name[:-6]}.py: run python notebooks/build.py")
        for name in orphans:
            print(f"{name}.ipynb has no source src/{name}.py")
        return 1 if stale or orphans else 0
    for name in stale:
        print(f"wrote {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
