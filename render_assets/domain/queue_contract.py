"""How the web app enqueues a render on BullMQ: job name, options and tier priorities."""

from __future__ import annotations

from typing import Any

from render_assets.domain.payload import RenderJob

# BullMQ serves the lowest number first.
TIER_PRIORITY = {"growth": 1, "pro": 3, "starter": 5}


def job_options(job: RenderJob) -> dict[str, Any]:
    return {
        "attempts": 3,
        "backoff": {"type": "exponential", "delay": 1000},
        "removeOnComplete": {"age": 3600, "count": 100},
        "removeOnFail": {"age": 86400},
        "priority": TIER_PRIORITY[job.subscriptionTier],
    }
