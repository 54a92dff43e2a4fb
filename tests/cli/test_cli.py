"""The `minillm` command line on real files: prepare -> pretrain -> generate -> evaluate,
finetune -> evaluate, resume, every --help, and clear errors (exit status 2, no traceback).
"""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from minillm.cli import build_parser, main

COMMANDS = ["demo", "prepare", "pretrain", "finetune", "sft", "evaluate", "generate", "serve", "bench", "embed",
            "translate", "answer", "dpo"]
TINY = ["--d-model", "16", "--n-layers", "1", "--n-heads", "2", "--block-size", "16", "--batch-size", "4"]


def test_python_dash_m_minillm_is_the_command():
    out = subprocess.run([sys.executable, "-m", "minillm", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("minillm ") and out.stdout == subprocess.run(
        [sys.executable, "-c", "from minillm.cli import main; main(['--version'])"], capture_output=True,
        text=True).stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: minillm " + command)


def test_training_commands_share_their_options():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices
    for command in ("pretrain", "finetune"):
        options = {s for a in sub[command]._actions for s in a.option_strings}
        assert {"--backend", "--out", "--steps", "--seed", "--resume", "--device"} <= options


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text(("the cat sat on the mat. the dog sat on the log. " * 60).strip(), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory, corpus_file):
    base = tmp_path_factory.mktemp("lm")
    assert main(["prepare", "--corpus", str(corpus_file), "--tokenizer", "char", "--out", str(base / "data")]) == 0
    assert main(["pretrain", "--data", str(base / "data"), "--backend", "numpy", "--steps", "6",
                 "--out", str(base / "run"), *TINY]) == 0
    return base


def test_prepare_writes_tokenizer_and_splits(lm_run):
    info = json.loads((lm_run / "data" / "prepare.json").read_text())
    assert info["tokenizer"] == "char" and sum(info["tokens"].values()) > 2000
    for name in ("tokenizer.json", "train.npy", "validation.npy", "test.npy"):
        assert (lm_run / "data" / name).stat().st_size > 0


def test_pretrain_writes_a_complete_run_folder(lm_run):
    run = lm_run / "run"
    for name in ("run.json", "tokenizer.json", "train_config.json", "metrics.jsonl", "loss.png",
                 "checkpoints/last/model.safetensors", "checkpoints/best/model.safetensors"):
        assert (run / name).exists(), name
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 6


def test_generate_and_evaluate_from_the_run(lm_run, capsys):
    capsys.readouterr()
    assert main(["generate", str(lm_run / "run"), "--prompt", "the ", "--max-new-tokens", "12",
                 "--temperature", "0"]) == 0
    greedy = capsys.readouterr().out
    assert greedy.startswith("the ") and len(greedy.strip()) > len("the")
    # the torch backend loads the same checkpoint and, greedy, says the same thing
    assert main(["generate", str(lm_run / "run"), "--prompt", "the ", "--max-new-tokens", "12",
                 "--temperature", "0", "--backend", "torch"]) == 0
    assert capsys.readouterr().out == greedy
    assert main(["evaluate", str(lm_run / "run"), "--data", str(lm_run / "data")]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["task"] == "causal_lm" and scores["perplexity"] == pytest.approx(2.718281828 ** scores["loss"])
    assert json.loads((lm_run / "run" / "eval.json").read_text()) == scores


def test_resume_of_a_finished_run_with_more_steps_is_refused(lm_run, tmp_path, capsys):
    """More --steps than the run recorded would stretch its cosine schedule after the
    fact (issue 18): refused, naming both values; the run is left as it was."""
    import shutil
    run = tmp_path / "run"
    shutil.copytree(lm_run / "run", run)
    capsys.readouterr()
    assert main(["pretrain", "--data", str(lm_run / "data"), "--backend", "numpy", "--steps", "8",
                 "--out", str(run), "--resume", *TINY]) == 2
    assert "it was started with --steps 6, got --steps 8" in capsys.readouterr().err
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 7))


@pytest.fixture()
def labelled_csv(tmp_path):
    path = tmp_path / "reviews.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        for i in range(60):
            writer.writerow([f"a {'good' if i % 2 else 'bad'} film number {i}", "pos" if i % 2 else "neg"])
    return path


def test_finetune_and_evaluate_a_classifier_from_a_csv(labelled_csv, tmp_path, capsys):
    out = tmp_path / "cls"
    assert main(["finetune", "--dataset", str(labelled_csv), "--tokenizer", "char", "--backend", "numpy",
                 "--steps", "4", "--out", str(out), *TINY]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["label_names"] == ["neg", "pos"]
    assert set(summary["test"]) >= {"accuracy", "precision", "recall", "f1", "confusion_matrix"}
    assert list(summary["test"]["per_class"]) == ["neg", "pos"]          # the labels' names, not ids
    assert main(["evaluate", str(out), "--dataset", str(labelled_csv)]) == 0
    captured = capsys.readouterr()
    scores = json.loads(captured.out)
    assert scores["task"] == "classification" and 0.0 <= scores["accuracy"] <= 1.0
    assert list(scores["per_class"]) == ["neg", "pos"]
    assert ": the test split of " in captured.err         # the run's own file: its held-out rows
    assert main(["evaluate", str(out), "--dataset", str(labelled_csv), "--split", "all"]) == 0
    assert ": all of " in capsys.readouterr().err          # not "the all split"
    assert (out / "confusion.png").read_bytes()[:4] == b"\x89PNG"


def test_finetune_from_a_pretrained_encoder(corpus_file, tmp_path, capsys):
    enc = tmp_path / "enc"
    assert main(["pretrain", "--task", "masked_lm", "--corpus", str(corpus_file), "--tokenizer", "char",
                 "--backend", "numpy", "--steps", "3", "--out", str(enc), *TINY]) == 0
    capsys.readouterr()
    assert main(["finetune", "--pretrained", str(enc), "--backend", "torch", "--steps", "3",
                 "--out", str(tmp_path / "cls"), "--batch-size", "8"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["label_names"] == ["negative", "positive"]
    run = json.loads((tmp_path / "cls" / "run.json").read_text())
    assert run["pretrained"] is True and run["model_config"]["d_model"] == 16


@pytest.mark.parametrize("argv, message", [
    (["evaluate", "no/such/run"], r"expected a run folder"),
    (["prepare", "--corpus", "no/such/file.txt", "--out", "x"], r"no/such/file.txt"),
    (["generate", "no/such/run"], r"expected a run folder"),
    (["finetune", "--dataset", "reviews.tsv", "--out", "x", "--steps", "1"], r"expected 'sentiment' or a labelled"),
    (["pretrain", "--corpus", "python_docs", "--tokenizer", "char", "--out", "x", "--steps", "1",
      "--positional", "rope", "--d-model", "12", "--n-heads", "4"], r"expected an even head size"),
])  # values wrong on their own (--init-std 0, --lr -1): argparse, tests/cli/test_cli_messages.py
def test_bad_input_is_a_clear_error(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert __import__("re").search(message, err), err


def test_pretrain_with_rope_and_a_chosen_init_scale_records_them_and_generates(lm_run, tmp_path, capsys):
    assert main(["pretrain", "--data", str(lm_run / "data"), "--backend", "numpy", "--steps", "2",
                 "--out", str(tmp_path / "rope"), "--positional", "rope", "--init-std", "0.1", *TINY]) == 0
    config = json.loads((tmp_path / "rope" / "run.json").read_text())["model_config"]
    assert config["positional"] == "rope" and config["init_std"] == 0.1
    capsys.readouterr()
    assert main(["generate", str(tmp_path / "rope"), "--prompt", "the ", "--max-new-tokens", "20",
                 "--backend", "torch"]) == 0      # past block_size 16: the cache slides
    assert capsys.readouterr().out.startswith("the ")


def test_classifier_run_cannot_generate(labelled_csv, tmp_path, capsys):
    out = tmp_path / "cls"
    assert main(["finetune", "--dataset", str(labelled_csv), "--tokenizer", "char", "--backend", "numpy",
                 "--steps", "2", "--out", str(out), *TINY]) == 0
    assert main(["generate", str(out)]) == 2
    assert "expected a causal_lm, sft or dpo run, got a classification run (SequenceClassifier)" in capsys.readouterr().err


@pytest.mark.slow
def test_console_script_demo_quick(tmp_path):
    """The README's main job, shortened: the installed `minillm` script, a real run folder.
    Its stderr is a pipe, not a terminal: each of the three trainings still reports its
    first and last step (issue 18: the demo was silent for minutes)."""
    exe = Path(sys.executable).with_name("minillm")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "minillm.cli"]
    root = Path(__file__).resolve().parents[2]     # this checkout's minillm, not another install's
    path = os.pathsep.join([str(root), *filter(None, [os.environ.get("PYTHONPATH")])])
    proc = subprocess.run([*cmd, "demo", "--quick", "--out", str(tmp_path / "demo")], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": path})
    assert proc.returncode == 0, proc.stderr[-3000:]
    for line in ("[data]", "[pretrain] GPT", "[generate]", "[finetune]", "[evaluate] test accuracy"):
        assert line in proc.stdout
    for task in ("causal_lm", "masked_lm", "classification"):
        for step in ("1/4", "4/4"):
            assert f"[{task}] step {step}  loss " in proc.stderr, (task, step, proc.stderr[-3000:])
    summary = json.loads((tmp_path / "demo" / "demo.json").read_text())
    assert set(summary) >= {"gpt", "encoder", "classifier"}
    for sub in ("gpt", "encoder", "classifier"):
        assert (tmp_path / "demo" / sub / "checkpoints" / "last" / "model.safetensors").exists()
        assert (tmp_path / "demo" / sub / "loss.png").exists()
    assert (tmp_path / "demo" / "confusion.png").exists()


def _training_options(command: str) -> dict:
    """``{option: (default, type)}`` of the "training" group of ``minillm COMMAND`` (the
    default an option left out takes: its ``fallbacks`` entry, which ``--resume`` overrides
    with the run's recorded value, else argparse's)."""
    import argparse
    from minillm.cli import build_parser
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    fallbacks = sub.choices[command].get_default("fallbacks")
    group, = [g for g in sub.choices[command]._action_groups if g.title == "training"]
    return {opt: (fallbacks.get(action.dest, action.default), action.type) for action in group._group_actions
            for opt in action.option_strings if opt.startswith("--")}


def test_every_training_command_has_the_same_training_options():
    """pretrain, finetune, sft, translate --train and answer --train: one set of training
    options (--device and --resume included), each default the task's, written once
    (minillm.train.spec's TaskSpec; translation and QA declare theirs in minillm.apps)."""
    from minillm.apps.question_answering import QA_TASK
    from minillm.apps.sft import SFT_TASK
    from minillm.apps.translation import TRANSLATION_TASK
    from minillm.cli import TRAINING_OPTIONS
    from minillm.train.spec import task_spec
    options = {c: _training_options(c) for c in ("pretrain", "finetune", "sft", "translate", "answer")}
    for command, found in options.items():
        assert sorted(found) == sorted(TRAINING_OPTIONS), command
    for command, spec in (("pretrain", task_spec("causal_lm")), ("finetune", task_spec("classification")),
                          ("sft", SFT_TASK), ("translate", TRANSLATION_TASK), ("answer", QA_TASK)):
        found = options[command]
        assert (found["--steps"][0], found["--lr"][0], found["--batch-size"][0]) == \
            (spec.steps, spec.lr, spec.batch_size), command
        for opt in ("--backend", "--device", "--seed", "--grad-clip", "--warmup-steps", "--weight-decay"):
            assert found[opt] == options["pretrain"][opt], (command, opt)     # same default, same parser
    # one default step count per task: README's translation (400 steps) and QA (2,000 steps)
    assert (TRANSLATION_TASK.steps, QA_TASK.steps) == (400, 2000)
