"""Training progress shows wherever stderr goes (issue 18): tqdm's bar in a terminal, a
plain line at the first step, every `interval` seconds and at the last step elsewhere.

The reporter is driven with a fake clock, so the line timings are exact; the trainer
and the command line are checked on real runs with a non-terminal stderr.
"""
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minillm import ModelConfig
from minillm.data import synthetic_language
from minillm.core.progress import Progress, format_duration
from minillm.store.runtime import Runtime
from minillm.train.tasks import CausalLMData, causal_lm_eval_batches
from minillm.train.training import TrainConfig, Trainer

ROOT = Path(__file__).resolve().parents[2]
LINE = re.compile(r"^\[(?P<desc>\w+)\] step (?P<step>\d+)/(?P<total>\d+)  loss (?P<loss>\S+)  "
                  r"(?P<rate>[\d,?]+) tokens/s  elapsed (?P<elapsed>\S+)  left (?P<left>\S+)$")
TINY = ["--d-model", "16", "--n-layers", "1", "--n-heads", "2", "--block-size", "16", "--batch-size", "4"]


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class Terminal(io.StringIO):
    def isatty(self):
        return True


def step_lines(text):
    return [m.groupdict() for m in map(LINE.match, text.splitlines()) if m]


def run_fake(total, step_seconds, interval, *, initial=0, tokens=1000):
    """Reports steps initial+1..total, each taking `step_seconds` on the fake clock."""
    clock, out = FakeClock(), io.StringIO()
    p = Progress("causal_lm", stream=out, interval=interval, clock=clock)
    p.start(total, initial=initial)
    for step in range(initial + 1, total + 1):
        clock.now += step_seconds
        p.update(step, loss=5.0 - 0.01 * step, tokens=tokens, lr=1e-3, seconds=step_seconds)
    p.close()
    return out.getvalue()


def test_lines_at_the_first_step_every_interval_and_the_last():
    # 1.5 s a step, a line at least 10 s after the previous one: steps 1, 8 (10.5 s after
    # step 1), 15, 22, 29, then the last one, 30
    text = run_fake(total=30, step_seconds=1.5, interval=10.0)
    lines = step_lines(text)
    assert [int(l["step"]) for l in lines] == [1, 8, 15, 22, 29, 30]
    assert len(lines) == len(text.splitlines())                 # nothing else, no bar
    assert all(l["desc"] == "causal_lm" and l["total"] == "30" for l in lines)
    # the fields: the step's loss, tokens over the steps' own time, elapsed and time left
    first, second, last = lines[0], lines[1], lines[-1]
    assert float(first["loss"]) == pytest.approx(4.99, abs=5e-4)   # printed with 3 decimals
    assert float(second["loss"]) == pytest.approx(4.92, abs=5e-4)
    assert first["rate"] == second["rate"] == "667"              # 1000 tokens / 1.5 s
    assert second["elapsed"] == "0:12"                           # 8 steps of 1.5 s
    assert second["left"] == "0:33"                              # 22 steps left at 1.5 s
    assert last["elapsed"] == "0:45" and last["left"] == "0:00"


def test_a_resumed_run_counts_from_where_it_resumed():
    lines = step_lines(run_fake(total=20, step_seconds=2.0, interval=5.0, initial=12))
    assert [int(l["step"]) for l in lines] == [13, 16, 19, 20]
    # time left from this run's own steps: at step 16, 4 steps in 8 s, 4 left -> 8 s
    assert lines[1]["elapsed"] == "0:08" and lines[1]["left"] == "0:08"


def test_first_and_last_lines_appear_even_when_the_run_is_shorter_than_the_interval():
    lines = step_lines(run_fake(total=5, step_seconds=0.01, interval=10.0))
    assert [int(l["step"]) for l in lines] == [1, 5]
    single = step_lines(run_fake(total=1, step_seconds=0.01, interval=10.0))
    assert [int(l["step"]) for l in single] == [1]               # first and last at once: one line


def test_interval_zero_reports_every_step():
    lines = step_lines(run_fake(total=4, step_seconds=1.0, interval=0.0))
    assert [int(l["step"]) for l in lines] == [1, 2, 3, 4]


def test_a_run_stopped_between_lines_reports_where_it_stopped():
    clock, out = FakeClock(), io.StringIO()
    p = Progress("masked_lm", stream=out, interval=60.0, clock=clock)
    p.start(100)
    for step in range(1, 8):
        clock.now += 1.0
        p.update(step, 3.0, tokens=10)
    p.close()                                                    # e.g. Ctrl-C after step 7
    assert [int(l["step"]) for l in step_lines(out.getvalue())] == [1, 7]


def test_evaluation_line():
    out = io.StringIO()
    p = Progress("classification", stream=out, clock=FakeClock())
    p.start(10)
    p.evaluated(5, {"loss": 0.6931, "accuracy": 0.75, "f1": 0.8}, seconds=2.3)
    p.evaluated(10, {}, seconds=1.0)                             # no validation data: nothing
    assert out.getvalue() == ("[classification] step 5/10  validation loss 0.693  accuracy 0.750  "
                              "f1 0.800  (evaluated in 2.3s)\n")


def test_a_terminal_gets_the_bar_not_lines():
    pytest.importorskip("tqdm")
    out = Terminal()
    p = Progress("causal_lm", stream=out, interval=0.0, clock=FakeClock())
    p.start(30)
    for step in range(1, 31):
        p.update(step, 2.5, tokens=100, seconds=0.5)
    p.close()
    text = out.getvalue()
    assert "\r" in text and "causal_lm" in text and "/30" in text   # tqdm redraws its line
    assert step_lines(text.replace("\r", "\n")) == []            # and no plain lines


def test_bar_can_be_forced_either_way():
    pytest.importorskip("tqdm")
    out = Terminal()
    p = Progress("causal_lm", stream=out, bar=False, clock=FakeClock())
    p.start(2)
    p.update(1, 1.0, tokens=10, seconds=1.0)
    p.update(2, 1.0, tokens=10, seconds=1.0)
    p.close()
    assert [int(l["step"]) for l in step_lines(out.getvalue())] == [1, 2]


def test_format_duration():
    assert [format_duration(s) for s in (0, 59.4, 61, 3599, 3600, 3661, 90061)] == \
        ["0:00", "0:59", "1:01", "59:59", "1:00:00", "1:01:01", "25:01:01"]
    assert format_duration(float("nan")) == format_duration(float("inf")) == format_duration(-1) == "?"


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="interval"):
        Progress(interval=-1)
    with pytest.raises(ValueError, match="initial"):
        Progress().start(5, initial=6)


# -- the trainer ------------------------------------------------------------------------

def tiny_trainer(progress, steps=6, run_dir=None):
    lang = synthetic_language(3000, order=1, alphabet_size=6, seed=3)
    ids = np.asarray(lang.ids, dtype=np.int64)
    rt = Runtime("numpy")
    cfg = ModelConfig(vocab_size=int(ids.max()) + 1, block_size=8, d_model=16, n_heads=2, n_layers=1)
    model = rt.module.GPT(cfg, seed=0)
    tc = TrainConfig(steps=steps, lr=1e-2, warmup_steps=1, eval_every=3, checkpoint_every=3)
    return Trainer(rt, model, tc.optimizer(rt, model), CausalLMData(ids[:2500], 8, 4, 0), tc,
                   eval_data=causal_lm_eval_batches(ids[2500:], 8, 8), run_dir=run_dir, progress=progress)


def test_trainer_reports_every_step_count_and_evaluation(tmp_path):
    out = io.StringIO()
    trainer = tiny_trainer(Progress("causal_lm", stream=out, interval=0.0), run_dir=tmp_path)
    result = trainer.fit()
    text = out.getvalue()
    lines = step_lines(text)
    assert [int(l["step"]) for l in lines] == [1, 2, 3, 4, 5, 6]
    # the printed losses are the run's (metrics.jsonl), to the 3 decimals shown
    logged = [json.loads(r)["loss"] for r in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [float(l["loss"]) for l in lines] == pytest.approx(logged, abs=5e-4)
    assert all(int(l["rate"].replace(",", "")) > 0 for l in lines)   # 4 rows x 8 tokens a step
    evals = [line for line in text.splitlines() if "evaluated in" in line]
    assert [line.split()[1:3] for line in evals] == [["step", "3/6"], ["step", "6/6"]]
    assert f"validation loss {result.best_val:.3f}" in text
    # the last line says which checkpoint the run kept as best, and its figures
    kept = text.splitlines()[-1]
    assert kept.startswith(f"[causal_lm] kept checkpoints/best: step {trainer.best_step}/6 (lowest validation loss)")
    assert f"loss {result.best_val:.4g}" in kept


def test_trainer_is_silent_without_progress(capsys):
    tiny_trainer(False, steps=2).fit()
    assert capsys.readouterr().err == ""


def test_trainer_default_reports_on_a_non_terminal_stderr(capsys):
    tiny_trainer(True, steps=3).fit()                          # pytest's captured stderr: no tty
    err = capsys.readouterr().err
    assert [int(l["step"]) for l in step_lines(err)] == [1, 3]  # first and last (10 s apart at most)


# -- the command line ----------------------------------------------------------------------

def run_cli(*argv, cwd):
    """`python -m minillm.cli` from the repository root (this checkout's minillm), stderr
    captured through a pipe: not a terminal."""
    path = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": path}
    return subprocess.run([sys.executable, "-m", "minillm.cli", *argv], capture_output=True, text=True,
                          timeout=300, env=env, cwd=cwd)


def test_cli_pretrain_shows_progress_when_stderr_is_not_a_terminal(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(("the cat sat on the mat. the dog sat on the log. " * 60).strip(), encoding="utf-8")
    proc = run_cli("pretrain", "--corpus", str(corpus), "--tokenizer", "char", "--backend", "numpy",
                   "--steps", "5", "--eval-every", "5", "--out", str(tmp_path / "run"), *TINY, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = step_lines(proc.stderr)
    assert [int(l["step"]) for l in lines] == [1, 5] and lines[0]["total"] == "5"
    assert re.search(r"^\[causal_lm\] step 5/5  validation loss \d+\.\d{3}  perplexity", proc.stderr, re.M)
    assert json.loads(proc.stdout)["steps"] == 5                # stdout stays the JSON result
