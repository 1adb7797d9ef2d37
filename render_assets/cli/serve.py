"""`render-assets serve`: the progress server (SSE, status, demo page, health, metrics)."""

from __future__ import annotations

import argparse
from pathlib import Path

from render_assets import config
from render_assets.services.backends import BackendSettings
from render_assets.web.server import serve
from render_assets.web.settings import WebSettings


def cmd_serve(args: argparse.Namespace) -> int:
    settings = WebSettings.of(
        BackendSettings.from_environment(),
        sse_secret=config.RENDER_SSE_SECRET.value(),
        keepalive_s=config.number(config.RENDER_SSE_KEEPALIVE_S),
        cors_origins=tuple(
            origin.strip() for origin in (config.RENDER_SSE_CORS_ORIGINS.value() or "").split(",") if origin.strip()
        ),
        examples_dir=Path(args.examples),
    )
    serve(settings, host=args.host, port=args.port)
    return 0
