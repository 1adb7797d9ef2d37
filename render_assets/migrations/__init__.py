"""Alembic migrations of the project's database, run with `render-assets db upgrade`."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text

from render_assets.persistence.database import driver_url

HERE = Path(__file__).parent


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.attributes["database_url"] = url
    return cfg


def upgrade(url: str, revision: str = "heads") -> None:
    # "heads": independent features may add migrations on branches of their own.
    command.upgrade(alembic_config(url), revision)


@contextmanager
def scratch_database(admin_url: str, prefix: str = "render_assets_scratch", *, migrate: bool = True) -> Iterator[str]:
    """A new PostgreSQL database on the admin URL's server, migrated to head (unless `migrate` is
    false: a Dagster storage creates its own tables), dropped afterwards (tests and benchmarks:
    each gets a database no other process touches)."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(driver_url(admin_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = admin_url.rsplit("/", 1)[0] + f"/{name}"
        if migrate:
            upgrade(url)
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
