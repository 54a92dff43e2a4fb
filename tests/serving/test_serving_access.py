"""Who may call the server (minillm/serving/access.py), over real HTTP on loopback:
with a key, every request but ``GET /`` needs ``Authorization: Bearer <key>`` (401 in the
API's error shape otherwise), the key never reaches a log; bound beyond loopback without a
key the server refuses to start (checked without starting it); CORS only when asked."""
import logging

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")

from minillm import cli  # noqa: E402
from minillm.serving import API_KEY_ENV, Access, Limits, create_app, serve  # noqa: E402
from minillm.store.runtime import Runtime  # noqa: E402

from test_serving import live_server, runs  # noqa: E402,F401  (runs: the session's tiny LM run)

KEY = "sk-test-Zq8yW3v1-a-key-that-must-never-be-logged"
LIMITS = Limits(max_body_bytes=8192, max_text_chars=2000, max_new_tokens=16)
GENERATE = {"prompt": "The import", "max_new_tokens": 3, "seed": 1}
ORIGIN = "http://page.example:8080"


def bearer(key=KEY):
    return {"authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def keyed(runs):  # noqa: F811
    """A server with a key and one CORS origin, and one with neither."""
    with live_server(create_app(runs["lm"], Runtime("numpy"), LIMITS, Access(KEY, (ORIGIN,)))) as url, \
            live_server(create_app(runs["lm"], Runtime("numpy"), LIMITS)) as open_url:
        yield {"key": url, "open": open_url}


def assert_unauthorized(r, message_part):
    """401 in the error shape of the path's API: minillm's own, or OpenAI's under /v1/models,
    /v1/completions and /v1/chat/completions."""
    assert r.status_code == 401, (r.status_code, r.text)
    assert r.headers["www-authenticate"] == "Bearer"
    body = r.json()
    if r.url.path in ("/v1/models", "/v1/completions", "/v1/chat/completions"):
        message = body["error"]["message"]
        assert body == {"error": {"message": message, "type": "authentication_error", "param": None,
                                  "code": "unauthorized"}}
    else:
        message = body["message"]
        assert body == {"error": "unauthorized", "message": message}
    assert message_part in message and KEY not in r.text


@pytest.mark.parametrize("method, path, body", [
    ("GET", "/health", None), ("GET", "/v1/model", None), ("GET", "/openapi.json", None),
    ("POST", "/v1/generate", GENERATE), ("POST", "/v1/score", {"text": "The import statement"}),
    ("GET", "/v1/nothing", None), ("GET", "/v1/models", None),
    ("POST", "/v1/completions", {"model": "lm", "prompt": "The import", "max_tokens": 3, "seed": 1}),
])
def test_every_request_needs_the_key(keyed, method, path, body):
    url = keyed["key"] + path
    assert_unauthorized(httpx.request(method, url, json=body), "Authorization: Bearer")
    assert_unauthorized(httpx.request(method, url, json=body, headers=bearer("wrong")), "not valid")
    assert_unauthorized(httpx.request(method, url, json=body, headers=bearer(KEY[:-1])), "not valid")
    assert_unauthorized(httpx.request(method, url, json=body, headers=bearer(KEY + "x")), "not valid")
    assert_unauthorized(httpx.request(method, url, json=body, headers={"authorization": KEY}), "not valid")
    assert_unauthorized(httpx.request(method, url, json=body, headers={"authorization": f"Basic {KEY}"}),
                        "not valid")
    two = httpx.Headers([("authorization", f"Bearer {KEY}"), ("authorization", f"Bearer {KEY}")])
    assert_unauthorized(httpx.request(method, url, json=body, headers=two), "one Authorization header")
    with_key = httpx.request(method, url, json=body, headers=bearer(), timeout=30)
    assert with_key.status_code == (404 if path == "/v1/nothing" else 200), with_key.text
    # the scheme is case-insensitive (RFC 7235), the key is not
    assert httpx.request(method, url, json=body, headers={"authorization": f"bearer {KEY}"},
                         timeout=30).status_code == with_key.status_code
    assert httpx.request(method, url, json=body, headers=bearer(KEY.upper())).status_code == 401


def test_the_openai_client_is_let_in_by_its_key_only(keyed):
    openai = pytest.importorskip("openai")
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=keyed["key"] + "/v1", api_key="wrong", max_retries=0).models.list()
    client = openai.OpenAI(base_url=keyed["key"] + "/v1", api_key=KEY, max_retries=0)
    assert [m.id for m in client.models.list()] == ["lm"]
    text = client.completions.create(model="lm", prompt="The import", max_tokens=3, seed=1).choices[0].text
    assert text == httpx.post(keyed["open"] + "/v1/completions", timeout=30, json={
        "model": "lm", "prompt": "The import", "max_tokens": 3, "seed": 1}).json()["choices"][0]["text"]


def test_the_keyed_server_answers_as_the_open_one(keyed):
    answers = [httpx.post(keyed[name] + "/v1/generate", json=GENERATE, headers=bearer(), timeout=30).json()
               for name in ("key", "open")]
    assert answers[0] == answers[1] and len(answers[0]["tokens"]) == 3


def test_the_chat_page_loads_without_the_key(keyed):
    """``GET /`` is the one path the key does not guard (a static page that asks for the key);
    another method on it is guarded."""
    r = httpx.get(keyed["key"] + "/")
    assert r.status_code != 401, r.text
    assert httpx.post(keyed["key"] + "/", json={}).status_code == 401


def test_the_key_is_never_logged(runs, caplog):  # noqa: F811
    """uvicorn's access log on and every logger at DEBUG: requests with the key, with a
    wrong key, a bad body and a route that fails leave no trace of the key in the logs."""
    app = create_app(runs["lm"], Runtime("numpy"), LIMITS, Access(KEY))

    def broken():
        raise RuntimeError("a bug")
    app.add_api_route("/broken", broken)
    config = uvicorn.Config(app, log_level="debug", access_log=True, log_config=None, lifespan="off")
    caplog.set_level(logging.DEBUG)
    with live_server(app, config=config) as url:
        with httpx.Client(base_url=url, timeout=30) as c:
            assert c.post("/v1/generate", json=GENERATE, headers=bearer()).status_code == 200
            assert c.post("/v1/generate", json=GENERATE, headers=bearer(KEY + "x")).status_code == 401
            assert c.post("/v1/generate", json={"prompt": 5}, headers=bearer()).status_code == 422
            assert c.get("/broken", headers=bearer()).status_code == 500
            assert c.get(f"/v1/model?key={KEY[:8]}", headers=bearer()).status_code == 200
    assert "GET /v1/model" in caplog.text and "a bug" in caplog.text   # the logs were captured
    assert KEY not in caplog.text and KEY[8:] not in caplog.text
    assert KEY not in repr(Access(KEY)) and KEY not in str(app.state.minillm.__dict__)


def test_beyond_loopback_without_a_key_is_refused_before_anything_starts(tmp_path, monkeypatch, capsys):
    """Checked before the run is even loaded: the folder does not exist, the error is the key's."""
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    started = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: started.append(kw))
    for host in ("0.0.0.0", "::", "192.168.1.20", "example.org"):
        with pytest.raises(ValueError, match=f"refusing to serve on {host} without an API key") as err:
            serve(tmp_path / "no-run", host=host)
        assert "--api-key" in str(err.value) and API_KEY_ENV in str(err.value)
    assert cli.main(["serve", str(tmp_path / "no-run"), "--host", "0.0.0.0"]) == 2
    message = capsys.readouterr().err
    assert "--api-key KEY" in message and API_KEY_ENV in message and "Traceback" not in message
    assert started == []


@pytest.mark.parametrize("how", ["option", "environment"])
def test_beyond_loopback_with_a_key_starts_guarded(runs, monkeypatch, how):  # noqa: F811
    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw, app=app))
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    args = ["serve", str(runs["lm"]), "--host", "0.0.0.0", "--port", "8765"]
    if how == "option":
        args += ["--api-key", KEY]
    else:
        monkeypatch.setenv(API_KEY_ENV, KEY)
    assert cli.main(args) == 0
    assert seen["host"] == "0.0.0.0"
    from starlette.testclient import TestClient     # the app in process: the same middleware stack
    from starlette.websockets import WebSocketDisconnect
    with TestClient(seen["app"]) as c:
        assert c.get("/health").status_code == 401
        assert c.get("/health", headers=bearer()).json() == {"status": "ok"}
        with pytest.raises(WebSocketDisconnect) as closed:       # no route takes one; none passes unasked
            with c.websocket_connect("/"):
                pass
        assert closed.value.code == 1008


def test_loopback_stays_open_and_bad_keys_are_refused(runs, monkeypatch, capsys):  # noqa: F811
    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw, app=app))
    monkeypatch.setenv(API_KEY_ENV, "")                   # set but empty: no key
    assert cli.main(["serve", str(runs["lm"]), "--host", "::1"]) == 0
    from starlette.testclient import TestClient
    with TestClient(seen["app"]) as c:
        assert c.get("/health").status_code == 200
    assert cli.main(["serve", str(runs["lm"]), "--api-key", ""]) == 2
    assert "non-empty" in capsys.readouterr().err
    assert cli.main(["serve", str(runs["lm"]), "--api-key", "two words"]) == 2
    err = capsys.readouterr().err
    assert "printable ASCII without spaces" in err and "two words" not in err
    with pytest.raises(ValueError, match="scheme://host"):
        Access(cors_origins=("example.org",))
    with pytest.raises(ValueError, match="scheme://host"):
        Access(cors_origins=("https://example.org/",))


def test_cors_is_off_unless_an_origin_is_named(keyed):
    r = httpx.post(keyed["open"] + "/v1/generate", json=GENERATE, headers={"origin": ORIGIN}, timeout=30)
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    preflight = {"origin": ORIGIN, "access-control-request-method": "POST",
                 "access-control-request-headers": "authorization, content-type"}
    r = httpx.options(keyed["open"] + "/v1/generate", headers=preflight)
    assert "access-control-allow-origin" not in r.headers and r.status_code == 405


def test_a_named_origin_may_call_with_the_key(keyed):
    """The preflight carries no key and passes; the answers, a 401 included, carry the
    header that lets the named origin's page read them; another origin gets nothing."""
    preflight = {"origin": ORIGIN, "access-control-request-method": "POST",
                 "access-control-request-headers": "authorization, content-type"}
    r = httpx.options(keyed["key"] + "/v1/generate", headers=preflight)
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == ORIGIN
    assert {"authorization", "content-type"} <= {h.strip().lower() for h in
                                                r.headers["access-control-allow-headers"].split(",")}
    r = httpx.post(keyed["key"] + "/v1/generate", json=GENERATE, headers={"origin": ORIGIN, **bearer()}, timeout=30)
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == ORIGIN
    r = httpx.post(keyed["key"] + "/v1/generate", json=GENERATE, headers={"origin": ORIGIN})
    assert r.status_code == 401 and r.headers["access-control-allow-origin"] == ORIGIN
    other = "http://elsewhere.example"
    r = httpx.options(keyed["key"] + "/v1/generate", headers={**preflight, "origin": other})
    assert r.status_code == 400 and "access-control-allow-origin" not in r.headers
    r = httpx.post(keyed["key"] + "/v1/generate", json=GENERATE, headers={"origin": other, **bearer()}, timeout=30)
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
