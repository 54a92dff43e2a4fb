"""The REST server against a real uvicorn on a loopback port.

Two tiny runs are trained once per session (a GPT on a slice of the Python docs with a
300-word vocabulary, so unknown words exist, and a sentiment classifier); servers are
started on free 127.0.0.1 ports in threads and stopped at the end. Every check goes
over real HTTP: each endpoint, each kind of bad request (always a 4xx with a message,
never a 5xx, never a traceback or a path), the streamed body limit, 50 concurrent
requests, the same tokens as the library in both backends, and a schemathesis run
generated from /openapi.json.
"""
import concurrent.futures
import contextlib
import importlib.util
import json
import math
import socket
import threading
import time
from dataclasses import replace

import numpy as np
import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")

from minillm import ModelConfig  # noqa: E402
from minillm.data import WordTokenizer, python_docs, sentiment, split_contiguous  # noqa: E402
from minillm.data.batching import pad_batch  # noqa: E402
from minillm.serving import BodySizeLimit, Limits, create_app  # noqa: E402
from minillm.store.runs import load_run  # noqa: E402
from minillm.store.runtime import Runtime  # noqa: E402
from minillm.train.entry import train  # noqa: E402
from minillm.train.generation import generate  # noqa: E402
from minillm.train.run_config import RunConfig  # noqa: E402
from minillm.train.spec import LONG_INPUT  # noqa: E402
from minillm.train.training import TrainConfig  # noqa: E402

LIMITS = Limits(max_body_bytes=8192, max_text_chars=2000, max_new_tokens=16)
BLOCK = 16


# -- fixtures -----------------------------------------------------------------------------

@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    """A causal-LM run and a classification run, trained for 2 steps with the numpy backend."""
    root = tmp_path_factory.mktemp("serving_runs")
    tc = TrainConfig(steps=2, lr=1e-2, min_lr=1e-3, warmup_steps=0, eval_every=2, checkpoint_every=2)
    text = python_docs()[:20000]
    tok = WordTokenizer.train(text, max_size=300)
    splits = split_contiguous(np.asarray(tok.encode(text), dtype=np.int64), (0.8, 0.1, 0.1))
    cfg = ModelConfig(vocab_size=tok.vocab_size, block_size=BLOCK, d_model=16, n_heads=2, n_layers=1)
    train("causal_lm", root / "lm", RunConfig(cfg, replace(tc, batch_size=4), backend="numpy"), data=splits,
          tokenizer=tok, progress=False)
    data = sentiment(seed=0)
    ctok = WordTokenizer.train("\n".join(data.train.texts), max_size=200)
    ccfg = ModelConfig(vocab_size=ctok.vocab_size, block_size=24, d_model=16, n_heads=2, n_layers=1)
    train("classification", root / "cls", RunConfig(ccfg, replace(tc, batch_size=8), backend="numpy"), data=data,
          tokenizer=ctok, progress=False)
    return {"lm": root / "lm", "cls": root / "cls"}


@contextlib.contextmanager
def live_server(app, config=None):
    """uvicorn serving ``app`` (with ``config``, a ``uvicorn.Config`` of it, if given) on a
    free loopback port in a thread; yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(config or uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()


HAVE_TORCH = importlib.util.find_spec("torch") is not None
needs_torch = pytest.mark.skipif(not HAVE_TORCH, reason="the torch backend is not installed")
BACKENDS = ["numpy", pytest.param("torch", marks=needs_torch)]


@pytest.fixture(scope="session")
def servers(runs):
    """Base URLs: the LM served by each backend, and the classifier (numpy)."""
    served = [("numpy", "lm", "numpy"), ("cls", "cls", "numpy")] + [("torch", "lm", "torch")] * HAVE_TORCH
    with contextlib.ExitStack() as stack:
        yield {name: stack.enter_context(live_server(create_app(runs[run], Runtime(backend), limits=LIMITS)))
               for name, run, backend in served}


@pytest.fixture(scope="session")
def client(servers):
    with httpx.Client(base_url=servers["numpy"], timeout=30) as c:
        yield c


@pytest.fixture(scope="session")
def library(runs):
    """The same runs loaded in-process: what HTTP answers must equal."""
    return {backend: load_run(runs["lm"], Runtime(backend)) for backend in ["numpy"] + ["torch"] * HAVE_TORCH}


def library_tokens(loaded, prompt, max_new_tokens, use_cache=True, **sampling):
    """:func:`minillm.train.generation.generate` in-process, as ``generate_text`` calls it."""
    rt, model, tok = loaded.runtime, loaded.model, loaded.tokenizer
    prompt_ids = tok.encode(prompt) or [tok.bos_id]
    return generate(rt, model, prompt_ids, max_new_tokens, eos_id=tok.eos_id, use_cache=use_cache, **sampling)


def assert_clean_error(response, status, runs=None):
    """A 4xx with a JSON message; no traceback, no file path of the run."""
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert isinstance(body["message"], str) and body["message"], body
    assert "Traceback" not in response.text and 'File "' not in response.text
    for run in (runs or {}).values():
        assert str(run.parent) not in response.text and "checkpoints" not in response.text


# -- endpoints ----------------------------------------------------------------------------

def test_health_and_model_summary(client, runs):
    assert client.get("/health").json() == {"status": "ok"}
    info = client.get("/v1/model").json()
    assert info["task"] == "causal_lm" and info["backend"] == "numpy"
    assert info["config"]["block_size"] == BLOCK and info["config"]["vocab_size"] == 300
    assert info["tokenizer"] == {"type": "WordTokenizer", "vocab_size": 300,
                                 "special_tokens": ["<pad>", "<unk>", "<bos>", "<eos>", "<mask>", "<cls>", "<sep>"]}
    assert info["limits"] == {"max_body_bytes": 8192, "max_text_chars": 2000, "max_new_tokens": 16,
                              "max_prompt_tokens": BLOCK}
    assert info["long_input"] == LONG_INPUT
    assert str(runs["lm"]) not in json.dumps(info)


def test_openapi_schema_lists_every_endpoint_with_its_limits(client):
    schema = client.get("/openapi.json").json()
    assert {"/health", "/v1/model", "/v1/generate", "/v1/classify", "/v1/score"} <= set(schema["paths"])
    gen = schema["components"]["schemas"]["GenerateRequest"]
    assert gen["additionalProperties"] is False
    assert gen["properties"]["max_new_tokens"]["maximum"] == 16
    assert gen["properties"]["prompt"]["maxLength"] == 2000
    assert client.get("/docs").status_code == 404          # the docs pages would load a CDN


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("sampling", [dict(temperature=0.0), dict(temperature=0.9, seed=7),
                                      dict(temperature=1.3, top_k=20, seed=123),
                                      dict(temperature=0.7, top_p=0.8, seed=2**40)])
def test_generate_gives_the_library_tokens(servers, library, backend, sampling):
    prompt = "The import statement"
    r = httpx.post(servers[backend] + "/v1/generate", json={"prompt": prompt, "max_new_tokens": 12, **sampling})
    assert r.status_code == 200, r.text
    body = r.json()
    library_sampling = {"seed": 0, **sampling}            # greedy draws nothing: any seed
    expected = library_tokens(library[backend], prompt, 12, **library_sampling)            # KV cache
    assert body["tokens"] == expected
    tok = library[backend].tokenizer
    assert body["text"] == tok.decode(expected, skip_special_tokens=True)
    assert body["prompt_tokens"] == tok.encode(prompt)
    assert body["finish_reason"] == ("eos" if expected[-1] == tok.eos_id else "length")
    assert expected == library_tokens(library[backend], prompt, 12, use_cache=False, **library_sampling)


@needs_torch
def test_both_backends_answer_the_same_tokens(servers):
    request = {"prompt": "A function", "max_new_tokens": 10, "temperature": 1.0, "seed": 5}
    answers = [httpx.post(servers[b] + "/v1/generate", json=request).json()["tokens"] for b in ("numpy", "torch")]
    assert answers[0] == answers[1]


def test_generate_without_seed_returns_a_seed_that_reproduces(client):
    first = client.post("/v1/generate", json={"prompt": "The", "max_new_tokens": 8}).json()
    assert 0 <= first["seed"] < 2**63
    again = client.post("/v1/generate", json={"prompt": "The", "max_new_tokens": 8, "seed": first["seed"]}).json()
    assert again["tokens"] == first["tokens"]


def test_empty_prompt_starts_from_bos_and_zero_tokens_is_allowed(client, library):
    tok = library["numpy"].tokenizer
    body = client.post("/v1/generate", json={"prompt": "", "max_new_tokens": 4, "temperature": 0.0}).json()
    assert body["prompt_tokens"] == [tok.bos_id] and len(body["tokens"]) <= 4
    body = client.post("/v1/generate", json={"prompt": "The", "max_new_tokens": 0}).json()
    assert body["tokens"] == [] and body["text"] == ""


def test_top_k_zero_and_top_p_one_are_off_as_null(client):
    """The CLI's rule in the request schema: top_k 0 and top_p 1 turn each filter off."""
    request = {"prompt": "The", "max_new_tokens": 8, "temperature": 1.0, "seed": 11}
    off = client.post("/v1/generate", json={**request, "top_k": 0, "top_p": 1.0})
    assert off.status_code == 200, off.text
    assert off.json()["tokens"] == client.post("/v1/generate", json={**request, "top_k": None,
                                                                      "top_p": None}).json()["tokens"]


def test_long_input_is_cut_to_the_window_and_said(client, library):
    """One rule (README "Long input"): a prompt keeps its last block_size tokens, a text to
    score its first block_size + 1; the answer says how many tokens were left out."""
    tok = library["numpy"].tokenizer
    prompt = "The import statement is used to bind a name " * 4
    ids = tok.encode(prompt)
    assert len(ids) > BLOCK
    body = client.post("/v1/generate", json={"prompt": prompt, "max_new_tokens": 6, "temperature": 0.0}).json()
    assert body["prompt_tokens"] == ids[-BLOCK:] and body["truncated_tokens"] == len(ids) - BLOCK
    rt, model = library["numpy"].runtime, library["numpy"].model
    assert body["tokens"] == generate(rt, model, ids[-BLOCK:], 6, temperature=0.0, eos_id=tok.eos_id)
    short = client.post("/v1/generate", json={"prompt": "The", "max_new_tokens": 1}).json()
    assert short["truncated_tokens"] == 0
    cut = client.post("/v1/score", json={"text": prompt}).json()
    assert cut["truncated_tokens"] == len(ids) - BLOCK - 1 and cut["tokens"] == BLOCK
    with rt.no_grad():
        _, loss = model(rt.tensor(np.asarray([ids[:BLOCK]])), rt.tensor(np.asarray([ids[1:BLOCK + 1]])))
    assert cut["loss"] == float(rt.to_numpy(loss))


def test_unknown_words_become_unk(client, library):
    tok = library["numpy"].tokenizer
    r = client.post("/v1/generate", json={"prompt": "The qwzxv module", "max_new_tokens": 2, "seed": 0})
    assert r.status_code == 200, r.text
    assert tok.unk_id in r.json()["prompt_tokens"]
    r = client.post("/v1/score", json={"text": "The qwzxv module"})
    assert r.status_code == 200 and math.isfinite(r.json()["loss"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_score_is_the_models_loss(servers, library, backend):
    rt, model, tok = library[backend].runtime, library[backend].model, library[backend].tokenizer
    text = "The import statement is used to bind a name"
    body = httpx.post(servers[backend] + "/v1/score", json={"text": text}).json()
    ids = tok.encode(text)
    with rt.no_grad():
        _, loss = model(rt.tensor(np.asarray([ids[:-1]])), rt.tensor(np.asarray([ids[1:]])))
    assert body["loss"] == float(rt.to_numpy(loss))
    assert body["perplexity"] == pytest.approx(math.exp(body["loss"]), rel=1e-12)
    assert body["tokens"] == len(ids) - 1


def test_classify_gives_the_models_probabilities(servers, runs):
    loaded = load_run(runs["cls"], Runtime("numpy"))
    rt, model, tok = loaded.runtime, loaded.model, loaded.tokenizer
    text = "the acting never seemed very disappointing"
    r = httpx.post(servers["cls"] + "/v1/classify", json={"text": text})
    assert r.status_code == 200, r.text
    body = r.json()
    idx, mask = pad_batch([tok.encode(text)], tok.pad_id, max_len=model.config.block_size)
    logits = rt.to_numpy(model(idx, attention_mask=mask)[0])[0].astype(np.float64)
    p = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    assert list(body["probabilities"]) == loaded.label_names == ["negative", "positive"]
    # the server computes the same float64 softmax of the same float32 logits: equal to rounding
    np.testing.assert_allclose(list(body["probabilities"].values()), p, rtol=1e-12, atol=0)
    assert body["label"] == loaded.label_names[int(np.argmax(p))] and body["label_id"] == int(np.argmax(p))
    info = httpx.get(servers["cls"] + "/v1/model").json()
    assert info["task"] == "classification" and info["label_names"] == ["negative", "positive"]


# -- bad requests: always a 4xx with a message --------------------------------------------

def raw(data: bytes, content_type="application/json"):
    return {"content": data, "headers": {"content-type": content_type}}


BAD_GENERATE = {
    "unknown field": ({"json": {"prompt": "x", "model_path": "/etc/passwd"}}, 422),
    "prompt not a string": ({"json": {"prompt": 5}}, 422),
    "prompt over the character limit": ({"json": {"prompt": "a" * 2001}}, 422),
    "negative temperature": ({"json": {"temperature": -0.1}}, 422),
    "temperature as a string": ({"json": {"temperature": "0.5"}}, 422),
    "temperature as a bool": ({"json": {"temperature": True}}, 422),
    "temperature NaN": (raw(b'{"temperature": NaN}'), 422),
    "temperature Infinity": (raw(b'{"temperature": Infinity}'), 422),
    "top_k negative": ({"json": {"top_k": -1}}, 422),
    "top_k float": ({"json": {"top_k": 2.5}}, 422),
    "top_p zero": ({"json": {"top_p": 0.0}}, 422),
    "top_p above one": ({"json": {"top_p": 1.5}}, 422),
    "max_new_tokens over the limit": ({"json": {"max_new_tokens": 17}}, 422),
    "max_new_tokens negative": ({"json": {"max_new_tokens": -1}}, 422),
    "max_new_tokens huge": ({"json": {"max_new_tokens": 10**30}}, 422),
    "seed negative": ({"json": {"seed": -1}}, 422),
    "seed beyond int64": ({"json": {"seed": 2**63}}, 422),
    "lone surrogate": (raw(b'{"prompt": "\\ud800"}'), 422),
    "invalid JSON": (raw(b'{"prompt": '), 400),
    "not UTF-8": (raw(b"\xff\xfe\x00"), 400),
    "a JSON list": (raw(b'["prompt"]'), 422),
    "empty body": (raw(b""), 422),
    "text/plain body": (raw(b"prompt=hello", "text/plain"), 415),
    "form-encoded body": (raw(b"prompt=hello", "application/x-www-form-urlencoded"), 415),
    "deeply nested JSON": (raw(b"[" * 5000), 400),
}


@pytest.mark.parametrize("case", sorted(BAD_GENERATE))
def test_bad_generate_requests_get_a_4xx_with_a_message(client, runs, case):
    kwargs, status = BAD_GENERATE[case]
    assert_clean_error(client.post("/v1/generate", **kwargs), status, runs)


@pytest.mark.parametrize("path,body,status", [
    ("/v1/score", {"text": ""}, 422),                        # min_length 1
    ("/v1/score", {"text": "The"}, 422),                     # one token: nothing to predict
    ("/v1/score", {"text": "x", "extra": 1}, 422),
    ("/v1/score", {}, 422),
    ("/v1/classify", {"text": "a good film"}, 400),          # the LM server runs no classifier
])
def test_bad_score_and_classify_requests(client, runs, path, body, status):
    assert_clean_error(client.post(path, json=body), status, runs)


def test_classifier_server_refuses_generation_and_bad_text(servers, runs):
    with httpx.Client(base_url=servers["cls"]) as c:
        assert_clean_error(c.post("/v1/generate", json={"prompt": "hi"}), 400, runs)
        assert_clean_error(c.post("/v1/score", json={"text": "a good film"}), 400, runs)
        assert_clean_error(c.post("/v1/classify", json={"text": ""}), 422, runs)          # empty
        long = c.post("/v1/classify", json={"text": "good " * 30})        # > block_size: its first 24 tokens
        assert long.status_code == 200 and long.json()["tokens"] == 24 and long.json()["truncated_tokens"] > 0
        assert long.json()["probabilities"] == c.post("/v1/classify", json={"text": "good " * 24}).json()[
            "probabilities"]


def test_malformed_json_says_where_and_a_form_body_asks_for_json(client):
    """Not ``body.15: JSON decode error`` (an offset shown as a field) nor 'Input should be a
    valid dictionary': what json says, at line and column; and which content type is wanted."""
    r = client.post("/v1/generate", **raw(b'{"prompt": "x",\n "seed": }'))
    assert r.status_code == 400 and r.json() == {
        "error": "invalid_json", "message": "expected a JSON body: Expecting value at line 2 column 10"}
    r = client.post("/v1/generate", data={"prompt": "hello"})           # httpx: form-encoded
    assert r.status_code == 415 and r.json()["message"] == (
        "expected JSON (Content-Type: application/json), got Content-Type: application/x-www-form-urlencoded")
    r = client.post("/v1/generate", **raw(b'{"prompt": "The", "max_new_tokens": 1}',
                                          "application/json; charset=utf-8"))
    assert r.status_code == 200


def test_a_json_body_without_content_type_is_refused_with_415_naming_the_header(servers):
    """What ``requests.post(url, data=json.dumps(body))`` sends: a JSON body and no
    Content-Type header. 415 as for any other content type (FastAPI's strict check,
    which keeps browsers' header-less cross-site posts out), with the header to add,
    not 422 "Input should be a valid dictionary"; with the header the same bytes are served."""
    body = b'{"prompt": "The", "max_new_tokens": 1}'
    host, port = servers["numpy"].removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:     # httpx always adds a header
        s.sendall(b"POST /v1/generate HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
                  b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        answer = b""
        while chunk := s.recv(4096):
            answer += chunk
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 415"), head
    assert json.loads(payload) == {"error": "unsupported_media_type", "message": (
        "expected JSON (Content-Type: application/json), got a body without a Content-Type header")}
    with httpx.Client(base_url=servers["numpy"], timeout=30) as c:
        assert c.post("/v1/generate", **raw(body)).status_code == 200
        r = c.post("/v1/generate", content=b"", headers={"content-type": ""})   # no body at all: 422
        assert_clean_error(r, 422)


def test_unknown_routes_and_methods(client, runs):
    assert_clean_error(client.get("/v1/nothing"), 404, runs)
    assert_clean_error(client.get("/v1/generate"), 405, runs)
    assert_clean_error(client.get("/../../etc/passwd"), 404, runs)


def test_a_server_bug_is_a_bare_500_without_traceback_or_path(runs):
    """The safety net only (bad input never reaches it): a route that fails with an
    error naming a file answers a generic 500."""
    app = create_app(runs["lm"], Runtime("numpy"), limits=LIMITS)

    def broken():
        raise RuntimeError(f"cannot open {runs['lm']}/checkpoints/secret.bin")
    app.add_api_route("/broken", broken)
    with live_server(app) as url:
        r = httpx.get(url + "/broken")
    assert r.status_code == 500 and r.json() == {"error": "internal_error",
                                                  "message": "the server failed to handle this request"}
    assert "secret" not in r.text and "Traceback" not in r.text


# -- body size ----------------------------------------------------------------------------

def test_declared_length_over_the_limit_is_refused_before_the_body(servers):
    host, port = servers["numpy"].removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"POST /v1/generate HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 1000000000\r\n\r\n")            # and not one byte of body
        head = s.recv(4096)
    assert head.startswith(b"HTTP/1.1 413"), head


def test_small_declared_overflow_gets_413_not_a_reset(client):
    r = client.post("/v1/generate", json={"prompt": "x" * 9000})         # Content-Length ~9 kB > 8 kB
    assert r.status_code == 413 and "8192" in r.json()["message"]


def test_chunked_body_over_the_limit_gets_413(client):
    def body():                                    # no length: httpx sends it chunked
        yield b'{"prompt": "'
        for _ in range(20):
            yield b"a" * 1000
        yield b'"}'
    r = client.post("/v1/generate", content=body(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"] == "payload_too_large"


def test_chunked_body_within_the_limit_is_served(client):
    def body():
        yield b'{"prompt": "The import", '
        yield b'"max_new_tokens": 3, "seed": 1}'
    r = client.post("/v1/generate", content=body(), headers={"content-type": "application/json"})
    assert r.status_code == 200 and len(r.json()["tokens"]) == 3


@pytest.mark.parametrize("linger_bytes,n_read", [(0, 3), (800, 5)])
def test_body_limit_counts_streamed_chunks_in_process(linger_bytes, n_read):
    """The middleware alone: refused once the count passes the limit, then reads at most
    ``linger_bytes`` more (to be thrown away) and never the rest."""
    import anyio

    received, sent, called = [], [], []
    chunks = [b"x" * 400] * 10

    async def app(scope, receive, send):
        called.append(True)

    async def receive():
        received.append(chunks[len(received)])
        return {"type": "http.request", "body": received[-1], "more_body": len(received) < len(chunks)}

    async def send(message):
        sent.append(message)

    middleware = BodySizeLimit(app, max_bytes=1000, linger_bytes=linger_bytes)
    anyio.run(middleware, {"type": "http", "headers": []}, receive, send)
    assert not called and sent[0]["status"] == 413
    assert len(received) == n_read       # 1200 > 1000 bytes at the third chunk, then the linger


# -- load ---------------------------------------------------------------------------------

def test_fifty_concurrent_requests_are_all_answered_correctly(servers, library):
    requests = [{"prompt": f"The {word}", "max_new_tokens": 6, "temperature": 1.0, "seed": i}
                for i, word in enumerate(["module", "function", "class", "list", "name"] * 10)]
    expected = [library_tokens(library["numpy"], r["prompt"], 6, temperature=1.0, seed=r["seed"])
                for r in requests]
    with httpx.Client(base_url=servers["numpy"], timeout=60,
                      limits=httpx.Limits(max_connections=50)) as c:
        with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
            responses = list(pool.map(lambda r: c.post("/v1/generate", json=r), requests))
    assert [r.status_code for r in responses] == [200] * 50
    assert [r.json()["tokens"] for r in responses] == expected


# -- generated requests -------------------------------------------------------------------

def generated_request_statuses(url, paths=None, max_examples=50):
    """The status of every request schemathesis generates from ``url``'s /openapi.json
    (for ``paths`` only, if given): valid (positive) requests to every operation and
    invalid (negative) bodies to the POST ones, ``max_examples`` derandomized examples per
    operation and mode. A 5xx fails the check at once; returns ``(operations, statuses)``."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error

    operations = [result.ok() for result in schemathesis.openapi.from_url(url + "/openapi.json").get_all_operations()]
    operations = [op for op in operations if paths is None or op.path in paths]
    statuses = []
    for operation in operations:
        modes = [GenerationMode.POSITIVE] + [GenerationMode.NEGATIVE] * (operation.method.upper() == "POST")
        for mode in modes:
            @given(case=operation.as_strategy(mode))
            @settings(max_examples=max_examples, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck))
            def check(case):
                response = case.call(base_url=url, timeout=30)
                statuses.append(response.status_code)
                case.validate_response(response, checks=[not_a_server_error])
            check()
    return operations, statuses


@pytest.mark.slow
@pytest.mark.parametrize("server", ["numpy", "cls", pytest.param("torch", marks=needs_torch)])
def test_schemathesis_finds_no_server_error(servers, server):
    """Requests generated from /openapi.json, valid (positive) and invalid (negative,
    POST bodies only): none gets a 5xx. 50 derandomized examples per operation and mode."""
    operations, statuses = generated_request_statuses(servers[server])
    assert sorted(op.path for op in operations) == ["/health", "/v1/answer", "/v1/chat/completions", "/v1/classify",
                                                    "/v1/completions", "/v1/generate", "/v1/model", "/v1/models",
                                                    "/v1/score", "/v1/translate"]
    assert max(statuses) < 500, statuses
    assert len(statuses) > 5 * 2 * 40          # requests actually generated (703 for the LM server when written)
    # the run reached the model, and refused what it had to: not a run of 4xx only
    assert 200 in statuses and 422 in statuses and (400 in statuses if server == "cls" else True)


# -- the command --------------------------------------------------------------------------

def test_cli_serve_binds_loopback_by_default(runs, monkeypatch):
    from minillm import cli

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw, app=app))
    assert cli.main(["serve", str(runs["lm"]), "--port", "8765", "--max-new-tokens", "5"]) == 0
    assert seen["host"] == "127.0.0.1" and seen["port"] == 8765
    assert seen["app"].state.minillm.task == "causal_lm"
    schema = seen["app"].openapi()["components"]["schemas"]["GenerateRequest"]
    assert schema["properties"]["max_new_tokens"]["maximum"] == 5
    assert cli.main(["serve", str(runs["lm"] / "nothing-here")]) == 2     # not a run: error, exit 2
    with pytest.raises(SystemExit) as exit_:                            # refused by argparse, by name
        cli.main(["serve", str(runs["lm"]), "--max-new-tokens", "0"])
    assert exit_.value.code == 2
