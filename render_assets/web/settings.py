"""What the progress server needs to know; the CLI fills it from `render_assets.config`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from render_assets.persistence.database import Database
from render_assets.services.backends import Backends, BackendSettings, QueueSettings


@dataclass(frozen=True)
class WebSettings:
    queue: QueueSettings  # the worker's queue and event streams, as the worker reads them
    database_url: str
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

    @classmethod
    def of(cls, backends: BackendSettings, **options: Any) -> WebSettings:
        """The worker's back-ends (`BackendSettings.from_environment()`) and the server's own options."""
        return cls(
            queue=backends.queue,
            database_url=backends.database.url,
            storage_url=backends.storage.url,
            cancel_refund_after_generation=backends.cancel_refund_after_generation,
            **options,
        )

    def backends(self) -> Backends:
        """The database, queue, event streams and cancel signals the server's requests act on
        (cancel, enqueue): the same clients, opened the same way, as the worker's."""
        return Backends(
            database=Database(self.database_url),  # the server's own engine, disposed when it stops
            queue=self.queue.open_queue(),
            events=self.queue.open_events(),
            cancel_signals=self.queue.open_cancel_signals(),
            cancel_refund_after_generation=self.cancel_refund_after_generation,
        )
