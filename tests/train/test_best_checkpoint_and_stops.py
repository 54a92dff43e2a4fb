"""Which checkpoint a run keeps and says it kept; how steps are counted; what a stop names.

- ``checkpoints/best`` is chosen by the task's own score (``TaskSpec.best_by``: a
  classifier's validation accuracy, ties broken by the lower loss), and the run says
  which step it kept and its validation figures (the last progress line, the summary);
- ``metrics.jsonl`` counts the steps done from 1, as the progress lines and the
  checkpoints do, also across a resume that redoes steps;
- a run stopped for non-finite steps names only a checkpoint that exists, and never
  saves one after a skipped step.

Tiny models on the embedded synthetic language, NumPy backend: a second or two each.
"""
import io
import json

import numpy as np
import pytest

from minillm import ModelConfig
from minillm.core.progress import Progress
from minillm.data import WordTokenizer, sentiment, synthetic_language
from minillm.store.runtime import Runtime
from minillm.train.entry import train
from minillm.train.run_config import RunConfig
from minillm.train.spec import task_spec
from minillm.train.tasks import CausalLMData, causal_lm_eval_batches
from minillm.train.training import TrainConfig, Trainer, TrainingDiverged


@pytest.fixture(scope="module")
def ids():
    lang = synthetic_language(4000, order=1, alphabet_size=6, seed=3)
    return np.asarray(lang.ids, dtype=np.int64)


def tiny(ids, run_dir, *, steps=12, lr=1e-2, every=4, progress=False, **kw):
    rt = Runtime("numpy")
    cfg = ModelConfig(vocab_size=int(ids.max()) + 1, block_size=8, d_model=16, n_heads=2, n_layers=1)
    model = rt.module.GPT(cfg, seed=0)
    tc = TrainConfig(steps=steps, lr=lr, min_lr=lr / 10, warmup_steps=2, eval_every=every,
                     checkpoint_every=every, max_bad_steps=3)
    return Trainer(rt, model, tc.optimizer(rt, model), CausalLMData(ids[:3000], 8, 4, 0), tc,
                   eval_data=causal_lm_eval_batches(ids[3000:3400], 8, 8), run_dir=run_dir, progress=progress,
                   **kw)


def scripted(figures):
    """A score function that returns the next (accuracy, loss) of ``figures`` at each evaluation."""
    queue = list(figures)

    def score(runtime, model, batches):
        accuracy, loss = queue.pop(0)
        return {"loss": loss, "accuracy": accuracy, "confusion_matrix": [[1, 0], [0, 1]]}
    return score


def records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def saved_step(folder):
    return json.loads((folder / "trainer_state.json").read_text())["step"]


# -- the best checkpoint -------------------------------------------------------------------

def test_the_classifier_declares_its_accuracy_as_what_chooses_best():
    assert task_spec("classification").best_by == ("accuracy", "max")
    assert task_spec("causal_lm").best_by == task_spec("masked_lm").best_by == ("loss", "min")


def test_best_is_chosen_by_accuracy_ties_broken_by_loss_and_the_run_says_which(ids, tmp_path):
    # evaluations after steps 4, 8, 12: the loss is lowest at 4, the accuracy highest at 8 and 12,
    # where the lower loss (step 12) breaks the tie
    out = io.StringIO()
    trainer = tiny(ids, tmp_path, score=scripted([(0.90, 0.10), (0.95, 0.30), (0.95, 0.20)]),
                   best_by=("accuracy", "max"), progress=Progress("classification", stream=out, interval=1e9))
    result = trainer.fit()
    assert trainer.best_step == 12 and result.best_val == 0.20
    assert trainer.best_scores == {"loss": 0.20, "accuracy": 0.95}        # figures only, no confusion matrix
    best = json.loads((tmp_path / "checkpoints/best/trainer_state.json").read_text())
    assert best["step"] == 12 and best["extra"]["best_scores"] == trainer.best_scores
    assert out.getvalue().splitlines()[-1] == ("[classification] kept checkpoints/best: step 12/12 (highest "
                                               "validation accuracy, ties: lowest loss): validation loss 0.2  "
                                               "accuracy 0.95")


def test_by_loss_the_lowest_loss_is_kept(ids, tmp_path):
    trainer = tiny(ids, tmp_path, score=scripted([(0.90, 0.10), (0.95, 0.30), (0.95, 0.20)]))
    trainer.fit()
    assert trainer.best_step == 4 and trainer.best_rule == "lowest validation loss"


def test_a_resumed_run_keeps_comparing_with_the_recorded_best(ids, tmp_path):
    first = tiny(ids, tmp_path, score=scripted([(0.90, 0.10), (0.95, 0.30)]), best_by=("accuracy", "max"))

    def stop(step, loss):
        if step == 8:
            raise KeyboardInterrupt
    first.on_step = stop
    with pytest.raises(KeyboardInterrupt):
        first.fit()
    resumed = tiny(ids, tmp_path, score=scripted([(0.93, 0.05)]), best_by=("accuracy", "max"))
    resumed.fit(resume=True)
    assert resumed.best_step == 8 and resumed.best_scores == {"loss": 0.30, "accuracy": 0.95}


def test_best_by_is_checked(ids, tmp_path):
    with pytest.raises(ValueError,
                       match=r"expected best_by as \(score name, 'min' or 'max'\), got \('accuracy', 'up'\)"):
        tiny(ids, None, best_by=("accuracy", "up"))
    trainer = tiny(ids, None, steps=4, best_by=("f1", "max"))
    expected = r"best_by=\('f1', 'max'\): the scores have no 'f1', got \['bits_per_token', 'loss', 'perplexity'"
    with pytest.raises(ValueError, match=expected):
        trainer.fit()


def test_the_classification_summary_names_the_kept_checkpoint_and_its_figures(tmp_path):
    data = sentiment(n=200, seed=0)
    tok = WordTokenizer.train("\n".join(data.train.texts), max_size=200)
    cfg = ModelConfig(vocab_size=tok.vocab_size, block_size=24, d_model=16, n_heads=2, n_layers=1)
    rc = RunConfig(cfg, TrainConfig.recipe(4, 1e-2, batch_size=8, eval_every=2), backend="numpy")
    run = train("classification", tmp_path / "run", rc, data=data, tokenizer=tok, progress=False)
    checkpoint = run.summary["checkpoint"]
    assert checkpoint["chosen_by"] == "highest validation accuracy, ties: lowest loss"
    assert checkpoint["step"] in (2, 4) and checkpoint["last_step"] == 4
    assert set(checkpoint["validation"]) >= {"loss", "accuracy", "f1"}
    # the run's validation figures are those of the kept checkpoint (its weights scored again)
    assert run.validation["accuracy"] == checkpoint["validation"]["accuracy"]


# -- steps counted from 1 ------------------------------------------------------------------

def test_metrics_count_steps_done_from_1_also_across_a_resume(ids, tmp_path):
    full = tiny(ids, tmp_path / "full")
    full.fit()
    part = tiny(ids, tmp_path / "part")

    def crash(step, loss):                       # not Ctrl-C: no checkpoint at 6, the last is of step 4
        if step == 6:
            raise RuntimeError("crash")
    part.on_step = crash
    with pytest.raises(RuntimeError):
        part.fit()
    assert [r["step"] for r in records(tmp_path / "part")] == [1, 2, 3, 4, 5, 6]
    assert saved_step(tmp_path / "part/checkpoints/last") == 4
    tiny(ids, tmp_path / "part").fit(resume=True)
    resumed = records(tmp_path / "part")
    assert [r["step"] for r in resumed] == list(range(1, 13))            # 5 and 6 once, redone
    assert [r["loss"] for r in resumed] == [r["loss"] for r in records(tmp_path / "full")]
    assert [r["step"] for r in resumed if "val_loss" in r] == [4, 8, 12]
    assert saved_step(tmp_path / "part/checkpoints/last") == 12            # the same count as the records


# -- a stop names what exists --------------------------------------------------------------

@pytest.mark.filterwarnings("ignore::RuntimeWarning")   # NumPy's overflow warnings: the point of the test
def test_a_far_too_high_learning_rate_stops_without_pointing_at_a_missing_checkpoint(ids, tmp_path):
    trainer = tiny(ids, tmp_path, lr=1e6)
    with pytest.raises(TrainingDiverged) as stop:
        trainer.fit()
    message = str(stop.value)
    last = tmp_path / "checkpoints" / "last"
    if (last / "config.json").exists():          # a checkpoint before the skipped steps: named, with its step
        assert f"The last checkpoint, {last}, is of step {saved_step(last)}" in message
    else:
        assert "No checkpoint was written" in message and "--overwrite" in message and str(last) not in message
    # whatever was saved was saved after a step that was not skipped
    skipped = {r["step"] for r in records(tmp_path) if r.get("skipped")}
    for name in ("last", "best"):
        if (tmp_path / "checkpoints" / name / "config.json").exists():
            assert saved_step(tmp_path / "checkpoints" / name) not in skipped


def test_no_checkpoint_and_no_evaluation_after_a_skipped_step(ids, tmp_path):
    trainer = tiny(ids, tmp_path)
    original = trainer.loss_and_gradients
    trainer.loss_and_gradients = lambda batch: float("nan") if trainer.step in (1, 2, 3) else original(batch)
    with pytest.raises(TrainingDiverged, match=r"3 steps in a row .* \(the last: step 4\); stopping\. No checkpoint "
                                               r"was written \(the first is due after step 4, and none is saved "
                                               r"after a skipped step\)\. Start again with a lower --lr"):
        trainer.fit()
    assert not (tmp_path / "checkpoints").exists()
    assert [r["step"] for r in records(tmp_path) if r.get("skipped")] == [2, 3, 4]
    assert not any("val_loss" in r for r in records(tmp_path))


def test_a_stop_without_a_run_folder_says_nothing_is_kept(ids):
    trainer = tiny(ids, None)
    trainer.loss_and_gradients = lambda batch: float("nan")
    with pytest.raises(TrainingDiverged, match=r"No checkpoint is kept \(no run folder\)"):
        trainer.fit()


# -- the command line: `pretrain --lr 1e6` ------------------------------------------------

@pytest.mark.filterwarnings("ignore::RuntimeWarning")   # NumPy's overflow warnings: the point of the test
def test_pretrain_at_a_huge_lr_exits_3_and_points_only_at_what_exists(tmp_path, capsys):
    from minillm.cli import main
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(("the cat sat on the mat. the dog sat on the log. " * 60).strip(), encoding="utf-8")
    tiny_model = ["--d-model", "16", "--n-layers", "1", "--n-heads", "2", "--block-size", "16", "--batch-size", "4"]
    assert main(["prepare", "--corpus", str(corpus), "--tokenizer", "char", "--out", str(tmp_path / "data")]) == 0
    run = tmp_path / "hugelr"
    capsys.readouterr()
    assert main(["pretrain", "--data", str(tmp_path / "data"), "--backend", "numpy", "--steps", "40",
                 "--lr", "1e6", "--out", str(run), *tiny_model]) == 3
    err = capsys.readouterr().err
    last = run / "checkpoints" / "last"
    if (last / "config.json").exists():
        assert f"The last checkpoint, {last}, is of step {saved_step(last)}" in err
    else:
        assert "No checkpoint was written" in err and "a lower --lr" in err and "--overwrite" in err
        assert str(last) not in err
