"""Read user files (.txt, .jsonl, .csv) and split them, with errors that say what is wrong.

Every error names the file and what was expected: a missing file, bytes that are not
UTF-8 (with the byte offset), an empty or whitespace-only file, a JSON line that does
not parse or lacks the field, a CSV without the named column (listing the columns it
has).
"""
from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np


@dataclass(frozen=True)
class LabelledTexts:
    """Texts with integer labels; ``label_names[label]`` is the label's name."""

    texts: list[str]
    labels: list[int]
    label_names: tuple[str, ...]

    def __post_init__(self):
        if len(self.texts) != len(self.labels):
            raise ValueError(f"got {len(self.texts)} texts but {len(self.labels)} labels")
        bad = [y for y in self.labels if not 0 <= y < len(self.label_names)]
        if bad:
            raise ValueError(f"labels must be in [0, {len(self.label_names)}), got {bad[0]}")

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i: int) -> tuple[str, int]:
        return self.texts[i], self.labels[i]

    def subset(self, indices: Sequence[int]) -> "LabelledTexts":
        return LabelledTexts([self.texts[i] for i in indices], [self.labels[i] for i in indices], self.label_names)


class Splits(NamedTuple):
    train: Any
    validation: Any
    test: Any


def _split_sizes(n: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-9:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1 (train, validation, test), got {tuple(fractions)}")
    n_val, n_test = round(fractions[1] * n), round(fractions[2] * n)
    return n - n_val - n_test, n_val, n_test


def split(items, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0) -> Splits:
    """Shuffle with ``default_rng(seed)`` and cut into (train, validation, test).

    Sizes: validation ``round(f_val * n)``, test ``round(f_test * n)``, train the rest.
    Works on a sequence (gives lists) or on :class:`LabelledTexts` (gives LabelledTexts).
    """
    n_train, n_val, _ = _split_sizes(len(items), fractions)
    order = np.random.default_rng(seed).permutation(len(items)).tolist()
    parts = order[:n_train], order[n_train:n_train + n_val], order[n_train + n_val:]
    if isinstance(items, LabelledTexts):
        return Splits(*(items.subset(p) for p in parts))
    return Splits(*([items[i] for i in p] for p in parts))


def split_contiguous(seq, fractions: Sequence[float] = (0.9, 0.05, 0.05)) -> Splits:
    """Cut a text or token sequence into three contiguous parts, in order (no shuffle):
    a language model is validated on held-out *continuous* text."""
    n_train, n_val, _ = _split_sizes(len(seq), fractions)
    return Splits(seq[:n_train], seq[n_train:n_train + n_val], seq[n_train + n_val:])


def _read_text(path: str | os.PathLike, expected: str) -> tuple[Path, str]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file (expected {expected})")
    if not path.is_file():
        raise ValueError(f"{path}: not a regular file (expected {expected})")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")          # a leading byte-order mark is dropped
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{path}: not valid UTF-8 at byte offset {e.start} (byte {raw[e.start:e.start + 1]!r}); "
            f"expected {expected} encoded as UTF-8 (convert it, e.g. iconv -f latin1 -t utf-8)"
        ) from None
    if not text.strip():
        raise ValueError(f"{path}: the file is empty or only whitespace; expected {expected}")
    return path, text


def load_text(path: str | os.PathLike) -> str:
    """The whole file as one string (UTF-8)."""
    return _read_text(path, "UTF-8 text")[1]


def _labelled(path: Path, texts: list[str], raw_labels: list | None):
    if raw_labels is None:
        return texts
    names = sorted({str(y) for y in raw_labels})
    index = {name: i for i, name in enumerate(names)}
    return LabelledTexts(texts, [index[str(y)] for y in raw_labels], tuple(names))


def load_jsonl(path: str | os.PathLike, field: str = "text", label_field: str | None = None):
    """One JSON object per line; returns the ``field`` strings, or :class:`LabelledTexts`
    when ``label_field`` is given (label names sorted, ids in that order). Blank lines are skipped."""
    path, text = _read_text(path, f"JSON lines with a {field!r} field")
    texts, labels = [], ([] if label_field else None)
    for n, line in enumerate(text.split("\n"), start=1):   # not splitlines: U+2028 may sit inside a JSON string
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}, line {n}: not valid JSON ({e.msg}); expected one JSON object per line") from None
        if not isinstance(obj, dict) or field not in obj:
            keys = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
            raise ValueError(f"{path}, line {n}: expected an object with a {field!r} field, got {keys}")
        if not isinstance(obj[field], str):
            raise ValueError(f"{path}, line {n}: field {field!r} must be a string, got {type(obj[field]).__name__}")
        texts.append(obj[field])
        if label_field:
            if label_field not in obj:
                raise ValueError(f"{path}, line {n}: expected a {label_field!r} field, got {sorted(obj)}")
            labels.append(obj[label_field])
    return _labelled(path, texts, labels)


def load_csv(path: str | os.PathLike, text_column: str = "text", label_column: str | None = None):
    """A CSV with a header row; returns the ``text_column`` values, or :class:`LabelledTexts`
    when ``label_column`` is given (label names sorted, ids in that order)."""
    path, text = _read_text(path, f"CSV with a header row and a {text_column!r} column")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    columns = reader.fieldnames or []
    for col in (text_column, label_column):
        if col is not None and col not in columns:
            raise ValueError(f"{path}: no column {col!r}; the columns are {columns}")
    texts, labels = [], ([] if label_column else None)
    for row in reader:
        texts.append(row[text_column] or "")
        if label_column:
            labels.append(row[label_column])
    if not texts:
        raise ValueError(f"{path}: the CSV has a header but no rows; expected at least one row")
    return _labelled(path, texts, labels)
