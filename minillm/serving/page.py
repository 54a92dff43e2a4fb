"""``GET /``: the chat page, one static HTML file shipped with the package
(``static/chat.html``: no build step, nothing fetched from elsewhere), which streams its
answers from ``POST /v1/chat/completions``.

The page is sent with a Content-Security-Policy that lets it run its own inline script and
style (named by their SHA-256, computed here from the file) and talk to this server only:
no other script, no request to another site, no framing by another page.
"""
from __future__ import annotations

import base64
import hashlib
import re
from importlib import resources

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

__all__ = ["add_chat_page", "chat_page"]


def _sha256(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


def chat_page() -> tuple[str, dict[str, str]]:
    """The page's HTML and the headers it is served with."""
    html = (resources.files(__package__) / "static" / "chat.html").read_text(encoding="utf-8")
    scripts = re.findall(r"<script>(.*?)</script>", html, flags=re.S)
    styles = re.findall(r"<style>(.*?)</style>", html, flags=re.S)
    csp = (f"default-src 'none'; script-src {' '.join(map(_sha256, scripts))}; "
           f"style-src {' '.join(map(_sha256, styles))}; connect-src 'self'; base-uri 'none'; "
           f"form-action 'none'; frame-ancestors 'none'")
    return html, {"content-security-policy": csp, "x-content-type-options": "nosniff",
                  "referrer-policy": "no-referrer", "cache-control": "no-cache"}


def add_chat_page(app: FastAPI) -> None:
    """Serve the chat page at ``GET /`` (left out of /openapi.json: it is not the API)."""
    html, headers = chat_page()

    @app.get("/", include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(html, headers=headers)
