"""A provider of our own that draws a flat grey image, which QA must refuse: a render that fails
on every attempt without touching any real provider."""

from __future__ import annotations

from typing import Any

from PIL import Image

from render_assets.orchestration.resources import ProvidersResource
from render_assets.providers.base import GeneratedImage, GenerationRequest


class BlankProvider:
    name = "blank"

    def generate(self, request: GenerationRequest) -> GeneratedImage:
        image = Image.new("RGB", (request.width, request.height), (128, 128, 128))
        return GeneratedImage(image=image, provider=self.name, model="flat", latency_s=0.0)


class BlankProviders(ProvidersResource):
    def get(self) -> list[Any]:
        return [BlankProvider()]
