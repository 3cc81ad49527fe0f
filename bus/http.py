"""The platform's HTTP server: one FastAPI app that `govbus serve` hosts with uvicorn.

Packages add their routes through the `govbus.http` entry-point group (the catalogue's REST
API; the SOAP gateway next), each an `install(app, context)`. OpenAPI is at /docs.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import uvicorn
from fastapi import FastAPI

from bus.app import Context, plugins
from bus.worker import settle_heap

log = logging.getLogger("govbus.http")


def create_app(context: Context) -> FastAPI:
    app = FastAPI(
        title="govbus",
        description="The government data-sharing and exchange platform: resource catalogue and exchange.",
        version="0.1.0",
    )

    @app.get("/health", tags=["platform"])
    def health() -> dict[str, Any]:
        return {"status": "ok", "embedded": context.settings.embedded}

    for name, entry in sorted(plugins("govbus.http").items()):
        entry.load()(app, context)
        log.info("HTTP: %s routes installed", name)
    return app


def serve_http(context: Context, host: str, port: int, stop: threading.Event) -> None:
    """Serve the app until SIGTERM, Ctrl-C or `stop` (set when the stages end on their own, say
    on a lost broker); then set `stop` so that the stages end too."""
    app = create_app(context)
    settle_heap()  # the app's objects too: else each full collection walks them all again
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                            lifespan="off")
    server = uvicorn.Server(config)
    log.info("HTTP on http://%s:%d (OpenAPI at /docs)", host, port)

    def exit_with_the_stages() -> None:
        stop.wait()
        server.should_exit = True

    threading.Thread(target=exit_with_the_stages, name="http-stop", daemon=True).start()
    try:
        server.run()
    finally:
        stop.set()
