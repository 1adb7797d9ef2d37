"""Every environment variable the project reads, with its default: the one place that knows them.

Dagster resources get `EnvVar(name)` when a variable is set (so secrets stay out of the UI and
run config) and the embedded default otherwise. The README's table lists the same variables.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dagster import EnvVar


@dataclass(frozen=True)
class Variable:
    name: str
    default: str | None
    description: str
    secret: bool = False

    def value(self) -> str | None:
        return os.environ.get(self.name) or self.default

    def resource_value(self) -> str | None:
        """What a resource field gets: the variable itself (an `EnvVar`) when set, else the default."""
        return EnvVar(self.name) if os.environ.get(self.name) else self.default

    def required_resource_value(self) -> str:
        value = self.resource_value()
        if value is None:
            raise ValueError(f"{self.name} must be set")
        return value


def data_dir() -> Path:
    return Path(os.environ.get("RENDER_DATA_DIR") or ".data").resolve()


REDIS_URL = Variable("REDIS_URL", "redis://127.0.0.1:6379/0", "Redis holding the BullMQ queue", secret=True)
RENDER_QUEUE_NAME = Variable("RENDER_QUEUE_NAME", "renderQueue", "BullMQ queue the web app enqueues on")
DATABASE_URL = Variable(
    "DATABASE_URL", None, "SQLAlchemy URL; default: SQLite at $RENDER_DATA_DIR/render_assets.db", secret=True
)
RENDER_DATA_DIR = Variable("RENDER_DATA_DIR", ".data", "Folder of the embedded defaults (database, storage)")
RENDER_STORAGE_URL = Variable(
    "RENDER_STORAGE_URL", None, "file:///path or gs://bucket/prefix; default: file://$RENDER_DATA_DIR/storage"
)
CDN_BASE_URL = Variable("CDN_BASE_URL", None, "Public base URL of delivered images (CDN in front of the bucket)")
GOOGLE_CLOUD_PROJECT = Variable("GOOGLE_CLOUD_PROJECT", None, "Google Cloud project (storage and providers)")
RENDER_PROVIDERS = Variable("RENDER_PROVIDERS", "local", "Ordered, comma-separated image providers")
LOCAL_PROVIDER_LATENCY_S = Variable("LOCAL_PROVIDER_LATENCY_S", "0", "Simulated latency of the local provider")
RENDER_DEFAULT_CREDITS = Variable("RENDER_DEFAULT_CREDITS", "100", "Credits of an organization seen first")
RENDER_LOCK_DURATION_S = Variable("RENDER_LOCK_DURATION_S", "300", "BullMQ lock per claim, renewed at each stage")
RENDER_SENSOR_INTERVAL_S = Variable("RENDER_SENSOR_INTERVAL_S", "2", "Seconds between queue sensor ticks")
RENDER_MAX_CONCURRENT_RUNS = Variable(
    "RENDER_MAX_CONCURRENT_RUNS", "4", "Run slots when the instance has no run queue limit of its own"
)

ALL: tuple[Variable, ...] = (
    REDIS_URL,
    RENDER_QUEUE_NAME,
    DATABASE_URL,
    RENDER_DATA_DIR,
    RENDER_STORAGE_URL,
    CDN_BASE_URL,
    GOOGLE_CLOUD_PROJECT,
    RENDER_PROVIDERS,
    LOCAL_PROVIDER_LATENCY_S,
    RENDER_DEFAULT_CREDITS,
    RENDER_LOCK_DURATION_S,
    RENDER_SENSOR_INTERVAL_S,
    RENDER_MAX_CONCURRENT_RUNS,
)


def database_url() -> str:
    return DATABASE_URL.value() or f"sqlite:///{data_dir() / 'render_assets.db'}"


def storage_url() -> str:
    return RENDER_STORAGE_URL.value() or (data_dir() / "storage").as_uri()


def number(variable: Variable) -> float:
    raw = variable.value()
    try:
        return float(raw or 0)
    except ValueError:
        raise ValueError(f"{variable.name}={raw!r} is not a number") from None
