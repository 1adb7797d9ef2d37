"""Stage 4: store the image, record the result, complete the BullMQ job."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from PIL import Image

from render_assets.adapters.blob_storage import BlobStore, StoredObject
from render_assets.adapters.bullmq_queue import BullQueue
from render_assets.domain import imaging, renders
from render_assets.domain.database import Database
from render_assets.domain.models import utcnow
from render_assets.domain.progress import Stage
from render_assets.services.progress import ProgressPublisher
from render_assets.services.run_context import RenderRun

IMMUTABLE = "public, max-age=31536000, immutable"


@dataclass(frozen=True)
class Delivery:
    result: dict[str, Any]
    master: StoredObject
    thumbnail: StoredObject


def object_key(run: RenderRun, content: bytes, variant: str, extension: str) -> str:
    """Content-addressed and scoped by organization, project and render (ids are validated)."""
    job = run.job
    digest = hashlib.sha256(content).hexdigest()[:16]
    return f"renders/{job.organizationId}/{job.projectId}/{job.renderId}/{digest}-{variant}.{extension}"


def deliver(
    run: RenderRun,
    database: Database,
    storage: BlobStore,
    queue: BullQueue,
    progress: ProgressPublisher,
    image: Image.Image,
    prompt_hash: str,
) -> Delivery:
    """Store the master and its thumbnail, record the result, and complete the BullMQ job."""
    master = imaging.encode(image, run.job.settings.format)
    thumb = imaging.encode(imaging.thumbnail(image), "WEBP")
    metadata = {"renderId": run.render_id, "projectId": run.job.projectId, "promptHash": prompt_hash}
    stored_master = storage.put(
        object_key(run, master.data, "master", master.extension),
        master.data,
        content_type=master.media_type,
        cache_control=IMMUTABLE,
        metadata=metadata,
    )
    stored_thumb = storage.put(
        object_key(run, thumb.data, "thumbnail", thumb.extension),
        thumb.data,
        content_type=thumb.media_type,
        cache_control=IMMUTABLE,
        metadata=metadata,
    )
    progress.publish(run.render_id, run.bull, Stage.UPLOADED)
    with database.session() as session:
        row = renders.require(session, run.render_id)
        started = row.started_at or row.created_at
        elapsed_ms = int((utcnow() - _aware(started)).total_seconds() * 1000)
        result = {
            "renderId": run.render_id,
            "imageUrl": stored_master.url,
            "thumbnailUrl": stored_thumb.url,
            "processingTime": elapsed_ms,
            "promptHash": prompt_hash,
            "metadata": {
                "width": master.width,
                "height": master.height,
                "format": master.format,
                "fileSize": stored_master.size,
            },
        }
        renders.mark_completed(
            session,
            run.render_id,
            result=result,
            image_url=stored_master.url,
            thumbnail_url=stored_thumb.url,
            prompt_hash=prompt_hash,
        )
    if run.bull is not None:
        progress.publish(run.render_id, run.bull, Stage.COMPLETED)
        queue.complete(run.bull, result)
    return Delivery(result=result, master=stored_master, thumbnail=stored_thumb)


def _aware(moment: datetime) -> datetime:
    # SQLite returns naive datetimes for timezone-aware columns; they were written in UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
