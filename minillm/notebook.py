"""The few display helpers every notebook uses, defined once.

The notebooks (``notebooks/src/NN_name.py``) show minillm's code beside its formula and
the figures they draw; these three functions are how. Each displays its result in the
running Jupyter front end and also returns it, so a notebook cell (or a test) can check
what was shown::

    from minillm.notebook import show, show_figure, show_image

    show(minillm.reference.softmax_forward)        # the source, highlighted
    show_figure(fig, OUT / "trajectories.png")     # save a matplotlib Figure, then show it
    show_image(plot_attention(...))                # show a PNG a minillm.core.plots function wrote

IPython is imported only when a function is called (it comes with the ``notebooks``
extra), so importing this module needs nothing beyond minillm itself. Outside a notebook
IPython's ``display`` prints a short text form instead of drawing.
"""
from __future__ import annotations

import inspect
from pathlib import Path

__all__ = ["show", "show_figure", "show_image"]


def _display(obj):
    from IPython.display import display

    display(obj)
    return obj


def show(obj):
    """Display the source code of a function, method or class, as highlighted Python.

    ``obj`` is what ``inspect.getsource`` accepts (``ref.Adam.step``,
    ``ref.scaled_dot_product_attention_forward``, a class); returns the displayed
    ``IPython.display.Code``, whose ``.data`` is the source text.

    Raises ``ValueError`` when ``obj`` has no Python source to show (a builtin, a C
    function, an instance).
    """
    from IPython.display import Code

    try:
        source = inspect.getsource(obj)
    except (TypeError, OSError) as e:
        raise ValueError(f"show() expected a Python function, method or class with source code, "
                         f"got {obj!r} ({type(obj).__name__}): {e}") from None
    return _display(Code(source, language="python"))


def show_image(path):
    """Display the PNG at ``path`` (a ``str`` or ``Path``) and return the ``IPython.display.Image``.

    Raises ``ValueError`` when ``path`` is not an existing file.
    """
    from IPython.display import Image

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"show_image() expected the path of an existing image file, got {str(path)!r}")
    return _display(Image(filename=str(path)))


def show_figure(fig, path, *, dpi: int = 100) -> Path:
    """Save a matplotlib ``Figure`` to ``path`` (PNG, ``dpi`` dots per inch), display it,
    and return the path.

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
    return path
