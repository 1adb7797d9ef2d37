"""A terminated render run stops: the interrupt `terminate` sends fails the step without the retry
Dagster would otherwise give it, and the attempt is settled for BullMQ to retry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dagster._core.errors import DagsterExecutionInterruptedError
from PIL import Image

from render_assets.orchestration.resources import ProvidersResource
from render_assets.orchestration.run_interrupts import TERMINATED
from render_assets.persistence import renders
from render_assets.persistence.models import RenderStatus
from render_assets.providers.base import GeneratedImage, GenerationRequest
from render_assets_tests.payloads import web_app_job
from render_assets_tests.stack import InProcessStack, in_process_stack

CALLS: list[str] = []


class InterruptedOnceProvider:
    """Interrupted in its first call, as SIGTERM interrupts a run worker mid-generation."""

    name = "interrupted-once"

    def generate(self, request: GenerationRequest) -> GeneratedImage:
        CALLS.append(request.prompt)
        if len(CALLS) == 1:
            raise DagsterExecutionInterruptedError("SIGTERM")
        image = Image.effect_noise((request.width, request.height), 64).convert("RGB")
        return GeneratedImage(image=image, provider=self.name, model="noise", latency_s=0.0)


class InterruptedOnceProviders(ProvidersResource):
    def get(self) -> list[Any]:
        return [InterruptedOnceProvider()]


@pytest.fixture
def stack(sqlite_url: str, queue_name: str, tmp_path: Path) -> Iterator[InProcessStack]:
    CALLS.clear()
    with in_process_stack(sqlite_url, queue_name, tmp_path, providers=InterruptedOnceProviders()) as stack:
        yield stack


def test_an_interrupted_render_step_fails_without_a_retry_and_is_settled(stack: InProcessStack) -> None:
    data = web_app_job()
    job_id = stack.enqueue(data, attempts=2, backoff={"type": "fixed", "delay": 50})

    [run] = stack.run_all()

    assert not run.success
    assert len(CALLS) == 1  # Dagster's retry policy would have asked the provider again, and delivered
    with stack.database.session() as session:
        row = renders.require(session, data["renderId"])
        assert (row.status, row.error) == (RenderStatus.RETRYING, TERMINATED)
    assert stack.queue.state(job_id) in {"delayed", "waiting"}  # BullMQ's next attempt renders it
    assert [kind for kind, _ in stack.ledger(data["renderId"])] == ["charge"]
