"""The parser of every command, and ``main``: parse, fill the options left out, run the
command, and turn the library's errors into one line and an exit status."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .. import __version__
from ..core._optional import import_optional
from ..store.run_folder import ResumeMismatch, RunExists
from ..train.training import TrainingDiverged
from . import apps, dpo, runs, serve, tools, training
from .interrupt import CtrlC, interrupted
from .options import DESCRIPTION, HelpFormatter, fill_defaults
from .resume import as_arch, as_option, recorded_options

__all__ = ["build_parser", "main"]

TRAINING_COMMANDS = training.TRAINING_COMMANDS + apps.TRAINING_COMMANDS + (dpo.cmd_dpo,)


def _command(sub, name: str, help: str, **kwargs) -> argparse.ArgumentParser:
    """A subcommand whose --help starts with its one-line help and lists every default."""
    return sub.add_parser(name, help=help, description=kwargs.pop("description", help),
                          formatter_class=HelpFormatter, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minillm", description=DESCRIPTION, formatter_class=HelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    parser.add_argument("--version", action="version", version=f"minillm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    tools.add_demo_parser(sub, _command)
    training.add_parsers(sub, _command)
    runs.add_parsers(sub, _command)
    apps.add_parsers(sub, _command)
    dpo.add_parsers(sub, _command)
    serve.add_parsers(sub, _command)
    tools.add_bench_parser(sub, _command)
    return parser


def _error_message(exc: Exception, args) -> str:
    """The library's errors that name its arguments, worded with the CLI's options."""
    if isinstance(exc, RunExists):
        return exc.message(resume="--resume", overwrite="--overwrite")
    if isinstance(exc, ResumeMismatch):
        diffs = as_arch(exc.differences, exc.run_dir, getattr(args, "arch", None))
        derived = {"min_lr": "lr", "checkpoint_every": "eval_every", "d_ff": "d_model"}   # set by those options
        exc = ResumeMismatch(exc.run_dir, {k: v for k, v in diffs.items() if derived.get(k) not in diffs})
        options = set(getattr(args, "fallbacks", {}))
        return exc.message(lambda key, value: as_option(key, value, options),
                           how="leave those options out to continue the run as recorded, "
                               "or start a new run (--overwrite, or another --out)")
    return str(exc)


def _needed_extras(args) -> list[tuple[str, str]]:
    """``(module, what needs it)`` for each optional module the command will need: checked
    before it starts any work (`demo --quick` would train its GPT and only then miss nltk).
    tqdm and matplotlib are not here: without them a run prints lines and skips its plots."""
    needs = []
    if getattr(args, "tokenizer", None) == "word" or args.func is tools.cmd_demo:
        needs.append(("nltk", "the word tokenizer"))
    if args.func is serve.cmd_serve:
        needs += [("fastapi", "the server"), ("uvicorn", "the server")]
    return needs


def _resume_hint(args) -> str:
    """Where an interrupted training run can continue from, if it got as far as a checkpoint."""
    out = getattr(args, "out", None)
    if getattr(args, "func", None) in TRAINING_COMMANDS and out is not None \
            and (Path(out) / "checkpoints" / "last").is_dir():
        return f": the last checkpoint is in {Path(out) / 'checkpoints' / 'last'}; continue with --resume"
    return ""


def main(argv=None) -> int:
    args, previous = None, CtrlC.install()
    CtrlC.seen = False
    try:
        args = build_parser().parse_args(argv)
        resuming = getattr(args, "resume", False) and getattr(args, "out", None) is not None
        fill_defaults(args, recorded_options(args.out) if resuming else None)
        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                            format="%(levelname)s %(name)s: %(message)s")
        for module, what in _needed_extras(args):
            import_optional(module, f"minillm {args.command} ({what})")
        return args.func(args)
    except KeyboardInterrupt:
        return interrupted(_resume_hint(args) if args is not None else "")
    except TrainingDiverged as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except (ValueError, FileNotFoundError, FileExistsError, ImportError) as exc:
        if isinstance(exc, ImportError) and CtrlC.seen:
            return interrupted(_resume_hint(args) if args is not None else "")
        print(f"error: {_error_message(exc, args)}", file=sys.stderr)
        return 2
    finally:
        CtrlC.restore(previous)
