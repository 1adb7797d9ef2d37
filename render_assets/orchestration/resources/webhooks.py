from dagster import ConfigurableResource
from pydantic import model_validator

from render_assets.adapters.json_webhook import JsonWebhook
from render_assets.orchestration.resources.database import DatabaseResource
from render_assets.services.render_webhooks import RenderWebhooks


class WebhooksResource(ConfigurableResource):
    """The web app's webhook for re-renders (`RENDER_WEBHOOK_URL`, signed with `RENDER_WEBHOOK_SECRET`);
    unset, re-renders reach the web app through the event stream only."""

    url: str | None = None
    secret: str | None = None
    timeout_s: float = 5.0
    database: DatabaseResource

    @model_validator(mode="after")
    def _signed(self) -> "WebhooksResource":
        # At load time: an unsigned webhook is one the web app could not trust.
        if self.url and not self.secret:
            raise ValueError("RENDER_WEBHOOK_URL is set without RENDER_WEBHOOK_SECRET: the web app checks signatures")
        return self

    def get(self) -> RenderWebhooks | None:
        if not self.url or not self.secret:
            return None
        webhook = JsonWebhook(self.url, timeout_s=self.timeout_s, source="RENDER_WEBHOOK_URL")
        return RenderWebhooks(self.database.get(), webhook, self.secret)
