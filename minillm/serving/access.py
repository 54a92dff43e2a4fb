"""Who may call the server: :class:`Access` (an API key and the origins CORS lets in),
the rule that only loopback may go without a key (:func:`check_exposure`), and the
middleware that asks every request for the key (:class:`RequireApiKey`).

Bound to a loopback address the server answers anyone on this machine, as any local
tool does. Bound to another address it is reachable from other machines, and
:func:`check_exposure` refuses to start it without a key. With a key, every request
needs ``Authorization: Bearer <key>`` (RFC 6750) and gets 401 without it; the one
exception is ``GET /``, the chat page, a static file with nothing to hide, which asks
for the key in a field and sends it with each of its calls. The key is compared with
:func:`hmac.compare_digest` (a wrong guess takes as long however many of its first bytes
were right), never logged, never echoed. CORS is off (browsers keep other sites' pages
from reading the answers) unless origins are named.
"""
from __future__ import annotations

import hmac
import ipaddress
import json
from dataclasses import dataclass

from .errors import error_content

__all__ = ["Access", "API_KEY_ENV", "RequireApiKey", "check_exposure", "is_loopback"]

API_KEY_ENV = "MINILLM_API_KEY"     # read by the CLI (minillm/cli/serve.py); named in the refusal
OPEN_PATHS = frozenset({("GET", "/")})   # the chat page: static, asks for the key itself


@dataclass(frozen=True)
class Access:
    """``api_key``: the key every request must bring (``None``: none asked, loopback only);
    ``cors_origins``: the origins (``https://host:port``) whose pages may call the API
    from a browser, empty for none (CORS off)."""

    api_key: str | None = None
    cors_origins: tuple[str, ...] = ()

    def __post_init__(self):
        key = self.api_key
        if key is not None:      # the message never shows the key itself
            if not isinstance(key, str) or not key:
                raise ValueError(f"the API key must be a non-empty string, got {type(key).__name__}"
                                 f"{'' if not isinstance(key, str) else ' of length 0'}")
            if not all(33 <= ord(c) <= 126 for c in key):
                raise ValueError(f"the API key must be printable ASCII without spaces (it travels in an HTTP "
                                 f"header), got {len(key)} characters with others among them")
        for origin in self.cors_origins:
            if not isinstance(origin, str) or not origin.startswith(("http://", "https://")) or \
                    origin.rstrip("/") != origin or origin.count("/") != 2:
                raise ValueError(f"a CORS origin is scheme://host[:port] (e.g. https://example.org), got {origin!r}")

    def __repr__(self) -> str:     # a dataclass repr would print the key into any log of this object
        return f"Access(api_key={'<set>' if self.api_key else None}, cors_origins={self.cors_origins!r})"


def is_loopback(host: str) -> bool:
    """``localhost`` or an address in 127.0.0.0/8 or ``::1``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, access: Access) -> None:
    """Refuse (``ValueError``) to serve on a non-loopback ``host`` without an API key."""
    if not is_loopback(host) and access.api_key is None:
        raise ValueError(f"refusing to serve on {host} without an API key: that address is reachable from "
                         f"other machines. Give a key with --api-key KEY or the environment variable "
                         f"{API_KEY_ENV} (clients then send 'Authorization: Bearer KEY'), or bind 127.0.0.1")


class RequireApiKey:
    """Pure ASGI middleware: a request without ``Authorization: Bearer <api_key>`` gets 401
    (``WWW-Authenticate: Bearer``) before it reaches the app; ``GET /`` passes. The answer
    has the error shape of the path's API (:func:`~minillm.serving.errors.error_content`):
    ``{"error": "unauthorized", "message": ...}``, or OpenAI's under its paths."""

    def __init__(self, app, api_key: str):
        self.app, self._key = app, api_key.encode("ascii")

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan" or (scope["type"] == "http" and (scope["method"], scope["path"]) in OPEN_PATHS):
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":                 # a websocket: closed before it opens (403)
            await send({"type": "websocket.close", "code": 1008})
            return
        given = [v for k, v in scope.get("headers") or [] if k == b"authorization"]
        scheme, _, token = given[0].strip().partition(b" ") if len(given) == 1 else (b"", b"", b"")
        if scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self._key):   # the scheme: any case
            await self.app(scope, receive, send)
            return
        message = ("this server needs an API key: send the header 'Authorization: Bearer <key>'" if not given else
                   "the API key is not valid" if len(given) == 1 else "send one Authorization header, not several")
        status, content = error_content(401, "unauthorized", message, path=scope["path"])   # the path's API's shape
        body = json.dumps(content).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"www-authenticate", b"Bearer"), (b"cache-control", b"no-store")]})
        await send({"type": "http.response.body", "body": body})
