from dagster import ConfigurableResource
from pydantic import field_validator

from render_assets.adapters.json_webhook import JsonWebhook
from render_assets.domain.failure_patterns import PatternSettings
from render_assets.services.failure_monitor import Notifier, WebhookNotifier, sentry_notifier


class FailureAlertsResource(ConfigurableResource):
    """Where failure-pattern alerts go (Sentry when configured, and an optional webhook), and the
    patterns' windows and thresholds (`patterns`: JSON overrides, see domain/failure_patterns.py)."""

    webhook_url: str | None = None
    webhook_timeout_s: float = 3.0
    patterns: str | None = None

    @field_validator("patterns")
    @classmethod
    def _patterns_parse(cls, value: str | None) -> str | None:
        PatternSettings.from_json(value)  # a bad FAILURE_PATTERNS fails when the code location loads
        return value

    def settings(self) -> PatternSettings:
        return PatternSettings.from_json(self.patterns)

    def notifiers(self) -> list[Notifier]:
        notifiers: list[Notifier] = [sentry_notifier]
        if self.webhook_url:
            notifiers.append(WebhookNotifier(JsonWebhook(self.webhook_url, timeout_s=self.webhook_timeout_s)))
        return notifiers
