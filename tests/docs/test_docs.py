"""The documentation: the formula -> code -> test map is true, and the site builds.

- ``docs/formulas.md``: every table row names at least one function or class that exists
  in BOTH backends; every name in its reference column exists in ``minillm.reference``
  and every name in its torch column in ``minillm.torch_backend``; every test the page
  names (``tests/FILE.py::test_name``) is defined in that file; and every public function
  the two backends share has a row (a new op cannot go undocumented); the row of each op
  of tests/ops_catalogue.py names every property test the catalogue runs on it.
- The Sphinx site (MyST pages, the notebooks through myst-nb without execution, the API
  reference through autodoc) builds with warnings as errors, and autodoc really rendered
  the API (a directive that silently renders nothing is a failure too). About 10 s.
"""
import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORMULAS = ROOT / "docs" / "formulas.md"
NAME = re.compile(r"`([A-Za-z_][A-Za-z0-9_]*)`")
TEST_REF = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


def _tables(text: str):
    """Yield (header cells, row cells) for every Markdown table row in ``text``."""
    header = None
    for line in text.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = [c.lower() for c in cells]
        elif not all(set(c) <= set("-: ") for c in cells):
            yield header, cells


def _rows():
    rows = list(_tables(FORMULAS.read_text(encoding="utf-8")))
    assert rows, "docs/formulas.md has no table rows"
    for header, _ in rows:
        assert {"reference", "torch", "tests"} <= set(header), header
    return rows


def _defined_tests(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        names |= {f"{cls.name}::{m.name}" for m in cls.body if isinstance(m, ast.FunctionDef)}
    return names


def test_every_formula_names_a_function_in_both_backends():
    import minillm.reference as ref
    tb = pytest.importorskip("minillm.torch_backend")
    problems = []
    for header, cells in _rows():
        row = dict(zip(header, cells))
        what = cells[0][:60]
        ref_names, torch_names = NAME.findall(row["reference"]), NAME.findall(row["torch"])
        problems += [f"{what}: reference name `{n}` is not in minillm.reference"
                     for n in ref_names if not hasattr(ref, n)]
        problems += [f"{what}: torch name `{n}` is not in minillm.torch_backend"
                     for n in torch_names if not hasattr(tb, n)]
        shared = [n for n in set(ref_names) & set(torch_names) if hasattr(ref, n) and hasattr(tb, n)]
        if not shared:
            problems.append(f"{what}: names no function that exists in both backends "
                            f"(reference {ref_names}, torch {torch_names})")
        if not TEST_REF.findall(row["tests"]):
            problems.append(f"{what}: names no test")
    assert not problems, "\n".join(problems)


def test_every_test_the_page_names_exists():
    refs = TEST_REF.findall(FORMULAS.read_text(encoding="utf-8"))
    assert len(refs) >= 20, f"expected the page to name its tests, found {len(refs)}"
    missing = []
    for file, name in sorted(set(refs)):
        path = ROOT / file
        if not path.is_file():
            missing.append(f"{file} (no such file)")
        elif name not in _defined_tests(path):
            missing.append(f"{file}::{name}")
    assert not missing, "tests named in docs/formulas.md that do not exist:\n" + "\n".join(missing)


def test_every_shared_public_function_has_a_row():
    import minillm.reference as ref
    tb = pytest.importorskip("minillm.torch_backend")
    shared = {n for n in set(ref.__all__) & set(tb.__all__)
              if n[0].islower() and callable(getattr(ref, n))}
    assert shared, "found no public function shared by the backends"
    documented = {n for header, cells in _rows() for n in NAME.findall(dict(zip(header, cells))["reference"])}
    assert not shared - documented, f"public functions without a row in docs/formulas.md: {sorted(shared - documented)}"


def test_every_op_row_lists_every_catalogue_test_of_the_op():
    """tests/ops_catalogue.py enrols each op in the property tests; the op's row (the one
    whose reference column starts with the op's name) names every one of them."""
    pytest.importorskip("torch")
    from ops_catalogue import OPS, tests_of
    by_first_name = {}
    for header, cells in _rows():
        names = NAME.findall(dict(zip(header, cells))["reference"])
        if names:
            by_first_name[names[0]] = set("::".join(t) for t in TEST_REF.findall(dict(zip(header, cells))["tests"]))
    problems = []
    for op in OPS:
        if op.name not in by_first_name:
            problems.append(f"{op.name}: no row in docs/formulas.md")
            continue
        missing = [t for t in tests_of(op) if t not in by_first_name[op.name]]
        if missing:
            problems.append(f"{op.name}: its row does not name {missing}")
    assert not problems, "docs/formulas.md:\n" + "\n".join(problems)


def test_the_table_checks_can_fail():
    """The parser sees what a broken row looks like (so the tests above are not vacuous)."""
    broken = "| op | reference | torch | tests |\n|---|---|---|---|\n| x | `nope` | `nope` | none |\n"
    (header, cells), = list(_tables(broken))
    row = dict(zip(header, cells))
    import minillm.reference as ref
    assert NAME.findall(row["reference"]) == ["nope"] and not hasattr(ref, "nope")
    assert TEST_REF.findall(row["tests"]) == []


@pytest.mark.slow
def test_sphinx_site_builds_with_warnings_as_errors(tmp_path):
    pytest.importorskip("sphinx", reason="pip install 'minillm[docs]'")
    pytest.importorskip("myst_nb", reason="pip install 'minillm[docs]'")
    out = tmp_path / "html"
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(tmp_path / "doctrees"), str(ROOT / "docs"), str(out)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"sphinx failed:\n{result.stdout[-5000:]}\n{result.stderr[-5000:]}"
    for page in ("index", "quickstart", "formulas", "architecture", "notebooks",
                 *(f"notebooks/{p.stem}" for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))),
                 "api/reference", "api/torch_backend"):
        assert (out / f"{page}.html").is_file(), f"{page}.html was not built"
    # autodoc rendered the API: the reference's hand-written backward and its torch twin
    api = (out / "api" / "reference.html").read_text(encoding="utf-8")
    assert 'id="minillm.reference.attention.scaled_dot_product_attention_backward"' in api
    assert 'id="minillm.torch_backend.attention.scaled_dot_product_attention"' in \
        (out / "api" / "torch_backend.html").read_text(encoding="utf-8")
