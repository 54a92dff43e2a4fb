"""``serve``: the app under uvicorn, until interrupted (no reload, no debug)."""
from __future__ import annotations

import ipaddress
import logging

from ..core._optional import import_optional
from ..store.runtime import Runtime
from .app import create_app
from .limits import Limits

__all__ = ["serve"]

logger = logging.getLogger("minillm")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(run_folder, runtime: Runtime | None = None, *, host: str = "127.0.0.1", port: int = 8000,
          limits: Limits | None = None, log_level: str = "info") -> None:
    """Serve ``run_folder`` in ``runtime`` (default ``Runtime()``) with uvicorn until interrupted."""
    uvicorn = import_optional("uvicorn", "minillm serve (minillm.serving)")

    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be an int in [0, 65535], got {port!r}")
    app = create_app(run_folder, runtime, limits)
    if not _is_loopback(host):
        logger.warning("serving on %s: reachable from other machines, with no authentication", host)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=log_level == "debug")
