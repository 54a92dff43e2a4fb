"""The embedded instruction set: conversations built from the library's own seeded tasks,
for instruction tuning (SFT, issue 26) with nothing downloaded.

Each row is ``{"task": NAME, "messages": [{"role": "user", ...}, {"role": "assistant", ...}]}``,
the conversation format of ``transformers``, ``trl`` and the OpenAI API. The tasks:

================  ==========================================================  ==============
task              user                                                        assistant
================  ==========================================================  ==============
``sentiment``     Sentiment: the plot was not good.                          negative
``iso_date``      ISO date: march the first , nineteen ninety-four            1994-03-01
``extractive_qa`` dana lives in paris . omar has a red cat . Where does omar...  red cat
``instruction``   Upper-case: red cat / Reverse: a b c / Count the words: ...  RED CAT / ...
================  ==========================================================  ==============

``sentiment`` comes from :func:`~minillm.data.corpora.sentiment` (its test split gives the
held-out rows), ``iso_date`` from :func:`~minillm.data.parallel.dates_corpus`,
``extractive_qa`` from :func:`~minillm.data.qa.qa_corpus` (held-out rows from their own
test splits, whose sources never occur in training); ``instruction`` is written here:
upper-case, reverse or count two to four words, or repeat one word two to four times, the
words drawn from the QA corpus's lists, a held-out row's request never a training row's.
Every answer is one short line, so a greedy answer is scored by exact match.

The set is a pure function of its sizes and seed (each task its own generator, so one
task's size changes no other's rows).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..core._validate import require_int_at_least
from .corpora import sentiment
from .parallel import dates_corpus
from .qa import ANIMALS, CITIES, COLOURS, JOBS, NAMES, qa_corpus

__all__ = ["INSTRUCTION_TASKS", "instruction_set", "write_jsonl"]

INSTRUCTION_TASKS = ("sentiment", "iso_date", "extractive_qa", "instruction")
_WORDS = tuple(sorted(set(NAMES + CITIES + JOBS + COLOURS + ANIMALS)))
_COUNTS = ("two", "three", "four")


def _row(task: str, user: str, answer: str) -> dict:
    return {"task": task, "messages": [{"role": "user", "content": user},
                                       {"role": "assistant", "content": answer}]}


def _sentiment_rows(n_train: int, n_test: int, seed: int):
    data = sentiment(n=max(10 * n_train, 10 * n_test, 20), seed=seed, fractions=(0.5, 0.0, 0.5))
    rows = []
    for part, n in ((data.train, n_train), (data.test, n_test)):
        if len(part) < n:
            raise ValueError(f"the sentiment set gave {len(part)} rows, expected {n}")
        rows.append([_row("sentiment", f"Sentiment: {text}", part.label_names[label])
                     for text, label in zip(part.texts[:n], part.labels[:n])])
    return rows


def _date_rows(n_train: int, n_test: int, seed: int):
    return [[_row("iso_date", f"ISO date: {source}", iso) for source, iso in part]
            for part in dates_corpus(n_train, n_test, seed=seed)]


def _qa_rows(n_train: int, n_test: int, seed: int):
    return [[_row("extractive_qa", f"{ex['context']} {ex['question'][0].upper()}{ex['question'][1:]}",
                  ex["answer"]) for ex in part]
            for part in qa_corpus(n_train, n_test, seed=seed)]


def _instruction(rng: np.random.Generator) -> tuple[str, str]:
    """One simple request over the QA corpus's words, and its answer."""
    kind = int(rng.integers(4))
    if kind == 3:                                     # repeat one word k times
        k = int(rng.integers(2, 5))
        word = str(rng.choice(_WORDS))
        return f"Repeat {_COUNTS[k - 2]} times: {word}", " ".join([word] * k)
    words = [str(w) for w in rng.choice(_WORDS, size=int(rng.integers(2, 5)), replace=False)]
    if kind == 0:
        return f"Upper-case: {' '.join(words)}", " ".join(words).upper()
    if kind == 1:
        return f"Reverse: {' '.join(words)}", " ".join(reversed(words))
    return f"Count the words: {' '.join(words)}", str(len(words))


def _instruction_rows(n_train: int, n_test: int, seed: int):
    rng = np.random.default_rng(seed)
    seen, rows = set(), []
    while len(rows) < n_train + n_test:
        user, answer = _instruction(rng)
        if user not in seen:
            seen.add(user)
            rows.append(_row("instruction", user, answer))
    return rows[:n_train], rows[n_train:]


_BUILDERS = {"sentiment": _sentiment_rows, "iso_date": _date_rows, "extractive_qa": _qa_rows,
             "instruction": _instruction_rows}


def instruction_set(n_train: int = 600, n_test: int = 50, *, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """``(train, held_out)``: ``n_train`` and ``n_test`` rows of each task of
    :data:`INSTRUCTION_TASKS` (module docstring), the tasks' rows in turn (row i of each
    task, then row i + 1), so any prefix of ``train`` mixes them. Raises ``ValueError``
    for sizes below 1."""
    require_int_at_least("n_train", n_train, 1)
    require_int_at_least("n_test", n_test, 1)
    parts = [_BUILDERS[task](n_train, n_test, int(np.random.default_rng([seed, k]).integers(2**31)))
             for k, task in enumerate(INSTRUCTION_TASKS)]
    return tuple([row for rows in zip(*(p[split] for p in parts)) for row in rows] for split in (0, 1))


def write_jsonl(rows, path: str | os.PathLike) -> Path:
    """Write ``rows`` (dicts, e.g. :func:`instruction_set`'s) to ``path`` as JSONL, one row
    a line, UTF-8, atomically (a temp file renamed into place)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
