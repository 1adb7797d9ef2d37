"""The code version of each render asset, computed from what decides its output, never bumped by
hand: a change there makes the asset stale in Dagster for every partition, and nothing else does.

- `render_prompt`: the prompt builder's code, not its tables of words. Per render, its
  `prompt_rules` dependency's data version (the prompt the current templates, presets and plant
  catalogue build for the design) makes exactly the renders whose prompt changes stale.
- `raw_render`: the provider route (order, model ids, Imagen or Gemini, the upscaler, the Imagen
  edit model on the Imagen route, the customer's photo on or off), the fitting code, and the
  local renderer (with the mask handling it paints by) when it is in the route.
  Per render: `render_prompt`'s data version (prompt, negative prompt, seed).
- `qa_verdict`: the QA rules and thresholds, the pHash and the known failure images.
- `cdn_image`: the variant spec, the encoders' settings, colour handling and object naming.

Timeouts, endpoints, keys and latency do not decide an output, so they are not in any version.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from render_assets import config
from render_assets.domain import failure_images, fingerprints, imaging, object_keys, phash, prompt, qa, variants
from render_assets.providers import edit_masks, fitting, local
from render_assets.providers.registry import KNOWN


@dataclass(frozen=True)
class ProviderRoute:
    """What decides which pixels a provider returns, as configured."""

    order: tuple[str, ...]
    google_image_model: str | None
    google_image_route: str | None
    google_upscale_model: str | None
    google_edit_model: str | None  # what inpaints a masked render on the Imagen route
    openai_image_model: str | None
    source_images: bool  # renders edit the customer's photo

    @classmethod
    def from_config(cls) -> ProviderRoute:
        order = tuple(name.strip() for name in (config.RENDER_PROVIDERS.value() or "").split(",") if name.strip())
        google, openai = "google" in order, "openai" in order
        imagen = google and config.GOOGLE_IMAGE_ROUTE.value() == "imagen"
        return cls(
            order=order,
            google_image_model=config.GOOGLE_IMAGE_MODEL.value() if google else None,
            google_image_route=config.GOOGLE_IMAGE_ROUTE.value() if google else None,
            google_upscale_model=config.GOOGLE_UPSCALE_MODEL.value() if google else None,
            google_edit_model=config.GOOGLE_EDIT_MODEL.value() if imagen else None,
            openai_image_model=config.OPENAI_IMAGE_MODEL.value() if openai else None,
            source_images=bool(config.RENDER_SOURCE_IMAGE_HOSTS.value()),
        )


def render_prompt_version() -> str:
    return f"prompt-{prompt.builder_digest()}"


def raw_render_version(route: ProviderRoute | None = None) -> str:
    route = route or ProviderRoute.from_config()
    code = [fingerprints.source_digest(fitting)]
    if "local" in route.order:
        code.append(fingerprints.source_digest(local, edit_masks))
    unknown = sorted(set(route.order) - set(KNOWN))  # refused when the resource loads; named here too
    return f"{'+'.join(route.order) or 'none'}-{fingerprints.digest([route, code, unknown])}"


@cache
def qa_verdict_version() -> str:
    images = sorted(
        (path.name, fingerprints.digest(path.read_bytes().hex()))
        for path in failure_images.FAILURE_IMAGES.glob("*.png")
    )
    return f"qa-{fingerprints.digest([fingerprints.source_digest(qa, phash, failure_images), images])}"


def cdn_image_version() -> str:
    return f"variants-{fingerprints.source_digest(variants, imaging, object_keys)}"
