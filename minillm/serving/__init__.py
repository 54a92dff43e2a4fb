"""A trained model behind a REST API (the chapter's deployment step, sections 3.6 and 5.6).

The chapter serves its model with Flask's debug server and a pickled ``torch.load``.
Here a FastAPI app runs under uvicorn, bound to 127.0.0.1 unless told otherwise, and
loads the run's safetensors checkpoint once, at start-up, in either backend::

    POST /v1/generate   prompt -> continuation (causal LM runs)
    POST /v1/classify   text -> label and class probabilities (fine-tuned runs)
    POST /v1/score      text -> loss and perplexity (causal LM runs)
    POST /v1/translate  text -> translation, greedy or beam search (translation runs)
    POST /v1/answer     context + question -> answer span (question-answering runs)
    GET  /v1/models            the OpenAI API (minillm.serving.openai_api): the served model,
    POST /v1/completions       a prompt's continuation,
    POST /v1/chat/completions  a conversation's answer through the model's chat template;
                               streamed as server-sent events with "stream": true
    GET  /              the chat page (streams from /v1/chat/completions)
    GET  /health        liveness
    GET  /v1/model      task, backend, model config, tokenizer summary, limits
    GET  /openapi.json  the schema of all of the above

The ``POST`` endpoints are the tasks' own: each task declares its endpoints in its
:class:`~minillm.train.spec.TaskSpec` (:class:`~minillm.train.spec.Endpoint`: a path,
the request's and the answer's fields, a handler), and the app serves those of every
registered task; one that is not the served run's answers 400 ``wrong_task``.

Generation, in ``/v1/generate`` and the OpenAI API, goes through one engine
(:mod:`~minillm.serving.engine`): the requests in flight are decoded together, one batched
forward step per token, on a thread of its own (never the event loop's); each gets the
tokens it gets alone, and a client of the OpenAI API that goes away stops its generation.

Who may call it (:mod:`~minillm.serving.access`): anyone on this machine when bound to
loopback; bound to another address it refuses to start without an API key, and then
every request but the chat page's ``GET /`` needs ``Authorization: Bearer <key>``.
CORS is off unless origins are named.

One file a job: :mod:`~minillm.serving.access` (who may call it),
:mod:`~minillm.serving.limits` (what a request may ask for),
:mod:`~minillm.serving.errors` (one error shape per API), :mod:`~minillm.serving.middleware`
(the body-size limit), :mod:`~minillm.serving.schemas` (an endpoint's fields as pydantic
models), :mod:`~minillm.serving.model` (the loaded run and its lock),
:mod:`~minillm.serving.engine` (generation, batched), :mod:`~minillm.serving.openai_api`
(the OpenAI API),
:mod:`~minillm.serving.page` (the chat page, ``static/chat.html``),
:mod:`~minillm.serving.app` (the app), :mod:`~minillm.serving.run` (uvicorn).

Bad input is answered with a 4xx and a message, never a 5xx, and nothing in a request
can name a file. FastAPI and uvicorn are the ``serve`` extra: ``pip install 'minillm[serve]'``.
"""
from ..core._optional import missing_extra

try:  # the `serve` extra: FastAPI brings starlette, pydantic and anyio
    import anyio  # noqa: F401
    import fastapi  # noqa: F401
    import pydantic  # noqa: F401
    import starlette  # noqa: F401
except ImportError as exc:  # tests/core/test_optional_extras.py simulates each missing module
    raise missing_extra(exc, "minillm serve (minillm.serving)", "serve") from exc

from .access import API_KEY_ENV, Access  # noqa: E402
from .app import create_app  # noqa: E402
from .limits import Limits  # noqa: E402
from .middleware import BodySizeLimit  # noqa: E402
from .run import serve  # noqa: E402

__all__ = ["API_KEY_ENV", "Access", "Limits", "BodySizeLimit", "create_app", "serve"]
