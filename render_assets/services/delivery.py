"""Stage 4: encode the variants, store them, record the result, complete the BullMQ job.

Every object name is content-addressed (`domain/object_keys.py`) and written create-only, so a
retried upload is harmless and a re-render never replaces what the web app already links to.
Until the renders row says "completed", nothing points at the new objects: any failure before
that removes the objects this delivery created, and `remove_objects` is the failure hook's
second chance for whatever a crashed or failed cleanup left behind.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from PIL import Image

from render_assets.adapters.blob_storage import BlobStore
from render_assets.domain import imaging
from render_assets.domain.object_keys import IMMUTABLE_CACHE_CONTROL, object_key, render_folder, variant_of
from render_assets.domain.payload import RenderJob
from render_assets.domain.progress import Stage
from render_assets.domain.variants import VARIANTS, Variant, encode_variant
from render_assets.persistence import renders
from render_assets.persistence.models import Render, RenderStatus, utcnow
from render_assets.persistence.render_versions import DeliveredVersion, VersionFacts
from render_assets.services.backends import Backends
from render_assets.services.failures import RenderFailed
from render_assets.services.render_webhooks import RenderWebhooks
from render_assets.services.run_context import RenderRun
from render_assets.services.settlement import settle

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredVariant:
    variant: Variant
    key: str
    url: str
    size: int
    width: int
    height: int
    format: str
    created: bool  # False: identical bytes were already stored under this name (a re-run)


@dataclass(frozen=True)
class StoredVariants:
    master: StoredVariant
    web: StoredVariant
    thumbnail: StoredVariant
    seconds: float  # wall time to encode and upload all of them

    @property
    def all(self) -> tuple[StoredVariant, ...]:
        return (self.master, self.web, self.thumbnail)

    def created_keys(self) -> list[str]:
        return [stored.key for stored in self.all if stored.created]


@dataclass(frozen=True)
class Delivery:
    result: dict[str, Any]
    variants: StoredVariants
    version: DeliveredVersion  # which version of the render this is, and whether it is new


def store_variants(storage: BlobStore, job: RenderJob, image: Image.Image, prompt_hash: str) -> StoredVariants:
    """Encode the master, web and thumbnail variants in parallel threads and upload each as soon
    as it is encoded. When any of them fails, the objects this call created are removed."""
    started = time.perf_counter()
    srgb = imaging.to_srgb(image)
    metadata = {"renderId": job.renderId, "projectId": job.projectId, "promptHash": prompt_hash}
    created: list[str] = []

    def produce(variant: Variant) -> StoredVariant:
        encoded = encode_variant(srgb, variant, job.settings.format)
        key = object_key(
            job.organizationId,
            job.projectId,
            job.renderId,
            content=encoded.data,
            variant=variant.value,
            extension=encoded.extension,
        )
        stored = storage.put(
            key,
            encoded.data,
            content_type=encoded.media_type,
            cache_control=IMMUTABLE_CACHE_CONTROL,
            metadata=metadata,
            if_absent=True,
        )
        if stored.created:
            created.append(key)
        return StoredVariant(
            variant=variant,
            key=key,
            url=storage.url(key),
            size=stored.size,
            width=encoded.width,
            height=encoded.height,
            format=encoded.format,
            created=stored.created,
        )

    try:
        with ThreadPoolExecutor(max_workers=len(VARIANTS), thread_name_prefix="deliver") as pool:
            futures = [pool.submit(produce, variant) for variant in VARIANTS]
        # Leaving the pool waited for every thread, so no upload can land after a cleanup.
        stored = {result.variant: result for result in (future.result() for future in futures)}
    except BaseException:
        remove_quietly(storage, created)
        raise
    return StoredVariants(
        master=stored[Variant.MASTER],
        web=stored[Variant.WEB],
        thumbnail=stored[Variant.THUMBNAIL],
        seconds=time.perf_counter() - started,
    )


def deliver(
    run: RenderRun,
    backends: Backends,
    image: Image.Image,
    prompt_hash: str,
    *,
    facts: VersionFacts | None = None,
    started_at: datetime | None = None,
    webhooks: RenderWebhooks | None = None,
) -> Delivery:
    """Store the variants and record them as the render's next version; a customer's run then
    completes its BullMQ job, an operator's re-render tells the web app (the event stream and,
    when configured, the webhook) about a new version. A re-render that came out identical is
    no new version and tells nobody.

    `started_at`: when the work began, for `processingTime` (default: the customer's first
    attempt). Storage that still fails after its own retries raises `RenderFailed` with
    `retry_step`: running the delivery step again may help, and it never calls the provider again.
    """
    database, storage, progress = backends.database, backends.storage, backends.progress
    try:
        variants = store_variants(storage, run.job, image, prompt_hash)
    except Exception as error:
        # The customer reads the reason: the kind of error, not hosts and object paths (logged here).
        log.warning("render %s: storing the images failed: %s: %s", run.render_id, type(error).__name__, error)
        raise RenderFailed(
            f"could not store the images: {_storage_problem(error)}", permanent=False, retry_step=True
        ) from error
    master = variants.master
    try:
        progress.stage(run, Stage.UPLOADED)
        with database.session() as session:
            row = renders.require(session, run.render_id)
            started = started_at or row.started_at or row.created_at
            elapsed_ms = int((utcnow() - _aware(started)).total_seconds() * 1000)
            result = {
                "renderId": run.render_id,
                "imageUrl": master.url,
                "webImageUrl": variants.web.url,
                "thumbnailUrl": variants.thumbnail.url,
                "processingTime": elapsed_ms,
                "promptHash": prompt_hash,
                "metadata": {
                    "width": master.width,
                    "height": master.height,
                    "format": master.format,
                    "fileSize": master.size,
                },
            }
            version = renders.mark_completed(
                session,
                run.render_id,
                claim_token=run.bull.token if run.bull is not None else None,
                result=result,
                image_url=master.url,
                thumbnail_url=variants.thumbnail.url,
                prompt_hash=prompt_hash,
                image_key=master.key,
                facts=facts,
            )
            if run.is_operator_run and version.new and webhooks is not None:
                webhooks.enqueue_rerendered(session, run.render_id, version.version, result)
    except BaseException as error:
        # Not delivered, so nothing may point at the new objects: none of them may stay public.
        remove_quietly(storage, variants.created_keys())
        if isinstance(error, renders.StaleClaim):  # a newer claim owns the render: stop, don't retry
            raise RenderFailed(str(error), permanent=True) from None
        raise
    if run.bull is not None:
        progress.stage(run, Stage.COMPLETED)
        # Tells BullMQ and records usage; if Redis is away, the reconciler finishes it later.
        settle(backends, run.render_id)
    elif run.is_operator_run and version.new:
        progress.rerendered(run.render_id, version.version, result)
        if webhooks is not None:
            webhooks.send_due(render_id=run.render_id)  # one attempt now; webhook_sensor retries
    return Delivery(result=result, variants=variants, version=version)


def remove_objects(storage: BlobStore, render: Render, run_key: str | None = None) -> list[str]:
    """Remove the delivery variants stored for a render that was not delivered; returns the keys removed.

    For the failure hook, after a final or retryable failure. It removes nothing for a completed
    render (the web app may link to any of its objects, earlier re-runs' included) nor, when
    `run_key` is given, for a run that no longer holds the render's claim (a newer attempt may be
    uploading). Other objects in the render's folder (a held review image) belong to their own
    stage and stay. A key that cannot be removed is logged and left for the next call.
    """
    if render.status == RenderStatus.COMPLETED or (run_key is not None and render.run_key != run_key):
        return []
    keys = storage.keys_under(render_folder(render.organization_id, render.project_id, render.id))
    ours = {variant.value for variant in VARIANTS}
    return remove_quietly(storage, [key for key in keys if variant_of(key) in ours])


def _storage_problem(error: Exception) -> str:
    """`RetryError, last HTTP 503` or just the error's type: enough to tell an outage from a bug."""
    last = getattr(error, "cause", None) or error  # a RetryError carries the last attempt's error
    status = getattr(last, "code", None) or getattr(getattr(last, "response", None), "status_code", None)
    return f"{type(error).__name__}, last HTTP {status}" if isinstance(status, int) else type(error).__name__


def remove_quietly(storage: BlobStore, keys: Iterable[str]) -> list[str]:
    removed = []
    for key in keys:
        try:
            storage.delete(key)
        except Exception as error:  # the original failure matters more; the hook retries the cleanup
            log.warning("could not remove %s after a failed delivery: %s: %s", key, type(error).__name__, error)
        else:
            removed.append(key)
    return removed


def _aware(moment: datetime) -> datetime:
    # SQLite returns naive datetimes for timezone-aware columns; they were written in UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def thumbnail_markdown(storage: BlobStore, thumbnail: StoredVariant) -> str:
    """A markdown image of the thumbnail for the Dagster UI: its URL when a browser can fetch it,
    else (a `file://` URL) the bytes inline as a data URI, a few kilobytes."""
    source = thumbnail.url
    if not source.startswith(("http://", "https://")):
        encoded = base64.b64encode(storage.get(thumbnail.key)).decode()
        source = f"data:{imaging.MEDIA_TYPES[thumbnail.format]};base64,{encoded}"
    return f"![thumbnail](<{source}>)"
