"""The applications' commands: ``translate`` and ``answer``, each training its task
(``--train``, through :func:`minillm.train.entry.train`) or using a run."""
from __future__ import annotations

import sys
from pathlib import Path

from ..apps import question_answering as qa
from ..apps import translation
from ..store.runs import load_run
from ..train.entry import train
from .options import FRACTION, NONNEG, POSITIVE_INT, add_training_args, run_config_of, runtime_of

__all__ = ["add_parsers", "cmd_translate", "cmd_answer", "TRAINING_COMMANDS"]


def _application_args(a, what: str):
    if a.train == (a.run is not None):
        raise ValueError(f"{what}: expected either --train --out RUN or a RUN folder to use, got "
                         + ("both" if a.train else "neither"))
    if a.train and a.out is None:
        raise ValueError(f"{what} --train: expected --out RUN, the run folder to write")


def cmd_translate(a) -> int:
    _application_args(a, "translate")
    if a.train:
        run = train("translation", a.out, run_config_of(a, "translation", translation.TRANSLATION_CONFIG),
                    resume=a.resume, overwrite=a.overwrite, label_smoothing=a.label_smoothing)
        if run.runtime.is_main:
            scores = run.test
            print(f"held-out dates: {100 * scores['exact']:.1f}% exact, BLEU {scores['bleu']:.1f} "
                  f"({scores['n']} sentences); run folder: {a.out}")
        return 0
    if not a.text:
        raise ValueError("translate: expected --text TEXT (one or more)")
    run = load_run(a.run, runtime_of(a), task="translation")
    outs = translation.translate_checked(run.model, run.runtime, run.tokenizer, list(a.text), a.beam_size,
                                         a.length_penalty)
    for k, out in enumerate(outs, 1):
        print(out.text)
        if out.warning:          # on stderr: stdout stays one translation a line
            which = f" (--text {k})" if len(outs) > 1 else ""
            print(f"warning{which}: {out.warning}", file=sys.stderr)
    return 0


def cmd_answer(a) -> int:
    _application_args(a, "answer")
    if a.train:
        run = train("question_answering", a.out, run_config_of(a, "question_answering", qa.QA_CONFIG),
                    resume=a.resume, overwrite=a.overwrite)
        if run.runtime.is_main:
            scores = run.test
            print(f"held-out questions: exact match {100 * scores['exact_match']:.1f}%, "
                  f"F1 {100 * scores['f1']:.1f}% ({scores['n']} questions); run folder: {a.out}")
        return 0
    if a.context is None or a.question is None:
        raise ValueError("answer: expected --context TEXT and --question TEXT")
    run = load_run(a.run, runtime_of(a), task="question_answering")
    out = qa.answer_checked(run.model, run.runtime, run.tokenizer, [a.context], [a.question])[0]
    print(out.text)
    if out.warning:
        print(f"warning: {out.warning}", file=sys.stderr)
    return 0


TRAINING_COMMANDS = (cmd_translate, cmd_answer)        # with --train


def add_parsers(sub, command) -> None:
    p = command(sub, "translate", help="train on the embedded dates corpus (--train), or translate with a run")
    fallbacks: dict = {}
    p.add_argument("run", type=Path, nargs="?", default=None, help="a translation run folder to use")
    p.add_argument("--text", action="append", default=[], help="a sentence to translate (repeatable)")
    p.add_argument("--beam-size", type=POSITIVE_INT, default=1, help="1 = greedy (default: %(default)s)")
    p.add_argument("--length-penalty", type=NONNEG, default=0.6, help="alpha of beam search (default: %(default)s)")
    p.add_argument("--train", action="store_true", help="train an encoder-decoder on the dates corpus")
    p.add_argument("--label-smoothing", type=FRACTION,
                   default=translation.TRANSLATION_TASK.options["label_smoothing"], help="--train: of the cross-entropy")
    add_training_args(p, fallbacks, "translation", out_required=False, when="--train: ")
    p.set_defaults(func=cmd_translate, fallbacks=fallbacks)

    p = command(sub, "answer", help="train extractive QA on the embedded set (--train), or answer with a run")
    fallbacks = {}
    p.add_argument("run", type=Path, nargs="?", default=None, help="a question-answering run folder to use")
    p.add_argument("--context", default=None, help="the text the answer is a span of")
    p.add_argument("--question", default=None, help="the question to answer")
    p.add_argument("--train", action="store_true", help="train a span-QA encoder on the embedded set")
    add_training_args(p, fallbacks, "question_answering", out_required=False, when="--train: ")
    p.set_defaults(func=cmd_answer, fallbacks=fallbacks)
