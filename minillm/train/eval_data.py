"""The data ``minillm evaluate`` scores, rebuilt from a run's data contract.

A run records how its data was made (``data.json``: the source, its sha256, how it was
split; :mod:`minillm.train.pipeline`); evaluating the run on its own data rebuilds
exactly its held-out split, and refuses when the file changed since. Other data is
scored whole unless a split is asked for; a labelled file's labels are mapped through
the run's own names, and a label the run never saw is an error. A run on an embedded
generator's data (the dates, the QA facts) is scored on that data, generated again. The
tasks' ``evaluate``
(:mod:`minillm.train.task_specs`) read their data here.
"""
from __future__ import annotations

import numpy as np

from ..data import split_contiguous
from ..data.loaders import LabelledTexts
from ..store.runs import Run
from .contract import EMBEDDED, sha256, source_of, split_sizes
from .pipeline import (TEXT_FRACTIONS, labelled_sha, load_corpus, load_labelled, load_prepared,
                       prepared_dataset)

__all__ = ["labelled_eval_data", "text_eval_data", "generated_eval_data"]


def _concat(parts) -> LabelledTexts:
    return LabelledTexts([t for p in parts for t in p.texts], [y for p in parts for y in p.labels],
                         parts[0].label_names)


def _in_run_ids(data: LabelledTexts, run_names: list[str], dataset: str, run) -> LabelledTexts:
    """``data`` with its labels renumbered by the run's names (a file numbers its own
    labels in sorted order); a label the run never saw is an error."""
    used = sorted({data.label_names[y] for y in data.labels})
    unseen = [name for name in used if name not in run_names]
    if unseen:
        raise ValueError(f"{dataset}: label(s) {unseen} were never seen by the run {run}, which was "
                         f"trained on the labels {run_names} (ids 0..{len(run_names) - 1})")
    index = {name: i for i, name in enumerate(run_names)}
    return LabelledTexts(data.texts, [index[data.label_names[y]] for y in data.labels], tuple(run_names))


def _rebuildable(dataset: dict) -> bool:
    return dataset.get("kind") in ("text", "prepared", "labelled")


def _check_same(dataset: dict, sha: str, what: str) -> None:
    if sha != dataset["sha256"]:
        raise ValueError(f"{what}: its content changed since the run was trained (sha256 {sha[:12]}..., "
                         f"the run's data contract says {dataset['sha256'][:12]}...), so the run's held-out "
                         f"split cannot be rebuilt; pass the data to score explicitly")


def _own(run: Run) -> dict:
    """The run's own dataset record (its data contract's ``dataset``)."""
    return dict(run.data.get("dataset") or {"kind": "given", "source": ""})


def labelled_eval_data(run: Run, *, dataset: str | None = None, split_name: str | None = None,
                       text_column: str | None = None, label_column: str | None = None,
                       corpus_dir=None) -> tuple[LabelledTexts, dict]:
    """What ``evaluate`` scores of a run trained on labelled texts: ``(texts, info)``,
    the labels in the run's ids (a file's labels mapped through the run's names).

    Without ``dataset``: the run's own data, rebuilt from its data contract (its sha256
    checked), split as the run split it; ``split_name`` defaults to ``"test"``. With data
    that is not the run's own: all of it (``split_name="all"``) unless a split is asked
    for, cut with the run's fractions and seed. ``info`` names the source, the split, its
    size and whether it is the run's own data. (``corpus_dir`` is for token runs.)"""
    if corpus_dir is not None:
        raise ValueError(f"{run.folder}: --data (a prepared token folder) scores language models; "
                         f"a run on labelled texts takes --dataset")
    own, run_names = _own(run), run.label_names
    if not run_names:
        raise ValueError(f"{run.folder}: expected the run's label names in its data contract, found none")
    seed = int(own.get("split", {}).get("seed", 0))
    text_column = text_column or own.get("text_column", "text")
    label_column = label_column or own.get("label_column", "label")
    if dataset is None:
        if not _rebuildable(own):
            raise ValueError(f"{run.folder}: the run's data was handed to the library without a recipe "
                             f"(data contract kind {own.get('kind')!r}, source {own.get('source')!r}), so its "
                             f"test split cannot be rebuilt; pass --dataset (scored whole)")
        dataset = own["source"]
    parts = load_labelled(dataset, seed=seed, text_column=text_column, label_column=label_column)
    sha = labelled_sha(dataset, parts)
    is_own = _rebuildable(own) and sha == own["sha256"]
    if not is_own and _rebuildable(own) and source_of(dataset) == own["source"] and dataset != "sentiment":
        _check_same(own, sha, str(dataset))
    if is_own and split_sizes(parts) != own["split"]["sizes"]:
        raise ValueError(f"{dataset}: split sizes {split_sizes(parts)} differ from the run's {own['split']['sizes']}")
    split_name = split_name or ("test" if is_own else "all")
    data = _concat(list(parts)) if split_name == "all" else getattr(parts, split_name)
    info = {"source": source_of(dataset), "split": split_name, "rows": len(data), "runs_own_data": is_own,
            "split_seed": seed}
    if split_name == "all" and is_own:
        info["note"] = "all rows of the run's own data: its training rows included"
    return _in_run_ids(data, run_names, str(dataset), run.folder), info


def text_eval_data(run: Run, *, dataset: str | None = None, corpus_dir=None, split_name: str | None = None,
                   text_column: str | None = None, label_column: str | None = None) -> tuple[np.ndarray, dict]:
    """What ``evaluate`` scores of a run trained on token ids: ``(ids, info)``, the text
    encoded with the run's tokenizer. Without ``dataset`` / ``corpus_dir``: the run's own
    held-out split, rebuilt from its data contract (its sha256 checked); with other data,
    all of it unless a split is asked for. (The columns are for labelled runs: ignored.)"""
    own, tok = _own(run), run.tokenizer
    fractions = tuple(own.get("split", {}).get("fractions", TEXT_FRACTIONS))
    if corpus_dir is None and dataset is None:
        if not _rebuildable(own):
            raise ValueError(f"{run.folder}: the run's data was handed to the library without a recipe "
                             f"(data contract kind {own.get('kind')!r}, source {own.get('source')!r}), so its "
                             f"held-out split cannot be rebuilt; pass --data FOLDER or --dataset CORPUS")
        if own["kind"] == "prepared":
            corpus_dir = own["source"]
        else:
            dataset = own["source"]
    if corpus_dir is not None:
        splits = load_prepared(corpus_dir)[1]
        sha, source = prepared_dataset(corpus_dir, splits)["sha256"], source_of(corpus_dir)
    else:
        text = load_corpus(dataset)
        sha, source = sha256(text.encode("utf-8")), source_of(dataset)
        splits = split_contiguous(np.asarray(tok.encode(text), dtype=np.int64), fractions)
    is_own = _rebuildable(own) and sha == own["sha256"]
    if not is_own and _rebuildable(own) and source == own["source"] and source not in EMBEDDED:
        _check_same(own, sha, source)
    if is_own and split_sizes(splits) != own["split"]["sizes"]:
        raise ValueError(f"{source}: split sizes {split_sizes(splits)} (tokens) differ from the run's "
                         f"{own['split']['sizes']}: was it encoded with another tokenizer?")
    split_name = split_name or ("test" if is_own else "all")
    ids = np.concatenate([np.asarray(p, dtype=np.int64) for p in splits]) if split_name == "all" \
        else np.asarray(getattr(splits, split_name), dtype=np.int64)
    return ids, {"source": source, "split": split_name, "tokens": int(len(ids)), "runs_own_data": is_own}


def generated_eval_data(run: Run, make, *, dataset: str | None = None, corpus_dir=None,
                        split_name: str | None = None, text_column: str | None = None,
                        label_column: str | None = None) -> tuple[list, dict]:
    """What ``evaluate`` scores of a run trained on an embedded generator's data (the
    contract's ``kind: generated``): ``make(n_train, n_test, seed) -> (train, test)``
    called again with the sizes and seed the run recorded; ``split_name`` ``"test"``
    (default) or ``"train"``. Other data (``dataset``, ``corpus_dir``) is not taken:
    such a run is scored on its own generator."""
    own = _own(run)
    if dataset is not None or corpus_dir is not None:
        raise ValueError(f"{run.folder}: a {run.task} run is scored on its own held-out examples; "
                         f"--dataset and --data name files, which this task does not read")
    if own.get("kind") != "generated":
        raise ValueError(f"{run.folder}: the run's data was handed to the library without a recipe (data "
                         f"contract kind {own.get('kind')!r}), so its held-out examples cannot be rebuilt")
    split = own.get("split") or {}
    name = split_name or "test"
    if name not in ("train", "test"):
        raise ValueError(f"expected --split train or test for a run on {own.get('source')!r} (it has no "
                         f"validation split), got {name!r}")
    sizes = split["sizes"]
    train, test = make(int(sizes["train"]), int(sizes["test"]), int(split.get("seed", 0)))
    rows = train if name == "train" else test
    return rows, {"source": own.get("source"), "split": name, "rows": len(rows), "runs_own_data": True}
