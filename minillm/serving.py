"""A trained model behind a REST API (the chapter's deployment step, sections 3.6 and 5.6).

The chapter serves its model with Flask's debug server and a pickled ``torch.load``.
Here a FastAPI app runs under uvicorn, bound to 127.0.0.1 unless told otherwise, and
loads the run's safetensors checkpoint once, at start-up, in either backend:

    POST /v1/generate   prompt -> continuation (causal LM runs)
    POST /v1/classify   text -> label and class probabilities (fine-tuned runs)
    POST /v1/score      text -> loss and perplexity (causal LM runs)
    POST /v1/translate  text -> translation, greedy or beam search (translation runs)
    POST /v1/answer     context + question -> answer span (question-answering runs)
    GET  /health        liveness
    GET  /v1/model      task, backend, model config, tokenizer summary, limits
    GET  /openapi.json  the schema of all of the above

/v1/translate and /v1/answer also say how much of the input the model knows and whether
it has the shape of the training corpus, with a warning when not (:mod:`minillm.apps.input_checks`).

Bad input is answered with a 4xx and a message, never a 5xx, and nothing in a request
can name a file: every request is checked up-front (pydantic models that forbid
unknown fields, limits on text length, on tokens against ``block_size`` and on
``max_new_tokens``), and the request body is counted as it streams in, by
:class:`BodySizeLimit`, so an oversized body is refused with 413 before it is read.
Words the tokenizer does not know become ``<unk>``, as in training.

The reference layers keep their caches on ``self``, so one model must not run two
forwards at once: inference runs in FastAPI's thread pool behind one lock. Sampling
draws from ``numpy.random.default_rng(seed)`` per request, so one request (same prompt,
same seed) gives the same tokens over HTTP as :func:`minillm.train.generation.generate`
called directly, in both backends.

FastAPI and uvicorn are the ``serve`` extra: ``pip install 'minillm[serve]'``.

Dimension legend:
    T   block_size, the most positions the model sees
    n   tokens of one request's text
    K   classes of a classifier
"""
import ipaddress
import json
import logging
import math
import secrets
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Literal, Optional

import numpy as np

from .core._optional import import_optional, missing_extra

try:  # the `serve` extra: FastAPI brings starlette, pydantic and anyio
    import anyio
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt
    from starlette.exceptions import HTTPException as StarletteHTTPException
except ImportError as exc:  # tests/test_optional_extras.py simulates each missing module
    raise missing_extra(exc, "minillm serve (minillm.serving)", "serve") from exc

from .data.batching import pad_batch
from .reference.softmax import softmax
from .store.runs import load_run
from .train.generation import generate

__all__ = ["Limits", "BodySizeLimit", "create_app", "serve"]

logger = logging.getLogger("minillm")

MAX_SEED = 2**63 - 1          # numpy's default_rng takes any int >= 0; keep seeds in int64
MAX_TOP_K = 2**31 - 1
MAX_TEMPERATURE = 1e4         # a bound for the schema, far above any useful temperature
MAX_BEAM = 8                  # beam search runs one decoder call per step for the whole beam
MAX_LENGTH_PENALTY = 10.0


@dataclass(frozen=True)
class Limits:
    """What one request may ask for.

    ``max_body_bytes`` bounds the request body (413 beyond it); ``max_text_chars`` the
    prompt or text before tokenizing; ``max_new_tokens`` one generation. The prompt's
    length in tokens is bounded by the model itself: at most ``block_size`` tokens for
    generation and classification, ``block_size + 1`` for scoring (T inputs predict T
    targets).
    """

    max_body_bytes: int = 64 * 1024
    max_text_chars: int = 16 * 1024
    max_new_tokens: int = 256

    def __post_init__(self):
        for name, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Limits.{name} must be an int >= 1, got {value!r}")


# -- errors -------------------------------------------------------------------------------

def _error(status: int, kind: str, message: str, details: list | None = None) -> JSONResponse:
    """Every error has one shape: ``{"error": kind, "message": ..., ["details": [...]]}``."""
    body = {"error": kind, "message": message}
    if details:
        body["details"] = details
    return JSONResponse(body, status_code=status, headers={"cache-control": "no-store"})


class BadRequest(Exception):
    """A request that is well-formed but cannot be served (too many tokens, wrong task)."""

    def __init__(self, status: int, kind: str, message: str):
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


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
        return _error(415, "unsupported_media_type",
                      "expected JSON (Content-Type: application/json), got a body without a Content-Type header")
    if content_type and not _is_json(content_type):
        return _error(415, "unsupported_media_type",
                      f"expected JSON (Content-Type: application/json), got Content-Type: {content_type[:100]}")
    if any(err.get("type") == "json_invalid" for err in exc.errors()):
        try:
            json.loads(await request.body())       # the body was read and kept by FastAPI
        except json.JSONDecodeError as e:
            return _error(400, "invalid_json", f"expected a JSON body: {e.msg} at line {e.lineno} column {e.colno}")
        except (UnicodeDecodeError, RecursionError, ValueError):
            pass
        return _error(400, "invalid_json", "expected a JSON body")
    return None


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        refused = await _body_error(request, exc)
        if refused is not None:
            return refused
        details = _validation_details(exc)
        summary = "; ".join(f"{'.'.join(d['loc'])}: {d['message']}" for d in details[:5])
        return _error(422, "invalid_request", summary or "the request body is not valid", details)

    @app.exception_handler(BadRequest)
    async def bad(request: Request, exc: BadRequest):
        return _error(exc.status, exc.kind, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return _error(exc.status_code, "http_error", str(exc.detail))

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception):
        # a bug, not bad input: logged here in full, answered without a traceback or a path
        logger.exception("internal error while serving %s %s", request.method, request.url.path)
        return _error(500, "internal_error", "the server failed to handle this request")


# -- the body-size limit ------------------------------------------------------------------

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

    async def _refuse(self, send, status: int, kind: str, message: str) -> None:
        body = json.dumps({"error": kind, "message": message}).encode()
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
                await self._refuse(send, 400, "bad_request", "Content-Length must be a non-negative integer")
                return
            if int(declared) > self.max_bytes:
                if int(declared) <= self.linger_bytes and headers.get(b"expect", b"").lower() != b"100-continue":
                    await self._discard(receive, more=True)
                await self._refuse(send, 413, "payload_too_large", too_big)
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
                await self._refuse(send, 413, "payload_too_large", too_big)
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


# -- request and response models ----------------------------------------------------------

def _request_models(limits: Limits):
    """The request bodies, with this server's limits in their schema (so in /openapi.json).

    Numbers are strict (``"0.5"`` and ``true`` are not numbers; NaN and infinities are
    refused); pydantic's ``str`` refuses lone surrogates (legal in JSON as ``"\\ud800"``,
    but not text), so the tokenizer only ever sees text it can encode.
    """
    Text = Annotated[str, Field(max_length=limits.max_text_chars)]
    strict = ConfigDict(extra="forbid")

    class GenerateRequest(BaseModel):
        model_config = strict
        prompt: Text = Field("", description="the text to continue; empty starts from <bos>")
        max_new_tokens: StrictInt = Field(min(32, limits.max_new_tokens), ge=0, le=limits.max_new_tokens)
        temperature: StrictFloat = Field(0.8, ge=0.0, le=MAX_TEMPERATURE, allow_inf_nan=False,
                                   description="0 = greedy (argmax)")
        top_k: Optional[StrictInt] = Field(None, ge=1, le=MAX_TOP_K)
        top_p: Optional[StrictFloat] = Field(None, gt=0.0, le=1.0, allow_inf_nan=False)
        seed: Optional[StrictInt] = Field(None, ge=0, le=MAX_SEED,
                                          description="same seed, same prompt: same tokens; "
                                                      "omitted: a fresh seed, returned in the answer")

    class TextRequest(BaseModel):
        model_config = strict
        text: Text = Field(..., min_length=1)

    class ClassifyRequest(TextRequest):
        pass

    class ScoreRequest(TextRequest):
        pass

    class TranslateRequest(TextRequest):
        beam_size: StrictInt = Field(1, ge=1, le=MAX_BEAM, description="1 = greedy decoding")
        length_penalty: StrictFloat = Field(0.6, ge=0.0, le=MAX_LENGTH_PENALTY, allow_inf_nan=False,
                                            description="alpha of ((5 + |y|) / 6)^alpha (beam search)")

    class AnswerRequest(BaseModel):
        model_config = strict
        context: Text = Field(..., min_length=1)
        question: Text = Field(..., min_length=1)

    return GenerateRequest, ClassifyRequest, ScoreRequest, TranslateRequest, AnswerRequest


class GenerateResponse(BaseModel):
    text: str
    tokens: list[int]
    prompt_tokens: list[int]
    finish_reason: Literal["eos", "length"]
    seed: int


class ClassifyResponse(BaseModel):
    label: str
    label_id: int
    probabilities: dict[str, float]
    tokens: int


class ScoreResponse(BaseModel):
    loss: float
    perplexity: Optional[float] = Field(description="e^loss; null where it overflows float64")
    tokens: int


class InputChecks(BaseModel):
    """What the model can vouch for (minillm.apps.input_checks): a ``warning`` is set when some
    input tokens are unknown to the model or the input is not of the training corpus's shape."""
    unknown_tokens: int = Field(description="input tokens the model's tokenizer does not know (<unk>)")
    unknown_share: float = Field(description="unknown_tokens / the input's tokens, in [0, 1]")
    in_domain: bool = Field(description="whether the input has the shape of the corpus the model was trained on")
    confidence: float = Field(description="the model's own probability for its output, in [0, 1]")
    warning: Optional[str] = Field(description="why the output is unreliable; null when nothing is flagged")


class TranslateResponse(InputChecks):
    translation: str
    tokens: int
    # confidence: exp of the mean log-probability of the output's pieces and its <eos>


class AnswerResponse(InputChecks):
    answer: str
    start: int = Field(description="index of the answer's first piece in the context's pieces")
    end: int = Field(description="index of its last piece (inclusive)")
    tokens: int = Field(description="the question's and the context's tokens")
    # confidence: the span's probability among the allowed spans


class ErrorResponse(BaseModel):
    error: str
    message: str
    details: Optional[list[dict]] = None


ERRORS = {status: {"model": ErrorResponse} for status in (400, 413, 415, 422)}


# -- the app ------------------------------------------------------------------------------

class _Model:
    """The loaded run and one lock: the reference layers keep caches on ``self``."""

    def __init__(self, run_folder, backend: str, device: str, fused: bool = True):
        run = load_run(run_folder, backend=backend, device=device, fused=fused)
        self.runtime, self.model, self.tokenizer, self.task = run.runtime, run.model, run.tokenizer, run.task
        # the run's data contract: label names in id order, where the data came from
        self.data = _public_contract(dict(run.data))
        # the checkpoint's name and step: no server path leaves the server
        self.checkpoint = {"name": run.checkpoint.name, "step": run.step}
        self.label_names = run.label_names
        if self.task == "classification" and len(self.label_names) != self.model.n_classes:
            raise ValueError(f"{run_folder}: the run names {len(self.label_names)} labels "
                             f"{self.label_names}, its classifier has {self.model.n_classes} classes")
        self.config = self.model.config
        self.model.eval()
        self.lock = threading.Lock()

    def require(self, task: str, endpoint: str) -> None:
        if self.task != task:
            raise BadRequest(400, "wrong_task", f"{endpoint} needs a {task} run; this server runs a "
                                                f"{self.task} model")

    def encode(self, text: str, max_tokens: int, what: str) -> list[int]:
        ids = self.tokenizer.encode(text)
        if len(ids) > max_tokens:
            raise BadRequest(422, "too_many_tokens", f"{what} has {len(ids)} tokens; this model takes at most "
                                                     f"{max_tokens} (block_size = {self.config.block_size})")
        return ids


def _checks(out) -> dict:
    """The :class:`InputChecks` fields of a :class:`minillm.apps.input_checks.Checked`."""
    return {k: getattr(out, k) for k in InputChecks.model_fields}


def _public_contract(contract: dict | None) -> dict | None:
    """The run's data contract without local paths: a file is named by its name only."""
    if not contract:
        return None
    dataset = dict(contract.get("dataset") or {})
    if dataset.get("source") not in (None, "", "python_docs", "sentiment"):
        dataset["source"] = Path(dataset["source"]).name
    return {**contract, "dataset": dataset}


def create_app(run_folder, backend: str = "numpy", device: str = "cpu", limits: Limits | None = None,
               fused: bool = True) -> FastAPI:
    """The FastAPI app serving the run in ``run_folder`` (loaded now, once); ``fused``
    (torch): the fast path (default) or the explicit formulas."""
    limits = limits or Limits()
    served = _Model(run_folder, backend, device, fused)
    tok, cfg, T = served.tokenizer, served.config, served.config.block_size
    GenerateRequest, ClassifyRequest, ScoreRequest, TranslateRequest, AnswerRequest = _request_models(limits)

    app = FastAPI(title="minillm", version="1", debug=False, docs_url=None, redoc_url=None,
                  description="A minillm run served over HTTP (the docs pages are off: they load "
                              "scripts from a CDN, and minillm runs offline).")
    _install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=limits.max_body_bytes)

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.get("/v1/model")
    def model_info() -> dict:
        return {"task": served.task, "backend": backend, "device": device,
                "fused": served.runtime.runs_fused, "config": cfg.to_dict(),
                "tokenizer": {"type": tok.kind, "vocab_size": tok.vocab_size,
                              "special_tokens": list(tok.special_tokens)},
                "label_names": served.label_names if served.task == "classification" else None,
                "checkpoint": served.checkpoint, "data": served.data,
                "limits": {**asdict(limits), "max_prompt_tokens": T}}

    @app.post("/v1/generate", response_model=GenerateResponse, responses=ERRORS)
    def generate_endpoint(req: GenerateRequest) -> GenerateResponse:
        served.require("causal_lm", "/v1/generate")
        prompt_ids = served.encode(req.prompt, T, "the prompt") or [tok.bos_id]
        seed = req.seed if req.seed is not None else secrets.randbits(63)
        with served.lock:
            new = generate(served.runtime, served.model, prompt_ids, req.max_new_tokens,
                           temperature=req.temperature, top_k=req.top_k, top_p=req.top_p, seed=seed,
                           eos_id=tok.eos_id)          # with the KV cache, as the library's default
        finish = "eos" if new and new[-1] == tok.eos_id else "length"
        return GenerateResponse(text=tok.decode(new, skip_special_tokens=True), tokens=new,
                                prompt_tokens=prompt_ids, finish_reason=finish, seed=seed)

    @app.post("/v1/classify", response_model=ClassifyResponse, responses=ERRORS)
    def classify(req: ClassifyRequest) -> ClassifyResponse:
        r"""Class probabilities :math:`p = \mathrm{softmax}(\ell)` of the fine-tuned head (section 5.4)."""
        served.require("classification", "/v1/classify")
        ids = served.encode(req.text, T, "the text")
        if not ids:
            raise BadRequest(422, "empty_text", "the text has no tokens")
        idx, mask = pad_batch([ids], tok.pad_id, max_len=T)         # (1, T), (1, T) as in evaluation
        with served.lock, served.runtime.no_grad():
            logits, _ = served.model(served.runtime.tensor(idx), attention_mask=served.runtime.tensor(mask))
            logits = served.runtime.to_numpy(logits)[0].astype(np.float64)   # (K,)
        p = softmax(logits)                                           # (K,)
        k = int(np.argmax(p))
        return ClassifyResponse(label=served.label_names[k], label_id=k, tokens=len(ids),
                                probabilities={name: float(q) for name, q in zip(served.label_names, p)})

    @app.post("/v1/score", response_model=ScoreResponse, responses=ERRORS)
    def score(req: ScoreRequest) -> ScoreResponse:
        r"""Mean next-token loss of the text and its perplexity (section 3.5):

        .. math:: L = -\frac{1}{n-1}\sum_{t=2}^{n} \log p(x_t \mid x_{<t}), \quad \mathrm{PPL} = e^{L}
        """
        served.require("causal_lm", "/v1/score")
        ids = served.encode(req.text, T + 1, "the text")
        if len(ids) < 2:
            raise BadRequest(422, "too_few_tokens", f"scoring needs at least 2 tokens (one to predict from, "
                                                    f"one to predict), the text has {len(ids)}")
        x = np.asarray([ids[:-1]], dtype=np.int64)                    # (1, n-1), n-1 <= T
        y = np.asarray([ids[1:]], dtype=np.int64)                     # (1, n-1)
        with served.lock, served.runtime.no_grad():
            _, loss = served.model(served.runtime.tensor(x), served.runtime.tensor(y))
            loss = float(served.runtime.to_numpy(loss))
        perplexity = math.exp(loss) if loss < math.log(np.finfo(np.float64).max) else None
        return ScoreResponse(loss=loss, perplexity=perplexity, tokens=len(ids) - 1)

    @app.post("/v1/translate", response_model=TranslateResponse, responses=ERRORS)
    def translate_endpoint(req: TranslateRequest) -> TranslateResponse:
        r"""The encoder-decoder's translation (section 6.2): greedy, or beam search with the
        length penalty :math:`((5 + |y|)/6)^\alpha` when ``beam_size`` > 1."""
        from .apps.translation import translate_checked

        served.require("translation", "/v1/translate")
        n = len(served.encode(req.text, T, "the text"))
        if n == 0:
            raise BadRequest(422, "empty_text", "the text has no tokens")
        with served.lock:
            out = translate_checked(served.model, served.runtime, tok, [req.text], req.beam_size,
                                    req.length_penalty)[0]
        return TranslateResponse(translation=out.text, tokens=n, **_checks(out))

    @app.post("/v1/answer", response_model=AnswerResponse, responses=ERRORS)
    def answer_endpoint(req: AnswerRequest) -> AnswerResponse:
        r"""The span of the context that answers the question (section 6.3):
        :math:`\arg\max_{i \le j} s_i + e_j` over the context's pieces."""
        from .apps.question_answering import answer_checked

        served.require("question_answering", "/v1/answer")
        n_q = len(served.encode(req.question, T, "the question"))
        n_c = len(served.encode(req.context, T, "the context"))
        if n_q == 0 or n_c == 0:
            raise BadRequest(422, "empty_text", "the context and the question need at least one token each")
        if n_q + n_c + 3 > T:
            raise BadRequest(422, "too_many_tokens", f"question ({n_q} tokens) + context ({n_c}) + 3 special "
                                                     f"tokens exceed this model's block_size = {T}")
        with served.lock:
            out = answer_checked(served.model, served.runtime, tok, [req.context], [req.question])[0]
        return AnswerResponse(answer=out.text, start=out.start, end=out.end, tokens=out.tokens, **_checks(out))

    app.state.minillm = served
    return app


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(run_folder, *, host: str = "127.0.0.1", port: int = 8000, backend: str = "numpy",
          device: str = "cpu", limits: Limits | None = None, log_level: str = "info",
          fused: bool = True) -> None:
    """Serve ``run_folder`` with uvicorn until interrupted (no reload, no debug)."""
    uvicorn = import_optional("uvicorn", "minillm serve (minillm.serving)")

    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be an int in [0, 65535], got {port!r}")
    app = create_app(run_folder, backend, device, limits, fused)
    if not _is_loopback(host):
        logger.warning("serving on %s: reachable from other machines, with no authentication", host)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=log_level == "debug")
