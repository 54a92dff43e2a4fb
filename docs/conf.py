"""Sphinx configuration of the minillm documentation.

Build (what CI runs, in tests/docs/test_docs.py; warnings are errors):

    python -m sphinx -W --keep-going -b html docs docs/_build/html

The notebooks (``docs/notebooks`` links to ``../notebooks``) are rendered as committed:
without outputs, since CI executes them separately (tests/docs/test_notebooks.py) and the
committed files carry none (see CONTRIBUTING.md). For a local site with every plot and
printout, execute them during the build (about 3 minutes on a laptop CPU):

    MINILLM_DOCS_EXECUTE=1 python -m sphinx -b html docs docs/_build/html
"""
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))          # autodoc imports the package from this checkout

import minillm  # noqa: E402

project = "minillm"
author = "the minillm authors"
copyright = "the minillm authors, MIT licence"
release = version = minillm.__version__

extensions = [
    "myst_nb",                 # Markdown (MyST) pages and .ipynb notebooks
    "sphinx.ext.autodoc",      # the API reference, from the docstrings
    "sphinx.ext.mathjax",      # LaTeX in pages and docstrings
    "sphinx.ext.viewcode",     # "[source]" links: the code beside its formula
]

# -- MyST: $...$ and $$...$$ math, ::: fences ------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3

# -- notebooks -------------------------------------------------------------------------
if os.environ.get("MINILLM_DOCS_EXECUTE") == "1":
    nb_execution_mode = "force"
    nb_execution_timeout = 120
    nb_execution_raise_on_error = True
    nb_execution_in_temp = True        # figures and runs land in a temporary folder
else:
    nb_execution_mode = "off"

# -- autodoc ---------------------------------------------------------------------------
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"      # the order the file reads in
autodoc_typehints = "description"
autodoc_preserve_defaults = True

# -- sources and output ----------------------------------------------------------------
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = [
    "_build", "**/.ipynb_checkpoints",
    "notebooks/README.md",     # the GitHub view of the folder; notebooks.md is the docs' index
    "notebooks/runs", "notebooks/src",
]
html_theme = "alabaster"
html_title = f"minillm {release}"
html_theme_options = {"description": "every formula of LLM training, twice, proven equal",
                      "fixed_sidebar": True}

# Other modules' docstrings this site renders are RST read by autodoc; their tables and
# layouts must be valid RST or the build (warnings as errors) fails. Ambiguous short
# cross-references (":mod:`linear`" exists in both backends, on purpose) are not errors.
suppress_warnings = ["ref.python"]
