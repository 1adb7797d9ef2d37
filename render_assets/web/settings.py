"""What the progress server needs to know; the CLI fills it from `render_assets.config`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from render_assets.persistence.database import Database
from render_assets.services.backends import Backends, BackendSettings, QueueSettings


@dataclass(frozen=True)
class WebSettings:
    redis_url: str
    queue_name: str
    database_url: str
    lock_duration_ms: int = 60_000
    events_prefix: str = QueueSettings.events_prefix
    events_maxlen: int = QueueSettings.events_maxlen
    events_ttl_s: int = QueueSettings.events_ttl_s
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
        queue = backends.queue
        return cls(
            redis_url=queue.redis_url,
            queue_name=queue.queue_name,
            database_url=backends.database.url,
            lock_duration_ms=int(queue.lock_duration_s * 1000),
            events_prefix=queue.events_prefix,
            events_maxlen=queue.events_maxlen,
            events_ttl_s=queue.events_ttl_s,
            storage_url=backends.storage.url,
            cancel_refund_after_generation=backends.cancel_refund_after_generation,
            **options,
        )

    def backends(self) -> Backends:
        """The database, queue, event streams and cancel signals the server's requests act on
        (cancel, enqueue): the same clients, opened the same way, as the worker's."""
        queue = QueueSettings(
            redis_url=self.redis_url,
            queue_name=self.queue_name,
            lock_duration_s=self.lock_duration_ms / 1000,
            events_prefix=self.events_prefix,
            events_maxlen=self.events_maxlen,
            events_ttl_s=self.events_ttl_s,
        )
        return Backends(
            database=Database(self.database_url),  # the server's own engine, disposed when it stops
            queue=queue.open_queue(),
            events=queue.open_events(),
            cancel_signals=queue.open_cancel_signals(),
            cancel_refund_after_generation=self.cancel_refund_after_generation,
        )
