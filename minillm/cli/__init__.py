"""The ``minillm`` command: demo, prepare, pretrain, finetune, sft, evaluate, generate, embed,
translate, answer, serve, bench.

One module per command group: :mod:`~minillm.cli.training` (prepare, pretrain,
finetune), :mod:`~minillm.cli.tuning` (sft), :mod:`~minillm.cli.runs` (evaluate, generate, embed), :mod:`~minillm.cli.apps`
(translate, answer), :mod:`~minillm.cli.serve`, :mod:`~minillm.cli.tools` (bench, demo);
the options they share are :mod:`~minillm.cli.options`, ``--resume``'s recorded values
:mod:`~minillm.cli.resume`, and :mod:`~minillm.cli.main` parses, runs and turns errors
into messages.

Only this package prints; the library logs through ``logging.getLogger("minillm")``.
Bad input ends with ``error: ...`` and exit status 2, never a traceback; bad values of
options are refused by argparse, before anything runs, with the option's own name.
Ctrl-C ends with one line and exit status 130, whenever it comes (even while the
modules below are still being imported: :mod:`~minillm.cli.interrupt`).
"""
import sys

from .interrupt import CtrlC, interrupted

_previous = CtrlC.install()
try:  # NumPy and the pipeline take about a second to import: Ctrl-C then is no traceback either
    from .main import build_parser, main
    from .options import TRAINING_OPTIONS
except (KeyboardInterrupt, ImportError):
    if not CtrlC.seen:
        raise
    sys.exit(interrupted())
finally:
    CtrlC.restore(_previous)

__all__ = ["main", "build_parser", "TRAINING_OPTIONS"]
