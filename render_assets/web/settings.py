"""What the progress server needs to know; the CLI fills it from `render_assets.config`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class WebSettings:
    redis_url: str
    queue_name: str
    database_url: str
    lock_duration_ms: int = 60_000
    events_prefix: str = "render-events:"
    sse_secret: str | None = None
    keepalive_s: float = 15.0
    # A file:// storage root is served at /files, and URLs under it are rewritten to point there.
    storage_url: str | None = None
    examples_dir: Path | None = None
    # Origins whose pages may call this server from the browser (CORS); none: same origin only.
    cors_origins: tuple[str, ...] = ()
    # How long the stream watcher blocks in XREAD before it looks for newly watched renders.
    watch_block_ms: int = 500
    # A render cancelled after its image was made is refunded too (RENDER_CANCEL_REFUND_AFTER_GENERATION).
    cancel_refund_after_generation: bool = False

    def __post_init__(self) -> None:
        if not self.keepalive_s > 0:
            raise ValueError(f"RENDER_SSE_KEEPALIVE_S must be a positive number of seconds, got {self.keepalive_s}")
