"""Dagster's storage on PostgreSQL with held connections (render_assets.orchestration.instance.storage, issue #18),
against the machine's real PostgreSQL: an instance configured by the storage block of
deploy/dagster.production.yaml on a database of its own stores and reads back runs and events
through a connection it keeps, where dagster-postgres opens one per statement; it survives a
fork and a connection the server killed.
"""

from __future__ import annotations

import gc
import os
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster import AssetKey, DagsterInstance, DagsterRunStatus, asset, materialize
from dagster._core.events import DagsterEventType
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.dagster_run import DagsterRun
from dagster._core.test_utils import create_run_for_test
from sqlalchemy import Engine, create_engine, event, make_url, text

from render_assets.migrations import scratch_database
from render_assets.orchestration.instance.storage import (
    PARTITION_MEMORY_S,
    HeldPostgresEventLogStorage,
    HeldPostgresRunStorage,
    HeldPostgresScheduleStorage,
    HeldPostgresStorage,
)
from render_assets_tests.conftest import POSTGRES_ADMIN_URL

PRODUCTION = Path(__file__).resolve().parents[1] / "deploy" / "dagster.production.yaml"
CALLS = 50


@asset
def plan() -> int:
    return 1


@asset
def render(plan: int) -> int:
    return plan + 1


@pytest.fixture(scope="module")
def admin() -> Iterator[Engine]:
    engine = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def dagster_db() -> Iterator[str]:
    """A database of its own: the storages create their tables in it."""
    with scratch_database(POSTGRES_ADMIN_URL, "held_storage_test", migrate=False) as url:
        yield url


@pytest.fixture
def pg_environment(dagster_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The variables production's storage block reads, pointing at the test database."""
    url = make_url(dagster_db)
    for name, value in {
        "DAGSTER_PG_USERNAME": url.username,
        "DAGSTER_PG_PASSWORD": url.password or "",
        "DAGSTER_PG_HOST": url.host,
        "DAGSTER_PG_DB": url.database,
        "DAGSTER_PG_PORT": str(url.port or 5432),
    }.items():
        monkeypatch.setenv(name, str(value))


def instance_with(storage: dict[str, Any], home: Path) -> DagsterInstance:
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump({"telemetry": {"enabled": False}, "storage": storage}))
    return DagsterInstance.from_config(str(home))


@pytest.fixture
def instance(pg_environment: None, tmp_path: Path) -> Iterator[DagsterInstance]:
    """An instance with production's storage block (this module's storage, env-configured)."""
    storage = yaml.safe_load(PRODUCTION.read_text())["storage"]
    with instance_with(storage, tmp_path / "held") as dagster_instance:
        yield dagster_instance


@pytest.fixture
def upstream(dagster_db: str, tmp_path: Path) -> Iterator[DagsterInstance]:
    """dagster-postgres as shipped, on the same database."""
    with instance_with({"postgres": {"postgres_url": dagster_db}}, tmp_path / "upstream") as dagster_instance:
        yield dagster_instance


def storages_of(instance: DagsterInstance) -> tuple[Any, ...]:
    """Its run, event log and schedule storages (dagster-postgres's or this module's: `Any`, for
    what the base classes do not declare)."""
    return instance._run_storage, instance._event_storage, instance._schedule_storage


def engines_of(instance: DagsterInstance) -> list[Engine]:
    return list({id(storage._engine): storage._engine for storage in storages_of(instance)}.values())


class Connects:
    """Connections an instance's engines open (SQLAlchemy's `connect` event: one per DBAPI connect)."""

    def __init__(self, instance: DagsterInstance) -> None:
        self.count = 0
        for engine in engines_of(instance):
            event.listen(engine, "connect", self._connected)

    def _connected(self, *_: object) -> None:
        self.count += 1


def backends(admin: Engine, database_url: str) -> set[int]:
    """Server processes connected to the database now."""
    with admin.connect() as connection:
        rows = connection.execute(
            text("SELECT pid FROM pg_stat_activity WHERE datname = :name"), {"name": make_url(database_url).database}
        )
        return {int(row[0]) for row in rows}


def held_backend(instance: DagsterInstance) -> int:
    """The server process of the connection the instance holds (its pool has one)."""
    [engine] = engines_of(instance)
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())


def wait_until(check: Callable[[], bool], what: str, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def statement_sequence(instance: DagsterInstance, run: DagsterRun) -> None:
    for index in range(CALLS):
        assert instance.get_run_by_id(run.run_id) is not None
        instance.report_engine_event(f"call {index}", run)  # store_event


def test_the_production_storage_block_builds_this_modules_storages(instance: DagsterInstance) -> None:
    assert isinstance(instance.get_ref().storage, HeldPostgresStorage)
    assert isinstance(instance._run_storage, HeldPostgresRunStorage)
    assert isinstance(instance._event_storage, HeldPostgresEventLogStorage)
    assert isinstance(instance._schedule_storage, HeldPostgresScheduleStorage)
    [engine] = engines_of(instance)  # one pool for the three storages
    assert type(engine.pool).__name__ == "QueuePool"


def test_an_instance_stores_a_run_and_its_events_and_reads_them_back(
    instance: DagsterInstance, admin: Engine, dagster_db: str
) -> None:
    connects = Connects(instance)
    result = materialize([plan, render], instance=instance)

    run = instance.get_run_by_id(result.run_id)
    assert run is not None and run.status == DagsterRunStatus.SUCCESS
    types = [
        record.event_log_entry.dagster_event_type for record in instance.get_records_for_run(result.run_id).records
    ]
    assert types.count(DagsterEventType.ASSET_MATERIALIZATION) == 2
    assert types[-1] == DagsterEventType.RUN_SUCCESS
    latest = instance.get_latest_materialization_event(AssetKey("render"))
    assert latest is not None and latest.run_id == result.run_id
    # A run is a few connections (an asset event's nested table check takes a second one).
    assert connects.count <= 4
    # Dagster's schema checks and migration run through the pool too.
    instance.upgrade()
    for storage in storages_of(instance):
        current, head = storage.alembic_version()
        assert current == head

    held = held_backend(instance)
    instance.dispose()  # a run worker's end: the pool's connections close with it
    # This instance's connection: with two workers, another test's may be open on the database.
    wait_until(lambda: held not in backends(admin, dagster_db), "the held connection to close")


def test_a_statement_sequence_holds_one_connection_where_upstream_opens_one_per_statement(
    instance: DagsterInstance, upstream: DagsterInstance, admin: Engine, dagster_db: str
) -> None:
    opened = {}
    for name, dagster_instance in (("held", instance), ("upstream", upstream)):
        run = create_run_for_test(dagster_instance, job_name=f"{name}_calls")
        connects = Connects(dagster_instance)
        statement_sequence(dagster_instance, run)
        opened[name] = connects.count
        if name == "held":
            assert held_backend(dagster_instance) in backends(admin, dagster_db)  # the one it holds

    assert opened["held"] == 0  # the connection held since the instance started
    assert opened["upstream"] >= 2 * CALLS


def test_a_forked_child_connects_anew_and_leaves_the_parents_connection_alone(
    instance: DagsterInstance, admin: Engine, dagster_db: str
) -> None:
    run = create_run_for_test(instance, job_name="forked")
    parents = held_backend(instance)
    connects = Connects(instance)

    child = os.fork()
    if child == 0:  # pragma: no cover (the child reports by its exit code)
        code = 1
        try:
            instance.add_run_tags(run.run_id, {"written_by": "child"})
            statement_sequence(instance, run)
            assert connects.count == 1  # its own connection, not the parent's socket
            gc.collect()  # what it inherited is collected: psycopg2 leaves another process's open
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0

    reread = instance.get_run_by_id(run.run_id)
    assert reread is not None and reread.tags["written_by"] == "child"
    instance.report_engine_event("after the fork", run)
    assert connects.count == 0  # the parent's connection was neither closed nor mixed up
    assert held_backend(instance) == parents
    assert parents in backends(admin, dagster_db)


def test_a_connection_the_server_killed_is_replaced_at_the_next_call(
    instance: DagsterInstance, admin: Engine, dagster_db: str
) -> None:
    run = create_run_for_test(instance, job_name="killed")
    killed = held_backend(instance)
    with admin.connect() as connection:
        assert connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": killed}).scalar()
    wait_until(lambda: killed not in backends(admin, dagster_db), "the backend to exit")

    assert instance.get_run_by_id(run.run_id) is not None
    instance.report_engine_event("after the kill", run)
    assert held_backend(instance) != killed


def test_the_event_watcher_polls_through_the_pool_from_its_thread(instance: DagsterInstance) -> None:
    run = create_run_for_test(instance, job_name="watched")
    seen: list[str | None] = []

    def handler(entry: EventLogEntry, _cursor: str) -> None:
        seen.append(entry.dagster_event.message if entry.dagster_event else None)

    instance.watch_event_logs(run.run_id, None, handler)
    try:
        for index in range(3):
            instance.report_engine_event(f"watched {index}", run)
        wait_until(lambda: len(seen) >= 3, "the watcher to deliver the events")
    finally:
        instance.end_watch_event_logs(run.run_id, handler)
    assert seen[:3] == ["watched 0", "watched 1", "watched 2"]


def test_the_webserver_keeps_its_own_pool_as_upstream(instance: DagsterInstance) -> None:
    instance.optimize_for_webserver(statement_timeout=4321, pool_recycle=60, max_overflow=2)

    for storage in storages_of(instance):
        with storage._engine.connect() as connection:
            assert connection.execute(text("SHOW statement_timeout")).scalar() == "4321ms"
    assert instance.get_runs(limit=1) is not None


def test_separate_storage_blocks_take_the_same_config(pg_environment: None, tmp_path: Path) -> None:
    config = yaml.safe_load(PRODUCTION.read_text())["storage"]["custom"]["config"]
    home = tmp_path / "separate"
    home.mkdir()
    blocks = {
        role: {"module": "render_assets.orchestration.instance.storage", "class": class_name, "config": config}
        for role, class_name in (
            ("run_storage", "HeldPostgresRunStorage"),
            ("event_log_storage", "HeldPostgresEventLogStorage"),
            ("schedule_storage", "HeldPostgresScheduleStorage"),
        )
    }
    (home / "dagster.yaml").write_text(yaml.safe_dump({"telemetry": {"enabled": False}, **blocks}))
    with DagsterInstance.from_config(str(home)) as separate:
        run = create_run_for_test(separate, job_name="separate")
        run_storage, event_storage, schedule_storage = storages_of(separate)
        assert isinstance(run_storage, HeldPostgresRunStorage)
        assert isinstance(event_storage, HeldPostgresEventLogStorage)
        assert isinstance(schedule_storage, HeldPostgresScheduleStorage)
        assert len(engines_of(separate)) == 3  # a pool each
        assert separate.get_run_by_id(run.run_id) is not None
        schedule_storage.dispose()  # the instance disposes of the other two only


class Statements:
    """Statements an instance's engines send (SQLAlchemy's `before_cursor_execute` event)."""

    def __init__(self, instance: DagsterInstance) -> None:
        self.sent: list[str] = []
        for engine in engines_of(instance):
            event.listen(engine, "before_cursor_execute", self._sent)

    def _sent(self, _conn: object, _cursor: object, statement: str, *_: object) -> None:
        if statement.strip().upper() != "SELECT 1":  # the pool's pre-ping, not the storage's
            self.sent.append(statement)


def test_a_partition_and_the_schema_are_looked_up_once_and_a_deleted_partition_again(
    instance: DagsterInstance, upstream: DagsterInstance
) -> None:
    storage = storages_of(instance)[1]
    instance.add_dynamic_partitions("renders", ["r-1"])
    assert storage.has_dynamic_partition("renders", "r-1")  # asked once: the server says yes
    assert not storage.has_dynamic_partition("renders", "r-2")
    statements = Statements(instance)

    for _ in range(5):  # as a run's steps ask
        assert storage.has_dynamic_partition("renders", "r-1")
        assert storage.has_asset_key_index_cols() in (True, False)
    assert not storage.has_dynamic_partition("renders", "r-2")  # a missing one is asked again
    asked = len(statements.sent)
    assert asked <= 3, statements.sent  # r-2, and the asset-key columns once

    instance.delete_dynamic_partition("renders", "r-1")
    assert not storage.has_dynamic_partition("renders", "r-1")  # forgotten when deleted here
    instance.add_dynamic_partitions("renders", ["r-1"])
    assert storage.has_dynamic_partition("renders", "r-1")
    # Deleted by another process (the retention sensor's): believed for PARTITION_MEMORY_S at most.
    upstream.delete_dynamic_partition("renders", "r-1")
    assert storage.has_dynamic_partition("renders", "r-1")
    storage._partitions_seen[("renders", "r-1")] -= PARTITION_MEMORY_S
    assert not storage.has_dynamic_partition("renders", "r-1")
