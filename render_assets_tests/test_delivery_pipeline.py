"""Whole renders against GCS (the real client, the emulator behind a fault proxy named by
`STORAGE_EMULATOR_HOST`): storage hiccups cost pauses, never a second provider call, and a
delivery that fails for good leaves no delivered object behind."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pytest
from dagster import AssetKey, DagsterEventType
from google.cloud import storage

from render_assets.orchestration.io_managers import BlobIOManager
from render_assets.orchestration.resources import BlobStorageResource, ProvidersResource
from render_assets.persistence import renders
from render_assets.persistence.models import RenderStatus
from render_assets.providers.base import GeneratedImage, GenerationRequest
from render_assets.providers.local import LocalProvider
from render_assets_tests.fault_proxy import FaultProxy
from render_assets_tests.payloads import web_app_job
from render_assets_tests.stack import InProcessStack, in_process_stack

PROVIDER_CALLS: list[int] = []


class CountingProvider:
    """The local renderer, counting its calls: each one stands for a paid provider request."""

    name = "local"

    def generate(self, request: GenerationRequest) -> GeneratedImage:
        PROVIDER_CALLS.append(request.seed)
        return LocalProvider().generate(request)


class CountingProviders(ProvidersResource):
    def get(self) -> list[Any]:
        return [CountingProvider()]


@dataclass
class GcsStack(InProcessStack):
    """The in-process stack on gs:// storage, retrying storage requests briefly (test speed)."""

    retry_timeout_s: float = 10.0

    @property
    def resources(self) -> dict[str, Any]:
        resources = super().resources
        storage_resource = BlobStorageResource(
            url=self.storage_url, retry_timeout_s=self.retry_timeout_s, retry_initial_delay_s=0.01
        )
        resources.update(storage=storage_resource, io_manager=BlobIOManager(storage=storage_resource))
        return resources


@pytest.fixture
def stack_factory(sqlite_url: str, queue_name: str, tmp_path: Path) -> Iterator[Any]:
    PROVIDER_CALLS.clear()
    with in_process_stack(sqlite_url, queue_name, tmp_path, providers=CountingProviders()) as base:

        def make(retry_timeout_s: float) -> GcsStack:
            copied = {field.name: getattr(base, field.name) for field in fields(base)}
            copied["storage_url"] = f"gs://renders/pipeline-{queue_name}"
            return GcsStack(**copied, retry_timeout_s=retry_timeout_s)

        yield make


def _delivered_names(prefix: str, render: dict[str, Any]) -> list[str]:
    folder = f"{prefix}/renders/{render['organizationId']}/{render['projectId']}/{render['renderId']}/"
    return sorted(blob.name for blob in storage.Client().list_blobs("renders", prefix=folder))


def test_storage_503s_are_ridden_out_without_a_second_provider_call(proxy: FaultProxy, stack_factory: Any) -> None:
    stack: GcsStack = stack_factory(10.0)
    data = web_app_job(image_format="PNG")
    # The provider's image is stored by the IO manager, then the delivery uploads three variants.
    proxy.fail(2, lambda seen: seen.mentions("raw_render"))
    proxy.fail(3, lambda seen: seen.mentions("-master.png"))
    proxy.fail(2, lambda seen: seen.mentions("-thumbnail.webp"))
    stack.enqueue(data)

    [result] = stack.run_all()

    assert result.success
    assert len(PROVIDER_CALLS) == 1
    assert proxy.statuses().count(503) == 7
    prefix = stack.storage_url.removeprefix("gs://renders/")
    names = _delivered_names(prefix, data)
    assert sorted(re.sub(r"^.*/[0-9a-f]{16}-", "", name) for name in names) == [
        "master.png",
        "thumbnail.webp",
        "web.webp",
    ]
    delivered = result.output_for_node("cdn_image")
    assert {delivered["imageUrl"], delivered["webImageUrl"], delivered["thumbnailUrl"]} == {
        f"{proxy.url}/renders/{name}" for name in names
    }
    [materialization] = [
        event.materialization
        for event in result.get_asset_materialization_events()
        if event.materialization.asset_key == AssetKey("cdn_image")
    ]
    metadata = materialization.metadata
    assert metadata["thumbnail"].value == f"![thumbnail](<{delivered['thumbnailUrl']}>)"
    assert metadata["web_image_url"].value == delivered["webImageUrl"]


def test_a_delivery_that_fails_for_good_leaves_nothing_and_calls_no_provider_again(
    proxy: FaultProxy, stack_factory: Any
) -> None:
    stack: GcsStack = stack_factory(0.3)
    data = web_app_job(image_format="JPEG")
    proxy.fail(1_000_000, lambda seen: seen.mentions("-thumbnail.webp"))
    job_id = stack.enqueue(data)

    [result] = stack.run_all()

    assert not result.success
    assert len(PROVIDER_CALLS) == 1  # the step retries re-ran the delivery, not the provider
    retried = [event.step_key for event in result.all_events if event.event_type == DagsterEventType.STEP_UP_FOR_RETRY]
    assert retried == ["cdn_image", "cdn_image"]  # its own retry policy, after the storage retries ran out
    proxy.clear()
    assert _delivered_names(stack.storage_url.removeprefix("gs://renders/"), data) == []
    with stack.database.session() as session:
        row = renders.require(session, data["renderId"])
        assert row.status == RenderStatus.RETRYING
        assert row.error == "could not store the images: RetryError, last HTTP 503"
    assert stack.queue.state(job_id) in {"delayed", "waiting"}  # BullMQ will try the render again
