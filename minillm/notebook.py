"""The few helpers the notebooks share, defined once.

The notebooks (``notebooks/src/NN_name.py``) show minillm's code beside its formula and
the figures they draw; these three functions are how. Each displays its object in the
running Jupyter front end and returns ``None``: a cell that ends with one shows the object
once (a returned object would be shown a second time, as the cell's result)::

    from minillm.notebook import show, show_figure, show_image

    show(minillm.reference.softmax_forward)        # the source, highlighted
    show_figure(fig, OUT / "trajectories.png")     # save a matplotlib Figure, then show it
    show_image(plot_attention(...))                # show a PNG a minillm.core.plots function wrote

The fourth, :func:`assert_parity`, is the closing parity check's comparison: it asserts
that the reference's array matches the torch backend's within the tolerance the cell
writes beside the call, and prints the largest difference.

IPython is imported only when a function is called (it comes with the ``notebooks``
extra), so importing this module needs nothing beyond minillm itself. Outside a notebook
IPython's ``display`` prints a short text form instead of drawing.
"""
from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np

__all__ = ["show", "show_figure", "show_image", "assert_parity"]


def _display(obj) -> None:
    from IPython.display import display

    display(obj)


def show(obj) -> None:
    """Display the source code of a function, method or class, as highlighted Python.

    ``obj`` is what ``inspect.getsource`` accepts (``ref.Adam.step``,
    ``ref.scaled_dot_product_attention_forward``, a class); the ``IPython.display.Code``
    displayed holds the source text (``.data``).

    Raises ``ValueError`` when ``obj`` has no Python source to show (a builtin, a C
    function, an instance).
    """
    from IPython.display import Code

    try:
        source = inspect.getsource(obj)
    except (TypeError, OSError) as e:
        raise ValueError(f"show() expected a Python function, method or class with source code, "
                         f"got {obj!r} ({type(obj).__name__}): {e}") from None
    _display(Code(source, language="python"))


def show_image(path) -> None:
    """Display the PNG at ``path`` (a ``str`` or ``Path``) as an ``IPython.display.Image``.

    Raises ``ValueError`` when ``path`` is not an existing file.
    """
    from IPython.display import Image

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"show_image() expected the path of an existing image file, got {str(path)!r}")
    _display(Image(filename=str(path)))


def show_figure(fig, path, *, dpi: int = 100) -> None:
    """Save a matplotlib ``Figure`` to ``path`` (PNG, ``dpi`` dots per inch) and display it.

    The figure is made with ``matplotlib.figure.Figure`` directly (no pyplot, so no global
    figure state and no GUI backend); it gets an Agg canvas here if it has none. The
    folder of ``path`` must exist. Raises ``ValueError`` when ``fig`` is not a Figure.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not isinstance(fig, Figure):
        raise ValueError(f"show_figure() expected a matplotlib.figure.Figure, got {type(fig).__name__}")
    path = Path(path)
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    fig.savefig(path, dpi=dpi)
    show_image(path)


def _as_numpy(x):
    """A torch tensor (detached, on the CPU) or anything ``np.asarray`` takes, as an array."""
    if hasattr(x, "detach"):                       # a torch.Tensor; no torch import needed here
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def assert_parity(name: str, ours, theirs, *, rtol: float, atol: float) -> float:
    r"""Assert ``|ours - theirs| <= atol + rtol * |theirs|`` elementwise (``numpy.testing.
    assert_allclose``, which also requires equal shapes and NaN where the other has NaN),
    print ``name`` and the largest absolute difference, and return that difference.

    ``ours`` is the NumPy reference's result, ``theirs`` the torch backend's (a tensor,
    detached here, or an array). The tolerances have no default on purpose: the notebook
    writes them beside the check (the float64 parity contract of docs/architecture.md is
    ``rtol=1e-7, atol=1e-9``). A mismatch raises ``AssertionError`` naming ``name``.
    """
    ours, theirs = _as_numpy(ours), _as_numpy(theirs)
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=atol, err_msg=name)
    largest = float(np.abs(ours - theirs).max()) if ours.size else 0.0
    print(f"{name:24s} largest difference {largest:.1e}")
    return largest
