"""Rough list-price estimates per generated image, for metadata and dashboards only.

Not billing: the providers' invoices are the truth. Prices are per image, in USD, as published
for the model families in 2026; an unknown model id falls back to its family's figure."""

from __future__ import annotations

# Gemini image models on Vertex, by output size tier.
GEMINI_FLASH = {"1K": 0.067, "2K": 0.101, "4K": 0.151}
GEMINI_PRO = {"1K": 0.134, "2K": 0.134, "4K": 0.24}
# Imagen generate models: one price per image, any size.
IMAGEN = {"fast": 0.02, "ultra": 0.06, "standard": 0.04}
IMAGEN_UPSCALE = 0.06
# GPT image models at 1024x1024, by quality; larger sizes scale with the pixel count.
OPENAI_1MP = {"low": 0.011, "medium": 0.042, "high": 0.167}


def gemini_image(model: str, image_size: str) -> float:
    table = GEMINI_PRO if "pro" in model else GEMINI_FLASH
    return table.get(image_size, table["1K"])


def imagen(model: str) -> float:
    tier = next((tier for tier in ("fast", "ultra") if tier in model), "standard")
    return IMAGEN[tier]


def openai_image(quality: str, width: int, height: int) -> float:
    return round(OPENAI_1MP.get(quality, OPENAI_1MP["high"]) * width * height / (1024 * 1024), 4)
