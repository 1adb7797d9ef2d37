"""A design's placed elements, as renderers need them: what the prompt builder reads off the
payload's annotations and the providers draw (the local renderer places them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SceneElement:
    """One placed design element, as the renderer needs it (no payload knowledge)."""

    category: str  # plant, hardscape, feature, lighting, water, or anything else
    name: str
    x: float  # normalized 0..1 from the left
    y: float  # normalized 0..1 from the top
    size: float = 0.1  # normalized extent relative to the image's shorter side
