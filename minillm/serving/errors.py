"""Every error has one shape per API: minillm's own, ``{"error": kind, "message": ...,
["details": [...]]}``, and under the OpenAI API's paths (:data:`OPENAI_PATHS`) that API's,
``{"error": {"message", "type", "param", "code"}}`` (the ``code`` is minillm's kind; bad input
is 400 there, as OpenAI answers it, where minillm's own endpoints say 422). Here: the app's
exception handlers for invalid bodies (400, 415, 422), a task's refusals
(:class:`~minillm.train.spec.Refused`), HTTP errors, and bugs (500, logged, no traceback)."""
from __future__ import annotations

import json
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..train.spec import Refused

__all__ = ["error", "error_content", "install_error_handlers", "OPENAI_PATHS"]

logger = logging.getLogger("minillm")

OPENAI_PATHS = ("/v1/models", "/v1/completions", "/v1/chat/completions")


def _openai_type(status: int) -> str:
    """The ``type`` OpenAI gives an error of this status."""
    return {401: "authentication_error", 403: "permission_error", 404: "not_found_error",
            429: "rate_limit_error"}.get(status, "server_error" if status >= 500 else "invalid_request_error")


def is_openai(path: str | None) -> bool:
    return path is not None and any(path == p or path.startswith(p + "/") for p in OPENAI_PATHS)


def error_content(status: int, kind: str, message: str, details: list | None = None, *,
                  path: str | None = None, param: str | None = None) -> tuple[int, dict]:
    """The status and JSON body of an error at ``path``, in that path's API's shape."""
    if is_openai(path):
        status = 400 if status == 422 else status
        return status, {"error": {"message": message, "type": _openai_type(status), "param": param, "code": kind}}
    body = {"error": kind, "message": message}
    if details:
        body["details"] = details
    return status, body


def error(status: int, kind: str, message: str, details: list | None = None, *,
          path: str | None = None, param: str | None = None) -> JSONResponse:
    """An error answer (:func:`error_content`), never cached."""
    status, body = error_content(status, kind, message, details, path=path, param=param)
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
    content_type, path = request.headers.get("content-type"), request.url.path
    if not content_type and await request.body():
        return error(415, "unsupported_media_type",
                     "expected JSON (Content-Type: application/json), got a body without a Content-Type header",
                     path=path)
    if content_type and not _is_json(content_type):
        return error(415, "unsupported_media_type",
                     f"expected JSON (Content-Type: application/json), got Content-Type: {content_type[:100]}",
                     path=path)
    if any(err.get("type") == "json_invalid" for err in exc.errors()):
        try:
            json.loads(await request.body())       # the body was read and kept by FastAPI
        except json.JSONDecodeError as e:
            return error(400, "invalid_json", f"expected a JSON body: {e.msg} at line {e.lineno} column {e.colno}",
                         path=path)
        except (UnicodeDecodeError, RecursionError, ValueError):
            pass
        return error(400, "invalid_json", "expected a JSON body", path=path)
    return None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        refused = await _body_error(request, exc)
        if refused is not None:
            return refused
        details = _validation_details(exc)
        summary = "; ".join(f"{'.'.join(d['loc'])}: {d['message']}" for d in details[:5])
        param = next((".".join(d["loc"][1:]) for d in details if d["loc"][:1] == ["body"] and len(d["loc"]) > 1),
                     None)
        return error(422, "invalid_request", summary or "the request body is not valid", details,
                     path=request.url.path, param=param)

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused):
        return error(exc.status, exc.kind, exc.message, path=request.url.path, param=getattr(exc, "param", None))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return error(exc.status_code, "http_error", str(exc.detail), path=request.url.path)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception):
        # a bug, not bad input: logged here in full, answered without a traceback or a path
        logger.exception("internal error while serving %s %s", request.method, request.url.path)
        return error(500, "internal_error", "the server failed to handle this request", path=request.url.path)
