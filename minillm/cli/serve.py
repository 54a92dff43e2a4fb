"""``minillm serve``: a run behind the REST API (:mod:`minillm.serving`; the ``serve`` extra)."""
from __future__ import annotations

from pathlib import Path

from .options import PORT, POSITIVE_INT, add_runtime_args, runtime_of

__all__ = ["add_parsers", "cmd_serve"]


def cmd_serve(a) -> int:
    from .. import serving  # lazily: FastAPI and uvicorn are the optional `serve` extra
    limits = serving.Limits(max_body_bytes=a.max_body_bytes, max_text_chars=a.max_text_chars,
                            max_new_tokens=a.max_new_tokens)
    serving.serve(a.run, runtime_of(a), host=a.host, port=a.port, limits=limits)
    return 0


def add_parsers(sub, command) -> None:
    p = command(sub, "serve", help="serve a run over HTTP (FastAPI + uvicorn; needs the 'serve' extra)")
    p.add_argument("run", type=Path, help="a run folder or a checkpoint folder")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s, this machine only)")
    p.add_argument("--port", type=PORT, default=8000, help="port to listen on")
    add_runtime_args(p)
    p.add_argument("--max-new-tokens", type=POSITIVE_INT, default=256, help="per request (default: %(default)s)")
    p.add_argument("--max-text-chars", type=POSITIVE_INT, default=16384, help="prompt/text length (default: %(default)s)")
    p.add_argument("--max-body-bytes", type=POSITIVE_INT, default=65536, help="request body; larger gets 413 "
                                                                     "(default: %(default)s)")
    p.set_defaults(func=cmd_serve)
