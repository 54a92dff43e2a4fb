"""The chat page at ``GET /`` (minillm/serving/page.py, static/chat.html): served as one
self-contained file under a Content-Security-Policy that admits its own inline script and
style only, and, in a real headless Chromium, a typed message answered as it streams."""
import base64
import hashlib
import re

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from minillm.serving import Limits, create_app  # noqa: E402
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
