"""CONTRIBUTING.md's recipe "Add a task", followed on a toy task declared in this module
alone: ``majority`` (is there more ``a`` than ``b`` in a string of both?). Its
:class:`TaskSpec` names the model class, the batches, the data contract, the validation
score, what ``evaluate`` computes and its REST endpoint; with no other edit the task
trains, saves, loads back, evaluates and is served, because the trainer, ``load_run``,
the checkpoints, ``evaluate`` and the server read the registry and never a task's name.
"""
import numpy as np
import pytest

from minillm import ModelConfig
from minillm.data import CharTokenizer
from minillm.store.runs import load_run
from minillm.store.runtime import Runtime
from minillm.train.contract import data_contract, generated_dataset
from minillm.train.entry import train
from minillm.train.evaluation import evaluate_classifier
from minillm.train.run_config import RunConfig
from minillm.train.run_evaluation import evaluate
from minillm.train.spec import TASK_SPECS, Endpoint, Refused, TaskParts, TaskSpec, register_task
from minillm.train.tasks import ClassificationData, classification_eval_batches

LABELS = ("more_b", "more_a")
LENGTH = 7                                   # odd: never a tie


def toy_rows(n: int, seed: int) -> tuple[list[str], list[int]]:
    rng = np.random.default_rng(seed)
    texts = ["".join(rng.choice(["a", "b"], LENGTH)) for _ in range(n)]
    return texts, [int(t.count("a") > t.count("b")) for t in texts]


def _setup(inputs) -> TaskParts:
    tok, tc, T = inputs.tokenizer, inputs.run_config.train, inputs.run_config.model.block_size
    (texts, labels), (val_texts, val_labels) = toy_rows(400, tc.seed), toy_rows(64, tc.seed + 1)
    encode = lambda rows: [tok.encode(t) for t in rows]  # noqa: E731
    batches = ClassificationData(encode(texts), labels, tc.batch_size, pad_id=tok.pad_id, max_len=T, seed=tc.seed)
    validation = classification_eval_batches(encode(val_texts), val_labels, 32, pad_id=tok.pad_id, max_len=T)
    contract = data_contract(generated_dataset("majority", {"train": 400, "validation": 64}, "rows", tc.seed),
                             tok, T, LABELS)
    return TaskParts(batches, validation, contract, tok, info={"label_names": list(LABELS)},
                     model_kwargs={"n_classes": len(LABELS), "pooling": "mean"})


def _score(runtime, model, batches) -> dict:
    return evaluate_classifier(runtime, model, batches, model.n_classes)


def _evaluate(run, **data) -> dict:
    """Fresh toy rows (seed 99), never trained on."""
    texts, labels = toy_rows(128, 99)
    tok, T = run.tokenizer, run.config.block_size
    batches = classification_eval_batches([tok.encode(t) for t in texts], labels, 32, pad_id=tok.pad_id, max_len=T)
    return {**_score(run.runtime, run.model, batches), "data": {"source": "majority", "split": "fresh",
                                                                 "rows": len(texts)}}


def _majority_endpoint(served, req: dict) -> dict:
    if set(req["text"]) - {"a", "b"}:
        raise Refused(422, "not_a_or_b", "expected a text of the letters a and b only")
    tok, rt, T = served.tokenizer, served.runtime, served.config.block_size
    ids = served.encode(req["text"], T, "the text")
    idx = np.asarray([ids], dtype=np.int64)
    with served.lock, rt.no_grad():
        logits, _ = served.model(rt.tensor(idx), attention_mask=rt.tensor(np.ones_like(idx, dtype=bool)))
    k = int(np.argmax(rt.to_numpy(logits)[0]))
    return {"label": served.label_names[k]}


MAJORITY = Endpoint("/v1/majority", request={"text": (str, {"min_length": 1, "max_length": "limits.max_text_chars"})},
                    response={"label": str}, handler=_majority_endpoint, doc="more a or more b")
SPEC = TaskSpec("majority", "SequenceClassifier", _setup, score=_score, evaluate=_evaluate, endpoints=(MAJORITY,),
                steps=60, lr=1e-2, batch_size=16)


@pytest.fixture
def majority():
    register_task(SPEC)
    yield SPEC
    del TASK_SPECS[SPEC.name]


def test_a_task_declared_here_trains_saves_loads_evaluates_and_is_served(majority, tmp_path):
    tok = CharTokenizer.train("ab")
    config = ModelConfig(vocab_size=tok.vocab_size, block_size=LENGTH, d_model=16, n_heads=2, n_layers=1)
    run_config = RunConfig(config, majority.train_config(), backend="numpy")
    run = train("majority", tmp_path / "run", run_config, tokenizer=tok, progress=False)
    assert run.task == "majority" and run.steps == 60 and run.validation["accuracy"] >= 0.8, run.validation

    loaded = load_run(tmp_path / "run", Runtime("numpy"))                  # the task comes from the checkpoint
    assert loaded.task == "majority" and loaded.label_names == list(LABELS)
    assert type(loaded.model).__name__ == "SequenceClassifier" and loaded.model.n_classes == 2

    scores = evaluate(tmp_path / "run", Runtime("numpy"))                  # the task's own evaluate
    assert scores["task"] == "majority" and scores["data"]["split"] == "fresh" and scores["accuracy"] >= 0.8

    from starlette.testclient import TestClient
    from minillm.serving import create_app
    with TestClient(create_app(tmp_path / "run", Runtime("numpy"))) as client:
        assert client.get("/v1/model").json()["task"] == "majority"
        assert client.post("/v1/majority", json={"text": "aaaabbb"}).json() == {"label": "more_a"}
        assert client.post("/v1/majority", json={"text": "abbbbba"}).json() == {"label": "more_b"}
        refused = client.post("/v1/majority", json={"text": "abc"})
        assert refused.status_code == 422 and refused.json()["error"] == "not_a_or_b"
        wrong = client.post("/v1/generate", json={"prompt": "a"})   # another task's endpoint
        assert wrong.status_code == 400 and wrong.json()["error"] == "wrong_task"
        schema = client.get("/openapi.json").json()
        assert schema["components"]["schemas"]["MajorityRequest"]["additionalProperties"] is False


def test_the_registry_is_the_only_list_of_tasks(majority):
    """The toy task is listed where every task is, and nowhere else needed it."""
    assert TASK_SPECS["majority"] is SPEC
    with pytest.raises(ValueError, match="expected a registered task"):
        train("minority", None, RunConfig(ModelConfig(vocab_size=4, block_size=4)))
