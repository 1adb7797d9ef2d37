"""Builds the ordered provider list from `RENDER_PROVIDERS` and each provider's settings, and
puts the job's preferred provider first."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from render_assets.providers.base import ImageProvider

KNOWN = ("local", "google", "openai")
# The web app's `settings.provider` → our provider name.
PREFERRED = {"google-imagen": "google", "openai-gpt-image": "openai"}


@dataclass(frozen=True)
class ProviderSettings:
    local_latency_s: float = 0.0
    google_project: str | None = None
    google_region: str = "global"
    google_image_model: str = "gemini-3.1-flash-image"
    google_image_route: str = "gemini"
    google_upscale_model: str | None = None
    google_edit_model: str = "imagen-3.0-capability-001"
    google_api_endpoint: str | None = None
    google_timeout_s: float = 60.0
    openai_api_key: str | None = None
    openai_image_model: str = "gpt-image-2"
    openai_base_url: str | None = None
    openai_timeout_s: float = 90.0


def provider_names(order: str) -> list[str]:
    names = [name.strip() for name in order.split(",") if name.strip()]
    if not names:
        raise ValueError("RENDER_PROVIDERS is empty; name at least one provider, e.g. 'local'")
    unknown = [name for name in names if name not in KNOWN]
    if unknown:
        raise ValueError(f"RENDER_PROVIDERS names unknown provider {unknown[0]!r}; known: {', '.join(KNOWN)}")
    if len(set(names)) != len(names):
        raise ValueError(f"RENDER_PROVIDERS names a provider twice: {order!r}")
    return names


def build_provider(name: str, settings: ProviderSettings) -> ImageProvider:
    """One provider; its SDK is not imported until its first call."""
    if name == "local":
        from render_assets.providers.local import LocalProvider

        return LocalProvider(latency_s=settings.local_latency_s)
    if name == "google":
        from render_assets.providers.google_image import GoogleImageProvider

        return GoogleImageProvider(
            project=settings.google_project or "",
            region=settings.google_region,
            model=settings.google_image_model,
            route=settings.google_image_route,
            upscale_model=settings.google_upscale_model,
            edit_model=settings.google_edit_model,
            api_endpoint=settings.google_api_endpoint,
            timeout_s=settings.google_timeout_s,
        )
    if name == "openai":
        from render_assets.providers.openai_image import OpenAIImageProvider

        return OpenAIImageProvider(
            api_key=settings.openai_api_key or "",
            model=settings.openai_image_model,
            base_url=settings.openai_base_url,
            timeout_s=settings.openai_timeout_s,
        )
    raise ValueError(f"RENDER_PROVIDERS names unknown provider {name!r}; known: {', '.join(KNOWN)}")


def build_providers(
    order: str, *, local_latency_s: float = 0.0, settings: ProviderSettings | None = None
) -> list[ImageProvider]:
    settings = settings or ProviderSettings(local_latency_s=local_latency_s)
    return [build_provider(name, settings) for name in provider_names(order)]


def preferred_first(providers: Sequence[ImageProvider], preferred: str | None) -> list[ImageProvider]:
    """The job's preferred provider (web app name or ours) first, the configured order after it.
    A preference for a provider that is not configured changes nothing."""
    name = PREFERRED.get(preferred or "", preferred)
    first = [p for p in providers if p.name == name]
    return first + [p for p in providers if p.name != name]
