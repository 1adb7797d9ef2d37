from dagster import ConfigurableResource

from render_assets.providers.base import ImageProvider
from render_assets.providers.registry import build_providers


class ProvidersResource(ConfigurableResource):
    """The image providers, in the order they are tried."""

    order: str = "local"
    local_latency_s: float = 0.0

    def get(self) -> list[ImageProvider]:
        return build_providers(self.order, local_latency_s=self.local_latency_s)
