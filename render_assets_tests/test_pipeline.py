"""Whole renders, in-process: sensor tick → run → BullMQ outcome, ledger and stored images."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
from dagster import AssetKey
from PIL import Image

from render_assets.domain.payload import parse_job
from render_assets.domain.pricing import render_cost
from render_assets.persistence import ledger, renders
from render_assets.persistence.models import CreditTransaction, RenderStatus
from render_assets_tests.bullmq_jobs import bull_job
from render_assets_tests.fakes.blank_provider import BlankProviders
from render_assets_tests.payloads import web_app_job
from render_assets_tests.stack import InProcessStack, in_process_stack

RENDER_ASSET_KEYS = [AssetKey(name) for name in ("render_prompt", "raw_render", "qa_verdict", "cdn_image")]


def transactions(stack: InProcessStack, render_id: str) -> list[tuple[str, int]]:
    with stack.database.session() as session:
        rows = session.query(CreditTransaction).filter_by(render_id=render_id).order_by(CreditTransaction.id)
        return [(row.kind, row.amount) for row in rows]


def local_file(url: str) -> bytes:
    return Path(urlparse(url).path).read_bytes()


@pytest.fixture
def stack(database_url: str, queue_name: str, tmp_path: Path) -> Iterator[InProcessStack]:
    with in_process_stack(database_url, queue_name, tmp_path) as stack:
        yield stack


@pytest.mark.parametrize(("resolution", "image_format"), [("1024x1024", "PNG"), ("1536x640", "JPEG")])
def test_a_job_is_delivered_charged_once_and_completed_in_bullmq(
    stack: InProcessStack, resolution: str, image_format: str
) -> None:
    data = web_app_job(resolution=resolution, image_format=image_format, quality=80)
    job_id = stack.enqueue(data)

    [result] = stack.run_all()

    assert result.success
    job = bull_job(stack.queue_name, job_id)
    assert job.finishedOn and job.returnvalue is not None
    returned = job.returnvalue
    width, height = (int(side) for side in resolution.split("x"))
    assert returned["renderId"] == data["renderId"]
    assert returned["metadata"] == {
        "width": width,
        "height": height,
        "format": image_format,
        "fileSize": len(local_file(returned["imageUrl"])),
    }
    assert len(returned["promptHash"]) == 64 and returned["processingTime"] >= 0
    master = Image.open(io.BytesIO(local_file(returned["imageUrl"])))
    assert (master.size, master.format) == ((width, height), image_format)
    assert Image.open(io.BytesIO(local_file(returned["thumbnailUrl"]))).size == (300, 300)
    assert job.progress == {"percent": 100, "stage": "completed", "message": "Render complete"}
    assert transactions(stack, data["renderId"]) == [("charge", -render_cost(parse_job(data).settings))]
    with stack.database.session() as session:
        row = renders.require(session, data["renderId"])
        assert (row.status, row.progress, row.image_url) == (RenderStatus.COMPLETED, 100, returned["imageUrl"])
    materialized = {event.asset_key for event in result.get_asset_materialization_events()}
    assert materialized == set(RENDER_ASSET_KEYS)


def test_insufficient_credits_fails_at_once_and_charges_nothing(
    database_url: str, queue_name: str, tmp_path: Path
) -> None:
    with in_process_stack(database_url, queue_name, tmp_path, initial_credits=1) as stack:
        data = web_app_job(resolution="4096x4096", quality=None)  # costs 4
        job_id = stack.enqueue(data)

        [result] = stack.run_all()

        assert not result.success
        job = bull_job(stack.queue_name, job_id)
        assert job.failedReason == "insufficient credits: need 4, have 1"
        assert stack.queue.state(job_id) == "failed"  # not retried although attempts remain
        assert transactions(stack, data["renderId"]) == []
        with stack.database.session() as session:
            assert renders.require(session, data["renderId"]).status == RenderStatus.FAILED
        assert not stack.tick().run_requests


def test_a_failure_with_attempts_left_is_retried_and_the_last_one_refunds_once(
    database_url: str, queue_name: str, tmp_path: Path
) -> None:
    with in_process_stack(database_url, queue_name, tmp_path, providers=BlankProviders()) as stack:
        data = web_app_job()
        job_id = stack.enqueue(data, attempts=2, backoff={"type": "fixed", "delay": 50})

        [first] = stack.run_all()

        assert not first.success
        assert stack.queue.state(job_id) in {"delayed", "waiting"}
        assert [kind for kind, _ in transactions(stack, data["renderId"])] == ["charge"]
        with stack.database.session() as session:
            assert renders.require(session, data["renderId"]).status == RenderStatus.RETRYING

        time.sleep(0.2)
        [second] = stack.run_all()

        assert not second.success
        job = bull_job(stack.queue_name, job_id)
        assert stack.queue.state(job_id) == "failed"
        assert job.failedReason.startswith("quality check failed: image is blank")
        cost = render_cost(parse_job(data).settings)
        assert transactions(stack, data["renderId"]) == [("charge", -cost), ("refund", cost)]
        with stack.database.session() as session:
            assert renders.require(session, data["renderId"]).status == RenderStatus.FAILED
            assert ledger.is_charged(session, data["renderId"])


def test_an_operator_rerun_makes_new_objects_and_charges_nothing(stack: InProcessStack) -> None:
    data = web_app_job()
    job_id = stack.enqueue(data)
    [delivered] = stack.run_all()
    assert delivered.success
    first_url = bull_job(stack.queue_name, job_id).returnvalue["imageUrl"]
    charged = transactions(stack, data["renderId"])

    rerun = stack.execute(partition_key=data["renderId"])

    assert rerun.success
    assert transactions(stack, data["renderId"]) == charged
    assert rerun.output_for_node("cdn_image")["renderId"] == data["renderId"]
    assert local_file(first_url)  # the delivered objects stay where the web app points
    assert stack.queue.state(job_id) == "completed"


def test_a_job_for_a_delivered_render_completes_with_the_stored_result(stack: InProcessStack) -> None:
    data = web_app_job()
    stack.enqueue(data)
    stack.run_all()
    again = stack.enqueue(data)

    assert not stack.tick().run_requests
    assert stack.queue.state(again) == "completed"
    assert bull_job(stack.queue_name, again).returnvalue["renderId"] == data["renderId"]
    assert len(transactions(stack, data["renderId"])) == 1


def test_gcs_storage_holds_asset_values_and_delivered_images(
    sqlite_url: str, queue_name: str, tmp_path: Path, gcs_emulator: str
) -> None:
    from google.cloud import storage

    prefix = f"it-{queue_name}"
    with in_process_stack(sqlite_url, queue_name, tmp_path) as stack:
        stack.storage_url = f"gs://renders/{prefix}"
        data = web_app_job(image_format="JPEG")
        job_id = stack.enqueue(data)
        [result] = stack.run_all()
        assert result.success

    bucket = storage.Client().bucket("renders")
    names = {blob.name for blob in bucket.list_blobs(prefix=prefix)}
    render_id = data["renderId"]
    assert {
        f"{prefix}/dagster/render_prompt/{render_id}.json",
        f"{prefix}/dagster/raw_render/{render_id}.png",
        f"{prefix}/dagster/qa_verdict/{render_id}.json",
        f"{prefix}/dagster/cdn_image/{render_id}.json",
    } <= names
    returned = bull_job(queue_name, job_id).returnvalue
    master = next(name for name in names if name.endswith("-master.jpg"))
    assert master.startswith(f"{prefix}/renders/{data['organizationId']}/{data['projectId']}/{render_id}/")
    blob = bucket.get_blob(master)
    assert blob is not None
    assert (blob.content_type, blob.cache_control) == ("image/jpeg", "public, max-age=31536000, immutable")
    assert blob.metadata == {
        "renderId": render_id,
        "projectId": data["projectId"],
        "promptHash": returned["promptHash"],
    }
    assert Image.open(io.BytesIO(blob.download_as_bytes())).size == (512, 512)
    assert returned["imageUrl"].endswith(master)
