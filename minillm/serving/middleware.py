"""The body-size limit: a pure ASGI middleware that refuses large bodies with 413
before they are read."""
from __future__ import annotations

import json

import anyio

from .errors import error_content

__all__ = ["BodySizeLimit"]


class BodySizeLimit:
    """Pure ASGI middleware: refuses request bodies over ``max_bytes`` with 413.

    The body is counted as it streams in, chunked transfer encoding included, and
    refused as soon as the count passes the limit; a ``Content-Length`` over the limit
    is refused before a byte of the body is read. An accepted body (at most
    ``max_bytes``) is handed to the app unchanged.

    Before answering, up to ``linger_bytes`` more of a refused body are read and thrown
    away (for at most ``linger_s`` seconds), as nginx's lingering close does: a server
    that closes a socket with unread bytes in it makes the kernel send a reset, and the
    client sees "connection reset" instead of the 413. Nothing lingers for a client that
    sent ``Expect: 100-continue`` (it has sent no body yet) or declared a body larger
    than ``linger_bytes``.
    """

    def __init__(self, app, max_bytes: int, linger_bytes: int = 1 << 20, linger_s: float = 1.0):
        self.app, self.max_bytes = app, int(max_bytes)
        self.linger_bytes, self.linger_s = int(linger_bytes), float(linger_s)

    async def _refuse(self, send, status: int, kind: str, message: str, path: str | None = None) -> None:
        status, content = error_content(status, kind, message, path=path)     # the shape of the path's API
        body = json.dumps(content).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def _discard(self, receive, more: bool) -> None:
        """Read and drop what is left of a refused body, within the linger budget."""
        n_bytes = 0
        with anyio.move_on_after(self.linger_s):
            while more and n_bytes < self.linger_bytes:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                n_bytes += len(message.get("body", b""))
                more = message.get("more_body", False)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_big = f"the request body is larger than the limit of {self.max_bytes} bytes"
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await self._refuse(send, 400, "bad_request", "Content-Length must be a non-negative integer",
                                   scope.get("path"))
                return
            if int(declared) > self.max_bytes:
                if int(declared) <= self.linger_bytes and headers.get(b"expect", b"").lower() != b"100-continue":
                    await self._discard(receive, more=True)
                await self._refuse(send, 413, "payload_too_large", too_big, scope.get("path"))
                return
        chunks, n_bytes, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            more = message.get("more_body", False)
            n_bytes += len(chunk)
            if n_bytes > self.max_bytes:
                chunks.clear()
                await self._discard(receive, more)
                await self._refuse(send, 413, "payload_too_large", too_big, scope.get("path"))
                return
            chunks.append(chunk)
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()          # after the body: wait for the disconnect

        await self.app(scope, replay, send)
