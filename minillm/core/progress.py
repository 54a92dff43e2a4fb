"""Training progress that shows wherever stderr goes.

In a terminal: tqdm's bar (step, loss, learning rate, tokens/s, time left). Anywhere
else (a notebook, a log file, a CI job), where a bar would be silent or garbage: one
plain line at the first step, then at most every ``interval`` seconds, and at the
last step::

    [causal_lm] step 120/1200  loss 4.812  9,400 tokens/s  elapsed 0:13  left 2:01

Evaluations add a line each (their scores and how long they took). The estimates:
tokens/s = the tokens of the steps since the previous line over those steps' own
time (evaluations and checkpoints excluded); time left = steps left times the mean
wall time of this run's steps so far (evaluations included, as they recur).

:class:`Progress` writes, it does not log: the trainer creates one on rank 0 only.
The clock and the interval are arguments, so tests drive it without waiting.
"""
from __future__ import annotations

import math
import sys
import time
from typing import Callable, TextIO

__all__ = ["Progress", "format_duration"]

DEFAULT_INTERVAL = 10.0   # seconds between two lines when the stream is not a terminal


def format_duration(seconds: float) -> str:
    """``m:ss`` under an hour, ``h:mm:ss`` from an hour on; ``?`` when unknown
    (NaN, infinite or negative)."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):    # no isatty, or a closed file
        return False


class Progress:
    """Reports a training run's progress on ``stream`` (default: ``sys.stderr`` at
    :meth:`start`).

    ``bar``: ``None`` (default) picks tqdm's bar when the stream is a terminal and tqdm
    is installed, plain lines otherwise; ``True`` / ``False`` force the choice (``True``
    without tqdm falls back to lines). ``interval``: the least number of seconds
    between two lines (the first and the last step always get one). ``clock``: a
    function returning seconds (default ``time.monotonic``).

    Use: ``start(total, initial)`` once, ``update(step, loss, tokens, lr, seconds)``
    after each step (``step`` counts the steps done, so the last is ``total``),
    ``evaluated(step, scores, seconds)`` after each evaluation, ``close()`` at the end
    (it also reports a step not yet shown, for a run that stopped early).
    """

    def __init__(self, desc: str = "train", *, stream: TextIO | None = None, interval: float = DEFAULT_INTERVAL,
                 clock: Callable[[], float] = time.monotonic, bar: bool | None = None):
        if not interval >= 0:
            raise ValueError(f"interval must be a number of seconds >= 0, got {interval!r}")
        self.desc, self.interval, self.clock = desc, float(interval), clock
        self._stream, self._want_bar = stream, bar
        self._bar = None
        self._started = False

    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stderr

    # -- the run ------------------------------------------------------------------------
    def start(self, total: int, initial: int = 0) -> None:
        """A run of ``total`` steps, ``initial`` of them already done (a resumed run)."""
        if not 0 <= initial <= total:
            raise ValueError(f"expected 0 <= initial <= total, got initial={initial}, total={total}")
        self.total, self.initial = int(total), int(initial)
        self.t0 = self.clock()
        self.step, self.loss, self.lr = self.initial, math.nan, None
        self._tokens_since, self._seconds_since = 0, 0.0     # tokens and step time since the last line
        self._last_line_t, self._last_line_step = self.t0, self.initial
        self._last_update_t = self.t0
        self._started = True
        self._bar = self._make_bar() if self._use_bar() else None

    def _use_bar(self) -> bool:
        return self._want_bar if self._want_bar is not None else _is_terminal(self.stream)

    def _make_bar(self):
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return None                                  # no tqdm: lines instead
        return tqdm(total=self.total, initial=self.initial, desc=self.desc, file=self.stream,
                    leave=False, disable=False)

    def update(self, step: int, loss: float, tokens: int = 0, lr: float | None = None,
               seconds: float | None = None) -> None:
        """``step`` steps are done; the last one's ``loss``, ``tokens`` (the global batch's
        token count), learning rate ``lr`` and the ``seconds`` it took (default: the
        clock's time since the previous update)."""
        now = self.clock()
        if seconds is None:
            seconds = now - self._last_update_t
        self._last_update_t = now
        self.step, self.loss, self.lr = int(step), float(loss), lr
        self._tokens_since += int(tokens)
        self._seconds_since += float(seconds)
        if self._bar is not None:
            postfix = {"loss": f"{self.loss:.4f}"}
            if lr is not None:
                postfix["lr"] = f"{lr:.2e}"
            rate = self._tokens_per_s()
            if rate is not None:
                postfix["tok/s"] = f"{rate:,.0f}"
            self._bar.set_postfix(postfix, refresh=False)
            self._bar.update(self.step - self._bar.n)      # redraws (at most every 0.1 s) with them
            self._mark(now)
            return
        first = self._last_line_step == self.initial
        if first or self.step >= self.total or now - self._last_line_t >= self.interval:
            self._line(now)

    def evaluated(self, step: int, scores: dict, seconds: float) -> None:
        """An evaluation after ``step`` steps gave ``scores`` (``loss``, maybe
        ``perplexity`` / ``accuracy`` / ``f1``) and took ``seconds``."""
        if not scores:
            return
        parts = [f"validation loss {scores['loss']:.3f}"]
        for key in ("perplexity", "accuracy", "f1"):
            if key in scores:
                parts.append(f"{key} {scores[key]:.3f}" if key != "perplexity" else f"{key} {scores[key]:.1f}")
        took = f"{seconds:.1f}s" if seconds < 60 else format_duration(seconds)
        self._write(f"[{self.desc}] step {step}/{self.total}  {'  '.join(parts)}  (evaluated in {took})")

    def note(self, text: str) -> None:
        """A line of its own (e.g. which checkpoint a run kept), prefixed with the run's name."""
        self._write(f"[{self.desc}] {text}")

    def close(self) -> None:
        if not self._started:
            return
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.step != self._last_line_step:          # stopped between two lines: say where
            self._line(self.clock())
        self._started = False

    # -- lines --------------------------------------------------------------------------
    def _tokens_per_s(self) -> float | None:
        dt = self._seconds_since
        return self._tokens_since / dt if dt > 0 and self._tokens_since else None

    def _mark(self, now: float) -> None:
        """A line (or a bar update) was shown: the next rate starts here."""
        self._tokens_since, self._seconds_since = 0, 0.0
        self._last_line_t, self._last_line_step = now, self.step

    def _line(self, now: float) -> None:
        rate = self._tokens_per_s()
        elapsed = now - self.t0
        done = self.step - self.initial
        left = elapsed / done * (self.total - self.step) if done > 0 else math.nan
        tokens = f"{rate:,.0f} tokens/s" if rate is not None else "? tokens/s"
        self._write(f"[{self.desc}] step {self.step}/{self.total}  loss {self.loss:.3f}  {tokens}  "
                    f"elapsed {format_duration(elapsed)}  left {format_duration(left)}")
        self._mark(now)

    def _write(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text, file=self.stream)     # above the bar, which redraws below
        else:
            print(text, file=self.stream, flush=True)
