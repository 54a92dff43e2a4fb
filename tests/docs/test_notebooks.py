"""The notebooks: each runs top to bottom in this Python, offline, on the CPU.

- every ``notebooks/NN_*.ipynb`` is executed with nbclient in a kernel that runs THIS
  interpreter (checked by a first cell added in memory), in a temporary working folder,
  with ``MPLBACKEND=Agg`` and one BLAS/OpenMP thread (small models on a shared 2-core
  machine run several times faster single-threaded than with threads fighting over the
  cores); a cell that raises fails the test. The time each takes is printed (``-s``),
  not asserted: a time limit is a speed target, which belongs to a benchmark, and in a
  test it fails whenever the machine is busy (CI saw 128-198 s for notebooks that take
  64-139 s on idle cores). ``CELL_TIMEOUT_S`` only stops a hung cell. No cell of the
  executed notebook shows the same figure twice (issue 29.6: a display plus the cell's
  result);
- the committed notebooks carry no outputs and no execution counts (the decision is
  written in CONTRIBUTING.md), and each is its jupytext pair ``notebooks/src/NN_name.py``
  (percent format, ``notebooks/jupytext.toml``): the same cells as jupytext reads from
  the source, and the source's kernelspec;
- the notebooks import minillm and never redefine it: no ``def`` or ``class`` whose name
  minillm already uses for a public name (the display helpers ``show``, ``show_figure`` and
  ``show_image`` included: they live in ``minillm.notebook``, once).
"""
import ast
import importlib.util
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="pip install 'minillm[notebooks]'")
nbclient = pytest.importorskip("nbclient", reason="pip install 'minillm[notebooks]'")
if importlib.util.find_spec("ipykernel") is None:  # pragma: no cover
    pytest.skip("ipykernel is missing: pip install 'minillm[notebooks]'", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
SOURCES = sorted((NOTEBOOK_DIR / "src").glob("*.py"))
SYNC = "jupytext --sync notebooks/src/*.py"     # what makes a notebook from its edited source
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}
CELL_TIMEOUT_S = 900     # per cell (nbclient's timeout): a hang guard, far above any cell's time
EXPECTED = 15            # the reading order: attention ... deployment, the applications, the modern decoder, fine-tuning today

# the kernel must be this interpreter (the tests' venv), not whatever "python" is on PATH
KERNEL_CHECK = (
    "import sys\n"
    f"assert sys.prefix == {sys.prefix!r}, f'kernel runs {{sys.executable}}, expected the tests venv {sys.prefix}'"
)


def test_every_notebook_of_the_reading_order_is_there():
    assert len(NOTEBOOKS) == EXPECTED, [p.name for p in NOTEBOOKS]


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path, tmp_path, monkeypatch):
    for name, value in {"MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                        "OPENBLAS_NUM_THREADS": "1", "IPYTHONDIR": str(tmp_path / ".ipython"),
                        "JUPYTER_PLATFORM_DIRS": "1", "PYDEVD_DISABLE_FILE_VALIDATION": "1"}.items():
        monkeypatch.setenv(name, value)
    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(KERNEL_CHECK))
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    start = time.perf_counter()
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as e:
        pytest.fail(f"{path.name}: a cell raised\n{e}")
    elapsed = time.perf_counter() - start
    print(f"{path.name}: {elapsed:.1f} s")
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{path.name}: error outputs {[(o['ename'], o['evalue']) for o in errors]}"
    twice = figures_shown_twice(nb)
    assert not twice, f"{path.name}: cells that show a figure twice (a display and the cell's result): {twice}"


def figures_shown_twice(nb) -> list[int]:
    """The indices of the code cells in which one image (PNG or SVG) is shown more than
    once, by ``display_data`` or ``execute_result`` outputs."""
    cells = []
    for i, cell in enumerate(nb.cells):
        images = [o["data"][kind] for o in cell.get("outputs", []) if o.get("output_type") in
                  ("display_data", "execute_result") for kind in ("image/png", "image/svg+xml") if kind in o["data"]]
        if len(images) != len(set(images)):
            cells.append(i)
    return cells


def test_figures_shown_twice_finds_a_display_and_its_result():
    # what a cell ending with a helper that returned its Image gave (issue 29.6), and a cell
    # that shows two different figures (notebook 1's heads: fine)
    png, other = "iVBORw0KGgo=", "iVBORw0KGgoA"
    twice = nbformat.v4.new_code_cell("show_image(p)", outputs=[
        nbformat.v4.new_output("display_data", {"image/png": png, "text/plain": "<Image>"}),
        nbformat.v4.new_output("execute_result", {"image/png": png, "text/plain": "<Image>"}, execution_count=1)])
    two = nbformat.v4.new_code_cell("", outputs=[nbformat.v4.new_output("display_data", {"image/png": png}),
                                                 nbformat.v4.new_output("display_data", {"image/png": other})])
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("x"), two, twice])
    assert figures_shown_twice(nb) == [2]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_has_no_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.cells, f"{path.name} has no cells"
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        assert cell.outputs == [], f"{path.name} cell {i} has committed outputs (clear them, or run {SYNC})"
        assert cell.execution_count is None, f"{path.name} cell {i} has an execution count"
        errors = [o for o in cell.outputs if o.get("output_type") == "error"]
        assert not errors, f"{path.name} cell {i} has a committed error output"


def test_each_notebook_has_its_source_and_each_source_its_notebook():
    assert [p.stem for p in SOURCES] == [p.stem for p in NOTEBOOKS], f"unpaired: run {SYNC}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_what_jupytext_reads_from_its_source(path):
    jupytext = pytest.importorskip("jupytext", reason="pip install 'minillm[notebooks]'")
    from jupytext.config import load_jupytext_config

    config = load_jupytext_config(str(NOTEBOOK_DIR / "src"))
    source = NOTEBOOK_DIR / "src" / f"{path.stem}.py"
    expected = jupytext.read(source, config=config)
    nb = nbformat.read(path, as_version=4)
    cells = [(c.cell_type, c.source) for c in nb.cells]
    want = [(c.cell_type, c.source) for c in expected.cells]
    first = next((i for i, (a, b) in enumerate(zip(cells, want)) if a != b), min(len(cells), len(want)))
    assert cells == want, (f"{path.name} differs from src/{source.name} at cell {first} "
                           f"({len(cells)} cells, the source has {len(want)}): run {SYNC}")
    assert expected.metadata.get("kernelspec") == nb.metadata.get("kernelspec") == KERNELSPEC, \
        f"{path.name}: kernelspec {nb.metadata.get('kernelspec')}, its source's " \
        f"{expected.metadata.get('kernelspec')}; expected {KERNELSPEC} in both (the source's header)"


def _minillm_public_names() -> set[str]:
    import minillm.reference as ref

    names = set(ref.__all__)
    for module in ("minillm.train.entry", "minillm.train.pipeline", "minillm.train.training", "minillm.store.runs",
                   "minillm.core.metrics", "minillm.core.plots", "minillm.train.generation", "minillm.data",
                   "minillm.notebook"):
        names |= set(getattr(importlib.import_module(module), "__all__", ()))
    return names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_imports_minillm_and_never_redefines_it(path):
    nb = nbformat.read(path, as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    tree = ast.parse(code)
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert "minillm" in imported, f"{path.name} does not import minillm"
    defined = {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    clash = defined & _minillm_public_names()
    assert not clash, f"{path.name} redefines minillm's {sorted(clash)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_ends_with_a_parity_check_against_torch(path):
    """The last code cells compare the reference with the torch backend and assert the
    agreement, then run the project's matching tests, as the notebooks' contract says.
    (Whether the comparison holds is decided by executing the notebook, above.)"""
    nb = nbformat.read(path, as_version=4)
    code_cells = [c.source for c in nb.cells if c.cell_type == "code"]
    tail = "\n".join(code_cells[-3:])
    assert "torch" in tail or "tb." in tail, f"{path.name}: the last cells never touch the torch backend"
    assert "assert" in tail, f"{path.name}: the last cells check nothing"
    assert "pytest.main" in code_cells[-1], f"{path.name}: the last cell does not run the parity tests"
