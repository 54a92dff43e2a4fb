"""The package's layers, checked on its source: imports only point down, and no circle.

The layers (docs/architecture.md), lowest first:

0. ``minillm.core`` and ``minillm.data``: the base;
1. the backends, ``minillm.reference`` and ``minillm.torch_backend`` (neither imports
   the other);
2. ``minillm.store``: a backend by name, checkpoints, run folders, pretrained weights;
3. ``minillm.train``: tasks, the trainer, evaluation, generation, the pipeline;
4. ``minillm.apps``: translation, question answering;
5. the entry points on top: the ``cli`` and ``serving`` packages, ``demo``, ``notebook``,
   ``bench`` and the package's ``__init__``.

Every ``import`` and ``from ... import`` of every module is read with :mod:`ast`, the
ones inside functions included (an import deferred to call time is still a dependency).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "minillm"

LAYERS = {"core": 0, "data": 0, "reference": 1, "torch_backend": 1, "store": 2, "train": 3, "apps": 4,
          "cli": 5, "serving": 5}
TOP = 5


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    rel = Path(*name.split("."))
    return (PACKAGE.parent / rel.with_suffix(".py")).exists() or (PACKAGE.parent / rel / "__init__.py").exists()


def _imports(path: Path) -> set[str]:
    """The minillm modules ``path`` imports (a name imported from a package is the
    package's submodule when one exists by that name, else the package itself)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "minillm")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join(base + ([node.module] if node.module else []))
            elif (node.module or "").split(".")[0] == "minillm":
                base = node.module
            else:
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if _is_module(sub) else base)
    found.discard(name)
    return found


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.get(parts[1], TOP) if len(parts) > 1 else TOP


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_the_graph_is_read(graph):
    # the reading itself: a few edges that exist (or the checks below would pass on nothing)
    assert "minillm.core._validate" in graph["minillm.reference.linear"]
    assert "minillm.store.runtime" in graph["minillm.store.model_io"]
    assert "minillm.train.pipeline" in graph["minillm.cli.training"]
    assert len(graph) > 80


def test_every_import_points_down(graph):
    upward = [f"{src} (layer {_layer(src)}) imports {dst} (layer {_layer(dst)})"
              for src, targets in graph.items() for dst in sorted(targets) if _layer(dst) > _layer(src)]
    assert not upward, "imports that point up a layer:\n" + "\n".join(upward)


def test_the_backends_do_not_import_each_other(graph):
    def backend(module):
        return (module.split(".") + [""])[1]

    crossing = [f"{src} imports {dst}" for src, targets in graph.items() for dst in targets
                if {backend(src), backend(dst)} == {"reference", "torch_backend"}]
    assert not crossing, crossing


def test_the_reference_never_imports_torch():
    for path in sorted((PACKAGE / "reference").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not [n for n in names if n.split(".")[0] == "torch"], path


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circle(graph):
    # a package's __init__ re-exporting its own modules is not a circle of meaning: the
    # edges from a module to its own package's __init__ are left out
    edges = {src: {dst for dst in targets if not src.startswith(dst + ".")} for src, targets in graph.items()}
    assert _cycles(edges) == []


def test_the_cycle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_every_subpackage_has_a_layer():
    # a new folder must be placed in a layer here (else it would count as the top)
    subpackages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert subpackages == set(LAYERS), subpackages ^ set(LAYERS)
