"""Ctrl-C as one line and exit status 130, whenever it comes (even while the modules
below are still being imported)."""
from __future__ import annotations

import signal
import sys
import threading

__all__ = ["CtrlC", "interrupted"]


class CtrlC:
    """SIGINT as Python's default does it (``KeyboardInterrupt``), but remembered: some
    C-extension imports (NumPy's, torch's) turn a ``KeyboardInterrupt`` raised inside them
    into an ``ImportError``, which must end as an interrupt too, not as ``error: ...``."""

    seen = False

    @classmethod
    def handler(cls, signum, frame):
        cls.seen = True
        raise KeyboardInterrupt

    @classmethod
    def install(cls):
        """Our handler, where Python's default one is in place (not where SIGINT is ignored,
        or another handler was set by the caller); returns the handler to restore."""
        if threading.current_thread() is not threading.main_thread():
            return None
        previous = signal.getsignal(signal.SIGINT)
        if previous is not signal.default_int_handler:
            return None
        signal.signal(signal.SIGINT, cls.handler)
        return previous

    @staticmethod
    def restore(previous) -> None:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def interrupted(where: str = "") -> int:
    print(f"interrupted{where}", file=sys.stderr)
    # CPython (3.11) sets its "unhandled KeyboardInterrupt" flag when a KeyboardInterrupt
    # leaves code that exec() runs from a string (dataclasses build their __init__ that way
    # while our modules import), even when the interrupt is then caught, and may end the
    # process by SIGINT (status -2) instead of with ours; an exec() of a string that
    # completes clears the flag. Seen: Ctrl-C 0.3-1.5 s after NumPy's import, about 1 run
    # in 6 ended by SIGINT (tests/cli/test_cli_messages.py), none in 34 runs with this line.
    exec("")
    return 130
