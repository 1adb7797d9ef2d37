"""The provider interface: what every image generator takes and gives back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from PIL import Image


@dataclass(frozen=True)
class SceneElement:
    """One placed design element, as the renderer needs it (no payload knowledge)."""

    category: str  # plant, hardscape, feature, lighting, water, or anything else
    name: str
    x: float  # normalized 0..1 from the left
    y: float  # normalized 0..1 from the top
    size: float = 0.1  # normalized extent relative to the image's shorter side


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str
    negative_prompt: str
    width: int
    height: int
    seed: int
    quality: int | None = None
    elements: tuple[SceneElement, ...] = ()


@dataclass
class GeneratedImage:
    image: Image.Image
    provider: str
    model: str
    latency_s: float
    cost_estimate_usd: float = 0.0
    facts: dict[str, Any] = field(default_factory=dict)


class ProviderError(Exception):
    """A provider could not deliver. `transient` says whether a retry may help."""

    def __init__(self, message: str, *, provider: str, transient: bool) -> None:
        super().__init__(message)
        self.provider = provider
        self.transient = transient


class ImageProvider(Protocol):
    name: str

    def generate(self, request: GenerationRequest) -> GeneratedImage: ...
