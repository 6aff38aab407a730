"""Serving the HTTP app with uvicorn: one process, or several sharing their metrics."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import Any

from adapters import metrics
from adapters.settings import ServiceSettings

# uvicorn's fast event loop and HTTP parser, named so a missing one fails at start-up instead
# of silently falling back to the slow ones.
FAST_SERVER: dict[str, Any] = {"loop": "uvloop", "http": "httptools"}


def serve(
    build: Callable[[], Any],
    factory: str,
    config: ServiceSettings,
    host: str,
    port: int,
    *,
    processes: int = 1,
) -> None:
    """Serve the app ``build`` makes (one process), or ``processes`` copies of the app the
    ``factory`` import path makes, until stopped.

    With several processes, metrics go through ``PROMETHEUS_MULTIPROC_DIR`` (a fresh temporary
    directory unless set), so the internal listener (``METRICS_LISTEN``), in this parent
    process, serves them all added up. The client address is decided by ``TRUSTED_PROXIES``
    (``adapters.client_address``), not by uvicorn, whose own ``X-Forwarded-For`` handling
    trusts any peer on 127.0.0.1 by default. The event loop is uvloop's and HTTP is parsed by
    httptools (both pinned): uvicorn's pure-Python defaults cost about a third of a small
    request's time (docs/performance.md). Logging is the app's own (``LOG_FORMAT``, one line
    per request with its route), not uvicorn's.
    """
    import uvicorn

    temporary = None
    if config.metrics_listen:
        temporary = metrics.serve_for_processes(config.metrics_listen, processes)
        print(f"metrics on http://{config.metrics_listen}/metrics (internal)", flush=True)
    print(f"PeerPush Ledger on http://{host}:{port}  (OpenAPI: /docs)", flush=True)
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_config": None,  # the app's own (LOG_FORMAT), set in each server process
        "access_log": False,  # one line per request comes from the app, with its route
        "proxy_headers": False,
        **FAST_SERVER,
    }
    if processes <= 1:
        uvicorn.run(build(), **options)
        return
    try:
        uvicorn.run(
            factory,
            factory=True,
            workers=processes,
            # uvicorn kills a process that does not answer its ping in 5 s; one still
            # building its services on a busy host is not hung (seen under load)
            timeout_worker_healthcheck=30,
            **options,
        )
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)
