"""``python -m minillm ...``: the ``minillm`` command, for an interpreter whose scripts
folder is not on the PATH (or to pick the interpreter explicitly)."""
from .cli import main

raise SystemExit(main())
