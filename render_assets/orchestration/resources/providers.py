from dataclasses import fields

import redis
from dagster import ConfigurableResource

from render_assets.adapters.remote_images import DEFAULT_MAX_BYTES, DEFAULT_TIMEOUT_S, FetchLimits, RemoteImageFetcher
from render_assets.domain.url_policy import HostAllowlist
from render_assets.providers.base import ImageProvider
from render_assets.providers.budget import BudgetSettings, RetryBudget
from render_assets.providers.circuit_breaker import (
    BreakerSettings,
    CircuitBreaker,
    RouteAvailability,
    route_availability,
)
from render_assets.providers.registry import ProviderSettings, build_providers


class ProvidersResource(ConfigurableResource):
    """The image providers, in the order they are tried, and the shared state that guards them
    (circuit breakers and per-run retry budgets, in Redis)."""

    order: str = "local"
    local_latency_s: float = ProviderSettings.local_latency_s
    redis_url: str = "redis://127.0.0.1:6379/0"
    state_prefix: str = "render:providers"
    google_project: str | None = None
    google_region: str = ProviderSettings.google_region
    google_image_model: str = ProviderSettings.google_image_model
    google_image_route: str = ProviderSettings.google_image_route
    google_upscale_model: str | None = None
    google_edit_model: str = ProviderSettings.google_edit_model
    google_api_endpoint: str | None = None
    google_timeout_s: float = ProviderSettings.google_timeout_s
    openai_api_key: str | None = None
    openai_image_model: str = ProviderSettings.openai_image_model
    openai_base_url: str | None = None
    openai_timeout_s: float = ProviderSettings.openai_timeout_s
    job_deadline_s: float = 120.0
    breaker_failures: int = 3
    breaker_window_s: float = 60.0
    breaker_cooldown_s: float = 30.0
    # A customer's render waits this long, from its first claim, for a provider to come back.
    outage_max_wait_s: float = 900.0
    # The customer's photo (sourceImageUrl): fetched only from these hosts; unset, never fetched.
    source_image_hosts: str | None = None
    source_image_max_bytes: int = DEFAULT_MAX_BYTES
    source_image_timeout_s: float = DEFAULT_TIMEOUT_S

    def get(self) -> list[ImageProvider]:
        return build_providers(self.order, settings=self.provider_settings())

    def provider_settings(self) -> ProviderSettings:
        # The resource's fields carry ProviderSettings' names and defaults: one source of both.
        return ProviderSettings(**{field.name: getattr(self, field.name) for field in fields(ProviderSettings)})

    def _redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url)

    def breaker(self) -> CircuitBreaker:
        settings = BreakerSettings(
            failures_to_open=self.breaker_failures,
            window_s=self.breaker_window_s,
            cooldown_s=self.breaker_cooldown_s,
            # A probe is presumed dead once the longest call could have ended.
            probe_lease_s=max(self.job_deadline_s, self.google_timeout_s, self.openai_timeout_s) + 5,
        )
        return CircuitBreaker(self._redis(), settings, prefix=f"{self.state_prefix}:breaker")

    def availability(self) -> RouteAvailability:
        """Whether any configured provider can be called now (the breakers' view, no call made)."""
        names = [name.strip() for name in self.order.split(",") if name.strip()]
        return route_availability(self.breaker(), names)

    def budget(self, run_id: str) -> RetryBudget:
        settings = BudgetSettings(deadline_s=self.job_deadline_s)
        return RetryBudget(self._redis(), f"{self.state_prefix}:budget:{run_id}", settings)

    def source_hosts(self) -> HostAllowlist:
        return HostAllowlist.parse(self.source_image_hosts)

    def source_images(self) -> RemoteImageFetcher | None:
        """The fetcher of source photos, or None when no host is allowed: renders are text-to-image,
        but for a bundled example photo, which generation reads without one (`photo_fetcher`)."""
        hosts = self.source_hosts()
        if not hosts:
            return None
        limits = FetchLimits(max_bytes=self.source_image_max_bytes, timeout_s=self.source_image_timeout_s)
        return RemoteImageFetcher(hosts, limits=limits)
