"""The stages' back-ends in one object, built by one factory from configuration.

Every stage talks to the same four systems: the renders database, blob storage, the BullMQ queue
and the progress publisher over them (the row, the job and the render's event stream).
`Backends` holds them for a process; `BackendSettings.from_environment()` is where the CLI and
the progress server read them from the environment, and Dagster's resources (one per system, so
tests and the UI can override one at a time) are filled from the same option functions and open
their clients through the same settings. Providers, breakers and budgets stay explicit: only
generation uses them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, cached_property
from typing import TYPE_CHECKING, Any

from render_assets import config
from render_assets.adapters.blob_storage import DEFAULT_SIGNED_URL_TTL_S, BlobStore, RetrySettings, open_blob_store
from render_assets.adapters.bullmq_queue import BullQueue
from render_assets.adapters.cancel_signals import CancelSignals
from render_assets.adapters.event_stream import EventStream
from render_assets.persistence.database import Database
from render_assets.services.progress import ProgressPublisher

if TYPE_CHECKING:
    from google.cloud.storage import Client as GcsClient

# How a variable becomes an option: its value (CLI, progress server) or, for Dagster's resources,
# an `EnvVar` when set, so secrets stay out of the UI and run config.
Read = Callable[[config.Variable], Any]


@dataclass(frozen=True)
class DatabaseSettings:
    """The renders table and the credit ledger (SQLAlchemy URL)."""

    url: str
    initial_credits: int = 100  # an organization's balance when it first appears

    def open(self) -> Database:
        return shared_database(self.url)


@dataclass(frozen=True)
class StorageSettings:
    """Where asset values and delivered images live: `file:///path` or `gs://bucket/prefix`."""

    url: str
    public_base_url: str | None = None  # CDN_BASE_URL
    files_base_url: str | None = None  # where local files are served over HTTP (file:// storage only)
    gcp_project: str | None = None
    private: bool = False  # the bucket is private: delivered URLs are V4 signed URLs
    signed_url_ttl_s: int = DEFAULT_SIGNED_URL_TTL_S
    retry_timeout_s: float = RetrySettings.timeout_s
    retry_initial_delay_s: float = RetrySettings.initial_delay_s

    def open(self, gcs_client: Callable[[], GcsClient] | None = None) -> BlobStore:
        return open_blob_store(
            self.url,
            public_base_url=self.public_base_url,
            files_base_url=self.files_base_url,
            gcs_client=gcs_client or self._gcs_client,
            private=self.private,
            signed_url_ttl_s=self.signed_url_ttl_s,
            retry=RetrySettings(timeout_s=self.retry_timeout_s, initial_delay_s=self.retry_initial_delay_s),
        )

    def _gcs_client(self) -> GcsClient:
        from google.cloud import storage  # only gs:// storage needs it

        return storage.Client(project=self.gcp_project)


@dataclass(frozen=True)
class QueueSettings:
    """The BullMQ queue the web app enqueues on, and the per-render event streams in the same Redis."""

    redis_url: str
    queue_name: str = "renderQueue"
    lock_duration_s: float = 60.0
    events_prefix: str = "render-events:"
    events_maxlen: int = 1000
    events_ttl_s: int = 86400

    def open_queue(self) -> BullQueue:
        return BullQueue(self.redis_url, self.queue_name, int(self.lock_duration_s * 1000))

    def open_events(self) -> EventStream:
        return EventStream(
            self.redis_url, prefix=self.events_prefix, maxlen=self.events_maxlen, ttl_s=self.events_ttl_s
        )

    def open_cancel_signals(self) -> CancelSignals:
        return CancelSignals(self.redis_url)


@dataclass(frozen=True)
class BackendSettings:
    database: DatabaseSettings
    storage: StorageSettings
    queue: QueueSettings
    # A render cancelled after its image was made is refunded too (default: the charge stands).
    cancel_refund_after_generation: bool = False

    @classmethod
    def from_environment(cls) -> BackendSettings:
        return cls(
            database=DatabaseSettings(**database_options()),
            storage=StorageSettings(**storage_options()),
            queue=QueueSettings(**queue_options()),
            cancel_refund_after_generation=config.flag(config.RENDER_CANCEL_REFUND_AFTER_GENERATION),
        )

    def open(self) -> Backends:
        queue = self.queue
        return Backends(
            database=self.database.open(),
            queue=queue.open_queue(),
            storage=self.storage.open,
            events=queue.open_events(),
            cancel_signals=queue.open_cancel_signals(),
            initial_credits=self.database.initial_credits,
            cancel_refund_after_generation=self.cancel_refund_after_generation,
        )


def database_options(read: Read = config.Variable.value) -> dict[str, Any]:
    return {
        "url": read(config.DATABASE_URL) or config.database_url(),
        "initial_credits": int(config.number(config.RENDER_DEFAULT_CREDITS)),
    }


def storage_options(read: Read = config.Variable.value) -> dict[str, Any]:
    return {
        "url": read(config.RENDER_STORAGE_URL) or config.storage_url(),
        "public_base_url": read(config.CDN_BASE_URL),
        "files_base_url": read(config.RENDER_FILES_BASE_URL),
        "gcp_project": read(config.GOOGLE_CLOUD_PROJECT),
        "private": config.flag(config.RENDER_STORAGE_PRIVATE),
        "signed_url_ttl_s": int(config.number(config.RENDER_SIGNED_URL_TTL_S)),
        "retry_timeout_s": config.number(config.RENDER_STORAGE_RETRY_S),
    }


def queue_options(read: Read = config.Variable.value) -> dict[str, Any]:
    return {
        "redis_url": _required(read, config.REDIS_URL),
        "queue_name": _required(read, config.RENDER_QUEUE_NAME),
        "lock_duration_s": config.number(config.RENDER_LOCK_DURATION_S),
        "events_prefix": _required(read, config.RENDER_EVENTS_PREFIX),
        "events_maxlen": int(config.number(config.RENDER_EVENTS_MAXLEN)),
        "events_ttl_s": int(config.number(config.RENDER_EVENTS_TTL_S)),
    }


def _required(read: Read, variable: config.Variable) -> Any:
    value = read(variable)
    if value is None:
        raise ValueError(f"{variable.name} must be set")
    return value


@cache
def shared_database(url: str) -> Database:
    """One engine (and pool) per process and URL, however many steps, ticks and commands ask."""
    return Database(url)


class Backends:
    """What the stages talk to. Storage opens on first use: a GCS client costs a credentials
    lookup, and settling a failure never needs it."""

    def __init__(
        self,
        *,
        database: Database,
        queue: BullQueue,
        storage: BlobStore | Callable[[], BlobStore] | None = None,
        events: EventStream | None = None,
        cancel_signals: CancelSignals | None = None,
        initial_credits: int = 100,
        cancel_refund_after_generation: bool = False,
    ) -> None:
        self.database = database
        self.queue = queue
        self._storage = storage
        self.events = events  # None: progress reaches the row and BullMQ, not browsers
        self.cancel_signals = cancel_signals
        self.initial_credits = initial_credits
        self.cancel_refund_after_generation = cancel_refund_after_generation

    @cached_property
    def storage(self) -> BlobStore:
        if self._storage is None:
            raise RuntimeError("these back-ends were built without blob storage")
        return self._storage() if callable(self._storage) else self._storage

    @cached_property
    def progress(self) -> ProgressPublisher:
        return ProgressPublisher(self.database, self.queue, self.events)
