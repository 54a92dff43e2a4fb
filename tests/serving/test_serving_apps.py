"""POST /v1/translate and POST /v1/answer over real HTTP (uvicorn on a loopback port,
the fixture pattern of tests/serving/test_serving.py): the answers equal the library's, in both
backends, and every bad request is a 4xx with a message, never a 5xx."""
import contextlib
import importlib.util

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from minillm.core.config import ModelConfig  # noqa: E402
from minillm.apps.question_answering import answer_checked, answer_spans  # noqa: E402
from minillm.serving import Limits, create_app  # noqa: E402
from minillm.store.runtime import Runtime  # noqa: E402
from minillm.apps.translation import translate, translate_checked  # noqa: E402

from model_helpers import load_parts, train_task  # noqa: E402
from test_serving import generated_request_statuses, live_server  # noqa: E402

LIMITS = Limits(max_body_bytes=8192, max_text_chars=2000, max_new_tokens=16)
HAVE_TORCH = importlib.util.find_spec("torch") is not None
BACKENDS = ["numpy"] + ["torch"] * HAVE_TORCH
CONTEXT = "alice lives in paris . bruno works as a chef . alice has a red cat ."


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A translation run and a QA run, 30 numpy steps each (tiny: only the plumbing)."""
    root = tmp_path_factory.mktemp("app_runs")
    train_task("translation", root / "tr", ModelConfig(vocab_size=128, block_size=16, d_model=16, n_heads=2,
                                                        n_layers=1), steps=30, batch_size=8, n_train=200, n_test=10)
    train_task("question_answering", root / "qa", ModelConfig(vocab_size=128, block_size=64, d_model=16,
                                                               n_heads=2, n_layers=1),
                    steps=30, batch_size=8, n_train=200, n_test=10)
    return {"tr": root / "tr", "qa": root / "qa"}


@pytest.fixture(scope="module")
def servers(runs):
    with contextlib.ExitStack() as stack:
        yield {(kind, backend): stack.enter_context(live_server(create_app(runs[kind], Runtime(backend), limits=LIMITS)))
               for kind in ("tr", "qa") for backend in BACKENDS}


def post(url, path, body):
    return httpx.post(url + path, json=body, timeout=60)


@pytest.mark.parametrize("backend", BACKENDS)
def test_translate_equals_the_library(servers, runs, backend):
    model, rt, tok = load_parts(runs["tr"], "translation", backend)
    text = "the third of may , nineteen ninety-nine"
    for beam in (1, 3):
        r = post(servers["tr", backend], "/v1/translate", {"text": text, "beam_size": beam})
        assert r.status_code == 200, r.text
        assert r.json()["translation"] == translate(model, rt, tok, [text], beam_size=beam)[0]
        assert r.json()["tokens"] == len(tok.encode(text))


@pytest.mark.parametrize("backend", BACKENDS)
def test_answer_equals_the_library(servers, runs, backend):
    model, rt, tok = load_parts(runs["qa"], "question_answering", backend)
    q = "where does alice live ?"
    r = post(servers["qa", backend], "/v1/answer", {"context": CONTEXT, "question": q})
    assert r.status_code == 200, r.text
    text, i, j = answer_spans(model, rt, tok, [CONTEXT], [q])[0]
    checked = answer_checked(model, rt, tok, [CONTEXT], [q])[0]
    assert r.json() == {"answer": text, "start": i, "end": j, "tokens": len(tok.encode(q + " " + CONTEXT)),
                        "unknown_tokens": 0, "unknown_share": 0.0, "in_domain": True,
                        "confidence": pytest.approx(checked.confidence, rel=1e-6), "warning": None}
    pieces = tok.pieces(CONTEXT)
    assert 0 <= i <= j < len(pieces)
    assert tok.decode(tok.encode(" ".join(pieces[i:j + 1]))) == text


@pytest.mark.parametrize("backend", BACKENDS)
def test_out_of_domain_input_is_flagged(servers, runs, backend):
    """The issue's examples: the same checks as the library's, a warning set."""
    model, rt, tok = load_parts(runs["qa"], "question_answering", backend)
    ctx, q = "Alice lives in Paris. Bob lives in Rome.", "Where does Bob live?"
    r = post(servers["qa", backend], "/v1/answer", {"context": ctx, "question": q})
    assert r.status_code == 200, r.text
    want = answer_checked(model, rt, tok, [ctx], [q])[0]
    got = r.json()
    assert got["in_domain"] is False and got["warning"] == want.warning and "question is not" in got["warning"]
    assert (got["unknown_tokens"], got["tokens"]) == (want.unknown_tokens, want.tokens)
    assert got["unknown_share"] == pytest.approx(want.unknown_share, rel=1e-12) and got["unknown_tokens"] >= 3
    model, rt, tok = load_parts(runs["tr"], "translation", backend)
    r = post(servers["tr", backend], "/v1/translate", {"text": "hello world"})
    assert r.status_code == 200, r.text
    want = translate_checked(model, rt, tok, ["hello world"])[0]
    assert {k: r.json()[k] for k in ("translation", "unknown_tokens", "unknown_share", "in_domain", "warning")} == {
        "translation": want.text, "unknown_tokens": 2, "unknown_share": 1.0, "in_domain": False,
        "warning": want.warning}
    assert r.json()["confidence"] == pytest.approx(want.confidence, rel=1e-6)
    r = post(servers["tr", backend], "/v1/translate", {"text": "the third of may , nineteen ninety-nine"})
    assert r.json()["in_domain"] is True and r.json()["warning"] is None and r.json()["unknown_tokens"] == 0


def test_openapi_names_the_checks(servers):
    schema = httpx.get(servers["qa", "numpy"] + "/openapi.json", timeout=30).json()["components"]["schemas"]
    for name in ("AnswerResponse", "TranslateResponse"):
        assert {"unknown_tokens", "unknown_share", "in_domain", "confidence", "warning"} <= set(
            schema[name]["properties"]), name


@pytest.mark.parametrize("path, body, status, kind", [
    ("/v1/translate", {"text": "may first , two thousand", "extra": 1}, 422, "invalid_request"),
    ("/v1/translate", {"text": ""}, 422, "invalid_request"),
    ("/v1/translate", {"text": "may first", "beam_size": 0}, 422, "invalid_request"),
    ("/v1/translate", {"text": "may first", "beam_size": 99}, 422, "invalid_request"),
    ("/v1/translate", {"text": "may first", "beam_size": "2"}, 422, "invalid_request"),
    ("/v1/translate", {"text": "may first", "length_penalty": -1.0}, 422, "invalid_request"),
    ("/v1/translate", {"text": "one two three " * 10}, 422, "too_many_tokens"),
    ("/v1/translate", {"text": "   "}, 422, "empty_text"),
    ("/v1/translate", {"text": "x" * 3000}, 422, "invalid_request"),
    ("/v1/answer", {"context": CONTEXT, "question": "where ?"}, 400, "wrong_task"),
    ("/v1/generate", {"prompt": "may"}, 400, "wrong_task"),
])
def test_bad_translate_requests_are_4xx(servers, path, body, status, kind):
    r = post(servers["tr", "numpy"], path, body)
    assert r.status_code == status, r.text
    assert r.json()["error"] == kind and r.json()["message"]


@pytest.mark.parametrize("body, status, kind", [
    ({"context": CONTEXT}, 422, "invalid_request"),
    ({"context": CONTEXT, "question": "who ?", "text": "x"}, 422, "invalid_request"),
    ({"context": "", "question": "who ?"}, 422, "invalid_request"),
    ({"context": " . " * 70, "question": "who ?"}, 422, "too_many_tokens"),
    ({"context": "alice " * 40, "question": "alice " * 30}, 422, "too_many_tokens"),
    ({"context": "  ", "question": "who ?"}, 422, "empty_text"),
    ({"context": CONTEXT, "question": 3}, 422, "invalid_request"),
])
def test_bad_answer_requests_are_4xx(servers, body, status, kind):
    r = post(servers["qa", "numpy"], "/v1/answer", body)
    assert r.status_code == status, r.text
    assert r.json()["error"] == kind and r.json()["message"]
    r = post(servers["qa", "numpy"], "/v1/translate", {"text": "may first"})
    assert r.status_code == 400 and r.json()["error"] == "wrong_task"


def test_model_info_names_the_task(servers):
    for kind, task in (("tr", "translation"), ("qa", "question_answering")):
        info = httpx.get(servers[kind, "numpy"] + "/v1/model", timeout=30).json()
        assert info["task"] == task and info["tokenizer"]["type"] == "piece"


@pytest.mark.parametrize("kind, path", [("tr", "/v1/translate"), ("qa", "/v1/answer")])
def test_schemathesis_finds_no_server_error(servers, kind, path):
    """Requests generated from /openapi.json for this endpoint, valid and invalid bodies,
    30 derandomized examples each: none gets a 5xx, and some reach the model (200)."""
    operations, statuses = generated_request_statuses(servers[kind, "numpy"], paths={path}, max_examples=30)
    assert [op.path for op in operations] == [path]
    assert max(statuses) < 500, statuses
    assert 200 in statuses and 422 in statuses
