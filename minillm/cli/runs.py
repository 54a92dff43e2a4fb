"""The commands that use a model: ``evaluate`` (a run, scored as its task says),
``generate`` (a GPT run, or a Hugging Face GPT-2 folder), ``embed`` (a Hugging Face
BERT / sentence-transformers folder)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from ..apps.interop import POOLING_MODES
from ..train.generation import TextStream
from ..train.run_evaluation import evaluate
from .interrupt import interrupted
from .options import MAX_NEW_TOKENS, NEW_TOKENS, NONNEG, NONNEG_INT, SEED, TOP_P, add_runtime_args, runtime_of

__all__ = ["add_parsers", "cmd_evaluate", "cmd_generate", "cmd_embed"]


def cmd_evaluate(a) -> int:
    """Print the scores (JSON, stdout); in a run folder also write them to ``eval.json``
    (and a classifier's ``confusion.png``), saying on stderr what was written and which
    earlier evaluation it replaced (the folder keeps the latest evaluation only)."""
    scores = evaluate(a.run, runtime_of(a), dataset=a.dataset, corpus_dir=a.data, split_name=a.split,
                      text_column=a.text_column, label_column=a.label_column)
    run = Path(a.run)

    def what(s: dict) -> str:                       # "the test split of sentiment (200 rows), step 300"
        data, ckpt = s.get("data") or {}, s.get("checkpoint") or {}
        size = f"{data['rows']} rows" if "rows" in data else f"{data.get('tokens', '?')} tokens"
        split = data.get('split', '?')
        part = "all" if split == "all" else f"the {split} split"
        return (f"{part} of {data.get('source') or 'the data given'} ({size}), "
                f"checkpoint {ckpt.get('path', '?')} (step {ckpt.get('step', '?')})")
    if (run / "run.json").exists():
        target, notes = run / "eval.json", []
        replaced = ""
        if target.exists():
            try:
                replaced = f"; it replaces the previous evaluation, of {what(json.loads(target.read_text('utf-8')))}"
            except (ValueError, OSError):
                replaced = "; it replaces the previous eval.json"
        target.write_text(json.dumps(scores, indent=2), encoding="utf-8")
        notes.append(f"wrote {target}: {what(scores)}{replaced}")
        confusion = run / "confusion.png"
        if "confusion_matrix" in scores:
            had = confusion.exists()
            try:
                from ..core.plots import plot_confusion_matrix
                plot_confusion_matrix(scores["confusion_matrix"], scores.get("label_names"), confusion)
                notes.append(f"wrote {confusion}" + (" (replacing the previous one)" if had else ""))
            except ImportError:
                confusion.unlink(missing_ok=True)   # never a stale figure beside new scores
                notes.append("no confusion.png: matplotlib is not installed (pip install 'minillm[pipeline]')"
                             + (f"; the previous {confusion} was removed with its evaluation" if had else ""))
        elif confusion.exists():
            confusion.unlink()
            notes.append(f"removed {confusion}, the previous evaluation's")
        for note in notes:
            print(note, file=sys.stderr)
    print(json.dumps(scores, indent=2))
    return 0


def cmd_generate(a) -> int:
    rt = runtime_of(a)
    options = dict(max_new_tokens=a.max_new_tokens, temperature=a.temperature, top_k=a.top_k, top_p=a.top_p,
                   seed=a.seed, use_cache=not a.no_cache)
    if a.from_hf is not None:  # a Hugging Face GPT-2 folder (minillm.apps.interop)
        from ..apps import interop
        stream = interop.text_stream(a.from_hf, a.prompt, backend=rt.backend, device=rt.device,
                                     allow_bin=a.allow_bin, fused=rt.fused, **options)
    elif a.run is None:
        raise ValueError("generate: expected a run folder or --from-hf FOLDER, got neither")
    else:
        stream = TextStream.of_run(a.run, a.prompt, rt, **options)
    if stream.dropped:
        print(f"warning: the prompt has {stream.dropped + stream.block_size} tokens, the model sees at most "
              f"{stream.block_size} (block_size): its first {stream.dropped} are left out", file=sys.stderr)
    if not stream.chat:                    # a continuation follows its prompt; an answer stands alone
        print(a.prompt, end="", flush=True)
    try:
        for piece in stream:                 # the text as it comes; what came stays printed on Ctrl-C
            print(piece, end="", flush=True)
    except KeyboardInterrupt:
        print(flush=True)
        return interrupted()
    print(flush=True)
    return 0


def cmd_embed(a) -> int:
    from ..apps import interop
    rt = runtime_of(a)
    texts = list(a.texts)
    if a.file is not None:
        texts += [line for line in a.file.read_text(encoding="utf-8").splitlines() if line.strip()]
    vectors = interop.embed_texts(a.from_hf, texts, backend=rt.backend, device=rt.device,
                                  pooling=a.pooling, allow_bin=a.allow_bin, fused=rt.fused)  # (N, C)
    if a.out is not None:
        np.save(a.out, vectors)
        print(f"wrote {vectors.shape[0]} embeddings of size {vectors.shape[1]} to {a.out}")
    else:
        for text, v in zip(texts, vectors):
            print(json.dumps({"text": text, "embedding": [round(float(x), 6) for x in v]}, ensure_ascii=False))
    return 0


def add_parsers(sub, command) -> None:
    p = command(sub, "evaluate", help="score a run as its task says: perplexity of an LM run, accuracy/P/R/F1 "
                                      "of a classifier, exact/BLEU of a translator, EM/F1 of question answering")
    p.add_argument("run", type=Path, help="a run folder or a checkpoint folder")
    add_runtime_args(p)
    p.add_argument("--split", choices=("train", "validation", "test", "all"), default=None,
                   help="default: test of the run's own data (rebuilt from its data.json), all of other data")
    p.add_argument("--dataset", default=None, help="other data to score: classifier: 'sentiment' or a labelled "
                                                   ".csv/.jsonl (its labels mapped to the run's); LM: a corpus "
                                                   "(default: the run's own data)")
    p.add_argument("--data", type=Path, default=None, help="LM: a folder written by `minillm prepare`")
    p.add_argument("--text-column", default=None, help="--dataset: default: the run's (else 'text')")
    p.add_argument("--label-column", default=None, help="--dataset: default: the run's (else 'label')")
    p.set_defaults(func=cmd_evaluate)

    p = command(sub, "generate", help="continue a prompt with a GPT run (an sft or dpo run: answer it as a user's turn)")
    p.add_argument("run", type=Path, nargs="?", default=None,
                   help="a causal_lm run folder or a checkpoint folder (or use --from-hf)")
    p.add_argument("--from-hf", type=Path, default=None, metavar="FOLDER",
                   help="a local Hugging Face GPT-2 folder (config.json, model.safetensors, vocab.json, merges.txt)")
    p.add_argument("--allow-bin", action="store_true",
                   help="--from-hf: read pytorch_model.bin (torch.load, weights_only=True) if no safetensors")
    p.add_argument("--prompt", default="The ", help="the text to continue (default: 'The ')")
    p.add_argument("--max-new-tokens", type=NEW_TOKENS, default=100,
                   help=f"tokens to generate, at most {MAX_NEW_TOKENS} (printed as they come; Ctrl-C stops "
                        f"and keeps what was printed)")
    p.add_argument("--temperature", type=NONNEG, default=0.8, help="0 = greedy")
    p.add_argument("--top-k", type=NONNEG_INT, default=40,
                   help="sample among the k likeliest tokens; 0 = off (default: %(default)s)")
    p.add_argument("--top-p", type=TOP_P, default=1.0,
                   help="sample in the smallest set of tokens with this much probability; 1 = off "
                        "(default: %(default)s, off); with --top-k both filters apply, top-k first")
    p.add_argument("--seed", type=SEED, default=0, help="random seed")
    add_runtime_args(p)
    p.add_argument("--no-cache", action="store_true", help="recompute every position each step")
    p.set_defaults(func=cmd_generate)

    p = command(sub, "embed", help="sentence embeddings with a local Hugging Face BERT / sentence-transformers folder")
    p.add_argument("texts", nargs="*", help="texts to embed")
    p.add_argument("--from-hf", type=Path, required=True, metavar="FOLDER",
                   help="a BERT or sentence-transformers folder (config.json, model.safetensors, vocab.txt)")
    p.add_argument("--file", type=Path, default=None, help="also embed each non-empty line of this file")
    p.add_argument("--pooling", choices=POOLING_MODES, default=None,
                   help="default: the folder's (sentence-transformers), else mean")
    p.add_argument("--out", type=Path, default=None, help="write a .npy (N, d_model) instead of printing JSON lines")
    add_runtime_args(p)
    p.add_argument("--allow-bin", action="store_true",
                   help="read pytorch_model.bin (torch.load, weights_only=True) if no safetensors")
    p.set_defaults(func=cmd_embed)
