"""Engine and sessions for the project's database (SQLite by default, PostgreSQL in production)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

# The transaction services hold and hand to persistence functions: they name its type from here,
# so that only persistence (and the entry points) import SQLAlchemy.
__all__ = ["Database", "Session", "driver_url", "make_engine"]


def driver_url(url: str) -> str:
    """SQLAlchemy 2.1 maps bare `postgresql://` to psycopg 3; we ship psycopg2 (dagster-postgres needs it)."""
    for bare in ("postgresql://", "postgres://"):
        if url.startswith(bare):
            return "postgresql+psycopg2://" + url[len(bare) :]
    return url


def make_engine(url: str) -> Engine:
    # hide_parameters: a statement's error message (logged, in the Dagster event log, sent to
    # Sentry) would otherwise quote the values bound to it, a payload's prompt among them.
    url = driver_url(url)
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5, hide_parameters=True)


def _sqlite_engine(url: str) -> Engine:
    # Several run processes write at once: WAL lets readers proceed, BEGIN IMMEDIATE takes the
    # write lock up front so two read-then-write transactions cannot deadlock, and the busy
    # timeout makes writers queue instead of failing.
    engine = create_engine(url, connect_args={"timeout": 30}, hide_parameters=True)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


class Database:
    """One engine per process and URL; sessions are short and commit on success."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
