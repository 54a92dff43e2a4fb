"""The chapter's pipeline as functions: prepare, pretrain, fine-tune, evaluate, generate.

The command line (:mod:`minillm.cli`) and the demo call these; so can a notebook. A
*run folder* holds everything one stage produced::

    RUN/
      run.json                 what was trained, on what (task, corpus, backend, sizes)
      tokenizer.json           the tokenizer (also inside every checkpoint)
      train_config.json        the trainer's hyper-parameters
      metrics.jsonl            one JSON record per step (+ validation at eval steps)
      loss.png                 loss curves
      checkpoints/last/        the latest state (weights, optimizer, step, RNG) — --resume
      checkpoints/best/        the lowest validation loss so far
      eval.json                written by `minillm evaluate` (+ confusion.png for classifiers)

Everything is read from local files or the corpora embedded in minillm; nothing is
downloaded.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from . import model_io
from .config import ModelConfig
from .data import (BPETokenizer, CharTokenizer, Tokenizer, WordTokenizer, load_csv, load_jsonl,
                   load_text, python_docs, sentiment, split, split_contiguous)
from .data.loaders import LabelledTexts, Splits
from .evaluation import evaluate_classifier, evaluate_lm
from .generation import generate as _generate
from .runtime import Runtime
from .tasks import (CausalLMData, ClassificationData, MaskedLMData, causal_lm_eval_batches,
                    classification_eval_batches, masked_lm_eval_batches)
from .training import TrainConfig, Trainer

__all__ = ["TOKENIZERS", "load_corpus", "train_tokenizer", "prepare", "load_prepared", "pretrain",
           "finetune", "evaluate", "generate_text", "load_run_model", "load_labelled"]

logger = logging.getLogger("minillm")

TOKENIZERS = {"bpe": BPETokenizer, "char": CharTokenizer, "word": WordTokenizer}
EVAL_BATCH = 32


# -- data ---------------------------------------------------------------------------------

def load_corpus(corpus: str) -> str:
    """``"python_docs"`` (embedded) or a path to a .txt, .jsonl ("text" field) or .csv
    ("text" column) file."""
    if corpus == "python_docs":
        return python_docs()
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
    parts = split(list(range(len(data))), (0.8, 0.1, 0.1), seed)
    return Splits(*(data.subset(p) for p in parts))


# -- training -----------------------------------------------------------------------------

def _write_run(out: Path, runtime, info: dict, tok: Tokenizer) -> None:
    if runtime.is_main:
        out.mkdir(parents=True, exist_ok=True)
        tok.save(out / "tokenizer.json")
        (out / "run.json").write_text(json.dumps(info, indent=2), encoding="utf-8")


def pretrain(tok: Tokenizer, splits: Splits, out, *, task: str = "causal_lm", model_config: ModelConfig,
             train_config: TrainConfig, batch_size: int = 16, backend: str = "torch", device: str = "cpu",
             amp: bool = False, resume: bool = False, progress: bool = True, runtime: Runtime | None = None,
             source: str = "", fused: bool = True) -> dict:
    """Pretrain a GPT (``task="causal_lm"``) or an encoder (``task="masked_lm"``).
    ``fused`` (torch): the fast path (default) or the explicit formulas; see
    :class:`~minillm.runtime.Runtime`."""
    if task not in ("causal_lm", "masked_lm"):
        raise ValueError(f"pretrain task must be 'causal_lm' or 'masked_lm', got {task!r}")
    out = Path(out)
    rt = runtime or Runtime.from_env(backend, device, amp, fused)
    cfg, tc, T = model_config, train_config, model_config.block_size
    if task == "causal_lm":
        model = rt.module.GPT(cfg, seed=tc.seed)
        data = CausalLMData(splits.train, T, batch_size, tc.seed, rank=rt.rank, world_size=rt.world_size)
        eval_data = causal_lm_eval_batches(splits.validation, T, EVAL_BATCH)
    else:
        model = rt.module.TransformerEncoder(cfg, seed=tc.seed)
        masking = dict(mask_id=tok.mask_id, vocab_size=tok.vocab_size, special_ids=tok.special_ids)
        data = MaskedLMData(splits.train, T, batch_size, seed=tc.seed, rank=rt.rank, world_size=rt.world_size, **masking)
        eval_data = masked_lm_eval_batches(splits.validation, T, EVAL_BATCH, seed=tc.seed, **masking)
    model = rt.prepare(model)
    _write_run(out, rt, {"task": task, "source": source, "backend": rt.backend, "device": rt.device,
                         "fused": rt.fused, "batch_size": batch_size, "model_config": cfg.to_dict(),
                         "world_size": rt.world_size}, tok)
    trainer = Trainer(rt, model, tc.optimizer(rt, model), data, tc, task=task, eval_data=eval_data,
                      run_dir=out, tokenizer=tok.to_dict(), progress=progress,
                      metadata={"batch_size": batch_size})
    result = trainer.fit(resume=resume)
    return {"task": task, "steps": result.step, "train_loss": result.last_loss,
            "skipped_steps": result.skipped_steps,
            "validation": trainer.last_eval or (trainer.evaluate() if rt.is_main else {}), "run_dir": str(out),
            "model": model, "runtime": rt}


def finetune(tok: Tokenizer, data: Splits, out, *, model_config: ModelConfig, train_config: TrainConfig,
             encoder_state=None, pooling: str = "mean", batch_size: int = 16, backend: str = "torch",
             device: str = "cpu", amp: bool = False, resume: bool = False, progress: bool = True,
             source: str = "", fused: bool = True) -> dict:
    """Fine-tune a SequenceClassifier (a real classification head on the encoder),
    starting from ``encoder_state`` (a pretrained TransformerEncoder's state dict).
    ``fused``: as in :func:`pretrain`."""
    out = Path(out)
    rt = Runtime.from_env(backend, device, amp, fused)
    tc, T = train_config, model_config.block_size
    n_classes = len(data.train.label_names)
    model = rt.module.SequenceClassifier(model_config, n_classes=n_classes, pooling=pooling, seed=tc.seed)
    if encoder_state is not None:
        model.load_encoder_state(encoder_state)
    model = rt.prepare(model)
    encode = lambda texts: [tok.encode(t)[:T] for t in texts]  # noqa: E731
    train = ClassificationData(encode(data.train.texts), data.train.labels, batch_size, pad_id=tok.pad_id,
                               max_len=T, seed=tc.seed, rank=rt.rank, world_size=rt.world_size)
    val = classification_eval_batches(encode(data.validation.texts), data.validation.labels, EVAL_BATCH,
                                      pad_id=tok.pad_id, max_len=T)
    _write_run(out, rt, {"task": "classification", "source": source, "backend": rt.backend,
                         "device": rt.device, "fused": rt.fused,
                         "label_names": list(data.train.label_names), "batch_size": batch_size,
                         "model_config": model_config.to_dict(), "pretrained": encoder_state is not None}, tok)
    trainer = Trainer(rt, model, tc.optimizer(rt, model), train, tc, task="classification", eval_data=val,
                      run_dir=out, tokenizer=tok.to_dict(), n_classes=n_classes, progress=progress,
                      metadata={"label_names": list(data.train.label_names), "batch_size": batch_size})
    result = trainer.fit(resume=resume)
    test = classification_eval_batches(encode(data.test.texts), data.test.labels, EVAL_BATCH,
                                       pad_id=tok.pad_id, max_len=T)
    return {"task": "classification", "steps": result.step, "train_loss": result.last_loss,
            "validation": trainer.last_eval or trainer.evaluate(),
            "test": evaluate_classifier(rt, model, test, n_classes),
            "label_names": list(data.train.label_names), "run_dir": str(out), "model": model, "runtime": rt}


# -- using a run --------------------------------------------------------------------------

def _checkpoint_folder(run) -> Path:
    """A run folder (its best, else last checkpoint) or a checkpoint folder itself."""
    run = Path(run)
    for candidate in (run / "checkpoints" / "best", run / "checkpoints" / "last", run):
        if (candidate / "config.json").exists():
            return candidate
    raise FileNotFoundError(f"{run}: expected a run folder (with checkpoints/best or checkpoints/last) "
                            f"or a checkpoint folder (with config.json); found neither")


def load_run_model(run, backend: str = "numpy", device: str = "cpu", fused: bool = True):
    """``(runtime, model, tokenizer, extra)`` from a run or checkpoint folder; the model
    prepared by the runtime (on torch: the fast path unless ``fused=False``)."""
    folder = _checkpoint_folder(run)
    rt = Runtime(backend, device, fused=fused)
    model, ckpt = model_io.load_model(folder, backend)
    if ckpt.tokenizer is None:
        raise ValueError(f"{folder}: the checkpoint has no tokenizer; expected one saved by the trainer")
    return rt, rt.prepare(model), Tokenizer.from_dict(ckpt.tokenizer), dict(ckpt.extra or {})


def evaluate(run, *, backend: str = "numpy", device: str = "cpu", dataset: str | None = None,
             corpus_dir=None, split_name: str = "test", seed: int = 0, fused: bool = True) -> dict:
    """Evaluate a run on a split: perplexity for LMs, accuracy/P/R/F1 for classifiers."""
    rt, model, tok, extra = load_run_model(run, backend, device, fused)
    task, T = extra.get("task", "causal_lm"), model.config.block_size
    if task == "classification":
        data = getattr(load_labelled(dataset or "sentiment", seed=seed), split_name)
        batches = classification_eval_batches([tok.encode(t)[:T] for t in data.texts], data.labels, EVAL_BATCH,
                                              pad_id=tok.pad_id, max_len=T)
        scores = evaluate_classifier(rt, model, batches, model.n_classes)
        scores["label_names"] = extra.get("label_names")
    else:
        if corpus_dir is not None:
            ids = getattr(load_prepared(corpus_dir)[1], split_name)
        else:
            text = load_corpus(dataset or "python_docs")
            ids = getattr(split_contiguous(np.asarray(tok.encode(text), dtype=np.int64), (0.9, 0.05, 0.05)), split_name)
        if task == "causal_lm":
            batches = causal_lm_eval_batches(ids, T, EVAL_BATCH)
        else:
            batches = masked_lm_eval_batches(ids, T, EVAL_BATCH, mask_id=tok.mask_id, vocab_size=tok.vocab_size,
                                             special_ids=tok.special_ids, seed=seed)
        scores = evaluate_lm(rt, model, batches)
    scores.update(task=task, split=split_name, backend=backend)
    return scores


def generate_text(run, prompt: str, *, max_new_tokens: int = 100, temperature: float = 0.8,
                  top_k: int | None = 40, top_p: float | None = None, seed: int | None = 0,
                  backend: str = "numpy", device: str = "cpu", use_cache: bool = True,
                  fused: bool = True) -> str:
    rt, model, tok, extra = load_run_model(run, backend, device, fused)
    if extra.get("task", "causal_lm") != "causal_lm":
        raise ValueError(f"{run}: generation needs a causal LM (GPT) run, got task {extra.get('task')!r}")
    prompt_ids = tok.encode(prompt) or [tok.bos_id]
    new = _generate(rt, model, prompt_ids, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                    seed=seed, eos_id=tok.eos_id, use_cache=use_cache)
    return tok.decode(new, skip_special_tokens=True)

