"""The ``minillm`` command: demo, prepare, pretrain, finetune, evaluate, generate, embed,
translate, answer, serve, bench.

Only this module prints; the library logs through ``logging.getLogger("minillm")``.
Bad input ends with ``error: ...`` and exit status 2, never a traceback; bad values of
options are refused by argparse, before anything runs, with the option's own name.
Ctrl-C ends with one line and exit status 130, whenever it comes (even while the
modules below are still being imported).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import signal
import sys
import textwrap
import threading
import time
from dataclasses import asdict
from pathlib import Path

class _CtrlC:
    """SIGINT as Python's default does it (``KeyboardInterrupt``), but remembered: some
    C-extension imports (NumPy's, torch's) turn a ``KeyboardInterrupt`` raised inside them
    into an ``ImportError``, which must end as an interrupt too, not as ``error: ...``."""

    seen = False

    @classmethod
    def handler(cls, signum, frame):
        cls.seen = True
        raise KeyboardInterrupt

    @classmethod
    def install(cls):
        """Our handler, where Python's default one is in place (not where SIGINT is ignored,
        or another handler was set by the caller); returns the handler to restore."""
        if threading.current_thread() is not threading.main_thread():
            return None
        previous = signal.getsignal(signal.SIGINT)
        if previous is not signal.default_int_handler:
            return None
        signal.signal(signal.SIGINT, cls.handler)
        return previous

    @staticmethod
    def restore(previous) -> None:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)

def _interrupted(where: str = "") -> int:
    print(f"interrupted{where}", file=sys.stderr)
    # CPython (3.11) sets its "unhandled KeyboardInterrupt" flag when a KeyboardInterrupt
    # leaves code that exec() runs from a string (dataclasses build their __init__ that way
    # while our modules import), even when the interrupt is then caught, and may end the
    # process by SIGINT (status -2) instead of with ours; an exec() of a string that
    # completes clears the flag. Seen: Ctrl-C 0.3-1.5 s after NumPy's import, about 1 run
    # in 6 ended by SIGINT (tests/test_cli_messages.py), none in 34 runs with this line.
    exec("")
    return 130

_previous = _CtrlC.install()
try:  # NumPy and the pipeline take about a second to import: Ctrl-C then is no traceback either
    import numpy as np

    from .apps.interop import POOLING_MODES
    from .apps.question_answering import QA_CONFIG
    from .apps.translation import TRANSLATION_CONFIG, TRANSLATION_TASK
    from .core.config import ACTIVATIONS, POSITIONALS, ModelConfig
    from .data import Tokenizer, split_contiguous
    from .store.runs import load_run
    from .store.runtime import BACKENDS, DEVICES
    from .train import pipeline
    from .train.entry import task_spec, train
    from .train.run_config import RunConfig
    from .train.training import ResumeMismatch, RunExists, TrainConfig, TrainingDiverged
except (KeyboardInterrupt, ImportError):
    if not _CtrlC.seen:
        raise
    sys.exit(_interrupted())
finally:
    _CtrlC.restore(_previous)

logger = logging.getLogger("minillm")

TRANSLATION_STEPS = TRANSLATION_TASK.steps   # the task's default, written once (minillm.apps.translation)

def _default_backend() -> str:
    try:
        import torch  # noqa: F401
        return "torch"
    except ImportError:
        if _CtrlC.seen:                # Ctrl-C while torch imported, turned into an ImportError
            raise KeyboardInterrupt from None
        return "numpy"

# -- arguments ----------------------------------------------------------------------------

DESCRIPTION = textwrap.fill("Every formula of LLM training, in NumPy and in PyTorch: prepare a corpus, pretrain a GPT or "
               "an encoder, fine-tune a classifier, evaluate, generate, embed, translate, answer questions, "
               "serve a run over HTTP, benchmark. `minillm COMMAND --help` shows a command's options "
               "and their defaults.", width=88)

class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every option's help ends with its default, unless the help already says it (or
    there is none to say: a flag, a required option, a default of None explained in words).
    Descriptions and epilogs keep their line breaks (the data formats are laid out)."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if (not action.option_strings or action.required or default is None or default is False
                or default == argparse.SUPPRESS or "default" in text):
            return text
        if isinstance(default, (list, tuple)):
            return text + " (default: " + " ".join(map(str, default)) + ")"
        return text + " (default: %(default)s)"

def _number(kind, what: str, ok):
    """An argparse ``type`` that refuses values outside ``ok``: argparse then answers
    ``argument --lr: expected a number > 0, got -1``, naming the option as typed."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if (kind is float and not math.isfinite(value)) or not ok(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
        return value
    parse.__name__ = what            # argparse's own "invalid <type> value" names the type
    return parse

POSITIVE_INT = _number(int, "an integer >= 1", lambda v: v >= 1)
NONNEG_INT = _number(int, "an integer >= 0", lambda v: v >= 0)
POSITIVE = _number(float, "a number > 0", lambda v: v > 0)
NONNEG = _number(float, "a number >= 0", lambda v: v >= 0)
FRACTION = _number(float, "a number in [0, 1)", lambda v: 0 <= v < 1)
TOP_P = _number(float, "a number in (0, 1]", lambda v: 0 < v <= 1)
PORT = _number(int, "a port in [0, 65535]", lambda v: 0 <= v <= 65535)
SEED = NONNEG_INT

EXPLICIT_HELP = ("torch backend: run the explicit path, the reference's formulas written with tensor ops, "
                 "instead of the default fast path (torch's own kernels); same results within rounding")

def _add_explicit(p) -> None:
    """``--explicit``: the torch backend's formula path (``Runtime(fused=False)``)."""
    p.add_argument("--explicit", action="store_true", help=EXPLICIT_HELP)

# the options every training command has (pretrain, finetune, translate --train, answer --train)
TRAINING_OPTIONS = ("--backend", "--device", "--amp", "--explicit", "--out", "--steps", "--seed", "--resume",
                    "--overwrite", "--batch-size", "--lr", "--warmup-steps", "--weight-decay", "--grad-clip",
                    "--eval-every")

def _add_training_args(p: argparse.ArgumentParser, task: str, *, out_required: bool = True,
                       when: str = "") -> None:
    """The training options, the same for every training command; their defaults are the
    task's (:class:`~minillm.train.entry.TaskSpec`: steps, lr, batch size, recipe).
    ``when``: a prefix of the help of options that only matter in one mode (``--train: ``)."""
    spec = task_spec(task)
    rule = spec.train_config(spec.steps)
    default = TrainConfig.recipe(spec.steps, spec.lr)
    warmup = ("5%% of --steps" if rule.warmup_steps == default.warmup_steps
              else "10%% of --steps, at most 50")
    every = "--steps / 4" if rule.eval_every == default.eval_every else "--steps (once, at the end)"
    g = p.add_argument_group("training")
    g.add_argument("--backend", choices=BACKENDS, default=_default_backend(),
                   help="numpy: the reference with hand-written gradients; torch: autograd (default: %(default)s)")
    g.add_argument("--device", choices=DEVICES, default="cpu", help="torch backend only (default: %(default)s)")
    g.add_argument("--amp", action="store_true", help=f"{when}bf16 autocast (torch backend on CUDA)")
    _add_explicit(g)
    g.add_argument("--out", type=Path, required=out_required, default=None, help=f"{when}run folder to write")
    g.add_argument("--steps", type=POSITIVE_INT, default=spec.steps, help=f"{when}optimizer steps (default: %(default)s)")
    g.add_argument("--seed", type=SEED, default=0, help="seed of weights, batches and masks (default: %(default)s)")
    _add_run_folder_args(g)
    g.add_argument("--batch-size", type=POSITIVE_INT, default=spec.batch_size,
                   help=f"{when}global batch size (default: %(default)s)")
    g.add_argument("--lr", type=POSITIVE, default=spec.lr, help=f"{when}peak learning rate (default: %(default)s)")
    g.add_argument("--warmup-steps", type=NONNEG_INT, default=None, help=f"{when}default: {warmup}")
    g.add_argument("--weight-decay", type=NONNEG, default=None,
                   help=f"{when}AdamW's decoupled weight decay, on the tensors of two or more dimensions "
                        f"(linear weights, embeddings; never biases or LayerNorm, as nanoGPT) "
                        f"(default: {rule.weight_decay:g})")
    g.add_argument("--grad-clip", type=POSITIVE, default=1.0, help=f"{when}largest global gradient norm")
    g.add_argument("--eval-every", type=POSITIVE_INT, default=None,
                   help=f"{when}evaluation and checkpoint interval (default: {every})")

def _add_model_args(p: argparse.ArgumentParser, *, d_model: int, n_layers: int, block_size: int) -> None:
    m = p.add_argument_group("model")
    m.add_argument("--d-model", type=POSITIVE_INT, default=d_model, help="width of the residual stream")
    m.add_argument("--n-layers", type=POSITIVE_INT, default=n_layers, help="Transformer blocks")
    m.add_argument("--n-heads", type=POSITIVE_INT, default=4, help="attention heads; must divide --d-model")
    m.add_argument("--block-size", type=POSITIVE_INT, default=block_size, help="the most tokens the model sees at once")
    m.add_argument("--dropout", type=FRACTION, default=0.0, help="dropout probability")
    m.add_argument("--activation", choices=ACTIVATIONS, default="gelu", help="of the feed-forward layers")
    m.add_argument("--post-norm", action="store_true", help="post-norm blocks (default: pre-norm)")
    m.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="of the weights")
    m.add_argument("--positional", choices=POSITIONALS, default="learned",
                   help="positions added to the embeddings (learned, sinusoidal) or queries and keys "
                        "rotated in attention (rope; needs an even head size) (default: %(default)s)")
    m.add_argument("--init-std", type=POSITIVE, default=0.02,
                   help="standard deviation of the initial weights (default: %(default)s, GPT-2's)")

def _add_run_folder_args(g) -> None:
    """--resume and --overwrite: a folder that holds a run is never replaced silently."""
    x = g.add_mutually_exclusive_group()
    x.add_argument("--resume", action="store_true", help="continue the run in OUT from OUT/checkpoints/last, exactly")
    x.add_argument("--overwrite", action="store_true",
                   help="OUT holds a run: delete its files (only those a run writes) and start again")

def _train_config(a, task: str) -> TrainConfig:
    """The training options as a TrainConfig: those not given take the task's default
    policy (:meth:`TaskSpec.train_config`, from :meth:`TrainConfig.recipe`)."""
    return task_spec(task).train_config(a.steps, a.lr, batch_size=a.batch_size, warmup_steps=a.warmup_steps,
                                        eval_every=a.eval_every, weight_decay=a.weight_decay,
                                        grad_clip=a.grad_clip, seed=a.seed)

def _run_config(a, task: str, model: ModelConfig) -> RunConfig:
    return RunConfig(model, _train_config(a, task), backend=a.backend, device=a.device, amp=a.amp,
                     fused=not a.explicit)

def _model_config(a, vocab_size: int) -> ModelConfig:
    return ModelConfig(vocab_size=vocab_size, block_size=a.block_size, d_model=a.d_model, n_heads=a.n_heads,
                       n_layers=a.n_layers, dropout=a.dropout, activation=a.activation,
                       norm_first=not a.post_norm, dtype=a.dtype, positional=a.positional,
                       init_std=a.init_std)

def _corpus(a):
    """(tokenizer, splits, source, dataset contract) from --data (prepared) or --corpus."""
    if a.data is not None:
        tok, splits = pipeline.load_prepared(a.data)
        return tok, splits, str(a.data), pipeline.prepared_dataset(a.data, splits)
    text = pipeline.load_corpus(a.corpus)
    if a.resume and (a.out / "tokenizer.json").exists():
        tok = Tokenizer.load(a.out / "tokenizer.json")                # the same ids as before
    else:
        tok = pipeline.train_tokenizer(a.tokenizer, text, a.vocab_size)
    ids = np.asarray(tok.encode(text), dtype=np.int64)
    splits = split_contiguous(ids, pipeline.TEXT_FRACTIONS)
    return tok, splits, a.corpus, pipeline.text_dataset(a.corpus, text, splits)

def _add_corpus_args(p):
    p.add_argument("--corpus", default="python_docs", help="'python_docs' (embedded), 'sentiment' (the embedded "
                                                           "sentiment set's training texts) or a .txt/.jsonl/.csv file")
    p.add_argument("--data", type=Path, default=None, help="a folder written by `minillm prepare` (overrides --corpus)")
    p.add_argument("--tokenizer", choices=sorted(pipeline.TOKENIZERS), default="bpe", help="the tokenizer trained on the corpus")
    p.add_argument("--vocab-size", type=POSITIVE_INT, default=1024, help="bpe: merges up to this size; word: the most frequent words (char: ignored)")

# -- commands -----------------------------------------------------------------------------

def cmd_prepare(a) -> int:
    info = pipeline.prepare(a.corpus, a.out, tokenizer=a.tokenizer, vocab_size=a.vocab_size)
    print(json.dumps(info, indent=2))
    return 0

def _check_block_size(a, splits) -> None:
    """Every split must hold one window of --block-size + 1 tokens (inputs and their
    next-token targets): say so with the option's name, not the split's size alone."""
    name, n = min(zip(splits._fields, map(len, splits)), key=lambda item: item[1])
    if a.block_size > n - 1:
        raise ValueError(f"--block-size {a.block_size} is too large for this corpus: its smallest split "
                         f"({name}) has {n} tokens, so --block-size can be at most {max(n - 1, 0)}")

def cmd_pretrain(a) -> int:
    tok, splits, source, dataset = _corpus(a)
    _check_block_size(a, splits)
    res = pipeline.pretrain(tok, splits, a.out, task=a.task, model_config=_model_config(a, tok.vocab_size),
                            train_config=_train_config(a, a.task), backend=a.backend,
                            device=a.device, amp=a.amp, resume=a.resume, source=source, dataset=dataset,
                            overwrite=a.overwrite, fused=not a.explicit)
    if res["runtime"].is_main:
        print(json.dumps({k: v for k, v in res.items() if k not in ("model", "runtime")}, indent=2))
    return 0

def cmd_finetune(a) -> int:
    data = pipeline.load_labelled(a.dataset, seed=a.seed, text_column=a.text_column, label_column=a.label_column)
    encoder_state = None
    if a.pretrained is not None:
        encoder = load_run(a.pretrained, backend="numpy", task="masked_lm")
        tok, cfg, encoder_state = encoder.tokenizer, encoder.config, encoder.model.state_dict()
    else:
        tok = pipeline.train_tokenizer(a.tokenizer, "\n".join(data.train.texts), a.vocab_size)
        cfg = _model_config(a, tok.vocab_size)
    dataset = pipeline.labelled_dataset(a.dataset, data, seed=a.seed, text_column=a.text_column,
                                        label_column=a.label_column)
    res = pipeline.finetune(tok, data, a.out, model_config=cfg, train_config=_train_config(a, "classification"),
                            encoder_state=encoder_state, pooling=a.pooling, backend=a.backend, device=a.device, amp=a.amp, resume=a.resume, source=a.dataset,
                            dataset=dataset, overwrite=a.overwrite, fused=not a.explicit)
    print(json.dumps({k: v for k, v in res.items() if k not in ("model", "runtime")}, indent=2))
    return 0

def cmd_evaluate(a) -> int:
    scores = pipeline.evaluate(a.run, backend=a.backend, device=a.device, dataset=a.dataset,
                               corpus_dir=a.data, split_name=a.split, text_column=a.text_column,
                               label_column=a.label_column, fused=not a.explicit)
    run = Path(a.run)
    if (run / "run.json").exists():
        (run / "eval.json").write_text(json.dumps(scores, indent=2), encoding="utf-8")
        if "confusion_matrix" in scores:
            try:
                from .core.plots import plot_confusion_matrix
                plot_confusion_matrix(scores["confusion_matrix"], scores.get("label_names"), run / "confusion.png")
            except ImportError:
                pass
    print(json.dumps(scores, indent=2))
    return 0

def cmd_generate(a) -> int:
    if a.from_hf is not None:  # a Hugging Face GPT-2 folder (minillm.apps.interop)
        from .apps import interop
        text = interop.generate_text(a.from_hf, a.prompt, max_new_tokens=a.max_new_tokens,
                                     temperature=a.temperature, top_k=a.top_k, top_p=a.top_p, seed=a.seed,
                                     backend=a.backend, device=a.device, use_cache=not a.no_cache,
                                     allow_bin=a.allow_bin, fused=not a.explicit)
        print(a.prompt + text)
        return 0
    if a.run is None:
        raise ValueError("generate: expected a run folder or --from-hf FOLDER, got neither")
    text = pipeline.generate_text(a.run, a.prompt, max_new_tokens=a.max_new_tokens, temperature=a.temperature,
                                  top_k=a.top_k, top_p=a.top_p, seed=a.seed, backend=a.backend,
                                  device=a.device, use_cache=not a.no_cache, fused=not a.explicit)
    print(a.prompt + text)
    return 0

def cmd_embed(a) -> int:
    from .apps import interop
    texts = list(a.texts)
    if a.file is not None:
        texts += [line for line in a.file.read_text(encoding="utf-8").splitlines() if line.strip()]
    vectors = interop.embed_texts(a.from_hf, texts, backend=a.backend, device=a.device,
                                  pooling=a.pooling, allow_bin=a.allow_bin, fused=not a.explicit)  # (N, C)
    if a.out is not None:
        np.save(a.out, vectors)
        print(f"wrote {vectors.shape[0]} embeddings of size {vectors.shape[1]} to {a.out}")
    else:
        for text, v in zip(texts, vectors):
            print(json.dumps({"text": text, "embedding": [round(float(x), 6) for x in v]}, ensure_ascii=False))
    return 0

def _application_args(a, what: str):
    if a.train == (a.run is not None):
        raise ValueError(f"{what}: expected either --train --out RUN or a RUN folder to use, got "
                         + ("both" if a.train else "neither"))
    if a.train and a.out is None:
        raise ValueError(f"{what} --train: expected --out RUN, the run folder to write")

def cmd_translate(a) -> int:
    from .apps import translation
    _application_args(a, "translate")
    if a.train:
        run = train("translation", a.out, _run_config(a, "translation", TRANSLATION_CONFIG), resume=a.resume,
                    overwrite=a.overwrite, label_smoothing=a.label_smoothing)
        if run.runtime.is_main:
            scores = run.test
            print(f"held-out dates: {100 * scores['exact']:.1f}% exact, BLEU {scores['bleu']:.1f} "
                  f"({scores['n']} sentences); run folder: {a.out}")
        return 0
    if not a.text:
        raise ValueError("translate: expected --text TEXT (one or more)")
    run = load_run(a.run, backend=a.backend, device=a.device, fused=not a.explicit, task="translation")
    outs = translation.translate_checked(run.model, run.runtime, run.tokenizer, list(a.text), a.beam_size,
                                         a.length_penalty)
    for k, out in enumerate(outs, 1):
        print(out.text)
        if out.warning:          # on stderr: stdout stays one translation a line
            which = f" (--text {k})" if len(outs) > 1 else ""
            print(f"warning{which}: {out.warning}", file=sys.stderr)
    return 0

def cmd_answer(a) -> int:
    from .apps import question_answering as qa
    _application_args(a, "answer")
    if a.train:
        run = train("question_answering", a.out, _run_config(a, "question_answering", QA_CONFIG),
                    resume=a.resume, overwrite=a.overwrite)
        if run.runtime.is_main:
            scores = run.test
            print(f"held-out questions: exact match {100 * scores['exact_match']:.1f}%, "
                  f"F1 {100 * scores['f1']:.1f}% ({scores['n']} questions); run folder: {a.out}")
        return 0
    if a.context is None or a.question is None:
        raise ValueError("answer: expected --context TEXT and --question TEXT")
    run = load_run(a.run, backend=a.backend, device=a.device, fused=not a.explicit, task="question_answering")
    out = qa.answer_checked(run.model, run.runtime, run.tokenizer, [a.context], [a.question])[0]
    print(out.text)
    if out.warning:
        print(f"warning: {out.warning}", file=sys.stderr)
    return 0

def cmd_serve(a) -> int:
    from . import serving  # lazily: FastAPI and uvicorn are the optional `serve` extra
    limits = serving.Limits(max_body_bytes=a.max_body_bytes, max_text_chars=a.max_text_chars,
                            max_new_tokens=a.max_new_tokens)
    serving.serve(a.run, host=a.host, port=a.port, backend=a.backend, device=a.device, limits=limits,
                  fused=not a.explicit)
    return 0

def cmd_bench(a) -> int:
    from .bench import load_harness
    bench = load_harness()               # benchmarks/harness.py of the clone; ImportError saying so if absent
    result = bench.run_all(threads=a.threads, sizes=tuple(a.sizes), repeats=a.repeats, device=a.device,
                           compile_model=a.compile, generate=not a.no_generate,
                           attention_Ts=tuple(a.attention_T), new_tokens=a.new_tokens, gpu=a.gpu)
    report = bench.format_report(result)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "results.json").write_text(json.dumps(result, indent=2))
    (a.out / "report.md").write_text(report + "\n")
    if result["attention"]:
        bench.plot_attention(result["attention"], a.out / "attention_cost.png")
    print(report)
    print(f"written: {a.out}/results.json, report.md" + (", attention_cost.png" if result["attention"] else ""))
    return 0

def cmd_demo(a) -> int:
    from .demo import DemoFailed, run_demo
    try:
        return run_demo(a.out, backend=a.backend, quick=a.quick, seed=a.seed)
    except DemoFailed as e:
        print(f"minillm demo FAILED: {e}", file=sys.stderr)
        return 1

# -- parser -------------------------------------------------------------------------------

FINETUNE_DATA = """\
--dataset: 'sentiment' (the embedded set) or a labelled file of your own, split 80/10/10:
  .csv    a header row that names the columns, then one row per example, e.g.
              text,label
              "a good film",positive
              "dull and long",negative
  .jsonl  one JSON object per line, e.g. {"text": "a good film", "label": "positive"}
The text is in the column (field) 'text' and the label in 'label'; other names with
--text-column and --label-column. Labels are any strings; their sorted order gives the ids."""

def _command(sub, name: str, help: str, **kwargs) -> argparse.ArgumentParser:
    """A subcommand whose --help starts with its one-line help and lists every default."""
    return sub.add_parser(name, help=help, description=kwargs.pop("description", help),
                          formatter_class=HelpFormatter, **kwargs)

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minillm", description=DESCRIPTION, formatter_class=HelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _command(sub, "demo", help="the whole pipeline on the embedded corpora, in a few minutes")
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="run folder (default: %(default)s)")
    p.add_argument("--backend", choices=BACKENDS, default=_default_backend(), help="numpy (the reference) or torch (default: %(default)s; torch where it is installed)")
    p.add_argument("--seed", type=SEED, default=0, help="random seed")
    p.add_argument("--quick", action="store_true", help="a few steps only (a smoke test)")
    p.set_defaults(func=cmd_demo)

    p = _command(sub, "prepare", help="train a tokenizer and tokenize a corpus into train/validation/test")
    _add_corpus_args(p)
    p.add_argument("--out", type=Path, required=True, help="folder to write")
    p.set_defaults(func=cmd_prepare)

    p = _command(sub, "pretrain", help="pretrain a GPT (causal LM) or an encoder (masked LM)")
    _add_corpus_args(p)
    p.add_argument("--task", choices=("causal_lm", "masked_lm"), default="causal_lm", help="a GPT (next token) or an encoder (masked tokens)")
    _add_training_args(p, "causal_lm")        # masked_lm: the same defaults
    _add_model_args(p, d_model=128, n_layers=4, block_size=64)
    p.set_defaults(func=cmd_pretrain)

    p = _command(sub, "finetune", help="fine-tune a classifier (a real head) from a pretrained encoder",
                 epilog=FINETUNE_DATA)
    p.add_argument("--pretrained", type=Path, default=None, help="a masked_lm run folder (default: from scratch)")
    p.add_argument("--dataset", default="sentiment",
                   help="'sentiment' (embedded) or a labelled .csv (with a header row) or .jsonl file: see below")
    p.add_argument("--text-column", default="text", help="the CSV column / JSONL field that holds the text")
    p.add_argument("--label-column", default="label", help="the CSV column / JSONL field that holds the label")
    p.add_argument("--pooling", choices=("mean", "cls"), default="mean", help="how the encoder's positions become one vector for the head")
    p.add_argument("--tokenizer", choices=sorted(pipeline.TOKENIZERS), default="bpe",
                   help="only without --pretrained")
    p.add_argument("--vocab-size", type=POSITIVE_INT, default=512, help="only without --pretrained")
    _add_training_args(p, "classification")   # the task's defaults (minillm.train.entry)
    _add_model_args(p, d_model=128, n_layers=2, block_size=64)
    p.set_defaults(func=cmd_finetune)

    p = _command(sub, "evaluate", help="perplexity of an LM run, accuracy/P/R/F1 of a classifier run")
    p.add_argument("run", type=Path, help="a run folder or a checkpoint folder")
    p.add_argument("--backend", choices=BACKENDS, default="numpy", help="numpy (the reference) or torch")
    p.add_argument("--device", choices=DEVICES, default="cpu", help="torch backend only")
    p.add_argument("--split", choices=("train", "validation", "test", "all"), default=None,
                   help="default: test of the run's own data (rebuilt from its data.json), all of other data")
    p.add_argument("--dataset", default=None, help="other data to score: classifier: 'sentiment' or a labelled "
                                                   ".csv/.jsonl (its labels mapped to the run's); LM: a corpus "
                                                   "(default: the run's own data)")
    p.add_argument("--data", type=Path, default=None, help="LM: a folder written by `minillm prepare`")
    p.add_argument("--text-column", default=None, help="--dataset: default: the run's (else 'text')")
    p.add_argument("--label-column", default=None, help="--dataset: default: the run's (else 'label')")
    _add_explicit(p)
    p.set_defaults(func=cmd_evaluate)

    p = _command(sub, "generate", help="continue a prompt with a GPT run")
    p.add_argument("run", type=Path, nargs="?", default=None,
                   help="a causal_lm run folder or a checkpoint folder (or use --from-hf)")
    p.add_argument("--from-hf", type=Path, default=None, metavar="FOLDER",
                   help="a local Hugging Face GPT-2 folder (config.json, model.safetensors, vocab.json, merges.txt)")
    p.add_argument("--allow-bin", action="store_true",
                   help="--from-hf: read pytorch_model.bin (torch.load, weights_only=True) if no safetensors")
    p.add_argument("--prompt", default="The ", help="the text to continue (default: 'The ')")
    p.add_argument("--max-new-tokens", type=NONNEG_INT, default=100, help="tokens to generate")
    p.add_argument("--temperature", type=NONNEG, default=0.8, help="0 = greedy")
    p.add_argument("--top-k", type=POSITIVE_INT, default=40, help="sample among the k likeliest tokens")
    p.add_argument("--top-p", type=TOP_P, default=None, help="sample in the smallest set of tokens with this much probability (default: off)")
    p.add_argument("--seed", type=SEED, default=0, help="random seed")
    p.add_argument("--backend", choices=BACKENDS, default="numpy", help="numpy (the reference) or torch")
    p.add_argument("--device", choices=DEVICES, default="cpu", help="torch backend only")
    p.add_argument("--no-cache", action="store_true", help="recompute every position each step")
    _add_explicit(p)
    p.set_defaults(func=cmd_generate)

    p = _command(sub, "embed", help="sentence embeddings with a local Hugging Face BERT / sentence-transformers folder")
    p.add_argument("texts", nargs="*", help="texts to embed")
    p.add_argument("--from-hf", type=Path, required=True, metavar="FOLDER",
                   help="a BERT or sentence-transformers folder (config.json, model.safetensors, vocab.txt)")
    p.add_argument("--file", type=Path, default=None, help="also embed each non-empty line of this file")
    p.add_argument("--pooling", choices=POOLING_MODES, default=None,
                   help="default: the folder's (sentence-transformers), else mean")
    p.add_argument("--out", type=Path, default=None, help="write a .npy (N, d_model) instead of printing JSON lines")
    p.add_argument("--backend", choices=BACKENDS, default="numpy", help="numpy (the reference) or torch")
    p.add_argument("--device", choices=DEVICES, default="cpu", help="torch backend only")
    p.add_argument("--allow-bin", action="store_true",
                   help="read pytorch_model.bin (torch.load, weights_only=True) if no safetensors")
    _add_explicit(p)
    p.set_defaults(func=cmd_embed)

    p = _command(sub, "translate", help="train on the embedded dates corpus (--train), or translate with a run")
    p.add_argument("run", type=Path, nargs="?", default=None, help="a translation run folder to use")
    p.add_argument("--text", action="append", default=[], help="a sentence to translate (repeatable)")
    p.add_argument("--beam-size", type=POSITIVE_INT, default=1, help="1 = greedy (default: %(default)s)")
    p.add_argument("--length-penalty", type=NONNEG, default=0.6, help="alpha of beam search (default: %(default)s)")
    p.add_argument("--train", action="store_true", help="train an encoder-decoder on the dates corpus")
    p.add_argument("--label-smoothing", type=FRACTION, default=TRANSLATION_TASK.options["label_smoothing"],
                   help="--train: of the cross-entropy")
    _add_training_args(p, "translation", out_required=False, when="--train: ")
    p.set_defaults(func=cmd_translate)

    p = _command(sub, "answer", help="train extractive QA on the embedded set (--train), or answer with a run")
    p.add_argument("run", type=Path, nargs="?", default=None, help="a question-answering run folder to use")
    p.add_argument("--context", default=None, help="the text the answer is a span of")
    p.add_argument("--question", default=None, help="the question to answer")
    p.add_argument("--train", action="store_true", help="train a span-QA encoder on the embedded set")
    _add_training_args(p, "question_answering", out_required=False, when="--train: ")
    p.set_defaults(func=cmd_answer)

    p = _command(sub, "serve", help="serve a run over HTTP (FastAPI + uvicorn; needs the 'serve' extra)")
    p.add_argument("run", type=Path, help="a run folder or a checkpoint folder")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s, this machine only)")
    p.add_argument("--port", type=PORT, default=8000, help="port to listen on")
    p.add_argument("--backend", choices=BACKENDS, default="numpy", help="numpy (the reference) or torch")
    p.add_argument("--device", choices=DEVICES, default="cpu", help="torch backend only")
    p.add_argument("--max-new-tokens", type=POSITIVE_INT, default=256, help="per request (default: %(default)s)")
    p.add_argument("--max-text-chars", type=POSITIVE_INT, default=16384, help="prompt/text length (default: %(default)s)")
    p.add_argument("--max-body-bytes", type=POSITIVE_INT, default=65536, help="request body; larger gets 413 "
                                                                     "(default: %(default)s)")
    _add_explicit(p)
    p.set_defaults(func=cmd_serve)

    p = _command(sub, "bench", help="train-step time and memory of both backends, generation, attention cost")
    p.add_argument("--threads", type=POSITIVE_INT, nargs="+", default=[1, 2],
                   help="NumPy BLAS and torch thread counts; the train step is measured at each, the rest "
                        "at the first")
    p.add_argument("--sizes", nargs="+", choices=("tiny", "small", "medium"), help="model sizes to time",
                   default=["tiny", "small", "medium"])
    p.add_argument("--repeats", type=POSITIVE_INT, default=9, help="timed train steps per variant (median); "
                                                          "generation and attention use a third and a half")
    p.add_argument("--device", choices=DEVICES, default="cpu", help="the torch variants' device")
    p.add_argument("--compile", action="store_true", help="torch.compile the fast path (slow to start)")
    p.add_argument("--no-generate", action="store_true", help="skip the KV-cache generation benchmark")
    p.add_argument("--new-tokens", type=POSITIVE_INT, default=256, help="generation length = block size")
    p.add_argument("--attention-T", type=POSITIVE_INT, nargs="*", default=[64, 128, 256, 512, 1024, 2048],
                   help="sequence lengths of the attention-cost sweep (none: skip)")
    p.add_argument("--gpu", action=argparse.BooleanOptionalAction, default=None,
                   help="GPT-2-small tokens/s and MFU on CUDA (default: when CUDA is available)")
    p.add_argument("--out", type=Path, default=Path("runs/bench"), help="folder for results (default: %(default)s)")
    p.set_defaults(func=cmd_bench)
    return parser


# -- --resume: the run continues as it was recorded -----------------------------------------

RECORDED_TRAINING = ("steps", "lr", "warmup_steps", "weight_decay", "grad_clip", "eval_every", "seed")
RECORDED_MODEL = ("d_model", "n_layers", "n_heads", "block_size", "dropout", "activation", "dtype",
                  "positional", "init_std")
OPTION_OF = {"checkpoint_every": "eval_every"}          # recorded setting -> the option that sets it


def _given_options(argv) -> set[str]:
    """The ``dest`` of every option typed on the command line (abbreviations included),
    as opposed to those left at their default: the same arguments parsed again with
    every default suppressed."""
    parser = build_parser()
    parsers = [parser] + [p for action in parser._actions if isinstance(action, argparse._SubParsersAction)
                          for p in action.choices.values()]
    for p in parsers:
        for action in p._actions:
            action.default = argparse.SUPPRESS
        p._defaults.clear()
    return set(vars(parser.parse_args(argv)))


def _continue_recorded(args, argv) -> None:
    """``--resume``: every training option not typed takes the value the run recorded
    (``OUT/checkpoints/last``), so that ``--resume`` alone continues the run as it was
    started; a typed option that differs is refused by the library (ResumeMismatch)."""
    recorded = RunConfig.recorded(args.out)
    if recorded is None:
        return
    values = {k: v for k, v in asdict(recorded.train).items() if k in RECORDED_TRAINING}
    values.update({k: v for k, v in recorded.model.to_dict().items() if k in RECORDED_MODEL})
    values["post_norm"] = not recorded.model.norm_first
    values["batch_size"] = recorded.train.batch_size
    given = _given_options(argv)
    for dest, value in values.items():
        if hasattr(args, dest) and dest not in given:
            setattr(args, dest, value)


def _as_option(key: str, value) -> str:
    """A recorded setting as the option that sets it (``--steps 600``), else as itself."""
    if key == "norm_first":
        return "pre-norm blocks" if value else "--post-norm"
    key = OPTION_OF.get(key, key)
    shown = f"{value:g}" if isinstance(value, float) else value
    if key in RECORDED_TRAINING or key in RECORDED_MODEL or key == "batch_size":
        return f"--{key.replace('_', '-')} {shown}"
    return f"{key}={shown!r}" + (" (--lr / 10)" if key == "min_lr" else "")


def _error_message(exc: Exception) -> str:
    """The library's errors that name its arguments, worded with the CLI's options."""
    if isinstance(exc, RunExists):
        return exc.message(resume="--resume", overwrite="--overwrite")
    if isinstance(exc, ResumeMismatch):
        diffs = exc.differences
        derived = {"min_lr": "lr", "checkpoint_every": "eval_every", "d_ff": "d_model"}   # set by those options
        exc = ResumeMismatch(exc.run_dir, {k: v for k, v in diffs.items() if derived.get(k) not in diffs})
        return exc.message(_as_option, how="leave those options out to continue the run as recorded, "
                                            "or start a new run (--overwrite, or another --out)")
    return str(exc)


def _resume_hint(args) -> str:
    """Where an interrupted training run can continue from, if it got as far as a checkpoint."""
    out = getattr(args, "out", None)
    if getattr(args, "func", None) in (cmd_pretrain, cmd_finetune, cmd_translate, cmd_answer) and out is not None \
            and (Path(out) / "checkpoints" / "last").is_dir():
        return f": the last checkpoint is in {Path(out) / 'checkpoints' / 'last'}; continue with --resume"
    return ""

def main(argv=None) -> int:
    args, previous = None, _CtrlC.install()
    _CtrlC.seen = False
    try:
        args = build_parser().parse_args(argv)
        if getattr(args, "resume", False) and getattr(args, "out", None) is not None:
            _continue_recorded(args, sys.argv[1:] if argv is None else argv)
        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                            format="%(levelname)s %(name)s: %(message)s")
        return args.func(args)
    except KeyboardInterrupt:
        return _interrupted(_resume_hint(args) if args is not None else "")
    except TrainingDiverged as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except (ValueError, FileNotFoundError, FileExistsError, ImportError) as exc:
        if isinstance(exc, ImportError) and _CtrlC.seen:
            return _interrupted(_resume_hint(args) if args is not None else "")
        print(f"error: {_error_message(exc)}", file=sys.stderr)
        return 2
    finally:
        _CtrlC.restore(previous)

if __name__ == "__main__":
    sys.exit(main())
