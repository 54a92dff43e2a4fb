"""Every error has one shape, ``{"error": kind, "message": ..., ["details": [...]]}``:
the app's exception handlers for invalid bodies (400, 415, 422), a task's refusals
(:class:`~minillm.train.spec.Refused`), HTTP errors, and bugs (500, logged, no traceback)."""
from __future__ import annotations

import json
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..train.spec import Refused

__all__ = ["error", "install_error_handlers"]

logger = logging.getLogger("minillm")


def error(status: int, kind: str, message: str, details: list | None = None) -> JSONResponse:
    """Every error has one shape: ``{"error": kind, "message": ..., ["details": [...]]}``."""
    body = {"error": kind, "message": message}
    if details:
        body["details"] = details
    return JSONResponse(body, status_code=status, headers={"cache-control": "no-store"})


def _validation_details(exc: RequestValidationError) -> list[dict]:
    """Pydantic's errors without the echoed input: where, and what was expected."""
    return [{"loc": [str(p) for p in err.get("loc", ())], "message": str(err.get("msg", ""))}
            for err in exc.errors()]


def _is_json(content_type: str) -> bool:
    """``application/json`` or ``application/<something>+json``, parameters ignored."""
    media = content_type.split(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


async def _body_error(request: Request, exc: RequestValidationError):
    """A body that is not JSON at all: 415 for another content type, 400 for broken JSON
    (FastAPI reports the latter as a field ``body.15``, a character offset).

    A body sent without a Content-Type header is refused with 415 too, even when it
    would parse as JSON: the header is what tells a JSON request from a browser's
    "simple" cross-site request (which needs no CORS preflight to reach a server on
    127.0.0.1), so FastAPI's strict content-type check is kept and the message says which
    header to add, where FastAPI alone answered 422 "Input should be a valid dictionary".
    An empty body without the header keeps its 422 (the body is missing, not mistyped)."""
    content_type = request.headers.get("content-type")
    if not content_type and await request.body():
        return error(415, "unsupported_media_type",
                      "expected JSON (Content-Type: application/json), got a body without a Content-Type header")
    if content_type and not _is_json(content_type):
        return error(415, "unsupported_media_type",
                      f"expected JSON (Content-Type: application/json), got Content-Type: {content_type[:100]}")
    if any(err.get("type") == "json_invalid" for err in exc.errors()):
        try:
            json.loads(await request.body())       # the body was read and kept by FastAPI
        except json.JSONDecodeError as e:
            return error(400, "invalid_json", f"expected a JSON body: {e.msg} at line {e.lineno} column {e.colno}")
        except (UnicodeDecodeError, RecursionError, ValueError):
            pass
        return error(400, "invalid_json", "expected a JSON body")
    return None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        refused = await _body_error(request, exc)
        if refused is not None:
            return refused
        details = _validation_details(exc)
        summary = "; ".join(f"{'.'.join(d['loc'])}: {d['message']}" for d in details[:5])
        return error(422, "invalid_request", summary or "the request body is not valid", details)

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused):
        return error(exc.status, exc.kind, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return error(exc.status_code, "http_error", str(exc.detail))

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception):
        # a bug, not bad input: logged here in full, answered without a traceback or a path
        logger.exception("internal error while serving %s %s", request.method, request.url.path)
        return error(500, "internal_error", "the server failed to handle this request")
