"""Builds the ordered provider list from `RENDER_PROVIDERS`."""

from __future__ import annotations

from render_assets.providers.base import ImageProvider

KNOWN = ("local",)


def build_providers(order: str, *, local_latency_s: float = 0.0) -> list[ImageProvider]:
    names = [name.strip() for name in order.split(",") if name.strip()]
    if not names:
        raise ValueError("RENDER_PROVIDERS is empty; name at least one provider, e.g. 'local'")
    providers: list[ImageProvider] = []
    for name in names:
        if name == "local":
            from render_assets.providers.local import LocalProvider

            providers.append(LocalProvider(latency_s=local_latency_s))
        else:
            raise ValueError(f"RENDER_PROVIDERS names unknown provider {name!r}; known: {', '.join(KNOWN)}")
    return providers
