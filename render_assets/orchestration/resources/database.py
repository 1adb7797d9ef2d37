from dagster import ConfigurableResource

from render_assets.persistence.database import Database
from render_assets.services.backends import DatabaseSettings


class DatabaseResource(ConfigurableResource):
    """The renders table and the credit ledger (fields: `DatabaseSettings`)."""

    url: str
    initial_credits: int = DatabaseSettings.initial_credits

    def settings(self) -> DatabaseSettings:
        return DatabaseSettings(url=self.url, initial_credits=self.initial_credits)

    def get(self) -> Database:
        return self.settings().open()
