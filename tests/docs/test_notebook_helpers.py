"""``minillm.notebook``: the display helpers the notebooks share (issue 19).

Each helper must display exactly one object, of the right kind and with the right
content, and return ``None``, so that a cell ending with it shows the object once, not a
second time as the cell's result (issue 29.6); wrong input is a ``ValueError`` naming what
was expected. IPython's ``display`` is replaced by a recorder, so these need no kernel,
except the last, which runs such cells in a real one.
"""
import importlib.util
import inspect
import sys

import numpy as np
import pytest

pytest.importorskip("IPython", reason="pip install 'minillm[notebooks]'")
pytest.importorskip("matplotlib")

import IPython.display  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import minillm.reference as ref  # noqa: E402
from minillm.notebook import assert_parity, show, show_figure, show_image  # noqa: E402


@pytest.fixture
def shown(monkeypatch):
    seen = []
    monkeypatch.setattr(IPython.display, "display", seen.append)
    return seen


def test_show_displays_the_source_of_a_function_and_a_method(shown):
    assert show(ref.softmax_forward) is None
    assert len(shown) == 1 and isinstance(shown[0], IPython.display.Code)
    assert shown[0].data == inspect.getsource(ref.softmax_forward)
    assert shown[0].data.lstrip().startswith("def softmax_forward(")
    assert show(ref.Adam.step) is None
    assert len(shown) == 2 and "def step(self" in shown[1].data


@pytest.mark.parametrize("obj", [len, 3, np.zeros(2)], ids=["builtin", "int", "array"])
def test_show_refuses_what_has_no_source(shown, obj):
    with pytest.raises(ValueError, match="expected a Python function, method or class"):
        show(obj)
    assert shown == []


def test_show_figure_saves_the_png_at_its_size_and_displays_it(shown, tmp_path):
    fig = Figure(figsize=(4, 3))
    fig.subplots().plot([0, 1], [1, 0])
    path = tmp_path / "line.png"
    assert show_figure(fig, path, dpi=50) is None
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (200, 150)                 # 4 x 3 inches at 50 dpi
    assert len(shown) == 1 and isinstance(shown[0], IPython.display.Image)
    assert shown[0].data == data


def test_show_figure_and_show_image_refuse_wrong_input(shown, tmp_path):
    with pytest.raises(ValueError, match="expected a matplotlib.figure.Figure, got list"):
        show_figure([1, 2], tmp_path / "x.png")
    with pytest.raises(ValueError, match="existing image file"):
        show_image(tmp_path / "missing.png")
    assert shown == []


def test_assert_parity_passes_within_the_tolerance_and_returns_the_largest_difference(capsys):
    ours = np.array([[1.0, -2.0], [3.0, 0.0]])
    theirs = ours + np.array([[1e-9, 0.0], [-3e-9, 5e-10]])   # |diff| <= atol + rtol*|theirs|
    largest = assert_parity("grad", ours, theirs, rtol=1e-7, atol=1e-9)
    assert largest == pytest.approx(3e-9, rel=1e-6)          # float64 rounding of 3.0 - 3e-9
    assert capsys.readouterr().out.split() == ["grad", "largest", "difference", "3.0e-09"]


def test_assert_parity_fails_outside_the_tolerance_naming_the_check():
    # 1e-6 off at 1.0: rtol 1e-7 allows 1e-7 + 1e-9, so this must fail
    with pytest.raises(AssertionError, match="dW1"):
        assert_parity("dW1", np.array([1.0, 2.0]), np.array([1.0 + 1e-6, 2.0]), rtol=1e-7, atol=1e-9)
    with pytest.raises(AssertionError, match="shape"):
        assert_parity("out", np.zeros((2, 3)), np.zeros((3, 2)), rtol=1e-7, atol=1e-9)
    with pytest.raises(TypeError):                           # the tolerances are never implicit
        assert_parity("out", np.zeros(2), np.zeros(2))


def test_assert_parity_reads_torch_tensors_with_a_graph():
    torch = pytest.importorskip("torch")
    x = torch.tensor([0.5, -1.5], dtype=torch.float64, requires_grad=True)
    y = x * 2                                                # needs detach before numpy
    assert assert_parity("y", np.array([1.0, -3.0]), y, rtol=1e-7, atol=1e-9) == 0.0
    with pytest.raises(AssertionError, match="y"):
        assert_parity("y", np.array([1.0, -3.1]), y, rtol=1e-7, atol=1e-9)


def test_show_image_displays_the_file(shown, tmp_path):
    fig = Figure(figsize=(1, 1))
    fig.subplots().plot([0, 1])
    show_figure(fig, tmp_path / "a.png", dpi=20)
    assert show_image(tmp_path / "a.png") is None and show_image(str(tmp_path / "a.png")) is None
    assert len(shown) == 3 and all(isinstance(o, IPython.display.Image) for o in shown)
    assert shown[1].data == shown[2].data == (tmp_path / "a.png").read_bytes()


def test_a_cell_ending_with_a_helper_shows_its_object_once_in_a_kernel(tmp_path):
    """Issue 29.6: in Jupyter, a cell's last expression is also shown as its result. Run
    cells that end with each helper in a real kernel: each must have exactly one output,
    the display, and no ``execute_result``."""
    nbformat = pytest.importorskip("nbformat", reason="pip install 'minillm[notebooks]'")
    nbclient = pytest.importorskip("nbclient", reason="pip install 'minillm[notebooks]'")
    if importlib.util.find_spec("ipykernel") is None:  # pragma: no cover
        pytest.skip("ipykernel is missing: pip install 'minillm[notebooks]'")
    cells = {"show": "show(ref.softmax_forward)",
             "show_figure": "fig = Figure(figsize=(1, 1)); fig.subplots().plot([0, 1])\n"
                            "show_figure(fig, 'f.png', dpi=20)",
             "show_image": "show_image('f.png')"}
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        f"import sys\nassert sys.prefix == {sys.prefix!r}\n"       # the kernel runs this interpreter
        "import minillm.reference as ref\nfrom matplotlib.figure import Figure\n"
        "from minillm.notebook import show, show_figure, show_image")]
    nb.cells += [nbformat.v4.new_code_cell(source) for source in cells.values()]
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    for name, cell in zip(cells, nb.cells[1:]):
        kinds = [o["output_type"] for o in cell.outputs]
        assert kinds == ["display_data"], f"a cell ending with {name}(...) gave outputs {kinds}"
        data = cell.outputs[0]["data"]
        if name == "show":                                   # highlighted source, text beside it
            assert "def softmax_forward(" in data["text/plain"] and "text/html" in data, sorted(data)
        else:
            assert "image/png" in data, (name, sorted(data))
