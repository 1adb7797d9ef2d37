"""QA in the whole pipeline, in-process on SQLite and PostgreSQL: a held render completes its
BullMQ job as `in_review` without delivering; `render-assets review approve` delivers it and
`reject` fails and refunds it; a duplicate fails its attempt and the retry draws a new seed."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlparse

import pytest
from dagster import AssetKey, AssetRecordsFilter
from PIL import Image, ImageEnhance

from render_assets import cli
from render_assets.adapters.blob_storage import LocalBlobStore
from render_assets.adapters.bullmq_queue import BullQueue
from render_assets.domain.qa import QaVerdict
from render_assets.orchestration.resources import ProvidersResource
from render_assets.persistence import quality_reviews, renders
from render_assets.persistence.database import Database
from render_assets.persistence.models import PerceptualHash, QualityReview, RenderStatus
from render_assets.providers.base import GeneratedImage, GenerationRequest
from render_assets.providers.local import LocalProvider
from render_assets.services import review
from render_assets.services.backends import Backends
from render_assets_tests.conftest import REDIS_URL
from render_assets_tests.payloads import web_app_job
from render_assets_tests.stack import InProcessStack, in_process_stack
from render_assets_tests.test_pipeline import bull_job, transactions


def materialized(stack: InProcessStack, name: str, partition: str) -> list[Any]:
    records = stack.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(name), asset_partitions=[partition]), limit=100, ascending=True
    ).records
    return [record.asset_materialization for record in records]


def observed(stack: InProcessStack, name: str, partition: str) -> list[Any]:
    records = stack.instance.fetch_observations(
        AssetRecordsFilter(asset_key=AssetKey(name), asset_partitions=[partition]), limit=100, ascending=True
    ).records
    return [record.asset_observation for record in records]


def local_path(url: str) -> Path:
    return Path(urlparse(url).path)


def row(stack: InProcessStack, render_id: str) -> tuple[str, str | None, str | None]:
    with stack.database.session() as session:
        render = renders.require(session, render_id)
        return render.status, render.image_url, render.error


def the_review(stack: InProcessStack, render_id: str) -> QualityReview:
    with stack.database.session() as session:
        found = quality_reviews.for_render(session, render_id)
        assert found is not None
        return found


@pytest.fixture
def stack(database_url: str, queue_name: str, tmp_path: Path) -> Iterator[InProcessStack]:
    with in_process_stack(database_url, queue_name, tmp_path) as stack:
        yield stack


@pytest.fixture
def cli_env(stack: InProcessStack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`render-assets` pointed at the stack's database, queue and storage."""
    monkeypatch.setenv("DATABASE_URL", stack.database_url)
    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    monkeypatch.setenv("RENDER_QUEUE_NAME", stack.queue_name)
    monkeypatch.setenv("RENDER_STORAGE_URL", stack.storage_url)
    monkeypatch.setenv("RENDER_DATA_DIR", str(tmp_path / "cli-data"))


def held_render(stack: InProcessStack, **job: Any) -> tuple[dict[str, Any], str]:
    data = web_app_job(**job)
    data["settings"]["forceManualReview"] = True
    job_id = stack.enqueue(data)
    [result] = stack.run_all()
    assert result.success
    return data, job_id


def test_a_held_render_completes_in_bullmq_as_in_review_without_delivering(stack: InProcessStack) -> None:
    data, job_id = held_render(stack)
    render_id = data["renderId"]

    job = bull_job(stack.queue_name, job_id)
    assert stack.queue.state(job_id) == "completed"
    held = the_review(stack, render_id)
    assert job.returnvalue["status"] == "in_review" and job.returnvalue["reviewId"] == held.id
    assert job.returnvalue["imageUrl"] is None and job.returnvalue["promptHash"] == held.prompt_hash
    assert row(stack, render_id) == (quality_reviews.IN_REVIEW, None, None)
    assert (held.status, held.score, held.reasons, held.customer_attempt) == (
        "pending",
        1.0,
        ["manual review requested"],
        True,
    )
    assert Image.open(local_path(held.image_url)).size == (512, 512)
    assert transactions(stack, render_id) == [("charge", -1)]
    assert not materialized(stack, "cdn_image", render_id) and not materialized(stack, "qa_verdict", render_id)
    [observation] = observed(stack, "qa_verdict", render_id)
    assert observation.metadata["verdict"].value == "review" and observation.metadata["score"].value == 1.0
    with stack.database.session() as session:
        assert session.get(PerceptualHash, render_id) is not None
    # BullMQ has its answer: nothing is left for the sensor or settlement to act on.
    assert not stack.tick().run_requests


def test_review_approve_delivers_the_held_image(
    stack: InProcessStack, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    data, job_id = held_render(stack)
    render_id = data["renderId"]
    held = the_review(stack, render_id)

    assert cli.main(["review", "list", "--json"]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert (listed["id"], listed["renderId"], listed["status"]) == (held.id, render_id, "pending")
    assert local_path(listed["imageUrl"]).is_file()

    assert cli.main(["review", "approve", str(held.id), "--by", "qa-lead", "--note", "looks right"]) == 0
    assert "approved: delivered" in capsys.readouterr().out

    status, image_url, _ = row(stack, render_id)
    assert status == RenderStatus.COMPLETED and image_url is not None
    delivered = Image.open(local_path(image_url))
    assert delivered.size == (512, 512)
    assert delivered.convert("RGB").tobytes() == Image.open(local_path(held.image_url)).convert("RGB").tobytes()
    approved = the_review(stack, render_id)
    assert (approved.status, approved.decided_by, approved.note) == ("approved", "qa-lead", "looks right")
    assert transactions(stack, render_id) == [("charge", -1)]  # the charge stands: it was delivered
    assert stack.queue.state(job_id) == "completed"

    assert cli.main(["review", "approve", str(held.id)]) == 1
    assert f"review {held.id} is already approved" in capsys.readouterr().err
    assert cli.main(["review", "list"]) == 0
    assert capsys.readouterr().out.strip() == "0 review(s)"


def test_review_reject_fails_the_render_refunds_it_and_removes_the_image(
    stack: InProcessStack, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    data, _ = held_render(stack)
    render_id = data["renderId"]
    held = the_review(stack, render_id)

    assert cli.main(["review", "reject", str(held.id), "--by", "qa-lead", "--note", "lawn looks plastic"]) == 0
    assert "render failed and refunded" in capsys.readouterr().out

    status, image_url, error = row(stack, render_id)
    assert (status, image_url) == (RenderStatus.FAILED, None)
    assert error == "rejected in manual quality review: lawn looks plastic"
    assert transactions(stack, render_id) == [("charge", -1), ("refund", 1)]
    assert not local_path(held.image_url).exists()
    assert the_review(stack, render_id).status == "rejected"

    assert cli.main(["review", "reject", str(held.id)]) == 1
    assert "already rejected" in capsys.readouterr().err
    assert cli.main(["review", "approve", "999999"]) == 1
    assert "no quality review 999999" in capsys.readouterr().err
    assert transactions(stack, render_id) == [("charge", -1), ("refund", 1)]


class DimProviders(ProvidersResource):
    """Local scenes at a quarter of their brightness: borderline, so QA holds them."""

    def get(self) -> list[Any]:
        return [DimProvider()]


class DimProvider:
    name = "dim"

    def generate(self, request: GenerationRequest) -> GeneratedImage:
        generated = LocalProvider().generate(request)
        generated.image = ImageEnhance.Brightness(generated.image).enhance(0.25)
        return generated


def test_a_borderline_render_is_held_with_its_reasons(sqlite_url: str, queue_name: str, tmp_path: Path) -> None:
    with in_process_stack(sqlite_url, queue_name, tmp_path, providers=DimProviders()) as stack:
        data = web_app_job()
        job_id = stack.enqueue(data)
        [result] = stack.run_all()

        assert result.success
        held = the_review(stack, data["renderId"])
        assert 0.4 <= held.score < 0.75
        assert held.reasons[0].startswith("image is too dark (mean brightness")
        assert held.measures["mean_brightness"] < 45
        assert bull_job(queue_name, job_id).returnvalue["status"] == "in_review"


class RepeatingProviders(ProvidersResource):
    """A provider that serves one cached picture, whatever the request, for its first `stale` calls
    (as a misbehaving provider cache would), then draws properly."""

    key: str
    stale: int
    calls: ClassVar[dict[str, int]] = {}

    def get(self) -> list[Any]:
        return [RepeatingProvider(self.key, self.stale)]


class RepeatingProvider:
    name = "repeating"

    def __init__(self, key: str, stale: int) -> None:
        self.key, self.stale = key, stale

    def generate(self, request: GenerationRequest) -> GeneratedImage:
        calls = RepeatingProviders.calls[self.key] = RepeatingProviders.calls.get(self.key, 0) + 1
        seed = 424242 if calls <= self.stale else request.seed
        generated = LocalProvider().generate(
            GenerationRequest(request.prompt, request.negative_prompt, request.width, request.height, seed)
        )
        generated.facts["requested_seed"] = request.seed
        return generated


def test_a_duplicate_fails_its_attempt_and_the_retry_draws_a_new_seed(
    database_url: str, queue_name: str, tmp_path: Path
) -> None:
    providers = RepeatingProviders(key=queue_name, stale=2)
    with in_process_stack(database_url, queue_name, tmp_path, providers=providers) as stack:
        first = web_app_job()
        stack.enqueue(first)
        assert [result.success for result in stack.run_all()] == [True]

        second = web_app_job()
        job_id = stack.enqueue(second, attempts=2, backoff={"type": "fixed", "delay": 50})
        [duplicate] = stack.run_all()

        assert not duplicate.success
        status, _, error = row(stack, second["renderId"])
        assert status == RenderStatus.RETRYING
        assert error == f"quality check failed: image duplicates render {first['renderId']} (pHash distance 0)"
        assert stack.queue.state(job_id) in {"delayed", "waiting"}

        time.sleep(0.2)
        [retried] = stack.run_all()

        assert retried.success
        assert row(stack, second["renderId"])[0] == RenderStatus.COMPLETED
        seeds = [event.metadata["seed"].value for event in materialized(stack, "render_prompt", second["renderId"])]
        hashes = {
            event.metadata["prompt_hash"].value for event in materialized(stack, "render_prompt", second["renderId"])
        }
        assert len(seeds) == 2 and seeds[0] != seeds[1] and len(hashes) == 1
        assert transactions(stack, second["renderId"]) == [("charge", -1)]


def test_render_prompt_metadata_holds_no_user_text(sqlite_url: str, queue_name: str, tmp_path: Path) -> None:
    data = web_app_job()
    data["prompt"]["user"] = "a secret garden for Jane Doe at 12 Elm Street"
    with in_process_stack(sqlite_url, queue_name, tmp_path) as stack:
        stack.enqueue(data)
        [result] = stack.run_all()
        assert result.success
        [prompt_event] = materialized(stack, "render_prompt", data["renderId"])
        [qa_event] = materialized(stack, "qa_verdict", data["renderId"])

    metadata = {key: value.value for key, value in prompt_event.metadata.items()}
    assert len(metadata["prompt_hash"]) == 64 and metadata["prompt_length"] > 100
    assert metadata["annotations_assetInstance"] == 4 and metadata["annotations_textLabel"] == 1
    assert not any("Elm Street" in str(value) or "Jane" in str(value) for value in metadata.values())
    qa_metadata = {key: value.value for key, value in qa_event.metadata.items()}
    assert qa_metadata["verdict"] == "pass" and qa_metadata["score"] == 1.0
    assert {"mean_brightness", "contrast", "edge_energy", "placeholder_distance"} <= set(qa_metadata)


def test_listing_filters_by_status_and_organization(database: Database, tmp_path: Path) -> None:
    verdict = QaVerdict(verdict="review", reasons=["manual review requested"], score=1.0)
    for render_id, organization_id in (("render-l1", "org-a"), ("render-l2", "org-b")):
        with database.session() as session:
            quality_reviews.hold(
                session,
                render_id=render_id,
                organization_id=organization_id,
                verdict=verdict,
                image_key=f"renders/{organization_id}/p/{render_id}/x-review.png",
                image_url="file:///held.png",
                prompt_hash="0" * 64,
                customer_attempt=True,
            )
    backends = Backends(
        database=database, queue=BullQueue(REDIS_URL, "unused", 60_000), storage=LocalBlobStore(tmp_path)
    )
    assert [item.organization_id for item in review.listed(backends)] == ["org-a", "org-b"]
    assert [item.render_id for item in review.listed(backends, organization_id="org-b")] == ["render-l2"]
    assert review.listed(backends, status="approved") == []
    with pytest.raises(review.ReviewError, match="unknown review status 'done'"):
        review.listed(backends, status="done")


def test_approving_a_review_whose_image_is_gone_says_so_and_keeps_it_pending(
    stack: InProcessStack, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    data, _ = held_render(stack)
    held = the_review(stack, data["renderId"])
    local_path(held.image_url).unlink()

    assert cli.main(["review", "approve", str(held.id)]) == 1
    assert f"the held image of review {held.id} cannot be read (FileNotFoundError)" in capsys.readouterr().err
    assert the_review(stack, data["renderId"]).status == "pending"
    assert row(stack, data["renderId"])[0] == quality_reviews.IN_REVIEW
    assert transactions(stack, data["renderId"]) == [("charge", -1)]


def test_an_operator_rerun_held_for_review_leaves_the_delivered_render_alone(
    sqlite_url: str, queue_name: str, tmp_path: Path
) -> None:
    with in_process_stack(sqlite_url, queue_name, tmp_path) as stack:
        data = web_app_job()
        stack.enqueue(data)
        [delivered] = stack.run_all()
        assert delivered.success
        render_id = data["renderId"]
        _, first_url, _ = row(stack, render_id)
        with stack.database.session() as session:
            render = renders.require(session, render_id)
            render.payload = {**render.payload, "settings": {**render.payload["settings"], "forceManualReview": True}}

        rerun = stack.execute(partition_key=render_id)

        assert rerun.success
        held = the_review(stack, render_id)
        assert (held.status, held.customer_attempt) == ("pending", False)
        assert row(stack, render_id) == (RenderStatus.COMPLETED, first_url, None)
        reason = review.reject(stack.resources["queue"].backends(stack.resources["storage"]), held.id)
        assert reason is None
        assert row(stack, render_id) == (RenderStatus.COMPLETED, first_url, None)
        assert transactions(stack, render_id) == [("charge", -1)]
