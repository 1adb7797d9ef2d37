from functools import cache

from dagster import ConfigurableResource

from render_assets.persistence.database import Database


@cache
def _database(url: str) -> Database:
    # One engine (and pool) per process, however many steps and ticks ask for it.
    return Database(url)


class DatabaseResource(ConfigurableResource):
    """The renders table and the credit ledger."""

    url: str
    initial_credits: int = 100

    def get(self) -> Database:
        return _database(self.url)
