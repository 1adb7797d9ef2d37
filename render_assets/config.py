"""Every environment variable the project reads, with its default: the one place that knows them.

Dagster resources get `EnvVar(name)` when a variable is set (so secrets stay out of the UI and
run config) and the embedded default otherwise. The README's table lists the same variables.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Variable:
    name: str
    default: str | None
    description: str
    secret: bool = False

    def value(self) -> str | None:
        return os.environ.get(self.name) or self.default

    def is_set(self) -> bool:
        return bool(os.environ.get(self.name))


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
RENDER_FILES_BASE_URL = Variable(
    "RENDER_FILES_BASE_URL", None, "Base URL serving file:// storage over HTTP (the progress server's /files)"
)
RENDER_STORAGE_PRIVATE = Variable("RENDER_STORAGE_PRIVATE", "false", "true: the bucket is private; URLs are V4 signed")
RENDER_SIGNED_URL_TTL_S = Variable("RENDER_SIGNED_URL_TTL_S", "86400", "Lifetime of signed URLs (at most 604800)")
RENDER_STORAGE_RETRY_S = Variable("RENDER_STORAGE_RETRY_S", "120", "Seconds a storage request is retried with backoff")
GOOGLE_CLOUD_PROJECT = Variable("GOOGLE_CLOUD_PROJECT", None, "Google Cloud project (storage and providers)")
RENDER_PROVIDERS = Variable("RENDER_PROVIDERS", "local", "Ordered, comma-separated image providers")
LOCAL_PROVIDER_LATENCY_S = Variable("LOCAL_PROVIDER_LATENCY_S", "0", "Simulated latency of the local provider")
GOOGLE_CLOUD_REGION = Variable(
    "GOOGLE_CLOUD_REGION", "global", "Vertex AI location of the google provider (Imagen needs a region)"
)
GOOGLE_IMAGE_MODEL = Variable("GOOGLE_IMAGE_MODEL", "gemini-3.1-flash-image", "Vertex AI image model id")
GOOGLE_IMAGE_ROUTE = Variable("GOOGLE_IMAGE_ROUTE", "gemini", "gemini (generateContent) or imagen (legacy predict)")
GOOGLE_UPSCALE_MODEL = Variable("GOOGLE_UPSCALE_MODEL", None, "Imagen upscaler model id; unset: local resample")
GOOGLE_EDIT_MODEL = Variable(
    "GOOGLE_EDIT_MODEL", "imagen-3.0-capability-001", "Imagen edit model of the imagen route, for renders with a mask"
)
GOOGLE_API_ENDPOINT = Variable("GOOGLE_API_ENDPOINT", None, "Vertex AI endpoint override (http://… = a local fake)")
GOOGLE_IMAGE_TIMEOUT_S = Variable("GOOGLE_IMAGE_TIMEOUT_S", "60", "Seconds one google provider call may take")
OPENAI_API_KEY = Variable("OPENAI_API_KEY", None, "OpenAI API key of the openai provider", secret=True)
OPENAI_IMAGE_MODEL = Variable("OPENAI_IMAGE_MODEL", "gpt-image-2", "OpenAI image model id")
OPENAI_BASE_URL = Variable("OPENAI_BASE_URL", None, "OpenAI API base URL override")
OPENAI_IMAGE_TIMEOUT_S = Variable("OPENAI_IMAGE_TIMEOUT_S", "90", "Seconds one openai provider call may take")
RENDER_JOB_DEADLINE_S = Variable(
    "RENDER_JOB_DEADLINE_S", "120", "Seconds image generation may take per run, all retries and failovers included"
)
RENDER_SOURCE_IMAGE_HOSTS = Variable(
    "RENDER_SOURCE_IMAGE_HOSTS",
    None,
    "Comma-separated hosts source photos are fetched from (https; host, host:port, *.domain); unset: text-to-image",
)
RENDER_SOURCE_IMAGE_MAX_BYTES = Variable("RENDER_SOURCE_IMAGE_MAX_BYTES", "20971520", "Largest source photo fetched")
RENDER_SOURCE_IMAGE_TIMEOUT_S = Variable(
    "RENDER_SOURCE_IMAGE_TIMEOUT_S", "10", "Seconds a source photo fetch may take (lookup, connect and body)"
)
RENDER_BREAKER_FAILURES = Variable("RENDER_BREAKER_FAILURES", "3", "Consecutive failures that open a breaker")
RENDER_BREAKER_WINDOW_S = Variable("RENDER_BREAKER_WINDOW_S", "60", "Window in which those failures must fall")
RENDER_BREAKER_COOLDOWN_S = Variable("RENDER_BREAKER_COOLDOWN_S", "30", "Seconds a breaker stays open before a probe")
RENDER_CANCEL_REFUND_AFTER_GENERATION = Variable(
    "RENDER_CANCEL_REFUND_AFTER_GENERATION",
    "false",
    "true: a render cancelled after its image was made is refunded too (default: its charge stands)",
)
RENDER_OUTAGE_MAX_WAIT_S = Variable(
    "RENDER_OUTAGE_MAX_WAIT_S", "900", "Seconds a render may wait for an image provider, from its first claim"
)
RENDER_DEFAULT_CREDITS = Variable("RENDER_DEFAULT_CREDITS", "100", "Credits of an organization seen first")
RENDER_LOCK_DURATION_S = Variable("RENDER_LOCK_DURATION_S", "60", "BullMQ lock per claim, renewed by heartbeats")
RENDER_HEARTBEAT_S = Variable("RENDER_HEARTBEAT_S", "5", "Seconds between a run's heartbeats (liveness lasts 3 beats)")
RENDER_RECONCILE_INTERVAL_S = Variable("RENDER_RECONCILE_INTERVAL_S", "30", "Seconds between reconciliation ticks")
RENDER_CLAIM_GRACE_S = Variable("RENDER_CLAIM_GRACE_S", "120", "How long a claim may wait for its run to start")
RENDER_SENSOR_INTERVAL_S = Variable(
    "RENDER_SENSOR_INTERVAL_S",
    "1",
    "Least seconds between the starts of two queue sensor ticks (an idle tick lasts RENDER_CLAIM_WAIT_S)",
)
RENDER_CLAIM_WAIT_S = Variable(
    "RENDER_CLAIM_WAIT_S",
    "4.2",
    "Seconds an idle queue-sensor tick waits on BullMQ for a job",
)
RENDER_MAX_CONCURRENT_RUNS = Variable(
    "RENDER_MAX_CONCURRENT_RUNS", "4", "Run slots when the instance has no run queue limit of its own"
)
RENDER_DEPLOYMENT_ID = Variable(
    "RENDER_DEPLOYMENT_ID",
    None,
    "Name this deployment's claims carry (at most 64 characters); default: its Dagster run storage's id",
)
RENDER_EVENTS_PREFIX = Variable("RENDER_EVENTS_PREFIX", "render-events:", "Key prefix of the per-render event streams")
RENDER_EVENTS_MAXLEN = Variable("RENDER_EVENTS_MAXLEN", "1000", "Entries a render's event stream keeps (about)")
RENDER_EVENTS_TTL_S = Variable("RENDER_EVENTS_TTL_S", "86400", "Seconds an event stream outlives its last event")
RENDER_SSE_SECRET = Variable(
    "RENDER_SSE_SECRET", None, "HMAC key of per-render tokens the progress server requires", secret=True
)
RENDER_SSE_KEEPALIVE_S = Variable("RENDER_SSE_KEEPALIVE_S", "15", "Seconds between SSE keep-alive comments")
RENDER_SSE_CORS_ORIGINS = Variable(
    "RENDER_SSE_CORS_ORIGINS", None, "Comma-separated origins whose pages may call the progress server"
)

# Observability: errors, alerts, logs.
SENTRY_DSN = Variable("SENTRY_DSN", None, "Sentry project DSN; unset: no Sentry", secret=True)
SENTRY_ENVIRONMENT = Variable("SENTRY_ENVIRONMENT", None, "Sentry environment name (e.g. production)")
SENTRY_TRACES_SAMPLE_RATE = Variable("SENTRY_TRACES_SAMPLE_RATE", "1.0", "Share of runs traced (0..1)")
RENDER_WEBHOOK_URL = Variable(
    "RENDER_WEBHOOK_URL", None, "The web app's webhook for re-renders (POST render.rerendered)", secret=True
)
RENDER_WEBHOOK_SECRET = Variable(
    "RENDER_WEBHOOK_SECRET", None, "HMAC-SHA256 key signing webhook bodies (X-Render-Signature)", secret=True
)
RENDER_WEBHOOK_TIMEOUT_S = Variable("RENDER_WEBHOOK_TIMEOUT_S", "5", "Seconds one webhook attempt may take")
SLACK_WEBHOOK_URL = Variable("SLACK_WEBHOOK_URL", None, "Slack-compatible webhook for failure alerts", secret=True)
FAILURE_PATTERNS = Variable("FAILURE_PATTERNS", None, "JSON overriding failure-pattern windows and thresholds")
FAILURE_MONITOR_INTERVAL_S = Variable("FAILURE_MONITOR_INTERVAL_S", "60", "Seconds between failure-pattern checks")
LOG_FORMAT = Variable("LOG_FORMAT", "text", "text or json (one JSON object per line)")
LOG_LEVEL = Variable("LOG_LEVEL", "INFO", "Level of the project's loggers")

# Retention and benchmarking.
RENDER_RETENTION_DAYS = Variable(
    "RENDER_RETENTION_DAYS", "30", "Age in days after which a settled render's Dagster partition is removed"
)
BENCH_DATABASE_URL = Variable(
    "BENCH_DATABASE_URL", None, "Project database of `render-assets bench`; default: temporary SQLite", secret=True
)

ALL: tuple[Variable, ...] = (
    REDIS_URL,
    RENDER_QUEUE_NAME,
    DATABASE_URL,
    RENDER_DATA_DIR,
    RENDER_STORAGE_URL,
    CDN_BASE_URL,
    RENDER_FILES_BASE_URL,
    RENDER_STORAGE_PRIVATE,
    RENDER_SIGNED_URL_TTL_S,
    RENDER_STORAGE_RETRY_S,
    GOOGLE_CLOUD_PROJECT,
    RENDER_PROVIDERS,
    LOCAL_PROVIDER_LATENCY_S,
    GOOGLE_CLOUD_REGION,
    GOOGLE_IMAGE_MODEL,
    GOOGLE_IMAGE_ROUTE,
    GOOGLE_UPSCALE_MODEL,
    GOOGLE_EDIT_MODEL,
    GOOGLE_API_ENDPOINT,
    GOOGLE_IMAGE_TIMEOUT_S,
    OPENAI_API_KEY,
    OPENAI_IMAGE_MODEL,
    OPENAI_BASE_URL,
    OPENAI_IMAGE_TIMEOUT_S,
    RENDER_JOB_DEADLINE_S,
    RENDER_SOURCE_IMAGE_HOSTS,
    RENDER_SOURCE_IMAGE_MAX_BYTES,
    RENDER_SOURCE_IMAGE_TIMEOUT_S,
    RENDER_BREAKER_FAILURES,
    RENDER_BREAKER_WINDOW_S,
    RENDER_BREAKER_COOLDOWN_S,
    RENDER_OUTAGE_MAX_WAIT_S,
    RENDER_CANCEL_REFUND_AFTER_GENERATION,
    RENDER_DEFAULT_CREDITS,
    RENDER_LOCK_DURATION_S,
    RENDER_HEARTBEAT_S,
    RENDER_RECONCILE_INTERVAL_S,
    RENDER_CLAIM_GRACE_S,
    RENDER_SENSOR_INTERVAL_S,
    RENDER_CLAIM_WAIT_S,
    RENDER_MAX_CONCURRENT_RUNS,
    RENDER_DEPLOYMENT_ID,
    RENDER_EVENTS_PREFIX,
    RENDER_EVENTS_MAXLEN,
    RENDER_EVENTS_TTL_S,
    RENDER_SSE_SECRET,
    RENDER_SSE_KEEPALIVE_S,
    RENDER_SSE_CORS_ORIGINS,
    SENTRY_DSN,
    SENTRY_ENVIRONMENT,
    SENTRY_TRACES_SAMPLE_RATE,
    RENDER_WEBHOOK_URL,
    RENDER_WEBHOOK_SECRET,
    RENDER_WEBHOOK_TIMEOUT_S,
    SLACK_WEBHOOK_URL,
    FAILURE_PATTERNS,
    FAILURE_MONITOR_INTERVAL_S,
    LOG_FORMAT,
    LOG_LEVEL,
    RENDER_RETENTION_DAYS,
    BENCH_DATABASE_URL,
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


def flag(variable: Variable) -> bool:
    raw = (variable.value() or "").strip().lower()
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("", "0", "false", "no", "off"):
        return False
    raise ValueError(f"{variable.name}={raw!r} is not true or false")
