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

``sentiment`` comes from :func:`~minillm.data.corpora.sentiment`, ``iso_date`` from
:func:`~minillm.data.parallel.dates_corpus`, ``extractive_qa`` from
:func:`~minillm.data.qa.qa_corpus`; ``instruction`` is written here: upper-case, reverse
or count two to four words, or repeat one or two words two to four times, the words drawn from
the QA corpus's lists. Every answer is one short line, so a greedy answer is scored by
exact match.

Each task draws its held-out rows from a generator of their own, as the first ``n_test``
of a pool of :data:`HELD_OUT_POOL`, and its training rows from another, cleared of every
question of that pool (a sentiment sentence's mirror, the same clauses in the other
order, counts as the same question). So the held-out rows do not depend on ``n_train``,
and no training row of any size, nor the pretraining text of :func:`training_requests`,
asks a held-out question. The set is a pure function of its sizes and seed (each task
its own generators, so one task's size changes no other's rows).
"""
from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import numpy as np

from ..core._validate import require_int_at_least
from .corpora import sentiment
from .parallel import dates_corpus
from .qa import ANIMALS, CITIES, COLOURS, JOBS, NAMES, qa_corpus

__all__ = ["INSTRUCTION_TASKS", "DEFAULT_N_TRAIN", "HELD_OUT_POOL", "instruction_set", "training_requests",
           "write_jsonl"]

INSTRUCTION_TASKS = ("sentiment", "iso_date", "extractive_qa", "instruction")
_WORDS = tuple(sorted(set(NAMES + CITIES + JOBS + COLOURS + ANIMALS)))
_COUNTS = ("two", "three", "four")
DEFAULT_N_TRAIN = 3000        # training rows of each task, `minillm sft`'s default
HELD_OUT_POOL = 200           # the held-out rows of any size come from a pool of this many a task


def _row(task: str, user: str, answer: str) -> dict:
    return {"task": task, "messages": [{"role": "user", "content": user},
                                       {"role": "assistant", "content": answer}]}


# -- each task: n rows from a seed, and the key that says two rows ask the same thing ------

def _sentiment_rows(n: int, seed: int) -> list[dict]:
    part = sentiment(n=max(n, 2), seed=seed, fractions=(1.0, 0.0, 0.0)).train
    return [_row("sentiment", f"Sentiment: {text}", part.label_names[label])
            for text, label in zip(part.texts[:n], part.labels[:n])]


def _date_rows(n: int, seed: int) -> list[dict]:
    return [_row("iso_date", f"ISO date: {source}", iso) for source, iso in dates_corpus(n, 1, seed=seed)[0]]


def _qa_rows(n: int, seed: int) -> list[dict]:
    return [_row("extractive_qa", f"{ex['context']} {ex['question'][0].upper()}{ex['question'][1:]}", ex["answer"])
            for ex in qa_corpus(n, 1, seed=seed)[0]]


def _instruction(rng: np.random.Generator) -> tuple[str, str]:
    """One simple request over the QA corpus's words, and its answer."""
    kind = int(rng.integers(4))
    if kind == 3:                                     # repeat one or two words k times
        k = int(rng.integers(2, 5))
        words = [str(w) for w in rng.choice(_WORDS, size=int(rng.integers(1, 3)), replace=False)]
        return f"Repeat {_COUNTS[k - 2]} times: {' '.join(words)}", " ".join(words * k)
    words = [str(w) for w in rng.choice(_WORDS, size=int(rng.integers(2, 5)), replace=False)]
    if kind == 0:
        return f"Upper-case: {' '.join(words)}", " ".join(words).upper()
    if kind == 1:
        return f"Reverse: {' '.join(words)}", " ".join(reversed(words))
    return f"Count the words: {' '.join(words)}", str(len(words))


def _instruction_rows(n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    seen, rows = set(), []
    while len(rows) < n:
        user, answer = _instruction(rng)
        if user not in seen:
            seen.add(user)
            rows.append(_row("instruction", user, answer))
    return rows


def _request(row: dict) -> str:
    return row["messages"][0]["content"]


def _sentiment_key(row: dict) -> frozenset:
    """A sentence's clauses, in either order: a contrast sentence and its mirror ("X, but
    Y." and "Y, but X.") are one question, so a held-out sentence's mirror never trains."""
    return frozenset(_request(row).removeprefix("Sentiment: ").rstrip(".").split(", but "))


_BUILDERS = {"sentiment": _sentiment_rows, "iso_date": _date_rows, "extractive_qa": _qa_rows,
             "instruction": _instruction_rows}
_KEYS = {"sentiment": _sentiment_key, "iso_date": _request, "extractive_qa": _request, "instruction": _request}


@functools.lru_cache(maxsize=16)
def _pool(task: str, seed: int) -> tuple[tuple[tuple[str, str], ...], frozenset]:
    """A task's held-out pool, as (user, answer) pairs, and the keys of its questions."""
    rows = _BUILDERS[task](HELD_OUT_POOL, seed)
    return (tuple((_request(r), r["messages"][1]["content"]) for r in rows),
            frozenset(_KEYS[task](r) for r in rows))


def _task_rows(task: str, n_train: int, n_test: int, seed: int) -> tuple[list[dict], list[dict]]:
    """One task's ``(train, held_out)``: the held-out rows the first ``n_test`` of a pool of
    :data:`HELD_OUT_POOL` drawn from their own generator, the training rows drawn from
    another and cleared of every question of that pool (:data:`_KEYS`), so no held-out
    question of any size ever trains, whatever ``n_train``."""
    pool, banned = _pool(task, int(np.random.default_rng([seed, 1]).integers(2**31)))
    train_seed = int(np.random.default_rng([seed, 0]).integers(2**31))
    size = n_train
    while True:                  # draw more until n_train rows are left once the pool's are cleared
        train = [row for row in _BUILDERS[task](size, train_seed) if _KEYS[task](row) not in banned]
        if len(train) >= n_train:
            return train[:n_train], [_row(task, user, answer) for user, answer in pool[:n_test]]
        size += n_train - len(train) + 8


def instruction_set(n_train: int = DEFAULT_N_TRAIN, n_test: int = 50, *,
                    seed: int = 0) -> tuple[list[dict], list[dict]]:
    """``(train, held_out)``: ``n_train`` and ``n_test`` rows of each task of
    :data:`INSTRUCTION_TASKS` (module docstring), the tasks' rows in turn (row i of each
    task, then row i + 1), so any prefix of ``train`` mixes them. The held-out rows depend
    on ``n_test`` and ``seed`` only (the first ``n_test`` of a fixed pool), and no training
    row of any size asks one of the pool's questions. Raises ``ValueError`` for sizes below
    1 or ``n_test`` above :data:`HELD_OUT_POOL`."""
    require_int_at_least("n_train", n_train, 1)
    require_int_at_least("n_test", n_test, 1)
    if n_test > HELD_OUT_POOL:
        raise ValueError(f"n_test must be at most {HELD_OUT_POOL} (the held-out pool of each task), got {n_test}")
    parts = [_task_rows(task, n_train, n_test, int(np.random.default_rng([seed, k]).integers(2**31)))
             for k, task in enumerate(INSTRUCTION_TASKS)]
    return tuple([row for rows in zip(*(p[split] for p in parts)) for row in rows] for split in (0, 1))


def training_requests(n_train: int = DEFAULT_N_TRAIN, *, seed: int = 0) -> str:
    """The user turns of :func:`instruction_set`'s training rows, one a line, answers left
    out: the text a base model for SFT is pretrained on beside the Python docs (corpus
    ``python_docs+requests`` of :func:`minillm.train.pipeline.load_corpus`), as the demo's
    encoder is pretrained on the sentiment set's unlabelled texts. No held-out question is
    among them (:func:`instruction_set`)."""
    return "\n".join(_request(row) for row in instruction_set(n_train, 1, seed=seed)[0])


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
