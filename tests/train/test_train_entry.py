"""One training entry for the five tasks: ``train(task, out, run_config, ...) -> TrainedRun``.

Each task is trained a few steps on the reference (NumPy) backend with tiny models: the
tests check what the entry promises (the run folder, the recorded configuration, the
frozen result with its JSON summary apart from the live objects, the task's own scores).
"""
from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest

import minillm.apps.question_answering as qa
import minillm.apps.translation as translation
from minillm import ModelConfig
from minillm.data import CharTokenizer, Splits, WordTokenizer, sentiment
from minillm.store.runs import load_run
from minillm.store.runtime import Runtime
from minillm.train.entry import TrainedRun, train
from minillm.train.spec import TASK_SPECS, task_spec
from minillm.train.run_config import RunConfig
from minillm.train.run_evaluation import evaluate
from minillm.train.training import TrainConfig

TEXT = "the cat sat on the mat. the dog sat on the log. " * 30


@pytest.fixture(scope="module")
def lm_data():
    tok = CharTokenizer.train(TEXT)
    ids = np.asarray(tok.encode(TEXT), dtype=np.int64)
    return tok, Splits(ids[:1000], ids[1000:1200], ids[1200:1400])


def _small(vocab_size: int, **kw) -> ModelConfig:
    return ModelConfig(**{"vocab_size": vocab_size, "block_size": 8, "d_model": 16, "n_heads": 2, "n_layers": 1,
                          **kw})


def _check_common(run: TrainedRun, task: str, out, rc: RunConfig):
    assert isinstance(run, TrainedRun) and run.task == task and run.steps == rc.train.steps
    assert np.isfinite(run.train_loss)
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.steps = 0
    summary = run.summary
    json.dumps(summary)                                  # JSON only: no model, runtime, tokenizer
    assert not {"model", "runtime", "tokenizer"} & set(summary)
    assert summary["run_config"] == rc.to_dict() and summary["run_dir"] == str(out)
    for name in ("run.json", "run_config.json", "data.json", "tokenizer.json", "metrics.jsonl"):
        assert (out / name).is_file(), name
    assert RunConfig.recorded(out) == rc
    loaded = load_run(out, Runtime("numpy"), checkpoint="last")
    assert loaded.task == task and loaded.step == rc.train.steps
    assert json.loads((out / "run.json").read_text())["task"] == task


@pytest.mark.parametrize("task", ["causal_lm", "masked_lm"])
def test_language_models(task, lm_data, tmp_path):
    tok, splits = lm_data
    rc = RunConfig(_small(tok.vocab_size), TrainConfig.recipe(4, 1e-2, batch_size=4), backend="numpy")
    run = train(task, tmp_path / "run", rc, data=splits, tokenizer=tok, progress=False, source="in memory")
    _check_common(run, task, tmp_path / "run", rc)
    assert run.validation["loss"] > 0 and run.test is None and run.label_names is None
    assert run.checkpoint["step"] in (1, 2, 3, 4) and run.data_info["sizes"] == {"train": 1000, "validation": 200,
                                                                                 "test": 200}
    assert run.model is not None and run.runtime.backend == "numpy" and run.tokenizer is tok


def test_classification_scores_its_best_checkpoint(tmp_path):
    data = sentiment(n=200, seed=0)
    tok = WordTokenizer.train("\n".join(data.train.texts), max_size=200)
    rc = RunConfig(_small(tok.vocab_size, block_size=24), TrainConfig.recipe(4, 1e-2, batch_size=8),
                   backend="numpy")
    run = train("classification", tmp_path / "run", rc, data=data, tokenizer=tok, progress=False, pooling="cls")
    _check_common(run, "classification", tmp_path / "run", rc)
    assert run.label_names == tuple(data.train.label_names)
    assert run.test["split"] == "test" and run.test["rows"] == len(data.test)
    assert 0 <= run.test["accuracy"] <= 1 and run.checkpoint["path"].endswith("best")
    assert run.model.pooling == "cls"


def test_translation_and_qa_through_the_entry(tmp_path):
    tc = translation.TRANSLATION_TASK.train_config(3, batch_size=8)
    # the task's recipe: no weight decay, warmup 10% (at most 50), one evaluation at the end
    assert (tc.weight_decay, tc.warmup_steps, tc.eval_every, tc.lr) == (0.0, 0, 3, 2e-3)
    rc = RunConfig(translation.TRANSLATION_CONFIG, tc, backend="numpy")
    run = train("translation", tmp_path / "tr", rc, progress=False, n_train=100, n_test=5)
    _check_common(run, "translation", tmp_path / "tr", rc)
    assert run.test["n"] == 5 and 0 <= run.test["exact"] <= 1 and run.validation == {}
    assert run.data_info["sizes"] == {"train": 100, "test": 5} and len(run.data[1]) == 5
    # `minillm evaluate`: the task's own evaluate generates the same held-out dates again
    scores = evaluate(tmp_path / "tr", Runtime("numpy"))
    assert (scores["exact"], scores["bleu"], scores["n"]) == (run.test["exact"], run.test["bleu"], 5)
    assert scores["examples"] == run.test["examples"]                  # the same dates, the same outputs
    assert scores["data"] == {"source": "dates", "split": "test", "rows": 5, "runs_own_data": True}

    qtc = qa.QA_TASK.train_config(3, batch_size=8)
    assert (qtc.min_lr, qtc.lr) == (1e-3, 1e-3)                 # a constant rate after the warmup
    rc = RunConfig(qa.QA_CONFIG, qtc, backend="numpy")
    run = train("question_answering", tmp_path / "qa", rc, progress=False, n_train=100, n_test=5)
    _check_common(run, "question_answering", tmp_path / "qa", rc)
    assert run.test["n"] == 5 and 0 <= run.test["f1"] <= 1
    scores = evaluate(tmp_path / "qa", Runtime("numpy"))
    assert (scores["exact_match"], scores["f1"], scores["n"]) == (run.test["exact_match"], run.test["f1"], 5)
    with pytest.raises(ValueError, match="expected --split train or test"):
        evaluate(tmp_path / "qa", Runtime("numpy"), split_name="validation")


def test_the_entry_refuses_what_it_cannot_train(lm_data, tmp_path):
    tok, splits = lm_data
    rc = RunConfig(_small(tok.vocab_size), TrainConfig.recipe(2, 1e-2, batch_size=4), backend="numpy")
    with pytest.raises(ValueError, match=re.escape(f"expected a registered task {sorted(TASK_SPECS)}, got 'speech'")):
        train("speech", tmp_path / "x", rc, data=splits, tokenizer=tok)
    with pytest.raises(ValueError, match=r"task 'causal_lm': unknown option\(s\) \['pooling'\]"):
        train("causal_lm", tmp_path / "x", rc, data=splits, tokenizer=tok, pooling="cls")
    with pytest.raises(ValueError, match="expected tokenizer="):
        train("causal_lm", tmp_path / "x", rc, data=splits)
    with pytest.raises(ValueError, match="resume=True needs a run folder"):
        train("causal_lm", None, rc, data=splits, tokenizer=tok, resume=True)
    assert set(TASK_SPECS) == {"causal_lm", "masked_lm", "classification", "translation", "question_answering",
                               "sft", "dpo"}
    assert task_spec("classification").model_class == "SequenceClassifier"
