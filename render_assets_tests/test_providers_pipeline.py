"""The real providers inside whole renders (sensor tick → run → BullMQ, ledger, storage): true 4K
masters, failover, and one charge whatever the providers do."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from dagster import AssetKey, ExecuteInProcessResult
from PIL import Image

from render_assets.domain.payload import parse_job
from render_assets.domain.pricing import render_cost
from render_assets_tests.bullmq_jobs import bull_job
from render_assets_tests.fakes.image_apis import FakeImageApis
from render_assets_tests.fakes.providers import OPENAI_TEST_KEY, difference, resource
from render_assets_tests.payloads import web_app_job
from render_assets_tests.stack import InProcessStack, in_process_stack


@pytest.fixture
def fake() -> Iterator[FakeImageApis]:
    with FakeImageApis() as apis:
        yield apis


def master(stack: InProcessStack, job_id: str) -> Image.Image:
    url = bull_job(stack.queue_name, job_id).returnvalue["imageUrl"]
    return Image.open(io.BytesIO(Path(urlparse(url).path).read_bytes()))


def raw_render_metadata(result: ExecuteInProcessResult) -> dict[str, Any]:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key == AssetKey("raw_render")]
    materialization = event.step_materialization_data.materialization
    return {key: value.value for key, value in materialization.metadata.items()}


def job(resolution: str, provider: str) -> dict[str, Any]:
    data = web_app_job(resolution=resolution, image_format="JPEG", quality=80)
    data["settings"]["provider"] = provider
    return data


@pytest.mark.parametrize(
    ("resolution", "preferred", "endpoint"),
    [("4096x4096", "google-imagen", "gemini"), ("3840x2160", "openai-gpt-image", "openai")],
)
def test_a_4k_job_delivers_a_master_of_exactly_that_size_with_the_providers_picture(
    sqlite_url: str, queue_name: str, tmp_path: Path, fake: FakeImageApis, prefix: str,
    resolution: str, preferred: str, endpoint: str,
) -> None:  # fmt: skip
    width, height = (int(side) for side in resolution.split("x"))
    with in_process_stack(sqlite_url, queue_name, tmp_path, providers=resource(fake, prefix)) as stack:
        job_id = stack.enqueue(job(resolution, preferred))

        [result] = stack.run_all()

        assert result.success
        delivered = master(stack, job_id)
        assert delivered.size == (width, height)
        assert difference(delivered, fake.sent[endpoint]) < 6  # the provider's image, not a blank canvas
        other = "openai" if endpoint == "gemini" else "gemini"
        assert fake.calls(other) == 0
        metadata = raw_render_metadata(result)
        native = fake.sent[endpoint].size
        assert metadata["provider"] == ("google" if endpoint == "gemini" else "openai")
        assert metadata["model"] == ("gemini-3.1-flash-image" if endpoint == "gemini" else "gpt-image-2")
        assert (metadata["attempts"], metadata["failovers"]) == (1, 0)
        assert metadata["native_size"] == f"{native[0]}x{native[1]}"
        assert metadata["upscale_method"] == "none"
        assert metadata["cost_estimate_usd"] > 0 and metadata["latency_s"] > 0
        assert metadata["seed"] == (None if endpoint == "openai" else metadata["seed"])
        assert (metadata["width"], metadata["height"]) == (width, height)


def test_a_timed_out_provider_is_not_asked_again_and_the_render_is_charged_once(
    database_url: str, queue_name: str, tmp_path: Path, fake: FakeImageApis, prefix: str
) -> None:
    fake.fail("gemini", "slow", delay_s=2.0)
    providers = resource(fake, prefix, google_timeout_s=0.5)
    with in_process_stack(database_url, queue_name, tmp_path, providers=providers) as stack:
        data = job("1024x1024", "google-imagen")
        job_id = stack.enqueue(data)

        [result] = stack.run_all()

        assert result.success
        assert stack.queue.state(job_id) == "completed"
        assert (fake.calls("gemini"), fake.calls("openai")) == (1, 1)
        assert fake.billed("gemini") <= 1 and fake.billed("openai") == 1
        assert stack.ledger(data["renderId"]) == [("charge", -render_cost(parse_job(data).settings))]
        metadata = raw_render_metadata(result)
        assert (metadata["provider"], metadata["attempts"], metadata["failovers"]) == ("openai", 2, 1)


def test_refused_by_both_providers_fails_without_retries_and_refunds_once(
    database_url: str, queue_name: str, tmp_path: Path, fake: FakeImageApis, prefix: str
) -> None:
    fake.fail("openai", "refuse")
    fake.fail("gemini", "refuse")
    with in_process_stack(database_url, queue_name, tmp_path, providers=resource(fake, prefix)) as stack:
        data = job("1024x1024", "openai-gpt-image")
        job_id = stack.enqueue(data)  # the web app's options: 3 attempts

        [result] = stack.run_all()

        assert not result.success
        assert stack.queue.state(job_id) == "failed"  # permanent: BullMQ does not try again
        reason = bull_job(stack.queue_name, job_id).failedReason
        assert reason.startswith("the image providers refused to render this design under their content policies")
        assert (fake.calls("openai"), fake.calls("gemini")) == (1, 1)  # no Dagster step retry either
        cost = render_cost(parse_job(data).settings)
        assert stack.ledger(data["renderId"]) == [("charge", -cost), ("refund", cost)]


def test_an_outage_of_both_providers_stays_within_the_deadline_and_charges_once(
    sqlite_url: str, queue_name: str, tmp_path: Path, fake: FakeImageApis, prefix: str
) -> None:
    fake.fail("gemini", "slow", delay_s=3.0)
    fake.fail("openai", "server_error", status=503)
    providers = resource(fake, prefix, google_timeout_s=0.4, job_deadline_s=1.5)
    with in_process_stack(sqlite_url, queue_name, tmp_path, providers=providers) as stack:
        data = job("1024x1024", "google-imagen")
        job_id = stack.enqueue(data)

        [result] = stack.run_all()

        assert not result.success
        assert stack.queue.state(job_id) in {"delayed", "waiting"}  # transient: BullMQ tries again later
        assert bull_job(stack.queue_name, job_id).failedReason.startswith("no image provider delivered")
        assert fake.calls("gemini") == 1  # timed out once: never asked again in this run
        assert 1 <= fake.calls("openai") <= 5
        assert stack.ledger(data["renderId"]) == [("charge", -render_cost(parse_job(data).settings))]


def test_rejected_credentials_fail_fast_without_leaking_the_key(
    sqlite_url: str, queue_name: str, tmp_path: Path, fake: FakeImageApis, prefix: str
) -> None:
    fake.fail("openai", "auth")
    with in_process_stack(sqlite_url, queue_name, tmp_path, providers=resource(fake, prefix)) as stack:
        data = job("1024x1024", "openai-gpt-image")
        job_id = stack.enqueue(data)

        [result] = stack.run_all()

        assert not result.success
        reason = bull_job(stack.queue_name, job_id).failedReason
        assert reason == "image provider openai is misconfigured (credentials rejected (HTTP 401 invalid_api_key))"
        assert OPENAI_TEST_KEY not in reason
        assert (fake.calls("openai"), fake.calls("gemini")) == (1, 0)
