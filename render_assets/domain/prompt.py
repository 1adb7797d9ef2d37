"""Design annotations → the text prompt sent to an image provider (first cut).

Every annotation kind contributes and any subset works, including none. The same payload gives
the same prompt, hash and seed.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from render_assets.domain.payload import RenderJob
from render_assets.providers.base import SceneElement

NEGATIVE_PROMPT = (
    "text, watermark, logo, people, cartoon style, anime style, blurry, distorted perspective, low resolution"
)
TECHNICAL = "proper perspective, accurate scale, realistic proportions, natural lighting and shadows, depth of field"
# C0 and C1 control characters, and Unicode format characters (bidi overrides, zero-width).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]+")
MAX_NAME_CHARS = 80

CATEGORY_PHRASES: dict[str, str] = {
    "plant": "plantings of",
    "hardscape": "hardscape elements including",
    "feature": "landscape features including",
    "lighting": "landscape lighting with",
    "water": "water features including",
}


@dataclass(frozen=True)
class BuiltPrompt:
    text: str
    negative: str
    sha256: str
    seed: int
    contributions: dict[str, int] = field(default_factory=dict)


def clean_text(value: Any, limit: int) -> str:
    """Collapse control characters and whitespace, and cap the length."""
    text = _CONTROL.sub(" ", str(value)) if value is not None else ""
    return " ".join(text.split())[:limit]


def _number(value: Any, default: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    try:
        number = float(value)
    except OverflowError:  # an integer too large for a float
        return default
    return number if math.isfinite(number) else default


def _normalized(value: float, extent: int) -> float:
    """Positions may be normalized already (0..1) or in pixels of the scene."""
    if value > 1.0:
        value = value / extent
    return min(max(value, 0.0), 1.0)


def scene_elements(job: RenderJob) -> tuple[SceneElement, ...]:
    """The placed design elements (assetInstance annotations), as a renderer needs them."""
    width, height = job.settings.size
    elements = []
    for annotation in job.annotations:
        if annotation.type != "assetInstance" or not isinstance(annotation.data, dict):
            continue
        data = annotation.data
        position = data.get("position") if isinstance(data.get("position"), dict) else {}
        size = data.get("size") if isinstance(data.get("size"), dict) else {}
        assert isinstance(position, dict) and isinstance(size, dict)
        extent = max(_number(size.get("width"), 0.1), _number(size.get("height"), 0.1))
        elements.append(
            SceneElement(
                category=clean_text(data.get("category") or "plant", 32).lower(),
                name=clean_text(data.get("name") or "element", MAX_NAME_CHARS),
                x=_normalized(_number(position.get("x"), 0.5), width),
                y=_normalized(_number(position.get("y"), 0.5), height),
                size=_normalized(extent, min(width, height)) if extent > 1 else max(extent, 0.02),
            )
        )
    return tuple(elements)


def _labels(job: RenderJob) -> list[str]:
    labels = []
    for annotation in job.annotations:
        if annotation.type == "textLabel" and isinstance(annotation.data, dict):
            text = clean_text(annotation.data.get("text"), 120)
            if text:
                labels.append(text)
    return labels


def build_prompt(job: RenderJob) -> BuiltPrompt:
    elements = scene_elements(job)
    grouped: dict[str, list[str]] = defaultdict(list)
    for element in elements:
        grouped[element.category].append(element.name)
    parts = ["A photorealistic landscape design visualization"]
    user_text = clean_text(job.prompt.user, 1_000)
    if user_text:
        parts.append(f"of {user_text}")
    descriptions = [
        f"{CATEGORY_PHRASES.get(category, category + ' elements including')} {', '.join(names)}"
        for category, names in sorted(grouped.items())
    ]
    if descriptions:
        parts.append("featuring " + "; ".join(descriptions))
    labels = _labels(job)
    if labels:
        parts.append("with notes: " + "; ".join(labels))
    quality = job.settings.quality
    parts.append("ultra detailed, high resolution" if quality is None or quality > 50 else "clean, detailed")
    text = ", ".join(parts) + ". " + TECHNICAL + "."
    digest = hashlib.sha256(text.encode()).hexdigest()
    contributions = {
        "assetInstance": len(elements),
        "textLabel": len(labels),
        "mask": sum(1 for annotation in job.annotations if annotation.type == "mask"),
    }
    return BuiltPrompt(
        text=text, negative=NEGATIVE_PROMPT, sha256=digest, seed=int(digest[:8], 16), contributions=contributions
    )
