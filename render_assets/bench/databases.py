"""The PostgreSQL databases the benchmark makes for itself: Dagster's storage for an instance file
that keeps it in PostgreSQL (deploy/dagster.production.yaml), and the project database in the
production shape when no BENCH_DATABASE_URL names one.

Each is dropped and created again before use, so no run sees another's runs, partitions or
renders; they stay on the server afterwards (for a look), until the next run drops them.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, make_url, text

from render_assets.persistence.database import driver_url

# The server the tests use too (trust authentication); BENCH_DATABASE_URL's server when it names one.
DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/test"
DAGSTER_DATABASE = "render_bench_dagster"
PROJECT_DATABASE = "render_bench"


def is_postgres(url: str | None) -> bool:
    return bool(url) and str(url).startswith(("postgresql", "postgres:"))


def server_url(database_url: str | None) -> str:
    """The server to make databases on: the project database's when it is PostgreSQL."""
    return database_url if database_url and is_postgres(database_url) else DEFAULT_SERVER_URL


def recreate_database(server: str, name: str) -> str:
    """Drop `name` on the server (closing its connections) and create it empty; returns its URL."""
    url = make_url(driver_url(server))
    # Connect to a database other than the one dropped: the URL's own, or the server's default.
    admin = url.set(database="postgres") if url.database in (name, None) else url
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


def project_database(dagster_storage: str, given_url: str | None, folder: Path) -> str:
    """The project database for one instance file: BENCH_DATABASE_URL (or --database-url) when
    given; else PostgreSQL beside a PostgreSQL Dagster storage (production's shape) and a
    SQLite file beside a SQLite one (development's)."""
    if given_url:
        return given_url
    if dagster_storage == "postgresql":
        return recreate_database(DEFAULT_SERVER_URL, PROJECT_DATABASE)
    return f"sqlite:///{folder / 'render_assets.db'}"


def dagster_storage_env(dagster_storage: str, server: str) -> dict[str, str]:
    """The environment an instance file reads its PostgreSQL storage from (DAGSTER_PG_*, or
    DAGSTER_PG_URL for the one-URL form), pointing at a database just created empty; nothing for
    SQLite, which lives in DAGSTER_HOME."""
    if dagster_storage == "sqlite":
        return {}
    if dagster_storage != "postgresql":
        raise ValueError(f"the benchmark cannot provide a {dagster_storage} Dagster storage")
    url = make_url(recreate_database(server, DAGSTER_DATABASE))
    return {
        "DAGSTER_PG_USERNAME": url.username or "postgres",
        "DAGSTER_PG_PASSWORD": url.password or "",  # empty: trust authentication
        "DAGSTER_PG_HOST": url.host or "127.0.0.1",
        "DAGSTER_PG_DB": DAGSTER_DATABASE,
        "DAGSTER_PG_PORT": str(url.port or 5432),
        "DAGSTER_PG_URL": url.render_as_string(hide_password=False),
    }
