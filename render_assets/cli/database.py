"""`render-assets db upgrade`: the project database's schema, migrated to the newest revision."""

from __future__ import annotations

import argparse

from render_assets import config
from render_assets.migrations import upgrade
from render_assets.services.backends import DatabaseSettings, database_options


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    # The default SQLite file lives in the data folder, which may not exist yet.
    config.data_dir().mkdir(parents=True, exist_ok=True)
    upgrade(DatabaseSettings(**database_options()).url)
    return 0
