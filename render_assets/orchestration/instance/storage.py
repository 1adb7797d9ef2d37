"""Dagster's PostgreSQL storage with held connections (issue #18).

dagster-postgres gives each storage an engine with SQLAlchemy's NullPool: every statement opens
a PostgreSQL connection (a backend process forked, authenticated, torn down) and closes it again,
about 5-7 ms of the database server's CPU each; a run worker alone opens about 95. These subclasses
keep a small QueuePool per process instead, one engine shared by the run, event log and schedule
storages of an instance, and otherwise behave as upstream: same configuration, same tables and
alembic checks, the same event watcher, the webserver's own pool (`optimize_for_webserver`).

dagster.yaml (the block `storage: postgres:` takes, under `custom:`; the pool_* entries are
optional):

    storage:
      custom:
        module: render_assets.orchestration.instance.storage
        class: HeldPostgresStorage
        config:
          postgres_db: {username: ..., password: ..., hostname: ..., db_name: ..., port: ...}
          pool_size: 1

The separate `run_storage:` / `event_log_storage:` / `schedule_storage:` blocks take
HeldPostgresRunStorage, HeldPostgresEventLogStorage and HeldPostgresScheduleStorage with the
same config; each then has a pool of its own, and the schedule storage's is only closed when
it is garbage collected (a DagsterInstance disposes its run and event log storages only).
"""

from __future__ import annotations

import math
import os
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self, cast

import sqlalchemy.pool as db_pool
from dagster import BoolSource, Field, IntSource
from dagster._config.config_schema import UserConfigSchema
from dagster._core.storage.config import pg_config
from dagster._serdes import ConfigurableClassData
from dagster_postgres import (
    DagsterPostgresStorage,
    PostgresEventLogStorage,
    PostgresRunStorage,
    PostgresScheduleStorage,
)
from dagster_postgres.utils import create_pg_engine, get_token_provider_from_config, pg_url_from_config
from sqlalchemy.engine import Connection, Engine

if TYPE_CHECKING:
    from dagster_postgres.auth import PgTokenProvider

MODULE = __name__
# How long a partition seen to exist is taken to exist without asking again: a run's steps look
# its partition up about 40 times within seconds; another process may delete it (retention).
PARTITION_MEMORY_S = 10.0


@dataclass(frozen=True)
class PoolSettings:
    """The pool each process keeps (per instance)."""

    # Held connections. One serves a run worker, whose storage calls come one at a time, except
    # an asset materialization (a table check inside the event's transaction): that takes a
    # second connection, opened and closed again, unless the size is 2.
    size: int = 1
    # Connections past `size`, for concurrent calls (the daemon's threads) and nested ones; closed
    # when returned. Unbounded (-1) as upstream is: with a bound, threads that each hold one and
    # wait for a nested one would block each other until the pool's timeout.
    max_overflow: int = -1
    # Past this age a connection is replaced at its next checkout (-1: never). Bounds what a
    # long-lived process holds from before a failover or a password change.
    recycle_s: int = 3600
    # A round trip at each checkout ("SELECT 1"), so that a connection the server closed (restart,
    # pg_terminate_backend, an idle timeout) is replaced before a statement fails on it.
    pre_ping: bool = True

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> PoolSettings:
        default = cls()
        return cls(
            size=int(config.get("pool_size", default.size)),
            max_overflow=int(config.get("pool_max_overflow", default.max_overflow)),
            recycle_s=int(config.get("pool_recycle_s", default.recycle_s)),
            pre_ping=bool(config.get("pool_pre_ping", default.pre_ping)),
        )


def held_pg_config() -> UserConfigSchema:
    """dagster-postgres's schema (postgres_url or postgres_db, auth_provider, ...) plus the pool's."""
    default = PoolSettings()
    schema = dict(cast(Mapping[str, Any], pg_config()))  # a dict of Fields
    schema.update(
        pool_size=Field(IntSource, is_required=False, default_value=default.size),
        pool_max_overflow=Field(IntSource, is_required=False, default_value=default.max_overflow),
        pool_recycle_s=Field(IntSource, is_required=False, default_value=default.recycle_s),
        pool_pre_ping=Field(BoolSource, is_required=False, default_value=default.pre_ping),
    )
    return schema


def _arguments(config_value: Mapping[str, Any]) -> dict[str, Any]:
    """A storage's constructor arguments from its dagster.yaml block, read as upstream reads them."""
    return {
        "postgres_url": pg_url_from_config(config_value),
        "should_autocreate_tables": config_value.get("should_autocreate_tables", True),
        "token_provider": get_token_provider_from_config(config_value),
        "pool": PoolSettings.from_config(config_value),
    }


# Every engine made here, so that a forked child can drop what it inherited (weak: an engine
# goes when its instance does).
_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()


def _forget_inherited_connections() -> None:
    # A forked child shares the parent's sockets: using one would interleave two processes'
    # protocol streams. close=False leaves them to the parent (psycopg2 does not close a
    # connection from another process when it is collected); the child connects anew.
    for engine in list(_ENGINES):
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_forget_inherited_connections)


def held_engine(postgres_url: str, token_provider: PgTokenProvider | None, pool: PoolSettings) -> Engine:
    """An engine like upstream's (autocommit, the token hook of `auth_provider`) with a QueuePool."""
    engine = create_pg_engine(
        postgres_url,
        token_provider,
        isolation_level="AUTOCOMMIT",
        poolclass=db_pool.QueuePool,
        pool_size=pool.size,
        max_overflow=pool.max_overflow,
        pool_recycle=pool.recycle_s,
        pool_pre_ping=pool.pre_ping,
    )
    _ENGINES.add(engine)
    return engine


class _HeldEngine:
    """What the three storage classes add to upstream's: the held engine where upstream's code
    reads `self._engine`, the pool's config, and closing the pool on dispose. Comes first in each
    class's bases, before the dagster-postgres storage it extends.

    Upstream's constructor assigns a NullPool engine to `_engine` and uses it at once (the table
    check); the setter swaps in the held engine, so every statement, the constructor's included,
    goes through the pool without copying upstream's code. Any other engine assigned is the
    webserver's (`optimize_for_webserver`: a pool of its own with a statement timeout) and is
    kept, as upstream does.
    """

    _held_engine: Engine
    _current_engine: Engine

    def __init__(
        self,
        postgres_url: str,
        should_autocreate_tables: bool = True,
        inst_data: ConfigurableClassData | None = None,
        token_provider: PgTokenProvider | None = None,
        *,
        pool: PoolSettings = PoolSettings(),
        engine: Engine | None = None,
    ) -> None:
        """`engine`: one to share with the instance's other storages (else one of its own)."""
        self._held_engine = engine if engine is not None else held_engine(postgres_url, token_provider, pool)
        # The dagster-postgres storage next in the bases.
        super().__init__(postgres_url, should_autocreate_tables, inst_data, token_provider)  # type: ignore[call-arg]

    @property
    def _engine(self) -> Engine:
        return self._current_engine

    @_engine.setter
    def _engine(self, engine: Engine) -> None:
        if isinstance(engine.pool, db_pool.NullPool):
            engine.dispose()  # never connected: create_engine connects lazily
            self._current_engine = self._held_engine
        else:
            self._held_engine.dispose()  # the webserver's pool replaces it: close what it holds
            _ENGINES.add(engine)
            self._current_engine = engine

    @classmethod
    def config_type(cls) -> UserConfigSchema:
        return held_pg_config()

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]) -> Self:
        return cls(inst_data=inst_data, **_arguments(config_value))

    def dispose(self) -> None:
        super().dispose()  # type: ignore[misc]  # upstream's (the event log's stops its watcher)
        # Run workers and sensor evaluations build an instance, use it briefly and dispose of it:
        # close the pool's connections now rather than when the engine is collected. The engine
        # stays usable (it connects again), so a storage sharing it is not broken.
        self._current_engine.dispose()


class HeldPostgresRunStorage(_HeldEngine, PostgresRunStorage):
    """dagster-postgres's run storage on a held engine."""


class HeldPostgresEventLogStorage(_HeldEngine, PostgresEventLogStorage):
    """dagster-postgres's event log storage on a held engine, which also remembers what it has
    already asked the server. Upstream inspects the schema before statements (has the
    `dynamic_partitions` table, has an asset-key column: catalogue queries) and looks a
    render's partition up again for every step: in a render run's profile, 52 such round trips.
    Only answers that stay true are kept: a table or column that exists (migrations add them);
    a partition that exists, for `PARTITION_MEMORY_S` (the retention sensor deletes old ones).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._existing_tables: set[str] = set()
        self._existing_asset_key_columns: set[str] = set()
        self._partitions_seen: dict[tuple[str, str], float] = {}  # -> monotonic time seen
        super().__init__(*args, **kwargs)

    def has_table(self, table_name: str) -> bool:
        if table_name in self._existing_tables:
            return True
        exists = super().has_table(table_name)
        if exists:
            self._existing_tables.add(table_name)
        return exists

    def _has_asset_key_col_on_connection(self, conn: Connection, column_name: str) -> bool:
        if column_name in self._existing_asset_key_columns:
            return True
        exists = super()._has_asset_key_col_on_connection(conn, column_name)
        if exists:
            self._existing_asset_key_columns.add(column_name)
        return exists

    def has_dynamic_partition(self, partitions_def_name: str, partition_key: str) -> bool:
        key, now = (partitions_def_name, partition_key), time.monotonic()
        if now - self._partitions_seen.get(key, -math.inf) < PARTITION_MEMORY_S:
            return True
        exists = super().has_dynamic_partition(partitions_def_name, partition_key)
        if exists:
            self._partitions_seen[key] = now
        return exists

    def delete_dynamic_partition(self, partitions_def_name: str, partition_key: str) -> None:
        self._partitions_seen.pop((partitions_def_name, partition_key), None)
        super().delete_dynamic_partition(partitions_def_name, partition_key)


class HeldPostgresScheduleStorage(_HeldEngine, PostgresScheduleStorage):
    """dagster-postgres's schedule storage on a held engine."""


class HeldPostgresStorage(DagsterPostgresStorage):
    """The three storages on one held engine: a process holds `pool_size` connections per
    instance, not three times as many."""

    def __init__(
        self,
        postgres_url: str,
        should_autocreate_tables: bool = True,
        inst_data: ConfigurableClassData | None = None,
        token_provider: PgTokenProvider | None = None,
        *,
        pool: PoolSettings = PoolSettings(),
    ) -> None:
        self.postgres_url = postgres_url
        self.should_autocreate_tables = should_autocreate_tables
        self._inst_data = inst_data
        engine = held_engine(postgres_url, token_provider, pool)
        self._run_storage = HeldPostgresRunStorage(
            postgres_url, should_autocreate_tables, token_provider=token_provider, pool=pool, engine=engine
        )
        self._event_log_storage = HeldPostgresEventLogStorage(
            postgres_url, should_autocreate_tables, token_provider=token_provider, pool=pool, engine=engine
        )
        self._schedule_storage = HeldPostgresScheduleStorage(
            postgres_url, should_autocreate_tables, token_provider=token_provider, pool=pool, engine=engine
        )
        # Past DagsterPostgresStorage.__init__, which would build upstream's storages.
        super(DagsterPostgresStorage, self).__init__()

    @classmethod
    def config_type(cls) -> UserConfigSchema:
        return held_pg_config()

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> HeldPostgresStorage:
        return cls(inst_data=inst_data, **_arguments(config_value))

    def _data(self, class_name: str) -> ConfigurableClassData | None:
        return ConfigurableClassData(MODULE, class_name, self.inst_data.config_yaml) if self.inst_data else None

    @property
    def event_storage_data(self) -> ConfigurableClassData | None:
        return self._data(HeldPostgresEventLogStorage.__name__)

    @property
    def run_storage_data(self) -> ConfigurableClassData | None:
        return self._data(HeldPostgresRunStorage.__name__)

    @property
    def schedule_storage_data(self) -> ConfigurableClassData | None:
        return self._data(HeldPostgresScheduleStorage.__name__)
