"""The render jobs the benchmark enqueues: the web app's payload shape, a fresh render and
organization per job (so no duplicate check or credit balance links two jobs)."""

from __future__ import annotations

import uuid
from typing import Any

from render_assets.domain.payload import parse_job
from render_assets.domain.queue_contract import job_options


def bench_job(resolution: str, *, tag: str = "bench") -> dict[str, Any]:
    suffix = uuid.uuid4().hex[:12]
    return {
        "renderId": f"{tag}-{suffix}",
        "projectId": "proj-bench",
        "sceneId": "scene-bench",
        "userId": "user-bench",
        "organizationId": f"org-{tag}-{suffix}",
        "subscriptionTier": "pro",
        "sourceImageUrl": "https://example.com/uploads/backyard.jpg",
        "prompt": {"system": "You are a landscape visualization assistant.", "user": "a cozy backyard with a pond"},
        "annotations": [
            {
                "type": "assetInstance",
                "data": {
                    "id": "a1",
                    "category": "plant",
                    "name": "Japanese Maple",
                    "position": {"x": 0.25, "y": 0.8},
                    "size": {"width": 0.2, "height": 0.3},
                },
            },
            {
                "type": "assetInstance",
                "data": {
                    "id": "a2",
                    "category": "water",
                    "name": "koi pond",
                    "position": {"x": 0.8, "y": 0.8},
                    "size": {"width": 0.2, "height": 0.1},
                },
            },
        ],
        "settings": {"provider": "google-imagen", "resolution": resolution, "format": "PNG", "quality": 80},
    }


def web_app_options(data: dict[str, Any]) -> dict[str, Any]:
    """BullMQ options exactly as the web app sets them (domain/queue_contract.py)."""
    return job_options(parse_job(data))
