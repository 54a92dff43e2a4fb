"""What the command line says: --help without markup and with every default, the data
format of finetune, option errors that name the option as typed, Ctrl-C as one line."""
import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from minillm.cli import build_parser, main
from minillm.data import split_contiguous
from minillm.train import pipeline

ROOT = Path(__file__).resolve().parents[2]


def _commands():
    parser = build_parser()
    return parser, next(a for a in parser._actions if a.dest == "command").choices


def test_top_level_help_is_plain_text_and_lists_every_command(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "``" not in out and ":func:" not in out
    parser, commands = _commands()
    description = " ".join(parser.description.split())
    assert description.endswith("shows a command's options and their defaults.")   # not cut at a comma
    for name in commands:
        assert f"    {name} " in out


@pytest.mark.parametrize("command", sorted(_commands()[1]))
def test_every_option_with_a_default_shows_it(command):
    sub = _commands()[1][command]
    text = " ".join(sub.format_help().split())           # argparse wraps lines anywhere
    fallbacks = sub.get_default("fallbacks") or {}       # what an option left out takes (--resume: the run's)
    for action in sub._actions:
        d = fallbacks.get(action.dest, action.default)
        if not action.option_strings or d is None or d is False or d == argparse.SUPPRESS or action.required:
            continue
        shown = " ".join(map(str, d)) if isinstance(d, list) else str(d)
        assert f"(default: {shown}" in text or f"(default: {shown!r}" in text, (command, action.dest, d)
    assert "(default: )" not in text                      # an empty list is no default to show


def test_finetune_help_states_the_data_format(capsys):
    with pytest.raises(SystemExit):
        main(["finetune", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for words in ("a header row", "text,label", "one JSON object per line", "--text-column", "--label-column",
                  "(default: text)", "(default: label)"):
        assert words in text, words


@pytest.mark.parametrize("argv,option,expected", [
    (["pretrain", "--lr", "-1"], "--lr", "expected a number > 0, got -1"),
    (["pretrain", "--lr", "nan"], "--lr", "expected a number > 0, got nan"),
    (["pretrain", "--steps", "0"], "--steps", "expected an integer >= 1, got 0"),
    (["finetune", "--batch-size", "0"], "--batch-size", "expected an integer >= 1, got 0"),
    (["pretrain", "--dropout", "1.5"], "--dropout", "expected a number in [0, 1), got 1.5"),
    (["pretrain", "--block-size", "-3"], "--block-size", "expected an integer >= 1, got -3"),
    (["pretrain", "--init-std", "0"], "--init-std", "expected a number > 0, got 0"),
    (["pretrain", "--seed", "-1"], "--seed", "expected an integer >= 0, got -1"),
    (["generate", "--top-p", "0"], "--top-p", "expected a number in (0, 1], got 0"),
    (["serve", "run", "--port", "70000"], "--port", "expected a port in [0, 65535], got 70000"),
    (["translate", "--label-smoothing", "1"], "--label-smoothing", "expected a number in [0, 1), got 1"),
    (["pretrain", "--steps", "ten"], "--steps", "expected an integer >= 1, got 'ten'"),
])
def test_bad_option_values_name_the_option(argv, option, expected, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        main(argv + (["--out", str(tmp_path / "run")] if argv[0] in ("pretrain", "finetune") else []))
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"error: argument {option}: {expected}\n" in err, err
    assert "min_lr" not in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()                 # refused before anything ran


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text(("the cat sat on the mat. the dog sat on the log. " * 60).strip(), encoding="utf-8")
    return path


def test_a_block_size_larger_than_the_corpus_says_what_is_needed(corpus_file, tmp_path, capsys):
    text = pipeline.load_corpus(str(corpus_file))
    tok = pipeline.train_tokenizer("char", text, 1024)
    splits = split_contiguous(np.asarray(tok.encode(text)), pipeline.TEXT_FRACTIONS)
    smallest = min(len(s) for s in splits)                 # 5% of ~2900 characters
    common = ["pretrain", "--corpus", str(corpus_file), "--tokenizer", "char", "--backend", "numpy",
              "--d-model", "8", "--n-layers", "1", "--n-heads", "1", "--batch-size", "2", "--steps", "1"]
    assert main(common + ["--block-size", "100000", "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    parts = ", ".join(f"{f} {len(s)}" for f, s in zip(splits._fields, splits))
    assert err == (f"error: the corpus is too short for --block-size 100000: its {sum(map(len, splits))} tokens "
                   f"are split into {parts}, and each split must hold --block-size + 1 = 100001 tokens (a window "
                   f"and its next-token targets); use a corpus of at least 2000011 tokens, or --block-size "
                   f"{smallest - 1} or less\n")
    assert main(common + ["--block-size", str(smallest), "--out", str(tmp_path / "b")]) == 2
    assert main(common + ["--block-size", str(smallest - 1), "--out", str(tmp_path / "c")]) == 0  # the bound is exact


def _wait_until_numpy_loads(proc, timeout: float = 60.0) -> None:
    """Until the child has mapped NumPy's core extension: the CLI's imports are under way,
    inside the region whose Ctrl-C it handles (``minillm/__init__`` imports no NumPy)."""
    maps = Path(f"/proc/{proc.pid}/maps")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if "_multiarray_umath" in maps.read_text():
                return
        except OSError:      # not started yet, or already gone
            pass
        if proc.poll() is not None:
            raise AssertionError(f"the CLI exited ({proc.returncode}) before importing NumPy")
        time.sleep(0.005)
    raise AssertionError(f"the CLI had not imported NumPy after {timeout} s")


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc/PID/maps (Linux)")
@pytest.mark.parametrize("after", [0.0, 0.3, 1.0, 1.5])
def test_ctrl_c_before_training_is_one_line_and_status_130(corpus_file, tmp_path, after):
    """SIGINT while NumPy and the pipeline import (``after`` 0 s from the moment NumPy's
    extension is mapped), while the tokenizer trains, or later: status 130 and one line,
    or, once training has started, the line that names the checkpoint to resume from.

    The delay counts from NumPy's import, not from the start of the process: on a loaded
    machine Python's own start-up can take longer than a fixed delay, and a SIGINT before
    any code of minillm runs ends as Python's default does (the first ~0.1 s on an idle
    machine; no program can catch it there)."""
    cmd = [sys.executable, "-m", "minillm.cli", "pretrain", "--corpus", str(corpus_file), "--tokenizer", "bpe",
           "--vocab-size", "300", "--backend", "numpy", "--steps", "100000", "--out", str(tmp_path / "run"),
           "--d-model", "8", "--n-layers", "1", "--n-heads", "1", "--block-size", "8"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # SIGINT must not be inherited as ignored (a shell's background job ignores it)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        _wait_until_numpy_loads(proc)
    except AssertionError:
        proc.kill()
        raise
    time.sleep(after)
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()
    # how far the run got in ``after`` seconds depends on the machine's speed (issue 29,
    # item 10: an idle fast machine was at step 43 after 1.5 s), so the phase the signal
    # fell in is read from what the run printed, and each phase's promise is checked
    if any(line.startswith("[causal_lm] step") for line in lines):      # training had started
        assert lines[-1].startswith("interrupted: the last checkpoint is in ") and "--resume" in lines[-1], err
        assert (tmp_path / "run" / "checkpoints" / "last" / "config.json").exists()
    else:                                                                # imports, tokenizer, set-up
        assert len(lines) == 1 and lines[0].startswith("interrupted"), err
