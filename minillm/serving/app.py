"""``create_app``: the FastAPI app of one run, its endpoints derived from the registered
tasks (:data:`minillm.train.spec.TASK_SPECS`), never from a list kept here, and the OpenAI
API beside them (:mod:`~minillm.serving.openai_api`). Routes are added here, and only here."""

from dataclasses import asdict

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from .. import apps  # noqa: F401  (registers the applications' tasks)
from ..store.runtime import Runtime
from ..train import task_specs  # noqa: F401  (registers the training layer's tasks)
from ..train.spec import LONG_INPUT, TASK_SPECS, Endpoint, Refused
from .access import Access, RequireApiKey
from .errors import install_error_handlers
from .limits import Limits
from .middleware import BodySizeLimit
from .model import ServedRun
from .openai_api import add_openai_routes
from .page import add_chat_page
from .schemas import ERRORS, model_of, schema_name

__all__ = ["create_app"]


def _route(app: FastAPI, served: ServedRun, tasks: tuple[str, ...], endpoint: Endpoint, limits: Limits) -> None:
    """``POST endpoint.path``: the body checked against the endpoint's request model, the
    served run's task against the ``tasks`` that declare the endpoint, the handler's answer
    against its response model."""
    Request = model_of(schema_name(endpoint.path, "Request"), endpoint.request, limits, request=True)
    Response = model_of(schema_name(endpoint.path, "Response"), endpoint.response, limits, request=False)

    def handle(req: Request) -> Response:         # FastAPI runs it in its thread pool
        if served.task not in tasks:
            raise Refused(400, "wrong_task", f"{endpoint.path} needs a {' or '.join(tasks)} run; this server "
                                             f"runs a {served.task} model")
        return Response(**endpoint.handler(served, req.model_dump()))

    handle.__name__ = schema_name(endpoint.path, "")
    app.post(endpoint.path, response_model=Response, responses=ERRORS, description=endpoint.doc,
             name=handle.__name__)(handle)


def create_app(run_folder, runtime: Runtime | None = None, limits: Limits | None = None,
               access: Access | None = None) -> FastAPI:
    """The FastAPI app serving the run in ``run_folder`` (loaded now, once) in ``runtime``
    (default ``Runtime()``), with the endpoints of every registered task, open to whom
    ``access`` lets in (default ``Access()``: no key, no CORS)."""
    limits, access = limits or Limits(), access or Access()
    served = ServedRun(run_folder, runtime, limits)
    tok, cfg = served.tokenizer, served.config

    app = FastAPI(title="minillm", version="1", debug=False, docs_url=None, redoc_url=None,
                  description="A minillm run served over HTTP (the docs pages are off: they load "
                              "scripts from a CDN, and minillm runs offline).")
    install_error_handlers(app)
    # the last added runs first: CORS answers a browser's preflight (which carries no key),
    # then the key is checked, then the body's size
    app.add_middleware(BodySizeLimit, max_bytes=limits.max_body_bytes)
    if access.api_key is not None:
        app.add_middleware(RequireApiKey, api_key=access.api_key)
    if access.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(access.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["authorization", "content-type"], max_age=600)

    add_chat_page(app)

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.get("/v1/model")
    def model_info() -> dict:
        return {"task": served.task, "backend": served.runtime.backend, "device": served.runtime.device,
                "fused": served.runtime.runs_fused, "config": cfg.to_dict(),
                "tokenizer": {"type": tok.kind, "vocab_size": tok.vocab_size,
                              "special_tokens": list(tok.special_tokens)},
                "label_names": served.label_names or None,
                "checkpoint": served.checkpoint, "data": served.data,
                "limits": {**asdict(limits), "max_prompt_tokens": cfg.block_size},
                "long_input": LONG_INPUT}

    # an endpoint several tasks declare (a GPT trained as causal_lm, sft or dpo serves
    # /v1/generate) is one route serving each of them; two different endpoints at one path
    # are a bug
    routes: dict[str, tuple[Endpoint, tuple[str, ...]]] = {}
    for spec in TASK_SPECS.values():
        for endpoint in spec.endpoints:
            known, tasks = routes.get(endpoint.path, (endpoint, ()))
            if known is not endpoint:
                raise ValueError(f"tasks {tasks!r} and {spec.name!r} declare different endpoints at {endpoint.path}")
            routes[endpoint.path] = (endpoint, tasks + (spec.name,))
    for endpoint, tasks in routes.values():
        _route(app, served, tasks, endpoint, limits)
    add_openai_routes(app, served)
    app.state.minillm = served
    return app
