"""Job payloads in the web app's format, for tests."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def example(name: str = "backyard_pro") -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text())
    return data


def web_app_job(
    *,
    render_id: str | None = None,
    organization_id: str = "org-test",
    resolution: str = "512x512",
    image_format: str = "PNG",
    quality: int | None = 60,
    tier: str = "pro",
) -> dict[str, Any]:
    data = copy.deepcopy(example())
    data["renderId"] = render_id or f"render-{uuid.uuid4().hex[:12]}"
    data["organizationId"] = organization_id
    data["subscriptionTier"] = tier
    data["settings"].update(resolution=resolution, format=image_format)
    if quality is None:
        data["settings"].pop("quality", None)
    else:
        data["settings"]["quality"] = quality
    return data
