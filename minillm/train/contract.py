"""The data contract of a run (``data.json``, and ``extra["data"]`` of every checkpoint):
how the run's data was made, so that every consumer uses the same one.

``{"version": 1, "dataset": {...}, "tokenizer": {...}, "block_size": T, ...}``: the
dataset's ``kind`` (``text``, ``prepared``, ``labelled``: rebuildable from their source;
``generated``: an embedded generator's, from its seed; ``given``: handed over in memory,
recorded only), its ``source`` and sha256, how it was split, the tokenizer (kind, size,
sha256 of its JSON) and, for classifiers, the label names in id order. The recipes of the
rebuildable kinds are in :mod:`minillm.train.pipeline`.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

__all__ = ["EMBEDDED", "data_contract", "given_dataset", "generated_dataset", "split_sizes", "sha256",
           "source_of"]

EMBEDDED = ("python_docs", "sentiment", "python_docs+requests")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def source_of(name) -> str:
    """An embedded corpus's name, or a file or folder's absolute path (a run is used
    from other working directories)."""
    return name if str(name) in EMBEDDED else str(Path(name).resolve())


def split_sizes(splits) -> dict:
    """``{split name: its length}`` of a named tuple of splits (train, validation, test)."""
    return {name: int(len(part)) for name, part in zip(splits._fields, splits)}


def given_dataset(source: str, splits, unit: str) -> dict:
    """Splits handed to the library with no recipe: recorded, not rebuildable. ``splits``:
    the Splits themselves, or their sizes by name (``{"train": n, "test": m}``)."""
    sizes = ({k: int(v) for k, v in splits.items()} if isinstance(splits, Mapping) else split_sizes(splits))
    return {"kind": "given", "source": source, "split": {"method": "given", "unit": unit, "sizes": sizes}}


def generated_dataset(source: str, sizes: dict, unit: str, seed: int = 0) -> dict:
    """An embedded generator's data (the dates corpus, the QA facts): rebuilt from
    ``source``, ``sizes`` and ``seed``."""
    return {"kind": "generated", "source": source,
            "split": {"method": "generated", "seed": int(seed), "unit": unit,
                      "sizes": {k: int(v) for k, v in sizes.items()}}}


def data_contract(dataset: dict, tok, block_size: int, label_names=None) -> dict:
    """The contract of ``dataset`` (one of the dicts above), encoded with ``tok`` (any
    tokenizer with ``kind``, ``vocab_size`` and ``to_dict()``) and cut to ``block_size``."""
    tok_json = json.dumps(tok.to_dict(), sort_keys=True).encode("utf-8")
    contract = {"version": 1, "dataset": dataset,
                "tokenizer": {"file": "tokenizer.json", "kind": tok.kind, "vocab_size": tok.vocab_size,
                              "sha256": sha256(tok_json)},
                "block_size": int(block_size), "truncation": "the first block_size tokens of each text"}
    if label_names is not None:
        contract["label_names"] = list(label_names)
        contract["label_ids"] = {name: i for i, name in enumerate(label_names)}
    return contract
