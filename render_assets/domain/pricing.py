"""What a render costs in credits, priced exactly as the web app prices it."""

from __future__ import annotations

from render_assets.domain.payload import RenderSettings

# The web app's thresholds are square sides: above 1024x1024, above 2048x2048.
ONE_MEGAPIXEL = 1024 * 1024
FOUR_MEGAPIXELS = 2048 * 2048
HIGH_QUALITY_ABOVE = 75


def render_cost(settings: RenderSettings) -> int:
    """1 credit; +1 above 1024x1024 pixels; +2 more above 2048x2048; +1 when quality is above 75.

    So 1024² costs 1, 2048² costs 2 and 4096² costs 4, each +1 above quality 75.
    """
    width, height = settings.size
    pixels = width * height
    cost = 1
    if pixels > ONE_MEGAPIXEL:
        cost += 1
    if pixels > FOUR_MEGAPIXELS:
        cost += 2
    if settings.quality is not None and settings.quality > HIGH_QUALITY_ABOVE:
        cost += 1
    return cost
