"""``minillm serve``: a run behind the REST API (:mod:`minillm.serving`; the ``serve`` extra)."""
from __future__ import annotations

import os
from pathlib import Path

from .options import PORT, POSITIVE_INT, add_runtime_args, runtime_of

__all__ = ["add_parsers", "cmd_serve"]


def cmd_serve(a) -> int:
    from .. import serving  # lazily: FastAPI and uvicorn are the optional `serve` extra
    limits = serving.Limits(max_body_bytes=a.max_body_bytes, max_text_chars=a.max_text_chars,
                            max_new_tokens=a.max_new_tokens)
    key = a.api_key if a.api_key is not None else (os.environ.get(serving.API_KEY_ENV) or None)  # set but empty: unset
    access = serving.Access(api_key=key, cors_origins=tuple(a.cors_origin))
    serving.serve(a.run, runtime_of(a), host=a.host, port=a.port, limits=limits, access=access)
    return 0


def add_parsers(sub, command) -> None:
    p = command(sub, "serve", help="serve a run over HTTP (FastAPI + uvicorn; needs the 'serve' extra)")
    p.add_argument("run", type=Path, help="a run folder or a checkpoint folder")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s, this machine only; "
                                                         "any other needs --api-key)")
    p.add_argument("--port", type=PORT, default=8000, help="port to listen on")
    p.add_argument("--api-key", metavar="KEY", help="every request then needs 'Authorization: Bearer KEY'; "
                   "required to bind an address other than loopback (default: the environment variable "
                   "MINILLM_API_KEY, which other users of this machine cannot read from the process list)")
    p.add_argument("--cors-origin", metavar="ORIGIN", action="append", default=[],
                   help="let pages from ORIGIN (scheme://host[:port]) call the API from a browser; repeatable "
                        "(default: CORS off)")
    add_runtime_args(p)
    p.add_argument("--max-new-tokens", type=POSITIVE_INT, default=256, help="per request (default: %(default)s)")
    p.add_argument("--max-text-chars", type=POSITIVE_INT, default=16384, help="prompt/text length (default: %(default)s)")
    p.add_argument("--max-body-bytes", type=POSITIVE_INT, default=65536, help="request body; larger gets 413 "
                                                                     "(default: %(default)s)")
    p.set_defaults(func=cmd_serve)
