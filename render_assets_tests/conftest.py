"""Shared fixtures: the machine's real Redis and PostgreSQL, the GCS emulator, isolated names."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import create_engine, text

from render_assets.adapters.bullmq_queue import BullQueue
from render_assets.migrations import scratch_database, upgrade
from render_assets.persistence.database import Database
from render_assets_tests.fault_proxy import FaultProxy, fault_proxy
from render_assets_tests.webhook_inbox import WebhookInbox

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
TABLES = (
    "credit_transactions",
    "renders",
    "organizations",
    "perceptual_hashes",
    "quality_reviews",
    "render_failures",
    "render_stage_timings",
    "failure_alerts",
    "usage_records",
    "render_versions",
    "webhook_deliveries",
    "render_cancellations",
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database of its own for this test session (and xdist worker), migrated to head."""
    with scratch_database(POSTGRES_ADMIN_URL, "render_assets_test") as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'render_assets.db'}"
    upgrade(url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    url = str(request.getfixturevalue("postgres_url"))
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return url


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = Database(database_url)
    yield db
    db.dispose()


@pytest.fixture
def queue_name() -> str:
    return f"test-render-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def bull(queue_name: str) -> BullQueue:
    return BullQueue(REDIS_URL, queue_name, lock_duration_ms=60_000)


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[str]:
    """gcp-storage-emulator in this process, with a `renders` bucket; the real client talks to it."""
    from gcp_storage_emulator.server import create_server

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket="renders")
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    previous = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = endpoint
    yield endpoint
    server.stop()
    if previous is None:
        os.environ.pop("STORAGE_EMULATOR_HOST", None)
    else:
        os.environ["STORAGE_EMULATOR_HOST"] = previous


def unique_prefix() -> str:
    return f"test-providers-{uuid.uuid4().hex[:10]}"


def forget(prefix: str) -> None:
    """Delete every Redis key under the prefix."""
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{prefix}:*"))
    if keys:
        client.delete(*keys)


@pytest.fixture
def prefix() -> Iterator[str]:
    """A Redis key prefix of the test's own for provider state (breakers, budgets), removed after."""
    name = unique_prefix()
    yield name
    forget(name)


@pytest.fixture
def proxy(gcs_emulator: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    """The GCS emulator behind a proxy that can answer 503; the storage client talks to the proxy."""
    with fault_proxy(gcs_emulator) as running:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", running.url)
        yield running


@pytest.fixture
def inbox() -> Iterator[WebhookInbox]:
    """A local webhook receiver (the web app's side of the render webhook)."""
    receiver = WebhookInbox()
    yield receiver
    receiver.close()
