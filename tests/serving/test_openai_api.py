"""The OpenAI API of `minillm serve` (minillm/serving/openai_api.py) with the real `openai`
Python client against a real uvicorn server on a loopback port, in both backends:
completions and chat completions, streamed and not, equal `minillm generate` (the CLI) and
the library with the same seed; stop strings, usage, the error shape; a client that
disconnects stops its generation; concurrent requests are batched and equal solo."""
import concurrent.futures
import contextlib
import importlib.util
import json
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace

import numpy as np
import pytest

pytest.importorskip("fastapi")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")

from minillm import ModelConfig  # noqa: E402
from minillm.data import BPETokenizer, python_docs, split_contiguous  # noqa: E402
from minillm.data.chat_template import DEFAULT_CHAT_TEMPLATE, apply_chat_template  # noqa: E402
from minillm.serving import Limits, create_app  # noqa: E402
from minillm.store.runs import load_run  # noqa: E402
from minillm.store.runtime import Runtime  # noqa: E402
from minillm.train.entry import train  # noqa: E402
from minillm.train.generation import generate  # noqa: E402
from minillm.train.run_config import RunConfig  # noqa: E402
from minillm.train.training import TrainConfig  # noqa: E402

from test_serving import live_server  # noqa: E402  (tests/serving is on sys.path, as pytest puts it)

HAVE_TORCH = importlib.util.find_spec("torch") is not None
BACKENDS = ["numpy", pytest.param("torch", marks=pytest.mark.skipif(not HAVE_TORCH, reason="no torch"))]
BLOCK = 16
LIMITS = Limits(max_new_tokens=2000)      # long enough that a disconnect comes before the end


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A causal-LM run: a GPT on a slice of the Python docs with a byte-level BPE (any text is
    a chat's text), trained for 2 steps (numpy)."""
    folder = tmp_path_factory.mktemp("openai_run") / "tiny-gpt"
    text = python_docs()[:20000]
    tok = BPETokenizer.train(text, vocab_size=320)
    splits = split_contiguous(np.asarray(tok.encode(text), dtype=np.int64), (0.8, 0.1, 0.1))
    cfg = ModelConfig(vocab_size=tok.vocab_size, block_size=BLOCK, d_model=16, n_heads=2, n_layers=1)
    tc = TrainConfig(steps=2, lr=1e-2, min_lr=1e-3, warmup_steps=0, eval_every=2, checkpoint_every=2, batch_size=4)
    train("causal_lm", folder, RunConfig(cfg, tc, backend="numpy"), data=splits, tokenizer=tok, progress=False)
    return folder


def give_chat_template(tokenizer):
    """The template a conversation-trained run carries (``tokenizer.chat_template``; an
    ``sft`` run records it with its tokenizer), given to this LM run's tokenizer."""
    tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
    return tokenizer


@pytest.fixture(scope="module")
def servers(run):
    """Per backend: the base URL, the served run (its engine) and the same run loaded in-process."""
    with contextlib.ExitStack() as stack:
        out = {}
        for backend in ["numpy"] + ["torch"] * HAVE_TORCH:
            app = create_app(run, Runtime(backend), limits=LIMITS)
            served = app.state.minillm
            give_chat_template(served.tokenizer)
            library = load_run(run, Runtime(backend))
            give_chat_template(library.tokenizer)
            out[backend] = (stack.enter_context(live_server(app)), served, library)
        yield out


def client_of(url):
    return openai.OpenAI(base_url=url + "/v1", api_key="unused-on-loopback", max_retries=0, timeout=60)


def cli_generate(run, backend, prompt, max_new_tokens, temperature, seed):
    """The text `minillm generate` prints after the prompt (this API has no top-k: --top-k 0)."""
    out = subprocess.run([sys.executable, "-m", "minillm.cli", "generate", str(run), "--prompt", prompt,
                          "--max-new-tokens", str(max_new_tokens), "--temperature", str(temperature),
                          "--top-k", "0", "--seed", str(seed), "--backend", backend],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    assert out.startswith(prompt) and out.endswith("\n"), out
    return out[len(prompt):-1]


def library_text(library, prompt_ids, max_new_tokens, **sampling):
    tok = library.tokenizer
    new = generate(library.runtime, library.model, prompt_ids, max_new_tokens, eos_id=tok.eos_id, **sampling)
    return tok.decode(new, skip_special_tokens=True), new


# -- the answers ----------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_completions_streamed_and_not_equal_minillm_generate(servers, run, backend):
    url, served, library = servers[backend]
    client = client_of(url)
    assert [m.id for m in client.models.list().data] == ["tiny-gpt"]
    prompt, n, seed = "The import statement", 20, 7
    expected = cli_generate(run, backend, prompt, n, 0.9, seed)
    whole = client.completions.create(model="tiny-gpt", prompt=prompt, max_tokens=n, temperature=0.9, seed=seed)
    streamed = list(client.completions.create(model="tiny-gpt", prompt=prompt, max_tokens=n, temperature=0.9,
                                              seed=seed, stream=True, stream_options={"include_usage": True}))
    assert whole.choices[0].text == expected
    assert "".join(c.choices[0].text for c in streamed if c.choices) == expected
    prompt_ids = library.tokenizer.encode(prompt)
    text, new = library_text(library, prompt_ids, n, temperature=0.9, seed=seed)
    assert text == expected and expected
    finish = "stop" if new[-1] == library.tokenizer.eos_id else "length"
    assert whole.choices[0].finish_reason == finish
    assert [c.choices[0].finish_reason for c in streamed if c.choices][-1] == finish
    usage = {"prompt_tokens": len(prompt_ids), "completion_tokens": len(new), "total_tokens": len(prompt_ids) + len(new)}
    assert whole.usage.model_dump(exclude_none=True) == usage
    assert streamed[-1].choices == [] and streamed[-1].usage.model_dump(exclude_none=True) == usage
    assert len({c.id for c in streamed}) == 1 and whole.object == "text_completion"


@pytest.mark.parametrize("backend", BACKENDS)
def test_chat_completions_go_through_the_chat_template(servers, backend):
    url, served, library = servers[backend]
    client = client_of(url)
    messages = [{"role": "system", "content": "You answer in Python words"},
                {"role": "user", "content": "What is a module"}]
    ids = apply_chat_template(library.tokenizer, DEFAULT_CHAT_TEMPLATE, messages, add_generation_prompt=True).ids
    expected, new = library_text(library, ids, 12, temperature=0.0)
    whole = client.chat.completions.create(model="tiny-gpt", messages=messages, max_tokens=12, temperature=0)
    assert whole.choices[0].message.role == "assistant" and whole.choices[0].message.content == expected
    assert len(ids) > BLOCK                               # the conversation is cut to the window, and says so
    assert (whole.usage.prompt_tokens, whole.truncated_tokens) == (BLOCK, len(ids) - BLOCK)
    assert whole.usage.completion_tokens == len(new)
    chunks = list(client.chat.completions.create(model="tiny-gpt", messages=messages, max_completion_tokens=12,
                                                 temperature=0, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[0].object == "chat.completion.chunk"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == expected
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason
    with pytest.raises(openai.BadRequestError, match="expected a role system, user or assistant, got developer"):
        client.chat.completions.create(model="tiny-gpt", messages=[{"role": "developer", "content": "hi"}])


def test_stop_strings_cut_the_text_streamed_and_not(servers):
    url, served, library = servers["numpy"]
    client = client_of(url)
    full, _ = library_text(library, library.tokenizer.encode("The"), 40, temperature=1.0, seed=3)
    words = full.split()
    stop = " ".join(words[3:5])                          # spans tokens, so it is held back while it forms
    cut = full[:full.index(stop)]
    for stream in (False, True):
        args = dict(model="tiny-gpt", prompt="The", max_tokens=40, temperature=1.0, seed=3, stop=[stop, "zzz"])
        if stream:
            chunks = list(client.completions.create(**args, stream=True))
            text, finish = "".join(c.choices[0].text for c in chunks), chunks[-1].choices[0].finish_reason
        else:
            answer = client.completions.create(**args)
            text, finish = answer.choices[0].text, answer.choices[0].finish_reason
        assert (text, finish) == (cut, "stop")


# -- errors ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, status, param, code", [
    (dict(n=2), 400, "n", "unsupported_n"),
    (dict(model="gpt-4"), 404, "model", "model_not_found"),
    (dict(max_tokens=LIMITS.max_new_tokens + 1), 400, "max_tokens", "max_tokens_too_large"),
    (dict(temperature=3.0), 400, "temperature", "invalid_request"),
    (dict(stop=["a", "b", "c", "d", "e"]), 400, "stop", "invalid_stop"),
    (dict(extra_body={"best_of": 2}), 400, "best_of", "invalid_request"),
    (dict(prompt="x" * (LIMITS.max_text_chars + 1)), 400, "prompt", "text_too_long"),
])
def test_bad_requests_get_openais_error_shape(servers, kwargs, status, param, code):
    client = client_of(servers["numpy"][0])
    args = dict(model="tiny-gpt", prompt="The", max_tokens=2) | kwargs
    with pytest.raises(openai.APIStatusError) as info:
        client.completions.create(**args)
    assert info.value.status_code == status
    body = info.value.body                                # the client hands over the "error" object
    assert set(body) == {"message", "type", "param", "code"} and body["message"]
    assert (body["param"], body["code"]) == (param, code)
    assert body["type"] == ("not_found_error" if status == 404 else "invalid_request_error")


def test_a_model_without_a_chat_template_says_so_and_body_errors_keep_the_shape(run):
    app = create_app(run, Runtime("numpy"), limits=Limits(max_body_bytes=2000))
    with live_server(app) as url:
        with pytest.raises(openai.BadRequestError, match="this model has no chat template"):
            client_of(url).chat.completions.create(model="tiny-gpt", messages=[{"role": "user", "content": "hi"}])
        r = httpx.post(url + "/v1/completions", content=b'{"model": ', headers={"content-type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
        r = httpx.post(url + "/v1/completions", json={"model": "tiny-gpt", "prompt": "x" * 3000})
        assert r.status_code == 413 and r.json()["error"]["type"] == "invalid_request_error"
        r = httpx.post(url + "/v1/generate", json={"prompt": "x" * 3000})      # minillm's own shape there
        assert r.status_code == 413 and r.json()["error"] == "payload_too_large"


# -- many clients ---------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_a_client_that_disconnects_stops_its_generation(servers, backend):
    url, served, library = servers[backend]
    engine, n = served.engine, LIMITS.max_new_tokens
    _, alone = library_text(library, library.tokenizer.encode("The"), n, temperature=0.0)
    assert len(alone) == n                                # greedy never says <eos> here: it would run to n
    stream = client_of(url).completions.create(model="tiny-gpt", prompt="The", max_tokens=n, temperature=0,
                                               stream=True)
    first = [next(iter(stream)) for _ in range(3)]
    assert all(c.choices[0].text for c in first)
    steps = engine.steps
    stream.close()                                        # the client goes away mid-answer
    deadline = time.monotonic() + 60
    while engine.in_flight and time.monotonic() < deadline:
        time.sleep(0.01)
    assert engine.in_flight == 0
    assert engine.steps - steps < n // 2                  # it left the batch long before its n tokens


def test_a_client_that_disconnects_before_a_whole_answer_stops_its_generation(servers):
    url, served, library = servers["numpy"]
    engine, n = served.engine, LIMITS.max_new_tokens
    _, alone = library_text(library, library.tokenizer.encode("The"), n, temperature=0.0)
    assert len(alone) == n                                # greedy never says <eos> here: it would run to n
    body = json.dumps({"model": "tiny-gpt", "prompt": "The", "max_tokens": n, "temperature": 0}).encode()
    host, port = url.removeprefix("http://").split(":")
    steps = engine.steps
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        deadline = time.monotonic() + 30
        while not engine.in_flight and time.monotonic() < deadline:
            time.sleep(0.001)
        assert engine.in_flight == 1                      # it is being generated; now the client goes away
    deadline = time.monotonic() + 60
    while engine.in_flight and time.monotonic() < deadline:
        time.sleep(0.01)
    assert engine.in_flight == 0
    assert engine.steps - steps < n // 2                  # it left the batch long before its n tokens


@pytest.mark.parametrize("backend", BACKENDS)
def test_concurrent_requests_are_batched_and_equal_solo(servers, backend):
    url, served, library = servers[backend]
    client = client_of(url)
    prompts = ["The", "A module", "import os", "Return the", "class", "The value of", "def", "If the"]
    start = threading.Barrier(len(prompts))

    def one(i):
        args = dict(model="tiny-gpt", prompt=prompts[i], max_tokens=24, temperature=0.8, top_p=0.95, seed=100 + i)
        start.wait()
        if i % 2:
            return "".join(c.choices[0].text for c in client.completions.create(**args, stream=True))
        return client.completions.create(**args).choices[0].text

    served.engine.widest = 0
    with concurrent.futures.ThreadPoolExecutor(len(prompts)) as pool:
        got = list(pool.map(one, range(len(prompts))))
    expected = [library_text(library, library.tokenizer.encode(p) or [library.tokenizer.bos_id], 24,
                             temperature=0.8, top_p=0.95, seed=100 + i)[0] for i, p in enumerate(prompts)]
    assert got == expected
    assert served.engine.widest > 1                       # some steps decoded several requests together


@pytest.mark.slow
def test_the_serving_benchmark_runs(run, capsys):
    """benchmarks/bench_serving.py, small, so that it cannot rot (its timings are not judged:
    a shared machine is no place for speed thresholds): a row per mode, tokens counted."""
    import minillm.bench
    minillm.bench.load_harness()                          # benchmarks/ on sys.path
    import bench_serving

    bench_serving.main(["--run", str(run), "--backend", "numpy", "--clients", "2", "--requests", "4",
                        "--max-tokens", "6", "--time-limit", "60"])
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.split()[:1] == ["numpy"]]
    assert [row[1] for row in rows] == ["1", "2"]
    assert all(float(row[2]) > 0 and 0 < float(row[-1]) <= 6 for row in rows)
