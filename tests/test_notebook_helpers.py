"""``minillm.notebook``: the display helpers the notebooks share (issue 19).

Each helper must display exactly one object, of the right kind and with the right
content, and return it; wrong input is a ``ValueError`` naming what was expected.
IPython's ``display`` is replaced by a recorder, so nothing here needs a kernel.
"""
import inspect

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
    code = show(ref.softmax_forward)
    assert shown == [code] and isinstance(code, IPython.display.Code)
    assert code.data == inspect.getsource(ref.softmax_forward)
    assert code.data.lstrip().startswith("def softmax_forward(")
    method = show(ref.Adam.step)
    assert "def step(self" in method.data and len(shown) == 2


@pytest.mark.parametrize("obj", [len, 3, np.zeros(2)], ids=["builtin", "int", "array"])
def test_show_refuses_what_has_no_source(shown, obj):
    with pytest.raises(ValueError, match="expected a Python function, method or class"):
        show(obj)
    assert shown == []


def test_show_figure_saves_the_png_at_its_size_and_displays_it(shown, tmp_path):
    fig = Figure(figsize=(4, 3))
    fig.subplots().plot([0, 1], [1, 0])
    path = show_figure(fig, tmp_path / "line.png", dpi=50)
    assert path == tmp_path / "line.png"
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
