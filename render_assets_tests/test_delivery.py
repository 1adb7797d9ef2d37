"""Delivery: the variants, their names, headers and URLs in GCS (the real client against the
emulator, behind a fault proxy), and the cleanup that leaves no object of an undelivered render."""

from __future__ import annotations

import base64
import hashlib
import io
import random
import re
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import urlopen

import pytest
from google.api_core.exceptions import RetryError
from google.cloud import storage
from PIL import Image

from render_assets.adapters.blob_storage import BlobStore, GcsBlobStore, LocalBlobStore, RetrySettings
from render_assets.adapters.bullmq_queue import BullQueue
from render_assets.domain.object_keys import IMMUTABLE_CACHE_CONTROL, render_folder
from render_assets.domain.payload import RenderJob, parse_job
from render_assets.domain.progress import Stage
from render_assets.persistence import renders
from render_assets.persistence.database import Database
from render_assets.persistence.models import RenderStatus
from render_assets.services import delivery
from render_assets.services.backends import Backends
from render_assets.services.failures import RenderFailed
from render_assets.services.progress import ProgressPublisher
from render_assets.services.run_context import RenderRun
from render_assets_tests.fault_proxy import FaultProxy
from render_assets_tests.payloads import web_app_job
from render_assets_tests.service_account import throwaway_credentials

FAST = RetrySettings(timeout_s=10.0, initial_delay_s=0.01, max_delay_s=0.05)
SHORT = RetrySettings(timeout_s=0.3, initial_delay_s=0.01, max_delay_s=0.05)
PROMPT_HASH = "ab" * 32
NAME = re.compile(r"^(?P<digest>[0-9a-f]{16})-(?P<variant>master|web|thumbnail)\.(?P<ext>png|jpg|webp|avif)$")


def _job(image_format: str = "JPEG", **overrides: Any) -> RenderJob:
    return parse_job(web_app_job(image_format=image_format, **overrides))


def _picture(width: int = 640, height: int = 400, seed: int = 1) -> Image.Image:
    """Structured, grainy pixels: the same for the same seed, different bytes for another seed."""
    gradient = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    grain = Image.frombytes("RGB", (width, height), random.Random(seed).randbytes(width * height * 3))
    return Image.blend(gradient, grain, 0.3)


def _gcs(prefix: str, retry: RetrySettings = FAST, **options: Any) -> GcsBlobStore:
    return GcsBlobStore(storage.Client(), "renders", prefix, retry=retry, **options)


def _prefix() -> str:
    return f"delivery-{uuid.uuid4().hex[:12]}"


def _folder(job: RenderJob) -> str:
    return render_folder(job.organizationId, job.projectId, job.renderId)


# --- names, headers, metadata, URLs ------------------------------------------------------------


def test_variants_are_stored_content_addressed_with_immutable_headers(proxy: FaultProxy) -> None:
    prefix, job = _prefix(), _job("PNG")
    store = _gcs(prefix, public_base_url="https://cdn.example.com/")

    stored = delivery.store_variants(store, job, _picture(), PROMPT_HASH)

    bucket = storage.Client().bucket("renders")
    names = sorted(blob.name for blob in bucket.list_blobs(prefix=prefix))
    folder = f"{prefix}/renders/{job.organizationId}/{job.projectId}/{job.renderId}"
    assert len(names) == 3 and all(name.startswith(folder + "/") for name in names)
    expected_types = {"master": "image/png", "web": "image/webp", "thumbnail": "image/webp"}
    for variant in stored.all:
        name = f"{prefix}/{variant.key}"
        assert name in names
        match = NAME.fullmatch(name.rsplit("/", 1)[1])
        assert match is not None and match["variant"] == variant.variant.value
        blob = bucket.get_blob(name)
        assert blob is not None
        assert blob.content_type == expected_types[variant.variant.value]
        assert blob.cache_control == IMMUTABLE_CACHE_CONTROL == "public, max-age=31536000, immutable"
        assert blob.metadata == {"renderId": job.renderId, "projectId": job.projectId, "promptHash": PROMPT_HASH}
        data = blob.download_as_bytes()  # (this refreshes the blob's fields from the media response)
        assert match["digest"] == hashlib.sha256(data).hexdigest()[:16]
        assert variant.url == f"https://cdn.example.com/{name}"
        assert (variant.size, variant.created) == (len(data), True)
    assert (stored.master.width, stored.master.height, stored.master.format) == (640, 400, "PNG")
    assert (stored.web.width, stored.thumbnail.width, stored.thumbnail.height) == (640, 300, 300)


def test_without_a_cdn_urls_are_the_public_object_urls(proxy: FaultProxy) -> None:
    prefix, job = _prefix(), _job()
    stored = delivery.store_variants(_gcs(prefix), job, _picture(), PROMPT_HASH)
    for variant in stored.all:
        assert variant.url == f"{proxy.url}/renders/{prefix}/{variant.key}"
        with urlopen(variant.url) as response:
            assert Image.open(io.BytesIO(response.read())).size == (variant.width, variant.height)


def test_a_private_bucket_gets_signed_urls_that_work(proxy: FaultProxy) -> None:
    prefix, job = _prefix(), _job("WEBP")
    store = _gcs(prefix, private=True, signed_url_ttl_s=300, signing_credentials=throwaway_credentials())
    stored = delivery.store_variants(store, job, _picture(), PROMPT_HASH)
    for variant in stored.all:
        parsed = urlparse(variant.url)
        assert parsed.path == f"/renders/{prefix}/{variant.key}"
        assert "X-Goog-Signature=" in parsed.query and "X-Goog-Expires=300" in parsed.query
        with urlopen(variant.url) as response:
            assert Image.open(io.BytesIO(response.read())).format == "WEBP"


def test_a_rerender_writes_new_names_and_the_old_ones_stay(proxy: FaultProxy) -> None:
    prefix, job = _prefix(), _job()
    store = _gcs(prefix)
    first = delivery.store_variants(store, job, _picture(seed=1), PROMPT_HASH)
    second = delivery.store_variants(store, job, _picture(seed=2), PROMPT_HASH)

    assert not {v.key for v in first.all} & {v.key for v in second.all}
    assert len(store.keys_under(_folder(job))) == 6
    for variant in first.all:
        with urlopen(variant.url) as response:
            assert response.status == 200


# --- retries and cleanup -----------------------------------------------------------------------


def test_transient_503s_during_upload_are_retried_inside_the_storage_layer(proxy: FaultProxy) -> None:
    prefix, job = _prefix(), _job()
    proxy.fail(3, lambda seen: seen.mentions("-master.jpg"))
    proxy.fail(2, lambda seen: seen.mentions("-thumbnail.webp"))

    stored = delivery.store_variants(_gcs(prefix), job, _picture(), PROMPT_HASH)

    assert proxy.statuses().count(503) == 5
    assert sorted(store_key for store_key in _gcs(prefix).keys_under(_folder(job))) == sorted(v.key for v in stored.all)


def test_a_failed_upload_removes_the_objects_already_written(proxy: FaultProxy) -> None:
    prefix, job = _prefix(), _job()
    store = _gcs(prefix, retry=SHORT)
    proxy.fail(10_000, lambda seen: seen.mentions("-thumbnail.webp"))

    with pytest.raises(RetryError):
        delivery.store_variants(store, job, _picture(), PROMPT_HASH)

    proxy.clear()
    assert store.keys_under(_folder(job)) == []
    deleted = proxy.statuses(lambda seen: seen.method == "DELETE")
    assert len(deleted) == 2 and all(status < 300 for status in deleted)  # the master and the web variant


def test_a_failed_rerun_of_identical_bytes_leaves_the_delivered_objects(proxy: FaultProxy) -> None:
    prefix, job = _prefix(), _job()
    delivered = delivery.store_variants(_gcs(prefix), job, _picture(), PROMPT_HASH)
    proxy.fail(10_000, lambda seen: seen.mentions("-thumbnail.webp"))

    with pytest.raises(RetryError):
        delivery.store_variants(_gcs(prefix, retry=SHORT), job, _picture(), PROMPT_HASH)

    proxy.clear()
    # Same bytes, same names: those objects were not this attempt's to remove.
    assert _gcs(prefix).keys_under(_folder(job)) == sorted(v.key for v in delivered.all)
    assert proxy.statuses(lambda seen: seen.method == "DELETE") == []


class FailingProgress(ProgressPublisher):
    """Our own publisher, failing where a Redis outage would: right after the upload."""

    def publish(self, render_id: str, bull: Any, stage: Stage, *, message: str | None = None) -> None:
        if stage is Stage.UPLOADED:
            raise ConnectionError("redis went away")
        super().publish(render_id, bull, stage, message=message)


def _recorded_run(database: Database, job: RenderJob) -> RenderRun:
    claim = renders.BullClaim(job_id="job-1", attempt=0, max_attempts=3, token="token-1", run_key="job-1:0")
    with database.session() as session:
        renders.record_claim(session, job, claim)
        renders.mark_processing(session, job.renderId)
    return RenderRun(render_id=job.renderId, job=job, bull=None)


def test_deliver_records_the_result_with_every_url(sqlite_url: str, bull: BullQueue, tmp_path: Path) -> None:
    database, job = Database(sqlite_url), _job("AVIF", resolution="512x512")
    run = _recorded_run(database, job)
    store = LocalBlobStore(tmp_path / "storage", "http://127.0.0.1:8000/files")

    backends = Backends(database=database, queue=bull, storage=store)
    delivered = delivery.deliver(run, backends, _picture(512, 512), "h")

    result = delivered.result
    assert result["imageUrl"].startswith("http://127.0.0.1:8000/files/renders/") and result["imageUrl"].endswith(
        "-master.avif"
    )
    assert result["webImageUrl"].endswith("-web.webp") and result["thumbnailUrl"].endswith("-thumbnail.webp")
    assert result["metadata"] == {
        "width": 512,
        "height": 512,
        "format": "AVIF",
        "fileSize": len(store.get(delivered.variants.master.key)),
    }
    with database.session() as session:
        row = renders.require(session, job.renderId)
        assert (row.status, row.image_url, row.thumbnail_url) == (
            RenderStatus.COMPLETED,
            result["imageUrl"],
            result["thumbnailUrl"],
        )
    database.dispose()


def test_deliver_removes_its_objects_when_recording_the_result_fails(
    sqlite_url: str, bull: BullQueue, tmp_path: Path
) -> None:
    database, job = Database(sqlite_url), _job()
    run = _recorded_run(database, job)
    store = LocalBlobStore(tmp_path / "storage")

    with pytest.raises(ConnectionError, match="redis went away"):
        backends = Backends(database=database, queue=bull, storage=store)
        backends.progress = FailingProgress(database, bull)
        delivery.deliver(run, backends, _picture(), "h")

    assert store.keys_under(_folder(job)) == []
    with database.session() as session:
        assert renders.require(session, job.renderId).status != RenderStatus.COMPLETED
    database.dispose()


def test_storage_that_stays_down_fails_the_step_so_it_may_retry(
    sqlite_url: str, bull: BullQueue, proxy: FaultProxy
) -> None:
    database, job = Database(sqlite_url), _job()
    run = _recorded_run(database, job)
    proxy.fail(10_000)

    with pytest.raises(RenderFailed, match=r"^could not store the images: RetryError, last HTTP 503$") as failed:
        delivery.deliver(
            run, Backends(database=database, queue=bull, storage=_gcs(_prefix(), retry=SHORT)), _picture(), "h"
        )

    assert (failed.value.retry_step, failed.value.permanent) == (True, False)
    with database.session() as session:
        assert renders.require(session, job.renderId).status == RenderStatus.PROCESSING
    database.dispose()


def _stored_render(database: Database, store: BlobStore, job: RenderJob) -> list[str]:
    _recorded_run(database, job)
    return [v.key for v in delivery.store_variants(store, job, _picture(), PROMPT_HASH).all]


def test_remove_objects_clears_an_undelivered_render_only(sqlite_url: str, proxy: FaultProxy) -> None:
    database, store = Database(sqlite_url), _gcs(_prefix())
    failed, neighbour = _job(), _job()
    _stored_render(database, store, failed)
    held = f"{_folder(failed)}/{'0' * 16}-review.png"  # another stage's object in the same folder
    store.put(held, b"held for review", content_type="image/png")
    kept = _stored_render(database, store, neighbour)
    with database.session() as session:
        renders.mark_failed(session, failed.renderId, reason="provider gave up", final=True)
        row = renders.require(session, failed.renderId)
        assert delivery.remove_objects(store, row, run_key="a-stale-run") == []  # not this run's render any more
        removed = delivery.remove_objects(store, row, run_key=row.run_key)

    assert len(removed) == 3
    assert store.keys_under(_folder(failed)) == [held]
    assert store.keys_under(_folder(neighbour)) == sorted(kept)
    database.dispose()


def test_remove_objects_never_touches_a_delivered_render(sqlite_url: str, tmp_path: Path) -> None:
    database, store, job = Database(sqlite_url), LocalBlobStore(tmp_path), _job()
    keys = _stored_render(database, store, job)
    with database.session() as session:
        renders.mark_completed(session, job.renderId, result={}, image_url="i", thumbnail_url="t", prompt_hash="h")
        assert delivery.remove_objects(store, renders.require(session, job.renderId)) == []
    assert store.keys_under(_folder(job)) == sorted(keys)
    database.dispose()


def test_the_thumbnail_markdown_inlines_local_files_and_links_urls(tmp_path: Path) -> None:
    job = _job()
    local = LocalBlobStore(tmp_path)
    stored = delivery.store_variants(local, job, _picture(), PROMPT_HASH)
    inline = delivery.thumbnail_markdown(local, stored.thumbnail)
    assert inline.startswith("![thumbnail](<data:image/webp;base64,") and inline.endswith(">)")
    thumbnail = Image.open(
        io.BytesIO(base64.b64decode(inline.removeprefix("![thumbnail](<data:image/webp;base64,")[:-2]))
    )
    assert (thumbnail.format, thumbnail.size) == ("WEBP", (300, 300))

    served = LocalBlobStore(tmp_path, "http://127.0.0.1:8000/files")
    linked = delivery.thumbnail_markdown(
        served, delivery.store_variants(served, job, _picture(), PROMPT_HASH).thumbnail
    )
    assert linked == f"![thumbnail](<http://127.0.0.1:8000/files/{stored.thumbnail.key}>)"
