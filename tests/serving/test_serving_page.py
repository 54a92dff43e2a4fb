"""The chat page at ``GET /`` (minillm/serving/page.py, static/chat.html): served as one
self-contained file under a Content-Security-Policy that admits its own inline script and
style only, and, in a real headless Chromium, a typed message answered as it streams."""
import base64
import hashlib
import os
import re
import shutil
import time

import numpy as np
import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from minillm.serving import Access, Limits, create_app  # noqa: E402
from minillm.store.runtime import Runtime  # noqa: E402

from test_serving import live_server, runs  # noqa: E402,F401  (runs: the session's tiny LM run)

LIMITS = Limits(max_body_bytes=8192, max_text_chars=2000, max_new_tokens=16)


@pytest.fixture(scope="module")
def page_server(runs):  # noqa: F811
    with live_server(create_app(runs["lm"], Runtime("numpy"), LIMITS)) as url:
        yield url


def test_the_page_is_one_file_under_a_strict_policy(page_server):
    r = httpx.get(page_server + "/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html, csp = r.text, r.headers["content-security-policy"]
    assert "/v1/chat/completions" in html and "stream: true" in html
    # nothing fetched from elsewhere: no src= or href= at all, no absolute URL, no CSS import
    assert not re.search(r"\b(src|href)\s*=|https?:|@import|url\(", html)
    policy = dict(part.strip().split(" ", 1) for part in csp.split(";"))
    assert policy["default-src"] == "'none'" and policy["connect-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'" and r.headers["x-content-type-options"] == "nosniff"
    for tag, directive in (("script", "script-src"), ("style", "style-src")):
        bodies = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.S)
        assert len(bodies) == 1
        digest = base64.b64encode(hashlib.sha256(bodies[0].encode()).digest()).decode()
        assert policy[directive] == f"'sha256-{digest}'"
    assert "/" not in httpx.get(page_server + "/openapi.json").json()["paths"]


# -- in a real browser ----------------------------------------------------------------------

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium driven by the system's chromedriver (Selenium Manager never runs:
    the Service names the driver). Absent packages skip the test, except in CI, whose
    .ci/run installs them: there the skip would hide the test, so it fails."""
    if not (CHROMIUM and CHROMEDRIVER):
        message = ("the browser test needs Debian's chromium and chromium-driver "
                   "(apt-get install chromium chromium-driver)")
        if os.environ.get("CI"):
            pytest.fail(message + "; .ci/run installs them")
        pytest.skip(message)
    webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium (the dev extra)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


KEY = "sk-page-test-key"
TEMPLATE = ("{% for m in messages %}{{ m.role }} : {{ m.content }}\n{% endfor %}"
            "{% if add_generation_prompt %}assistant :{% endif %}")
SETTINGS = {"max-tokens": "12", "temperature": "0.9", "seed": "7"}


def slowed(model, seconds: float):
    """``model`` with each decoding step ``seconds`` longer, as a bigger model's: the tiny
    one writes its 12 tokens in a millisecond, and the browser would read them all at once,
    so the page would show the answer whole even if it waited for the end. Slowed, tokens come
    one by one and what the page shows can be seen growing. The logits are the model's."""
    forward_cached = model.forward_cached

    def slow(*args, **kwargs):
        time.sleep(seconds)
        return forward_cached(*args, **kwargs)
    model.forward_cached = slow            # the instance's attribute: what DecodeBatch calls
    return model


@pytest.fixture(scope="module")
def chat_server(tmp_path_factory):
    """A tiny GPT with a byte-level BPE tokenizer (a chat template must encode any text),
    2 numpy steps, behind a key, given a chat template (a run trained on conversations
    carries its own: here the test's, so that /v1/chat/completions has one to apply)."""
    from minillm import ModelConfig
    from minillm.data import BPETokenizer, python_docs, split_contiguous
    from minillm.train.entry import train
    from minillm.train.run_config import RunConfig
    from minillm.train.training import TrainConfig

    text = python_docs()[:20000]
    tok = BPETokenizer.train(text, vocab_size=300)
    splits = split_contiguous(np.asarray(tok.encode(text), dtype=np.int64), (0.8, 0.1, 0.1))
    cfg = ModelConfig(vocab_size=tok.vocab_size, block_size=64, d_model=16, n_heads=2, n_layers=1)
    tc = TrainConfig(steps=2, lr=1e-2, min_lr=1e-3, warmup_steps=0, eval_every=2, checkpoint_every=2, batch_size=4)
    run = tmp_path_factory.mktemp("page_run") / "lm"
    train("causal_lm", run, RunConfig(cfg, tc, backend="numpy"), data=splits, tokenizer=tok, progress=False)
    app = create_app(run, Runtime("numpy"), LIMITS, Access(KEY))
    app.state.minillm.tokenizer.chat_template = TEMPLATE
    slowed(app.state.minillm.model, 0.03)
    with live_server(app) as url:
        yield url


def api_answer(url, messages):
    """What the API answers, not streamed, to the page's request."""
    headers = {"authorization": f"Bearer {KEY}"}
    model = httpx.get(url + "/v1/models", headers=headers).json()["data"][0]["id"]
    r = httpx.post(url + "/v1/chat/completions", headers=headers, timeout=60, json={
        "model": model, "messages": messages, "max_tokens": int(SETTINGS["max-tokens"]),
        "temperature": float(SETTINGS["temperature"]), "seed": int(SETTINGS["seed"])})
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["message"]["content"]


def say(driver, text):
    """Type ``text`` and Enter; wait for the answer; return the status line, the answer's
    final text and every text it showed on the way (recorded by a MutationObserver)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.execute_script("""
        if (window.shown === undefined)
            new MutationObserver(() => { const turns = document.querySelectorAll('#log .turn');
                                         if (turns.length) window.shown.push(turns[turns.length - 1].textContent); })
                .observe(document.getElementById('log'), {subtree: true, childList: true, characterData: true});
        window.shown = [];""")
    driver.find_element(By.ID, "message").send_keys(text + "\n")
    WebDriverWait(driver, 60).until(lambda d: d.find_element(By.ID, "status").text.startswith(("done", "failed")))
    turns = driver.find_elements(By.CSS_SELECTOR, "#log .turn")
    return (driver.find_element(By.ID, "status").text, turns[-1].get_attribute("textContent"),
            driver.execute_script("return window.shown"))


def test_a_typed_message_streams_the_api_answer(browser, chat_server):
    from selenium.webdriver.common.by import By

    browser.get(chat_server + "/")
    browser.find_element(By.TAG_NAME, "summary").click()             # open the settings
    status, _, _ = say(browser, "how do I import a module")
    assert status == "failed"                                        # no key yet: the API's 401, shown
    assert "401" in browser.find_elements(By.CSS_SELECTOR, "#log .error")[-1].text
    for field, value in SETTINGS.items():
        browser.find_element(By.ID, field).clear()
        browser.find_element(By.ID, field).send_keys(value)
    browser.find_element(By.ID, "api-key").send_keys(KEY)
    browser.find_element(By.ID, "new-chat").click()

    question = "how do I import a module"
    status, answer, shown = say(browser, question)
    assert status.startswith("done"), (status, answer)
    assert answer and answer == api_answer(chat_server, [{"role": "user", "content": question}])
    # token by token: the answer grew through several texts, each the start of the next
    growing = [t for t in dict.fromkeys(shown) if t]
    assert len(growing) >= 3 and all(answer.startswith(t) for t in growing), growing

    follow_up = "and a class"                                       # the conversation goes with it
    status, second, _ = say(browser, follow_up)
    assert status.startswith("done") and second == api_answer(chat_server, [
        {"role": "user", "content": question}, {"role": "assistant", "content": answer},
        {"role": "user", "content": follow_up}])
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE" and "401" not in e["message"]]
    assert errors == []                                  # no script error, no request the CSP blocked
