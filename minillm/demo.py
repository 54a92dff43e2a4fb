"""`minillm demo`: the chapter's whole pipeline on the embedded corpora, in minutes.

1. data: a byte-level BPE tokenizer trained on the Python documentation that ships
   with CPython (pydoc_data), split 90/5/5 in corpus order;
2. pretraining: a small GPT (causal LM), then a few lines of generated text;
3. pretraining an encoder with the masked-LM objective (BERT's) on the sentiment set's
   training text, labels unseen, with a word-level tokenizer (nltk, no data needed);
4. fine-tuning: a classifier (that encoder + mean pooling + a real head) on the
   embedded sentiment set, whose labels need word order ("not good", "... but ..."),
   so that no bag-of-words model can get them all right;
5. evaluation: validation perplexity, and accuracy / precision / recall / F1 on the
   held-out test split.

Everything lands in one run folder: ``gpt/``, ``encoder/``, ``classifier/`` (each with
checkpoints, metrics.jsonl and loss.png), ``confusion.png`` and ``demo.json``.
This module is part of the command line, so it prints.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from .core.config import ModelConfig
from .data import Splits, python_docs, sentiment, split_contiguous
from .train import pipeline
from .train.entry import train
from .train.generation import generate
from .train.run_config import RunConfig
from .store.run_folder import RunFolder
from .store.runtime import default_backend
from .train.training import TrainConfig

__all__ = ["run_demo"]

PROMPTS = ("The ", "A list ")

# What the full demo must reach, or it fails (exit status 1) instead of printing a
# success line. README.md shows a real run (perplexity in the 50s, accuracy about 0.99;
# its exact figures move with seeds and torch releases, so no message here repeats them). A model that
# did not learn is far outside these bounds (a uniform guess over the 1,024 BPE tokens
# has perplexity 1,024; the broken attention of torch 2.14 gave 410; chance accuracy on
# the two balanced classes is 0.5), while seeds and torch releases move a real run by a
# few percent.
MAX_PERPLEXITY = 70.0
MIN_ACCURACY = 0.90


class DemoFailed(RuntimeError):
    """The demo ran but its models did not learn what README.md promises."""


def check_results(perplexity: float, accuracy: float) -> None:
    """Raise :class:`DemoFailed`, naming each figure and its bound, unless the GPT's
    validation perplexity is at most ``MAX_PERPLEXITY`` and the classifier's test
    accuracy at least ``MIN_ACCURACY``. NaN fails both comparisons, so it fails too."""
    problems = []
    if not perplexity <= MAX_PERPLEXITY:
        problems.append(f"the GPT's validation perplexity is {perplexity:.1f}, expected at most "
                        f"{MAX_PERPLEXITY:.0f} (README.md shows a real run's: in the 50s)")
    if not accuracy >= MIN_ACCURACY:
        problems.append(f"the classifier's test accuracy is {accuracy:.3f}, expected at least "
                        f"{MIN_ACCURACY:.2f} (README.md shows a real run's: about 0.99)")
    if problems:
        raise DemoFailed("; ".join(problems) + ". The models did not learn: this install "
                         "computes something wrong. Run the tests (bash scripts/test.sh) "
                         "and report the versions printed on the demo's first line.")


def _versions(backend: str) -> str:
    """The library versions a run depends on, for the first line of the output."""
    import platform
    parts = [f"Python {platform.python_version()}", f"NumPy {np.__version__}"]
    if backend == "torch":
        import torch
        parts.append(f"torch {torch.__version__}")
    return ", ".join(parts)


def _train_config(steps: int, lr: float, seed: int, batch_size: int) -> TrainConfig:
    """The default policy (:meth:`TrainConfig.recipe`); a quick run (under 100 steps)
    evaluates once, at its end."""
    return TrainConfig.recipe(steps, lr, batch_size=batch_size, seed=seed,
                              eval_every=steps if steps < 100 else None)


PARTS = ("gpt", "encoder", "classifier")


def default_out(quick: bool) -> Path:
    """Each variant its own folder: a smoke test never replaces a full demo."""
    return Path("runs/demo-quick" if quick else "runs/demo")


def check_out(out: Path, overwrite: bool) -> None:
    """A folder that holds a demo (any of its three runs) is refused unless ``overwrite``:
    a demo never replaces a finished one silently (checked before anything is written)."""
    found = [f"{part}/" for part in PARTS if RunFolder(out / part).found()]
    if (out / "demo.json").exists():
        found.append("demo.json")
    if found and not overwrite:
        raise FileExistsError(f"{out} already holds a demo ({', '.join(found)}); replace it with --overwrite, "
                              f"or write another folder with --out")


def run_demo(out=None, *, backend: str | None = None, quick: bool = False, seed: int = 0,
             overwrite: bool = False) -> int:
    """The whole demo into ``out`` (default: :func:`default_out`) on ``backend`` (default:
    every command's, :func:`~minillm.store.runtime.default_backend`); a folder that holds
    a demo needs ``overwrite``."""
    out = default_out(quick) if out is None else Path(out)
    backend = default_backend() if backend is None else backend
    check_out(out, overwrite)
    t_start = time.perf_counter()
    steps_gpt, steps_mlm, steps_cls = (4, 4, 4) if quick else (1200, 200, 600)
    print(f"minillm demo: backend={backend} ({_versions(backend)}), run folder {out}")

    # 1. data --------------------------------------------------------------------------
    text = python_docs()
    tok = pipeline.train_tokenizer("bpe", text, vocab_size=1024)
    ids = np.asarray(tok.encode(text), dtype=np.int64)
    splits = split_contiguous(ids, (0.9, 0.05, 0.05))
    print(f"[data] python_docs: {len(text):,} characters -> {len(ids):,} BPE tokens "
          f"(vocabulary {tok.vocab_size}); train/validation/test = "
          f"{len(splits.train):,}/{len(splits.validation):,}/{len(splits.test):,}")

    # 2. GPT ---------------------------------------------------------------------------
    gpt_cfg = ModelConfig(vocab_size=tok.vocab_size, block_size=64, d_model=128, n_heads=4, n_layers=4,
                          dropout=0.1)   # 145k training tokens: without dropout it overfits by ~1000 steps
    t0 = time.perf_counter()
    gpt = train("causal_lm", out / "gpt", RunConfig(gpt_cfg, _train_config(steps_gpt, 3e-3, seed, batch_size=16),
                                                    backend=backend),
                data=splits, tokenizer=tok, source="python_docs", overwrite=overwrite,
                dataset=pipeline.text_dataset("python_docs", text, splits))
    val = dict(gpt.validation)
    print(f"[pretrain] GPT {gpt_cfg.n_layers} layers, d_model {gpt_cfg.d_model}: {steps_gpt} steps in "
          f"{time.perf_counter() - t0:.0f}s; validation loss {val['loss']:.3f} nats/token, "
          f"perplexity {val['perplexity']:.1f}")
    samples = {}
    for prompt in PROMPTS:
        new = generate(gpt.runtime, gpt.model, tok.encode(prompt), 60, temperature=0.8, top_k=40,
                       seed=seed, eos_id=tok.eos_id)
        samples[prompt] = prompt + tok.decode(new, skip_special_tokens=True)
        print(f"[generate] {samples[prompt]!r}")

    # 3. masked-LM encoder, pretrained on the sentiment set's (unlabelled) training text
    data = sentiment(n=2000, seed=seed)
    word_tok = pipeline.train_tokenizer("word", "\n".join(data.train.texts), vocab_size=1024)
    text_ids = [np.asarray(word_tok.encode("\n".join(part.texts)), dtype=np.int64)
                for part in (data.train, data.validation, data.test)]
    enc_cfg = ModelConfig(vocab_size=word_tok.vocab_size, block_size=48, d_model=64, n_heads=4, n_layers=2)
    t0 = time.perf_counter()
    enc = train("masked_lm", out / "encoder", RunConfig(enc_cfg, _train_config(steps_mlm, 2e-3, seed, batch_size=32),
                                                        backend=backend),
                data=Splits(*text_ids), tokenizer=word_tok, source="sentiment (text only)", overwrite=overwrite)
    print(f"[pretrain] encoder (masked LM) on the sentiment texts: {steps_mlm} steps in "
          f"{time.perf_counter() - t0:.0f}s; validation loss on masked tokens {enc.validation['loss']:.3f}")

    # 4. fine-tuning -------------------------------------------------------------------
    t0 = time.perf_counter()
    cls = train("classification", out / "classifier",
                RunConfig(enc_cfg, _train_config(steps_cls, 2e-3, seed, batch_size=64), backend=backend),
                data=data, tokenizer=word_tok, source="sentiment", overwrite=overwrite,
                dataset=pipeline.labelled_dataset("sentiment", data, seed=seed),
                encoder_state=enc.model.state_dict(), pooling="mean")
    test = dict(cls.test)
    label_names = list(cls.label_names)
    print(f"[finetune] classifier on sentiment ({len(data.train)} train / {len(data.test)} test): "
          f"{steps_cls} steps in {time.perf_counter() - t0:.0f}s")
    print(f"[evaluate] test accuracy {test['accuracy']:.3f}  precision {test['precision']:.3f}  "
          f"recall {test['recall']:.3f}  F1 {test['f1']:.3f}")
    try:
        from .core.plots import plot_confusion_matrix
        plot_confusion_matrix(test["confusion_matrix"], label_names, out / "confusion.png")
    except ImportError:
        pass

    summary = {"backend": backend, "seconds": round(time.perf_counter() - t_start, 1),
               "gpt": {"steps": steps_gpt, "validation": val, "samples": samples},
               "encoder": {"steps": steps_mlm, "validation": dict(enc.validation)},
               "classifier": {"steps": steps_cls, "test": test, "label_names": label_names}}
    (out / "demo.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    if quick:
        print("quick run: a few steps only, so the models' figures are not checked")
    else:
        check_results(val["perplexity"], test["accuracy"])
    print(f"done in {summary['seconds']:.0f}s; checkpoints, metrics.jsonl and loss.png in "
          f"{out}/{{gpt,encoder,classifier}}, summary in {out / 'demo.json'}")
    return 0
