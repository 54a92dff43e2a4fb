"""The data side of the chapter's pipeline: read a corpus or a labelled file, train a
tokenizer, ``prepare`` a corpus once, and say how the data was made (the data contract's
``dataset``: :func:`text_dataset`, :func:`prepared_dataset`, :func:`labelled_dataset`).

Training is :func:`minillm.train.entry.train`, loading a run
:func:`minillm.store.runs.load_run`, scoring it :func:`minillm.train.run_evaluation.evaluate`.
A *run folder* holds everything one run produced::

    RUN/
      run.json                 what was trained, on what (task, corpus, backend, sizes)
      data.json                the data contract (below; also inside every checkpoint)
      tokenizer.json           the tokenizer (also inside every checkpoint)
      run_config.json          the run configuration (model, training, backend, device; RunConfig)
      train_config.json        the trainer's hyper-parameters
      metrics.jsonl            one JSON record per step, from step 1 (+ validation at eval steps)
      loss.png                 loss curves
      checkpoints/last/        the latest state (weights, optimizer, step, RNG) — --resume
      checkpoints/best/        the best validation so far, by the task's score (TaskSpec.best_by)
      eval.json                the latest `minillm evaluate` (+ confusion.png for classifiers); it says what it replaced

The *data contract* (``data.json``, and ``extra["data"]`` of every checkpoint) says
how the run's data was made, so that every consumer (``evaluate``, ``serve``, a
notebook) uses the same one: the dataset's source (``python_docs``, ``sentiment``, a
file's absolute path or a ``prepare`` folder) and the sha256 of its content, how it was
split (method, fractions, seed, sizes), the label names in id order, the tokenizer and
the block size (texts are cut to their first ``block_size`` tokens). ``evaluate`` of a
run on its own data rebuilds exactly the run's held-out split (and refuses when the file
changed); on another labelled file it maps the labels through the run's own names, and a
label the run never saw is an error.

A training run never replaces a run silently: a folder that already holds one is an
error unless ``resume=True`` (continue it) or ``overwrite=True`` (delete it first; only
the files a run writes are deleted).

Everything is read from local files or the corpora embedded in minillm; nothing is
downloaded.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from ..data import (BPETokenizer, CharTokenizer, Tokenizer, WordTokenizer, load_csv, load_jsonl,
                    load_text, python_docs, sentiment, split, split_contiguous)
from ..data.instructions import training_requests
from ..data.loaders import Splits
from .contract import sha256, source_of, split_sizes

__all__ = ["TOKENIZERS", "TEXT_FRACTIONS", "LABELLED_FRACTIONS", "load_corpus", "train_tokenizer", "prepare",
           "load_prepared", "load_labelled", "text_dataset", "prepared_dataset", "labelled_dataset",
           "labelled_sha"]

logger = logging.getLogger("minillm")

TOKENIZERS = {"bpe": BPETokenizer, "char": CharTokenizer, "word": WordTokenizer}
TEXT_FRACTIONS = (0.9, 0.05, 0.05)         # a corpus, cut in order (train, validation, test)
LABELLED_FRACTIONS = (0.8, 0.1, 0.1)       # a labelled file, shuffled with the run's seed


# -- data ---------------------------------------------------------------------------------

def load_corpus(corpus: str) -> str:
    """``"python_docs"`` (embedded), ``"sentiment"`` (the embedded sentiment set's
    training texts, one a line, labels unseen: what a classifier's encoder is pretrained
    on; its validation and test texts stay unseen), ``"python_docs+requests"`` (the Python
    docs, then the user turns of the embedded instruction set's training rows, answers
    unseen, no held-out question among them: what a GPT for ``sft`` is pretrained on, see
    :func:`~minillm.data.instructions.training_requests`), or a path to a .txt, .jsonl
    ("text" field) or .csv ("text" column) file."""
    if corpus == "python_docs":
        return python_docs()
    if corpus == "python_docs+requests":
        return python_docs() + "\n" + training_requests()
    if corpus == "sentiment":
        return "\n".join(sentiment(seed=0).train.texts)
    path = Path(corpus)
    if path.suffix == ".jsonl":
        return "\n".join(load_jsonl(path))
    if path.suffix == ".csv":
        return "\n".join(load_csv(path))
    return load_text(path)


def train_tokenizer(kind: str, text: str, vocab_size: int) -> Tokenizer:
    if kind not in TOKENIZERS:
        raise ValueError(f"tokenizer must be one of {sorted(TOKENIZERS)}, got {kind!r}")
    if kind == "bpe":
        return BPETokenizer.train(text, vocab_size=vocab_size)
    if kind == "word":
        return WordTokenizer.train(text, max_size=vocab_size)
    return CharTokenizer.train(text)


def prepare(corpus: str, out, *, tokenizer: str = "bpe", vocab_size: int = 1024,
            fractions=(0.9, 0.05, 0.05)) -> dict:
    """Tokenize a corpus once: ``out/tokenizer.json`` and ``out/{train,validation,test}.npy``
    (int64 token ids, contiguous splits in corpus order; no pickle)."""
    out = Path(out)
    text = load_corpus(corpus)
    tok = train_tokenizer(tokenizer, text, vocab_size)
    ids = np.asarray(tok.encode(text), dtype=np.int64)
    parts = split_contiguous(ids, fractions)
    out.mkdir(parents=True, exist_ok=True)
    tok.save(out / "tokenizer.json")
    for name, part in zip(("train", "validation", "test"), parts):
        np.save(out / f"{name}.npy", np.asarray(part, dtype=np.int64), allow_pickle=False)
    info = {"corpus": corpus, "tokenizer": tokenizer, "vocab_size": tok.vocab_size,
            "characters": len(text), "tokens": {n: int(len(p)) for n, p in zip(("train", "validation", "test"), parts)}}
    (out / "prepare.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    return info


def load_prepared(folder) -> tuple[Tokenizer, Splits]:
    folder = Path(folder)
    if not (folder / "tokenizer.json").exists():
        raise FileNotFoundError(f"{folder}: expected a folder written by `minillm prepare` "
                                f"(tokenizer.json, train.npy, validation.npy, test.npy)")
    tok = Tokenizer.load(folder / "tokenizer.json")
    parts = [np.load(folder / f"{n}.npy", allow_pickle=False) for n in ("train", "validation", "test")]
    return tok, Splits(*parts)


def load_labelled(dataset: str, *, seed: int = 0, text_column: str = "text",
                  label_column: str = "label") -> Splits:
    """``"sentiment"`` (embedded) or a labelled .csv / .jsonl file, split 80/10/10."""
    if dataset == "sentiment":
        return sentiment(seed=seed)
    path = Path(dataset)
    if path.suffix == ".csv":
        data = load_csv(path, text_column=text_column, label_column=label_column)
    elif path.suffix == ".jsonl":
        data = load_jsonl(path, field=text_column, label_field=label_column)
    else:
        raise ValueError(f"{path}: expected 'sentiment' or a labelled .csv or .jsonl file, got suffix {path.suffix!r}")
    parts = split(list(range(len(data))), LABELLED_FRACTIONS, seed)
    return Splits(*(data.subset(p) for p in parts))


# -- the data contract --------------------------------------------------------------------

def labelled_sha(dataset: str, data: Splits) -> str:
    """A file's bytes; the embedded set's rows (it is generated from the seed)."""
    if dataset == "sentiment":
        rows = [[name, part.texts, part.labels, list(part.label_names)] for name, part in zip(Splits._fields, data)]
        return sha256(json.dumps(rows).encode("utf-8"))
    return sha256(Path(dataset).read_bytes())


def text_dataset(corpus: str, text: str, splits: Splits, fractions=TEXT_FRACTIONS) -> dict:
    """The contract's ``dataset`` of a corpus (``python_docs`` or a text file) whose token
    ids were cut in order into ``splits`` with ``fractions``: evaluation re-reads the
    text, checks its sha256, encodes it with the run's tokenizer and cuts it again."""
    return {"kind": "text", "source": source_of(corpus), "sha256": sha256(text.encode("utf-8")),
            "split": {"method": "contiguous", "fractions": list(fractions), "unit": "tokens",
                      "sizes": split_sizes(splits)}}


def prepared_dataset(folder, splits: Splits) -> dict:
    """The contract's ``dataset`` of a folder written by :func:`prepare`."""
    digest = hashlib.sha256()
    for part in splits:
        digest.update(np.asarray(part, dtype=np.int64).tobytes())
    return {"kind": "prepared", "source": source_of(folder), "sha256": digest.hexdigest(),
            "split": {"method": "prepared", "unit": "tokens", "sizes": split_sizes(splits)}}


def labelled_dataset(dataset: str, data: Splits, *, seed: int = 0, text_column: str = "text",
                     label_column: str = "label") -> dict:
    """The contract's ``dataset`` of ``load_labelled(dataset, seed=seed, ...)``: the
    source, its sha256, the columns, and the split (seed, fractions, sizes)."""
    method = "sentiment groups" if dataset == "sentiment" else "shuffled"
    return {"kind": "labelled", "source": source_of(dataset), "sha256": labelled_sha(dataset, data),
            "text_column": text_column, "label_column": label_column,
            "split": {"method": method, "fractions": list(LABELLED_FRACTIONS), "seed": int(seed),
                      "unit": "rows", "sizes": split_sizes(data)}}
