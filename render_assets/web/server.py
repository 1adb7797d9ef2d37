"""`render-assets serve`: the progress server on uvicorn."""

from __future__ import annotations

import uvicorn

from render_assets.observability.logs import install_record_scrubbing
from render_assets.web import access_log
from render_assets.web.app import create_app
from render_assets.web.settings import WebSettings

# Open SSE streams end on shutdown (sse-starlette watches uvicorn's exit flag); then stop waiting.
GRACEFUL_SHUTDOWN_S = 5


def serve(settings: WebSettings, *, host: str, port: int) -> None:
    install_record_scrubbing()
    access_log.install()
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_level="info",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        proxy_headers=False,
    )
