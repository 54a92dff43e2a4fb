"""The chapter's pipeline as functions: prepare, pretrain, fine-tune, evaluate, generate.

The command line (:mod:`minillm.cli`) and the demo call these; so can a notebook. A
*run folder* holds everything one stage produced::

    RUN/
      run.json                 what was trained, on what (task, corpus, backend, sizes)
      data.json                the data contract (below; also inside every checkpoint)
      tokenizer.json           the tokenizer (also inside every checkpoint)
      run_config.json          the run configuration (model, training, backend, device; RunConfig)
      train_config.json        the trainer's hyper-parameters
      metrics.jsonl            one JSON record per step (+ validation at eval steps)
      loss.png                 loss curves
      checkpoints/last/        the latest state (weights, optimizer, step, RNG) — --resume
      checkpoints/best/        the lowest validation loss so far
      eval.json                written by `minillm evaluate` (+ confusion.png for classifiers)

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
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..core.config import ModelConfig
from ..data import (BPETokenizer, CharTokenizer, Tokenizer, WordTokenizer, load_csv, load_jsonl,
                    load_text, python_docs, sentiment, split, split_contiguous)
from ..data.loaders import LabelledTexts, Splits
from ..store.runs import Run, load_run
from ..store.runtime import Runtime
from .evaluation import evaluate_classifier, evaluate_lm
from .contract import EMBEDDED, sha256, source_of, split_sizes
from .entry import EVAL_BATCH, RUN_FILES, TrainedRun, train
from .generation import generate as _generate
from .run_config import RunConfig
from .tasks import (causal_lm_eval_batches,
                    classification_eval_batches, masked_lm_eval_batches)
from .training import TrainConfig

__all__ = ["TOKENIZERS", "load_corpus", "train_tokenizer", "prepare", "load_prepared", "pretrain",
           "finetune", "evaluate", "generate_text", "load_run_model", "load_labelled", "text_dataset",
           "prepared_dataset", "labelled_dataset", "evaluation_data", "RUN_FILES"]

logger = logging.getLogger("minillm")

TOKENIZERS = {"bpe": BPETokenizer, "char": CharTokenizer, "word": WordTokenizer}
TEXT_FRACTIONS = (0.9, 0.05, 0.05)         # a corpus, cut in order (train, validation, test)
LABELLED_FRACTIONS = (0.8, 0.1, 0.1)       # a labelled file, shuffled with the run's seed
# EVAL_BATCH, EMBEDDED and RUN_FILES (what a run and evaluate write; overwrite=True deletes these only)
# are those of minillm.train.entry and minillm.train.contract


# -- data ---------------------------------------------------------------------------------

def load_corpus(corpus: str) -> str:
    """``"python_docs"`` (embedded), ``"sentiment"`` (the embedded sentiment set's
    training texts, one a line, labels unseen: what a classifier's encoder is pretrained
    on; its validation and test texts stay unseen), or a path to a .txt, .jsonl ("text"
    field) or .csv ("text" column) file."""
    if corpus == "python_docs":
        return python_docs()
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

_sha256, _source, _sizes = sha256, source_of, split_sizes        # the names this module used


def _labelled_sha(dataset: str, data: Splits) -> str:
    """A file's bytes; the embedded set's rows (it is generated from the seed)."""
    if dataset == "sentiment":
        rows = [[name, part.texts, part.labels, list(part.label_names)] for name, part in zip(Splits._fields, data)]
        return _sha256(json.dumps(rows).encode("utf-8"))
    return _sha256(Path(dataset).read_bytes())


def text_dataset(corpus: str, text: str, splits: Splits, fractions=TEXT_FRACTIONS) -> dict:
    """The contract's ``dataset`` of a corpus (``python_docs`` or a text file) whose token
    ids were cut in order into ``splits`` with ``fractions``: evaluation re-reads the
    text, checks its sha256, encodes it with the run's tokenizer and cuts it again."""
    return {"kind": "text", "source": _source(corpus), "sha256": _sha256(text.encode("utf-8")),
            "split": {"method": "contiguous", "fractions": list(fractions), "unit": "tokens",
                      "sizes": _sizes(splits)}}


def prepared_dataset(folder, splits: Splits) -> dict:
    """The contract's ``dataset`` of a folder written by :func:`prepare`."""
    digest = hashlib.sha256()
    for part in splits:
        digest.update(np.asarray(part, dtype=np.int64).tobytes())
    return {"kind": "prepared", "source": _source(folder), "sha256": digest.hexdigest(),
            "split": {"method": "prepared", "unit": "tokens", "sizes": _sizes(splits)}}


def labelled_dataset(dataset: str, data: Splits, *, seed: int = 0, text_column: str = "text",
                     label_column: str = "label") -> dict:
    """The contract's ``dataset`` of ``load_labelled(dataset, seed=seed, ...)``: the
    source, its sha256, the columns, and the split (seed, fractions, sizes)."""
    method = "sentiment groups" if dataset == "sentiment" else "shuffled"
    return {"kind": "labelled", "source": _source(dataset), "sha256": _labelled_sha(dataset, data),
            "text_column": text_column, "label_column": label_column,
            "split": {"method": method, "fractions": list(LABELLED_FRACTIONS), "seed": int(seed),
                      "unit": "rows", "sizes": _sizes(data)}}


# -- training: thin wrappers of minillm.train.entry.train, kept for one release ----------------

def _batch_size_argument(train_config: TrainConfig, batch_size: int | None, caller: str) -> TrainConfig:
    """``train_config`` with the deprecated ``batch_size=`` argument moved into it."""
    if batch_size is None:
        return train_config
    warnings.warn(f"pipeline.{caller}(batch_size=...) is deprecated: the batch size is part of the run's "
                  f"TrainConfig (TrainConfig(batch_size=...), TrainConfig.recipe(..., batch_size=...))",
                  DeprecationWarning, stacklevel=3)
    return replace(train_config, batch_size=batch_size)


def pretrain(tok: Tokenizer, splits: Splits, out, *, task: str = "causal_lm", model_config: ModelConfig,
             train_config: TrainConfig, batch_size: int | None = None, backend: str = "torch", device: str = "cpu",
             amp: bool = False, resume: bool = False, progress: bool = True, runtime: Runtime | None = None,
             source: str = "", dataset: dict | None = None, overwrite: bool = False,
             fused: bool = True) -> dict:
    """Pretrain a GPT (``task="causal_lm"``) or an encoder (``task="masked_lm"``):
    :func:`minillm.train.entry.train` with its result as the dict of earlier releases
    (the JSON figures and the live ``model`` and ``runtime``). New code:
    ``train(task, out, RunConfig(model_config, train_config, backend=...), data=splits,
    tokenizer=tok)``, which returns a :class:`~minillm.train.entry.TrainedRun`.

    ``dataset`` says how ``splits`` were made (:func:`text_dataset`,
    :func:`prepared_dataset`), so that ``evaluate`` can rebuild the held-out split;
    without it the splits are recorded as given and ``evaluate`` needs ``dataset`` or
    ``corpus_dir``. An ``out`` that already holds a run needs ``resume`` or ``overwrite``.
    ``fused`` (torch): the fast path (default) or the explicit formulas; see
    :class:`~minillm.store.runtime.Runtime`. The batch size is ``train_config.batch_size``
    (``batch_size=`` is deprecated and kept for one release).
    """
    if task not in ("causal_lm", "masked_lm"):
        raise ValueError(f"pretrain task must be 'causal_lm' or 'masked_lm', got {task!r}")
    train_config = _batch_size_argument(train_config, batch_size, "pretrain")
    if runtime is not None:               # the runtime given decides where the run runs
        backend, device, amp, fused = runtime.backend, runtime.device, runtime.amp, runtime.fused
    run_config = RunConfig(model_config, train_config, backend=backend, device=device, amp=amp, fused=fused)
    run = train(task, out, run_config, data=splits, tokenizer=tok, resume=resume, overwrite=overwrite,
                progress=progress, runtime=runtime, source=source, dataset=dataset)
    return pretrain_result(run)


def pretrain_result(run: TrainedRun) -> dict:
    """The dict :func:`pretrain` returned before :class:`~minillm.train.entry.TrainedRun`."""
    return {"task": run.task, "steps": run.steps, "train_loss": run.train_loss,
            "skipped_steps": run.skipped_steps, "validation": dict(run.validation),
            "validation_of": f"the model after step {run.steps} (checkpoints/last)",
            "best_checkpoint": None if run.checkpoint is None else dict(run.checkpoint),
            "data": dict(run.data_info), "run_dir": str(run.run_dir), "model": run.model, "runtime": run.runtime}


def finetune(tok: Tokenizer, data: Splits, out, *, model_config: ModelConfig, train_config: TrainConfig,
             encoder_state=None, pooling: str = "mean", batch_size: int | None = None, backend: str = "torch",
             device: str = "cpu", amp: bool = False, resume: bool = False, progress: bool = True,
             source: str = "", dataset: dict | None = None, overwrite: bool = False,
             fused: bool = True) -> dict:
    """Fine-tune a SequenceClassifier (a real classification head on the encoder),
    starting from ``encoder_state`` (a pretrained TransformerEncoder's state dict):
    :func:`minillm.train.entry.train` (``task="classification"``) with its result as the
    dict of earlier releases. New code: ``train("classification", out, run_config,
    data=data, tokenizer=tok, encoder_state=..., pooling=...)``.

    ``dataset`` says how ``data`` was made (:func:`labelled_dataset`), so that
    ``evaluate`` rebuilds the same test split. The test scores returned are those of
    ``checkpoints/best`` (the lowest validation loss), the checkpoint ``evaluate``
    loads, and the returned model holds its weights. An ``out`` that already holds a run
    needs ``resume`` or ``overwrite``. ``fused`` and ``batch_size``: as in :func:`pretrain`.
    """
    train_config = _batch_size_argument(train_config, batch_size, "finetune")
    run_config = RunConfig(model_config, train_config, backend=backend, device=device, amp=amp, fused=fused)
    run = train("classification", out, run_config, data=data, tokenizer=tok, resume=resume, overwrite=overwrite,
                progress=progress, source=source, dataset=dataset, encoder_state=encoder_state, pooling=pooling)
    return finetune_result(run)


def finetune_result(run: TrainedRun) -> dict:
    """The dict :func:`finetune` returned before :class:`~minillm.train.entry.TrainedRun`."""
    return {"task": run.task, "steps": run.steps, "train_loss": run.train_loss,
            "validation": dict(run.validation), "test": None if run.test is None else dict(run.test),
            "checkpoint": None if run.checkpoint is None else dict(run.checkpoint),
            "label_names": list(run.label_names or ()), "run_dir": str(run.run_dir), "model": run.model,
            "runtime": run.runtime}


# -- using a run --------------------------------------------------------------------------

def load_run_model(run, backend: str = "numpy", device: str = "cpu", fused: bool = True):
    """``(runtime, model, tokenizer, extra)``: :func:`minillm.store.runs.load_run` as a
    tuple, kept for one release (``extra`` is the checkpoint's, with the data contract
    under ``"data"`` and ``"checkpoint"``: the folder loaded and its step). New code:
    ``load_run(run, backend=...)``, whose :class:`~minillm.store.runs.Run` names each part."""
    warnings.warn("pipeline.load_run_model is deprecated; use minillm.store.runs.load_run",
                  DeprecationWarning, stacklevel=2)
    loaded = load_run(run, backend=backend, device=device, fused=fused)
    return loaded.runtime, loaded.model, loaded.tokenizer, _extra(loaded)


def _extra(loaded: Run) -> dict:
    """The checkpoint's extra as evaluation reads it: the data contract under ``"data"``,
    the checkpoint loaded under ``"checkpoint"``, the task."""
    return {**loaded.extra, "data": dict(loaded.data), "checkpoint": loaded.checkpoint_info, "task": loaded.task}


def run_label_names(extra: dict, n_classes: int | None = None) -> list[str]:
    """The classifier's label names in id order: the data contract's, else the
    checkpoint's own (runs written before the contract existed), else with
    ``n_classes`` the ids as names ("0", "1", ...)."""
    names = (extra.get("data") or {}).get("label_names") or extra.get("label_names")
    if not names and n_classes:
        names = [str(k) for k in range(n_classes)]
    if not names:
        raise ValueError("expected the run's label names in its data contract, found none")
    return list(names)


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


def evaluation_data(run, extra: dict, tok: Tokenizer | None = None, *, dataset: str | None = None,
                    corpus_dir=None, split_name: str | None = None, text_column: str | None = None,
                    label_column: str | None = None):
    """What ``evaluate`` scores: ``(data, info)``; ``data`` is LabelledTexts in the run's
    label ids (classifiers) or token ids (LMs, encoded with ``tok``).

    Without ``dataset`` / ``corpus_dir``: the run's own data, rebuilt from its data
    contract (its sha256 checked), split as the run split it; ``split_name`` defaults
    to ``"test"``. With data that is not the run's own: all of it (``split_name="all"``)
    unless a split is asked for, cut with the run's fractions and seed.
    ``info`` names the source, the split, its size and whether it is the run's own data.
    """
    contract = extra.get("data") or {}
    own = contract.get("dataset") or {"kind": "given", "source": extra.get("source", "")}
    if extra.get("task") == "classification":
        return _labelled_eval_data(run, extra, own, dataset, split_name, text_column, label_column)
    return _text_eval_data(run, own, tok, dataset, corpus_dir, split_name)


def _labelled_eval_data(run, extra, own, dataset, split_name, text_column, label_column):
    run_names = run_label_names(extra)
    seed = int(own.get("split", {}).get("seed", 0))
    text_column = text_column or own.get("text_column", "text")
    label_column = label_column or own.get("label_column", "label")
    if dataset is None:
        if not _rebuildable(own):
            raise ValueError(f"{run}: the run's data was handed to the library without a recipe "
                             f"(data contract kind {own.get('kind')!r}, source {own.get('source')!r}), so its "
                             f"test split cannot be rebuilt; pass --dataset (scored whole)")
        dataset = own["source"]
    parts = load_labelled(dataset, seed=seed, text_column=text_column, label_column=label_column)
    sha = _labelled_sha(dataset, parts)
    is_own = _rebuildable(own) and sha == own["sha256"]
    if not is_own and _rebuildable(own) and _source(dataset) == own["source"] and dataset != "sentiment":
        _check_same(own, sha, str(dataset))
    if is_own and _sizes(parts) != own["split"]["sizes"]:
        raise ValueError(f"{dataset}: split sizes {_sizes(parts)} differ from the run's {own['split']['sizes']}")
    split_name = split_name or ("test" if is_own else "all")
    data = _concat(list(parts)) if split_name == "all" else getattr(parts, split_name)
    info = {"source": _source(dataset), "split": split_name, "rows": len(data), "runs_own_data": is_own,
            "split_seed": seed}
    if split_name == "all" and is_own:
        info["note"] = "all rows of the run's own data: its training rows included"
    return _in_run_ids(data, run_names, str(dataset), run), info


def _text_eval_data(run, own, tok, dataset, corpus_dir, split_name):
    fractions = tuple(own.get("split", {}).get("fractions", TEXT_FRACTIONS))
    if corpus_dir is None and dataset is None:
        if not _rebuildable(own):
            raise ValueError(f"{run}: the run's data was handed to the library without a recipe "
                             f"(data contract kind {own.get('kind')!r}, source {own.get('source')!r}), so its "
                             f"held-out split cannot be rebuilt; pass --data FOLDER or --dataset CORPUS")
        if own["kind"] == "prepared":
            corpus_dir = own["source"]
        else:
            dataset = own["source"]
    if corpus_dir is not None:
        splits = load_prepared(corpus_dir)[1]
        sha, source = prepared_dataset(corpus_dir, splits)["sha256"], _source(corpus_dir)
    else:
        text = load_corpus(dataset)
        sha, source = _sha256(text.encode("utf-8")), _source(dataset)
        splits = split_contiguous(np.asarray(tok.encode(text), dtype=np.int64), fractions)
    is_own = _rebuildable(own) and sha == own["sha256"]
    if not is_own and _rebuildable(own) and source == own["source"] and source not in EMBEDDED:
        _check_same(own, sha, source)
    if is_own and _sizes(splits) != own["split"]["sizes"]:
        raise ValueError(f"{source}: split sizes {_sizes(splits)} (tokens) differ from the run's "
                         f"{own['split']['sizes']}: was it encoded with another tokenizer?")
    split_name = split_name or ("test" if is_own else "all")
    ids = np.concatenate([np.asarray(p, dtype=np.int64) for p in splits]) if split_name == "all" \
        else np.asarray(getattr(splits, split_name), dtype=np.int64)
    return ids, {"source": source, "split": split_name, "tokens": int(len(ids)), "runs_own_data": is_own}


def evaluate(run, *, backend: str = "numpy", device: str = "cpu", dataset: str | None = None,
             corpus_dir=None, split_name: str | None = None, text_column: str | None = None,
             label_column: str | None = None, fused: bool = True) -> dict:
    """Evaluate a run: perplexity for LMs, accuracy/P/R/F1 for classifiers.

    The checkpoint is the run's ``checkpoints/best`` (else ``last``; or the checkpoint
    folder given); the data is the run's own held-out split, rebuilt from its data
    contract, unless ``dataset`` / ``corpus_dir`` name other data (see
    :func:`evaluation_data`). The scores say which checkpoint (path, step) and which data
    (source, split, size) they are of. ``fused``: as in :func:`pretrain`.
    """
    loaded = load_run(run, backend=backend, device=device, fused=fused)
    rt, model, tok, extra = loaded.runtime, loaded.model, loaded.tokenizer, _extra(loaded)
    task, T = loaded.task, model.config.block_size
    data, info = evaluation_data(run, extra, tok, dataset=dataset, corpus_dir=corpus_dir, split_name=split_name,
                                 text_column=text_column, label_column=label_column)
    if task == "classification":
        batches = classification_eval_batches([tok.encode(t)[:T] for t in data.texts], data.labels, EVAL_BATCH,
                                              pad_id=tok.pad_id, max_len=T)
        scores = evaluate_classifier(rt, model, batches, model.n_classes)
        scores["label_names"] = list(data.label_names)
    else:
        if task == "causal_lm":
            batches = causal_lm_eval_batches(data, T, EVAL_BATCH)
        else:
            seed = int((extra.get("train_config") or {}).get("seed", 0))    # the masks validation used
            batches = masked_lm_eval_batches(data, T, EVAL_BATCH, mask_id=tok.mask_id, vocab_size=tok.vocab_size,
                                             special_ids=tok.special_ids, seed=seed)
        scores = evaluate_lm(rt, model, batches)
    scores.update(task=task, split=info["split"], backend=backend, checkpoint=extra["checkpoint"], data=info)
    return scores


def generate_text(run, prompt: str, *, max_new_tokens: int = 100, temperature: float = 0.8,
                  top_k: int | None = 40, top_p: float | None = None, seed: int | None = 0,
                  backend: str = "numpy", device: str = "cpu", use_cache: bool = True,
                  fused: bool = True) -> str:
    loaded = load_run(run, backend=backend, device=device, fused=fused, task="causal_lm")
    rt, model, tok = loaded.runtime, loaded.model, loaded.tokenizer
    prompt_ids = tok.encode(prompt) or [tok.bos_id]
    new = _generate(rt, model, prompt_ids, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                    seed=seed, eos_id=tok.eos_id, use_cache=use_cache)
    return tok.decode(new, skip_special_tokens=True)

