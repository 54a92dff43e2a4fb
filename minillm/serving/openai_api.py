"""The OpenAI API beside minillm's own endpoints (issue 27): the API every client of an LLM
server speaks (vLLM, llama.cpp's server, Ollama and text-generation-inference serve it too).

    GET  /v1/models             the served run, as the one model (its id: the run folder's name)
    POST /v1/completions        prompt -> continuation
    POST /v1/chat/completions   messages -> the assistant's answer (through the run's chat template)

Requests take ``model``, ``max_tokens`` (chat: or ``max_completion_tokens``),
``temperature`` (default 1), ``top_p`` (default 1: off), ``stop`` (a string or up to 4: the
text is cut before the first one and ``finish_reason`` is ``"stop"``), ``seed`` (omitted:
a fresh one), ``n`` (1 only), ``stream`` and ``stream_options.include_usage``; answers
carry ``usage`` (prompt, completion and total tokens). ``finish_reason`` is ``"stop"`` at
the model's end token or a stop string, ``"length"`` at ``max_tokens``. A prompt longer than
the model's window keeps its last ``block_size`` tokens (:data:`~minillm.train.spec.LONG_INPUT`),
said in the answer's ``truncated_tokens`` (a field of minillm's own).

``stream: true`` answers with server-sent events, one ``data: {chunk}`` per piece of text as
the tokens come (``text_completion`` / ``chat.completion.chunk`` objects, the last with the
``finish_reason``), ending with ``data: [DONE]``. A client that goes away stops its
generation (its row leaves the batch at the next token). The text is the same, streamed or
not, and equals ``minillm generate``'s with the same seed (with ``--top-k 0``: this API has
no top-k).

Every request is decoded by the served run's engine (:mod:`~minillm.serving.engine`), with
the other requests in flight. Errors have OpenAI's shape, ``{"error": {"message", "type",
"param", "code"}}`` (:mod:`~minillm.serving.errors`).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from typing import Literal, Optional, Union

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from ..train.generation import TextDeltas
from ..train.spec import Refused
from .limits import MAX_SEED
from .model import ServedRun

__all__ = ["add_openai_routes", "CompletionRequest", "ChatCompletionRequest"]

logger = logging.getLogger("minillm")

MAX_STOPS = 4                       # as OpenAI's API
MAX_STOP_CHARS = 256


class APIRefused(Refused):
    """A refusal naming the request field at fault (OpenAI's ``param``)."""

    def __init__(self, status: int, kind: str, message: str, param: str | None = None):
        super().__init__(status, kind, message)
        self.param = param


# -- requests -------------------------------------------------------------------------------

class _Sampling(BaseModel):
    """The fields both endpoints take; unknown fields are refused (400, naming them)."""
    model_config = ConfigDict(extra="forbid")

    model: StrictStr = Field(max_length=256, description="the id GET /v1/models lists")
    max_tokens: Optional[StrictInt] = Field(None, ge=0, description="tokens to generate at most")
    temperature: Optional[StrictFloat] = Field(None, ge=0.0, le=2.0, allow_inf_nan=False,
                                               description="0 = greedy; default 1")
    top_p: Optional[StrictFloat] = Field(None, gt=0.0, le=1.0, allow_inf_nan=False,
                                         description="nucleus sampling; default 1 (off)")
    stop: Optional[Union[StrictStr, list[StrictStr]]] = Field(
        None, description=f"up to {MAX_STOPS} strings: the text ends before the first one")
    seed: Optional[StrictInt] = Field(None, ge=0, le=MAX_SEED, description="same seed, same text; default: fresh")
    n: Optional[StrictInt] = Field(None, description="answers per request: only 1")
    stream: Optional[StrictBool] = False
    stream_options: Optional[dict[Literal["include_usage"], StrictBool]] = None
    user: Optional[StrictStr] = Field(None, max_length=256, description="not used")


class CompletionRequest(_Sampling):
    prompt: StrictStr = Field(description="the text to continue; empty starts from <bos>")


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant"]
    content: StrictStr
    name: Optional[StrictStr] = Field(None, max_length=256)


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: Optional[StrictInt] = Field(None, ge=0, description="max_tokens' newer name")


# -- the text of a request: pieces as they come, cut at a stop string -----------------------

class _Answer:
    """One request's answer being made: its tokens, its text so far, why it ended."""

    def __init__(self, tokenizer, stops: list[str]):
        self.tokenizer, self.stops = tokenizer, stops
        self.deltas = TextDeltas(lambda ids: tokenizer.decode(ids, skip_special_tokens=True))
        self.held = ""                   # text not given yet: it may be the start of a stop string
        self.finish_reason = "length"
        self.n_tokens = 0

    def push(self, token: int) -> tuple[str, bool]:
        """The text this token lets out, and whether the answer is complete (a stop string)."""
        self.n_tokens += 1
        if self.tokenizer.eos_id is not None and token == self.tokenizer.eos_id:
            self.finish_reason = "stop"
        return self._cut(self.deltas.push(token))

    def end(self) -> str:
        """What is left once the tokens end."""
        text, stopped = self._cut(self.deltas.end())
        if stopped:
            return text
        text, self.held = text + self.held, ""
        return text

    def _cut(self, piece: str) -> tuple[str, bool]:
        text = self.held + piece
        found = [i for i in (text.find(s) for s in self.stops) if i >= 0]
        if found:
            self.held, self.finish_reason = "", "stop"
            return text[:min(found)], True
        # keep back the longest end of the text that begins a stop string
        keep = max((k for s in self.stops for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
        self.held = text[len(text) - keep:] if keep else ""
        return text[:len(text) - keep], False


async def _pieces(served: ServedRun, prompt_ids: list[int], answer: _Answer, max_tokens: int, sampling: dict):
    """Yields the answer's text pieces (some empty) as its tokens come from the engine: one
    piece for the tokens that came together."""
    async with contextlib.aclosing(served.engine.stream(prompt_ids, max_tokens, eos_id=served.tokenizer.eos_id,
                                                        **sampling)) as tokens:
        async for came in tokens:
            pieces = []
            for token in came:
                piece, stopped = answer.push(token)
                pieces.append(piece)
                if stopped:
                    yield "".join(pieces)
                    return               # closing the stream cancels the rest of the generation
            yield "".join(pieces)
    yield answer.end()


# -- the routes -----------------------------------------------------------------------------

def add_openai_routes(app: FastAPI, served: ServedRun) -> None:
    """``GET /v1/models``, ``POST /v1/completions`` and ``POST /v1/chat/completions`` on ``app``."""
    created = int(time.time())

    @app.get("/v1/models", description="The served model, in the OpenAI API's list shape.")
    def list_models() -> dict:
        return {"object": "list", "data": [{"id": served.name, "object": "model", "created": created,
                                            "owned_by": "minillm"}]}

    @app.post("/v1/completions", description="The continuation of a prompt (OpenAI's completions API).")
    async def completions(req: CompletionRequest, request: Request):
        _check(served, req)
        prompt_ids, dropped = served.window(req.prompt, served.config.block_size, keep="last")
        return await _respond(served, req, request, prompt_ids or [served.tokenizer.bos_id], dropped, chat=False)

    @app.post("/v1/chat/completions", description="The assistant's answer to a conversation, through the "
                                                  "model's chat template (OpenAI's chat completions API).")
    async def chat_completions(req: ChatCompletionRequest, request: Request):
        _check(served, req)
        ids = _chat_prompt(served, req.messages)
        dropped = max(0, len(ids) - served.config.block_size)
        return await _respond(served, req, request, ids[dropped:], dropped, chat=True)


def _check(served: ServedRun, req: _Sampling) -> None:
    if req.model != served.name:
        raise APIRefused(404, "model_not_found", f"the model {req.model[:100]!r} does not exist; this server "
                                                 f"serves {served.name!r} (GET /v1/models)", "model")
    if not hasattr(served.model, "forward_cached"):
        raise APIRefused(400, "wrong_task", f"the OpenAI API serves language models; this server runs a "
                                            f"{served.task} model", "model")
    chars = len(req.prompt) if isinstance(req, CompletionRequest) else sum(len(m.content) for m in req.messages)
    if chars > served.limits.max_text_chars:
        what = "prompt" if isinstance(req, CompletionRequest) else "messages"
        raise APIRefused(400, "text_too_long", f"the {what} has {chars} characters; this server takes at most "
                                               f"{served.limits.max_text_chars}", what)
    if req.n not in (None, 1):
        raise APIRefused(400, "unsupported_n", f"n must be 1 (one answer per request), got {req.n}", "n")
    stops = [req.stop] if isinstance(req.stop, str) else (req.stop or [])
    if len(stops) > MAX_STOPS or not all(0 < len(s) <= MAX_STOP_CHARS for s in stops):
        raise APIRefused(400, "invalid_stop", f"stop must be at most {MAX_STOPS} non-empty strings of at most "
                                              f"{MAX_STOP_CHARS} characters, got {len(stops)}", "stop")
    if req.stream_options is not None and not req.stream:
        raise APIRefused(400, "invalid_stream_options", "stream_options is only allowed with stream: true",
                         "stream_options")
    limit = served.limits.max_new_tokens
    name = "max_completion_tokens" if getattr(req, "max_completion_tokens", None) is not None else "max_tokens"
    asked = getattr(req, name)
    if asked is not None and asked > limit:
        raise APIRefused(400, "max_tokens_too_large", f"{name} is {asked}; this server generates at most {limit} "
                                                      f"tokens per request", name)


def _chat_prompt(served: ServedRun, messages: list[ChatMessage]) -> list[int]:
    """The conversation rendered by the model's chat template, with the assistant's turn opened."""
    template = getattr(served.tokenizer, "chat_template", None)
    if template is None:
        raise APIRefused(400, "no_chat_template", "this model has no chat template (it was not trained on "
                                                  "conversations): use /v1/completions", "messages")
    from jinja2 import TemplateError          # a model with a template brought jinja2 (the hf extra)

    from ..data.chat_template import apply_chat_template
    try:
        return list(apply_chat_template(served.tokenizer, template,
                                        [m.model_dump(exclude_none=True) for m in messages],
                                        add_generation_prompt=True).ids)
    except (TemplateError, ValueError, TypeError) as exc:  # the template's raise_exception; a text
        raise APIRefused(400, "invalid_conversation", f"the messages cannot be rendered for this model: "
                                                      f"{str(exc)[:300]}", "messages") from None


async def _respond(served: ServedRun, req: _Sampling, request: Request, prompt_ids: list[int], dropped: int, *,
                   chat: bool):
    """The answer: the whole of it in one JSON object, or (``stream``) its server-sent events."""
    limit = served.limits.max_new_tokens
    max_tokens = getattr(req, "max_completion_tokens", None)
    max_tokens = max_tokens if max_tokens is not None else req.max_tokens
    max_tokens = max_tokens if max_tokens is not None else (limit if chat else min(16, limit))  # OpenAI's defaults
    sampling = dict(temperature=1.0 if req.temperature is None else req.temperature,
                    top_p=None if req.top_p in (None, 1.0) else req.top_p,
                    seed=req.seed if req.seed is not None else secrets.randbits(63))
    stops = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
    answer = _Answer(served.tokenizer, stops)
    pieces = _pieces(served, prompt_ids, answer, max_tokens, sampling)
    head = {"id": ("chatcmpl-" if chat else "cmpl-") + secrets.token_hex(12), "created": int(time.time()),
            "model": served.name, "system_fingerprint": None}

    def usage():
        return {"prompt_tokens": len(prompt_ids), "completion_tokens": answer.n_tokens,
                "total_tokens": len(prompt_ids) + answer.n_tokens}

    if req.stream:
        include_usage = bool((req.stream_options or {}).get("include_usage"))
        return _EventStream(_events(head, pieces, answer, chat, usage if include_usage else None, dropped))

    text = await _whole(pieces, request)
    choice = {"message": {"role": "assistant", "content": text}} if chat else {"text": text}
    return {**head, "object": "chat.completion" if chat else "text_completion",
            "choices": [{"index": 0, **choice, "logprobs": None, "finish_reason": answer.finish_reason}],
            "usage": usage(), "truncated_tokens": dropped}


async def _whole(pieces, request: Request) -> str:
    """The answer's text, all of it; a client that goes away first stops its generation
    (the ASGI server's ``http.disconnect``, awaited beside the pieces)."""
    async def collect():
        async with contextlib.aclosing(pieces):
            return "".join([piece async for piece in pieces])

    async def gone():
        while (await request.receive())["type"] != "http.disconnect":
            pass

    text, watch = asyncio.ensure_future(collect()), asyncio.ensure_future(gone())
    try:
        await asyncio.wait({text, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not text.done():              # the client went away (or this handler was cancelled)
            text.cancel()
    return await text                    # raises CancelledError where the client went away


async def _events(head: dict, pieces, answer: _Answer, chat: bool, usage, dropped: int):
    """The server-sent events of a streamed answer: a chunk per piece of text, the last with
    the finish reason (and, asked for, one with the usage), then ``[DONE]``."""
    kind = "chat.completion.chunk" if chat else "text_completion"

    def chunk(piece, finish=None, role=False):
        if chat:
            delta = ({"role": "assistant"} if role else {}) | ({} if finish else {"content": piece})
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        else:
            choice = {"index": 0, "text": piece, "logprobs": None, "finish_reason": finish}
        body = {**head, "object": kind, "choices": [choice], "truncated_tokens": dropped}
        if usage is not None:
            body["usage"] = None
        return _sse(body)

    try:
        if chat:
            yield chunk("", role=True)
        async with contextlib.aclosing(pieces):      # closing the events closes the generation
            async for piece in pieces:
                if piece:
                    yield chunk(piece)
        yield chunk("", finish=answer.finish_reason)
        if usage is not None:
            yield _sse({**head, "object": kind, "choices": [], "usage": usage()})
    except Exception as exc:        # noqa: BLE001  the status line is sent: the error goes in the stream
        logger.exception("a streamed answer failed")
        message = str(exc)[:300] if isinstance(exc, ValueError) else "the server failed to finish this answer"
        yield _sse({"error": {"message": message, "type": "server_error", "param": None, "code": "generation_failed"}})
    yield "data: [DONE]\n\n"


def _sse(body: dict) -> str:
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


class _EventStream(StreamingResponse):
    """A ``text/event-stream`` answer whose generator is closed however the sending ends, so a
    client that went away cancels its generation at once (the ASGI server reports it as an
    error from ``send``, which leaves a plain StreamingResponse's generator to the collector)."""

    def __init__(self, events):
        super().__init__(events, media_type="text/event-stream",
                         headers={"cache-control": "no-store", "x-accel-buffering": "no"})

    async def stream_response(self, send) -> None:
        try:
            await super().stream_response(send)
        finally:
            await self.body_iterator.aclose()
