"""Run folders: the data contract a run records and every consumer reuses, and training
commands that never replace a run silently (issue 17 item 2, issue 18 items 1 and 4).

- ``data.json`` (and every checkpoint's ``extra["data"]``) names the dataset (source,
  sha256), its split (seed, sizes), the label names in id order, the tokenizer and the
  block size;
- ``evaluate`` of a run on its own data rebuilds the run's test split: no evaluated row
  was a training row, whatever ``--seed`` the run used; on another labelled file it maps
  labels through the run's names, and an unseen label is a clear error;
- ``evaluate`` of a run pretrained on a user's text file scores that file's held-out
  split, not the embedded corpus;
- ``pretrain``, ``finetune``, ``translate --train`` and ``answer --train`` refuse a
  folder holding a run unless ``--resume`` or ``--overwrite``; ``--overwrite`` deletes
  only the files a run writes.
"""
import csv
import json

import numpy as np
import pytest

from minillm.data import split_contiguous

import minillm.cli.training
import minillm.train.task_specs
from minillm.cli import main
from minillm.store.runs import load_run
from minillm.store.runtime import Runtime
from minillm.train import pipeline
from minillm.train.entry import train
from minillm.train.evaluation import EVAL_BATCH, evaluate_lm
from minillm.train.run_config import RunConfig
from minillm.train.tasks import causal_lm_eval_batches
from minillm.store.run_folder import RunExists, RunFolder
from training_helpers import interrupt_at  # noqa: E402  (tests/, beside conftest.py)

TINY = ["--d-model", "16", "--n-layers", "1", "--n-heads", "2", "--block-size", "32", "--batch-size", "4"]
LABELS = ("neg", "neu", "pos")


def write_csv(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def three_class_csv(tmp_path_factory):
    """90 distinct reviews, 30 per label (every text unique, so rows can be compared)."""
    words = {"neg": "awful", "neu": "plain", "pos": "lovely"}
    rows = [(f"review {i}: a {words[LABELS[i % 3]]} film", LABELS[i % 3]) for i in range(90)]
    return write_csv(tmp_path_factory.mktemp("data") / "reviews.csv", rows)


@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory, three_class_csv):
    """A 3-class run fine-tuned with --seed 3; records the rows it was trained on."""
    out = tmp_path_factory.mktemp("cls") / "run"
    seen = {}
    real = train

    def recording(task, out, run_config, *, data, **kw):
        seen["train"] = list(data.train.texts)
        return real(task, out, run_config, data=data, **kw)

    mp = pytest.MonkeyPatch()
    mp.setattr(minillm.cli.training, "train", recording)
    try:
        assert main(["finetune", "--dataset", str(three_class_csv), "--tokenizer", "char", "--backend", "numpy",
                     "--steps", "3", "--seed", "3", "--out", str(out), *TINY]) == 0
    finally:
        mp.undo()
    return out, seen["train"]


def test_the_run_records_its_data_contract(classifier_run, three_class_csv):
    out, train_rows = classifier_run
    contract = json.loads((out / "data.json").read_text())
    dataset = contract["dataset"]
    assert dataset["kind"] == "labelled" and dataset["source"] == str(three_class_csv.resolve())
    import hashlib
    assert dataset["sha256"] == hashlib.sha256(three_class_csv.read_bytes()).hexdigest()
    assert dataset["split"]["seed"] == 3 and dataset["split"]["fractions"] == [0.8, 0.1, 0.1]
    assert dataset["split"]["sizes"] == {"train": 72, "validation": 9, "test": 9} and len(train_rows) == 72
    assert contract["label_names"] == list(LABELS) and contract["label_ids"] == {"neg": 0, "neu": 1, "pos": 2}
    assert contract["block_size"] == 32 and contract["tokenizer"]["file"] == "tokenizer.json"
    assert contract["tokenizer"]["kind"] == "CharTokenizer"
    # the same contract travels inside every checkpoint (a checkpoint folder is self-sufficient)
    for name in ("best", "last"):
        assert load_run(out / "checkpoints" / name, Runtime("numpy")).data == contract


def test_evaluate_scores_the_runs_own_test_split_not_training_rows(classifier_run, three_class_csv, capsys):
    out, train_rows = classifier_run
    scored = {}
    real = minillm.train.task_specs.labelled_eval_data

    def recording(*args, **kw):
        data, info = real(*args, **kw)
        scored["rows"] = list(data.texts)
        return data, info

    capsys.readouterr()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(minillm.train.task_specs, "labelled_eval_data", recording)
        assert main(["evaluate", str(out)]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert len(scored["rows"]) == 9 == scores["data"]["rows"]
    assert set(scored["rows"]).isdisjoint(train_rows)
    assert scores["data"]["split"] == "test" and scores["data"]["runs_own_data"] is True
    assert scores["data"]["split_seed"] == 3 and scores["label_names"] == list(LABELS)
    # the bug this guards against: a split with seed 0 would have scored training rows
    stale = pipeline.load_labelled(str(three_class_csv), seed=0).test.texts
    assert not set(stale).isdisjoint(train_rows)
    # --dataset naming the run's own file is the same as no --dataset
    assert main(["evaluate", str(out), "--dataset", str(three_class_csv)]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["accuracy"] == scores["accuracy"] and again["data"] == scores["data"]


def test_finetune_and_evaluate_score_the_same_checkpoint(three_class_csv, tmp_path, capsys):
    out = tmp_path / "cls"
    assert main(["finetune", "--dataset", str(three_class_csv), "--tokenizer", "char", "--backend", "numpy",
                 "--steps", "8", "--eval-every", "2", "--seed", "1", "--out", str(out), *TINY]) == 0
    summary = json.loads(capsys.readouterr().out)
    best = json.loads((out / "checkpoints/best/trainer_state.json").read_text())
    assert summary["checkpoint"]["path"] == str(out / "checkpoints" / "best")
    assert summary["checkpoint"]["step"] == best["step"] == best["extra"]["best_step"]
    assert summary["test"]["rows"] == 9 and summary["test"]["split"] == "test"
    assert main(["evaluate", str(out)]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["checkpoint"] == {"path": str(out / "checkpoints" / "best"), "step": best["step"]}
    # the same weights on the same rows: the same confusion matrix (numpy backend both)
    assert scores["confusion_matrix"] == summary["test"]["confusion_matrix"]


def test_another_file_is_scored_through_the_runs_label_map(classifier_run, tmp_path, capsys):
    out, _ = classifier_run
    # only neg and pos: numbered from its own sorted names, pos would be 1, not the run's 2
    path = write_csv(tmp_path / "eval.csv", [("an awful film", "neg"), ("a lovely film", "pos"),
                                             ("a lovely one", "pos"), ("awful", "neg")])
    data, info = minillm.train.task_specs.labelled_eval_data(load_run(out, Runtime("numpy")), dataset=str(path))
    assert data.labels == [0, 2, 2, 0] and data.label_names == LABELS
    assert info == {"source": str(path.resolve()), "split": "all", "rows": 4, "runs_own_data": False,
                    "split_seed": 3}
    capsys.readouterr()
    assert main(["evaluate", str(out), "--dataset", str(path)]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["label_names"] == list(LABELS)
    cm = np.asarray(scores["confusion_matrix"])                 # rows: true label in the run's ids
    assert cm.shape == (3, 3) and cm.sum(axis=1).tolist() == [2, 0, 2]


def test_a_label_the_run_never_saw_is_a_clear_error(classifier_run, tmp_path, capsys):
    out, _ = classifier_run
    path = write_csv(tmp_path / "eval.csv", [("an awful film", "neg"), ("so so", "meh")])
    assert main(["evaluate", str(out), "--dataset", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "['meh']" in err and "['neg', 'neu', 'pos']" in err


def test_a_changed_dataset_file_is_refused(three_class_csv, tmp_path, capsys):
    path = tmp_path / "reviews.csv"
    path.write_bytes(three_class_csv.read_bytes())
    out = tmp_path / "cls"
    assert main(["finetune", "--dataset", str(path), "--tokenizer", "char", "--backend", "numpy",
                 "--steps", "2", "--out", str(out), *TINY]) == 0
    with open(path, "a", encoding="utf-8") as fh:
        fh.write("one more film,pos\n")
    assert main(["evaluate", str(out)]) == 2
    assert "content changed since the run was trained" in capsys.readouterr().err


def test_evaluate_of_a_run_pretrained_on_a_text_file_scores_that_files_held_out_split(tmp_path, capsys):
    corpus = tmp_path / "notes.txt"
    corpus.write_text(" ".join(f"note {i} says the sky is blue." for i in range(150)), encoding="utf-8")
    out = tmp_path / "lm"
    assert main(["pretrain", "--corpus", str(corpus), "--tokenizer", "char", "--backend", "numpy",
                 "--steps", "3", "--out", str(out), *TINY]) == 0
    contract = json.loads((out / "data.json").read_text())["dataset"]
    assert contract["kind"] == "text" and contract["source"] == str(corpus.resolve())
    capsys.readouterr()
    assert main(["evaluate", str(out)]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["data"] == {"source": str(corpus.resolve()), "split": "test",
                              "tokens": contract["split"]["sizes"]["test"], "runs_own_data": True}
    # the tokens scored are the file's last 5%, the run's test split: the loss matches a
    # direct evaluation of the loaded model on exactly those ids
    loaded = load_run(out, Runtime("numpy"))
    rt, model, tok = loaded.runtime, loaded.model, loaded.tokenizer
    ids = np.asarray(tok.encode(corpus.read_text(encoding="utf-8")), dtype=np.int64)
    test = split_contiguous(ids, (0.9, 0.05, 0.05)).test
    direct = evaluate_lm(rt, model, causal_lm_eval_batches(test, 32, EVAL_BATCH))
    assert scores["loss"] == pytest.approx(direct["loss"], rel=1e-12)


def test_a_run_without_a_recipe_for_its_data_asks_for_it(tmp_path, capsys):
    tok = pipeline.train_tokenizer("char", "abc abc abc " * 50, 64)
    ids = np.asarray(tok.encode("abc abc abc " * 50), dtype=np.int64)
    splits = split_contiguous(ids)
    from minillm.core.config import ModelConfig
    from minillm.train.training import TrainConfig
    cfg = ModelConfig(vocab_size=tok.vocab_size, block_size=8, d_model=16, n_heads=2, n_layers=1)
    train("causal_lm", tmp_path / "lm", RunConfig(cfg, TrainConfig(steps=2, warmup_steps=0), backend="numpy"),
          data=splits, tokenizer=tok, progress=False, source="in memory")
    assert main(["evaluate", str(tmp_path / "lm")]) == 2
    assert "pass --data FOLDER or --dataset CORPUS" in capsys.readouterr().err


# -- never replace a run silently ---------------------------------------------------------

def _metrics_lines(run):
    return len((run / "metrics.jsonl").read_text().splitlines())


TRAINING = {
    "pretrain": ["pretrain", "--corpus", "CORPUS", "--tokenizer", "char", "--backend", "numpy", *TINY],
    "finetune": ["finetune", "--dataset", "CSV", "--tokenizer", "char", "--backend", "numpy", *TINY],
    "translate": ["translate", "--train", "--backend", "numpy", "--batch-size", "8"],
    "answer": ["answer", "--train", "--backend", "numpy", "--batch-size", "8"],
}


@pytest.fixture()
def small_app_corpora(monkeypatch):
    """The dates and QA corpora at 200 training examples (the CLI asks for thousands)."""
    from minillm.apps import question_answering as qa
    from minillm.apps import translation
    for module, name in ((translation, "dates_corpus"), (qa, "qa_corpus")):
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda n_train, n_test, seed=0, _real=real: _real(200, 20, seed=seed))




def _files(run):
    return {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}


@pytest.mark.parametrize("command", sorted(TRAINING))
def test_training_commands_refuse_a_finished_run_unless_resume_or_overwrite(command, three_class_csv, tmp_path,
                                                                             capsys, small_app_corpora,
                                                                             monkeypatch):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat on the mat. " * 40, encoding="utf-8")
    base = [str(corpus) if a == "CORPUS" else str(three_class_csv) if a == "CSV" else a for a in TRAINING[command]]
    run = tmp_path / "run"
    with monkeypatch.context() as m:
        interrupt_at(m, 4)
        assert main([*base, "--steps", "6", "--seed", "1", "--out", str(run)]) == 130
    assert _metrics_lines(run) == 4
    (run / "notes.txt").write_text("mine", encoding="utf-8")          # not written by the run
    before = _files(run)
    capsys.readouterr()

    assert main([*base, "--steps", "2", "--out", str(run)]) == 2
    err = capsys.readouterr().err
    # the CLI's options, not the library's arguments (resume=True)
    assert err.startswith(f"error: {run} already holds a run (") and "resume=True" not in err
    assert err.endswith("; continue it with --resume, or delete it and start again with --overwrite\n")
    assert _files(run) == before                                      # untouched

    # --resume alone continues the run as recorded: --steps 6 and --seed 1 (not the defaults)
    assert main([*base, "--out", str(run), "--resume"]) == 0
    assert _metrics_lines(run) == 6                                  # 4 kept + 2 more
    recorded = json.loads((run / "checkpoints/last/trainer_state.json").read_text())
    assert recorded["step"] == 6 and recorded["extra"]["train_config"]["seed"] == 1

    assert main([*base, "--steps", "2", "--out", str(run), "--overwrite"]) == 0
    assert _metrics_lines(run) == 2
    assert (run / "notes.txt").read_text(encoding="utf-8") == "mine"
    state = json.loads((run / "checkpoints/last/trainer_state.json").read_text())
    assert state["step"] == 2

    with pytest.raises(SystemExit) as exit_:                          # argparse: not both
        main([*base, "--steps", "2", "--out", str(run), "--overwrite", "--resume"])
    assert exit_.value.code == 2


def test_resume_refuses_settings_other_than_the_recorded_ones(tmp_path, capsys):
    """--resume continues the recorded run: another --steps (more: a different cosine
    schedule; fewer: steps already done) or --batch-size is refused, naming the recorded
    and the given value, before any file of the run is touched."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat on the mat. " * 40, encoding="utf-8")
    base = ["pretrain", "--corpus", str(corpus), "--tokenizer", "char", "--backend", "numpy", *TINY]
    run = tmp_path / "run"
    assert main([*base, "--steps", "4", "--out", str(run)]) == 0
    before = _files(run)
    capsys.readouterr()
    for extra, recorded, given in ((["--steps", "6"], "--steps 4", "--steps 6"),
                                   (["--steps", "2"], "--steps 4", "--steps 2"),
                                   (["--batch-size", "8"], "--batch-size 4", "--batch-size 8"),
                                   (["--lr", "1e-2"], "--lr 0.003", "--lr 0.01"),   # not min_lr = lr / 10 too
                                   (["--seed", "1", "--d-model", "8"], "--seed 0, --d-model 16",
                                    "--seed 1, --d-model 8")):
        assert main([*base, "--out", str(run), "--resume", *extra]) == 2
        err = capsys.readouterr().err
        why = " (the learning-rate schedule depends on the total steps)" if extra[0] == "--steps" else ""
        assert err == (f"error: cannot resume the run in {run}: it was started with {recorded}, got {given}; "
                       f"a resumed run continues the configuration it recorded{why}: leave those options out "
                       "to continue the run as recorded, or start a new run (--overwrite, or another --out)\n"), extra
        assert _files(run) == before                                  # run.json not rewritten either
    assert main([*base, "--out", str(run), "--resume"]) == 0         # finished: nothing more to do
    assert _metrics_lines(run) == 4


def test_the_run_configuration_is_written_and_read_back(tmp_path):
    """``run_config.json`` and the last checkpoint record the RunConfig the run was
    started with; :meth:`RunConfig.recorded` gives it back equal (model, training with its
    batch size, backend, device, amp, fused)."""
    from minillm import ModelConfig
    from minillm.data import CharTokenizer, Splits
    from minillm.train.run_config import RunConfig
    from minillm.train.training import TrainConfig
    tok = CharTokenizer.train("the cat sat on the mat. " * 20)
    ids = np.asarray(tok.encode("the cat sat on the mat. " * 20), dtype=np.int64)
    cfg = ModelConfig(vocab_size=tok.vocab_size, block_size=8, d_model=16, n_heads=2, n_layers=1)
    tc = TrainConfig.recipe(4, 1e-2, batch_size=3, seed=2)
    train("causal_lm", tmp_path / "run", RunConfig(cfg, tc, backend="numpy"), data=Splits(ids, ids[:40], ids[:40]),
          tokenizer=tok, progress=False)
    expected = RunConfig(cfg, tc, backend="numpy", device="cpu", amp=False, fused=True)
    assert RunConfig.recorded(tmp_path / "run") == expected
    written = json.loads((tmp_path / "run" / "run_config.json").read_text(encoding="utf-8"))
    assert RunConfig.from_dict(written) == expected
    assert written["train"]["batch_size"] == 3 and written["backend"] == "numpy"
    assert RunConfig.recorded(tmp_path / "nothing") is None
    assert expected.replace(train={"steps": 9}).train == TrainConfig.recipe(4, 1e-2, batch_size=3, seed=2).__class__(
        **{**tc.__dict__, "steps": 9})
    with pytest.raises(ValueError, match="backend must be one of"):
        RunConfig(cfg, backend="jax")
    with pytest.raises(ValueError, match="expected amp to be a bool"):
        RunConfig(cfg, amp="yes")


def test_library_resume_mismatch_names_the_arguments(tmp_path):
    from minillm import ModelConfig
    from minillm.data import CharTokenizer, Splits
    from minillm.store.run_folder import ResumeMismatch
    from minillm.train.training import TrainConfig
    tok = CharTokenizer.train("the cat sat on the mat. " * 20)
    ids = np.asarray(tok.encode("the cat sat on the mat. " * 20), dtype=np.int64)
    splits = Splits(ids, ids[:40], ids[:40])
    cfg = ModelConfig(vocab_size=tok.vocab_size, block_size=8, d_model=16, n_heads=2, n_layers=1)
    tc = TrainConfig(steps=3, lr=1e-2, min_lr=1e-3, warmup_steps=0, eval_every=3, checkpoint_every=3, batch_size=2)
    kwargs = dict(data=splits, tokenizer=tok, progress=False)
    train("causal_lm", tmp_path / "run", RunConfig(cfg, tc, backend="numpy"), **kwargs)
    with pytest.raises(ResumeMismatch) as err:
        train("causal_lm", tmp_path / "run", RunConfig(cfg, TrainConfig(
            steps=5, lr=1e-2, min_lr=1e-3, warmup_steps=0, eval_every=3, checkpoint_every=3, batch_size=2),
            backend="numpy"), resume=True, **kwargs)
    assert err.value.differences == {"steps": (3, 5)}
    assert str(err.value).startswith(f"cannot resume the run in {tmp_path / 'run'}: it was started with "
                                     "steps=3, got steps=5; ")
    assert str(err.value).endswith("pass the recorded values, or start a new run (another run folder, "
                                   "or overwrite=True)")
    with pytest.raises(RunExists, match=r"continue it with resume=True, or delete it and start again with "
                                        r"overwrite=True$"):
        train("causal_lm", tmp_path / "run", RunConfig(cfg, tc, backend="numpy"), **kwargs)


def test_claiming_a_run_folder_deletes_only_what_a_run_wrote(tmp_path):
    from minillm.store.checkpoint import save_checkpoint
    run = tmp_path / "run"
    save_checkpoint(run / "checkpoints" / "last", weights={"w": np.zeros(2, np.float32)}, config={})
    (run / "checkpoints" / "best").mkdir()
    (run / "checkpoints" / "best" / "mine.txt").write_text("x")       # a stray user file in a checkpoint
    (run / "metrics.jsonl").write_text("{}\n")
    (run / "data.csv").write_text("text,label\n")
    with pytest.raises(RunExists, match=r"run.* already holds a run \(metrics.jsonl, checkpoints/last"):
        RunFolder(run).claim()
    RunFolder(run).claim(resume=True)                                   # resuming: nothing deleted
    assert (run / "metrics.jsonl").exists()
    with pytest.raises(ValueError, match="either resume .* or overwrite"):
        RunFolder(run).claim(resume=True, overwrite=True)
    RunFolder(run).claim(overwrite=True)
    assert sorted(str(p.relative_to(run)) for p in run.rglob("*")) == [
        "checkpoints", "checkpoints/best", "checkpoints/best/mine.txt", "data.csv"]
    RunFolder(tmp_path / "fresh").claim()                                 # an absent or empty folder is fine


# -- what a run records -------------------------------------------------------------------

@pytest.mark.parametrize("backend,flags,recorded", [
    ("numpy", [], None),                 # the reference has one path: "fused" means nothing there
    ("torch", [], True),
    ("torch", ["--explicit"], False),
])
def test_run_json_records_the_path_actually_run(backend, flags, recorded, tmp_path):
    if backend == "torch":
        pytest.importorskip("torch")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat on the mat. " * 40, encoding="utf-8")
    out = tmp_path / "run"
    assert main(["pretrain", "--corpus", str(corpus), "--tokenizer", "char", "--backend", backend,
                 "--steps", "1", "--out", str(out), *TINY, *flags]) == 0
    assert json.loads((out / "run.json").read_text())["fused"] is recorded


def test_resume_alone_takes_the_data_and_model_options_the_run_recorded(tmp_path, three_class_csv, capsys):
    """Issue 29, item 4: ``--resume`` with only ``--out`` continues a run started with
    ``--corpus FILE`` (or ``--dataset FILE`` and its columns) and a model of its own:
    the data options come back from the run's data.json, the rest from its checkpoint."""
    corpus = tmp_path / "notes.txt"
    corpus.write_text("the cat sat on the mat. " * 60, encoding="utf-8")
    run = tmp_path / "lm"
    assert main(["pretrain", "--corpus", str(corpus), "--tokenizer", "char", "--backend", "numpy", "--steps", "4",
                 "--out", str(run), *TINY]) == 0
    checkpoint = run / "checkpoints" / "last" / "trainer_state.json"
    state = json.loads(checkpoint.read_text())
    capsys.readouterr()
    assert main(["pretrain", "--out", str(run), "--resume", "--backend", "numpy"]) == 0, capsys.readouterr().err
    assert json.loads(checkpoint.read_text())["step"] == state["step"] == 4    # finished: nothing more to do
    assert main(["pretrain", "--out", str(run), "--resume", "--backend", "numpy", "--corpus", "python_docs"]) == 2
    assert "the run was trained on" in capsys.readouterr().err             # a typed option still counts

    cls = tmp_path / "cls"
    assert main(["finetune", "--dataset", str(three_class_csv), "--tokenizer", "char", "--backend", "numpy",
                 "--steps", "2", "--out", str(cls), *TINY]) == 0
    capsys.readouterr()
    assert main(["finetune", "--out", str(cls), "--resume", "--backend", "numpy"]) == 0, \
        capsys.readouterr().err


def test_a_run_claims_checks_and_prepares_once(tmp_path, monkeypatch):
    """Issue 24, item 4: one training run claims its folder, checks a resume, writes its
    files and prepares its model on the runtime once each (they ran twice: once in the
    entry, once in the trainer)."""
    from minillm import ModelConfig
    from minillm.data import CharTokenizer, Splits
    from minillm.store.runtime import Runtime
    from minillm.train.training import TrainConfig
    calls = {}

    def counted(cls, name):
        real = getattr(cls, name)

        def spy(self, *args, **kwargs):
            calls[name] = calls.get(name, 0) + 1
            return real(self, *args, **kwargs)
        monkeypatch.setattr(cls, name, spy)

    for cls, name in ((RunFolder, "claim"), (RunFolder, "check_resume"), (RunFolder, "write_run"),
                      (Runtime, "prepare")):
        counted(cls, name)
    tok = CharTokenizer.train("the cat sat on the mat. " * 20)
    ids = np.asarray(tok.encode("the cat sat on the mat. " * 20), dtype=np.int64)
    cfg = ModelConfig(vocab_size=tok.vocab_size, block_size=8, d_model=16, n_heads=2, n_layers=1)
    kwargs = dict(data=Splits(ids, ids[:40], ids[:40]), tokenizer=tok, progress=False)
    train("causal_lm", tmp_path / "run", RunConfig(cfg, TrainConfig.recipe(2, 1e-2, batch_size=2), backend="numpy"),
          **kwargs)
    assert calls == {"claim": 1, "write_run": 1, "prepare": 1}
    calls.clear()
    train("causal_lm", tmp_path / "run", RunConfig(cfg, TrainConfig.recipe(2, 1e-2, batch_size=2), backend="numpy"),
          resume=True, **kwargs)
    assert calls == {"claim": 1, "check_resume": 1, "write_run": 1, "prepare": 1}
