"""``serve``: the app under uvicorn, until interrupted (no reload, no debug)."""
from __future__ import annotations

import logging

from ..core._optional import import_optional
from ..store.runtime import Runtime
from .access import Access, check_exposure, is_loopback
from .app import create_app
from .limits import Limits

__all__ = ["serve"]

logger = logging.getLogger("minillm")


def serve(run_folder, runtime: Runtime | None = None, *, host: str = "127.0.0.1", port: int = 8000,
          limits: Limits | None = None, access: Access | None = None, log_level: str = "info") -> None:
    """Serve ``run_folder`` in ``runtime`` (default ``Runtime()``) with uvicorn until
    interrupted; a ``host`` other than loopback needs ``access.api_key``
    (:func:`~minillm.serving.access.check_exposure`), checked before the run is loaded."""
    uvicorn = import_optional("uvicorn", "minillm serve (minillm.serving)")

    access = access or Access()
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be an int in [0, 65535], got {port!r}")
    check_exposure(host, access)
    app = create_app(run_folder, runtime, limits, access)
    if not is_loopback(host):
        logger.info("serving on %s, reachable from other machines; every request needs the API key", host)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=log_level == "debug")
