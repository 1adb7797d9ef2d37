"""Real provider clients, breakers and budgets wired to the fake image APIs and real Redis."""

from __future__ import annotations

from typing import Any

import numpy as np
import redis
from PIL import Image

from render_assets.orchestration.resources import ProvidersResource
from render_assets.providers.budget import BudgetSettings, RetryBudget
from render_assets.providers.circuit_breaker import BreakerSettings, CircuitBreaker
from render_assets.providers.fitting import center_crop
from render_assets.providers.google_image import GoogleImageProvider
from render_assets.providers.openai_image import OpenAIImageProvider
from render_assets_tests.conftest import REDIS_URL
from render_assets_tests.fakes.image_apis import FakeImageApis

OPENAI_TEST_KEY = "sk-test-4f1c9a0d77e2b5c3"  # not a real key; tests check it never leaks


def google(fake: FakeImageApis, **options: Any) -> GoogleImageProvider:
    settings: dict[str, Any] = {
        "project": "test-project",
        "region": "global",
        "model": "gemini-3.1-flash-image",
        "api_endpoint": fake.url,
        "timeout_s": 10.0,
    }
    if options.get("route") == "imagen":
        settings.update(region="us-central1", model="imagen-4.0-generate-001")
    settings.update(options)
    return GoogleImageProvider(**settings)


def openai(fake: FakeImageApis, **options: Any) -> OpenAIImageProvider:
    settings: dict[str, Any] = {
        "api_key": OPENAI_TEST_KEY,
        "model": "gpt-image-2",
        "base_url": f"{fake.url}/v1",
        "timeout_s": 10.0,
    }
    settings.update(options)
    return OpenAIImageProvider(**settings)


def breaker(prefix: str, *, failures: int = 3, window_s: float = 60.0, cooldown_s: float = 60.0) -> CircuitBreaker:
    settings = BreakerSettings(failures_to_open=failures, window_s=window_s, cooldown_s=cooldown_s, probe_lease_s=30)
    return CircuitBreaker(redis.Redis.from_url(REDIS_URL), settings, prefix=f"{prefix}:breaker")


def budget(prefix: str, run_id: str = "run-1", *, deadline_s: float = 30.0, max_calls: int = 6) -> RetryBudget:
    settings = BudgetSettings(deadline_s=deadline_s, max_calls=max_calls)
    return RetryBudget(redis.Redis.from_url(REDIS_URL), f"{prefix}:budget:{run_id}", settings)


def resource(fake: FakeImageApis, prefix: str, **options: Any) -> ProvidersResource:
    """The Dagster resource as definitions.py builds it, pointed at the fakes."""
    settings: dict[str, Any] = {
        "order": "google,openai",
        "redis_url": REDIS_URL,
        "state_prefix": prefix,
        "google_project": "test-project",
        "google_api_endpoint": fake.url,
        "google_timeout_s": 10.0,
        "openai_api_key": OPENAI_TEST_KEY,
        "openai_base_url": f"{fake.url}/v1",
        "openai_timeout_s": 10.0,
        "job_deadline_s": 30.0,
    }
    settings.update(options)
    return ProvidersResource(**settings)


def difference(delivered: Image.Image, expected: Image.Image) -> float:
    """Mean absolute difference (0..255) of small copies; compares content, not resampling."""
    size = (64, 64)
    a = np.asarray(delivered.convert("RGB").resize(size, Image.Resampling.BOX), np.float32)
    b = np.asarray(expected.convert("RGB").resize(size, Image.Resampling.BOX), np.float32)
    return float(np.abs(a - b).mean())


def expected_delivery(native: Image.Image, width: int, height: int) -> Image.Image:
    """What a provider's native image should look like once cropped to the requested aspect."""
    return center_crop(native, width, height)
