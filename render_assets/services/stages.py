"""The four stages of a render, as plain functions the assets call."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

from PIL import Image

from render_assets.adapters.blob_storage import BlobStore, StoredObject
from render_assets.adapters.bullmq_queue import BullQueue
from render_assets.domain import imaging, ledger, renders
from render_assets.domain.database import Database
from render_assets.domain.models import utcnow
from render_assets.domain.progress import Stage
from render_assets.domain.prompt import BuiltPrompt, build_prompt, scene_elements
from render_assets.domain.qa import QaVerdict, check_image
from render_assets.providers.base import GeneratedImage, GenerationRequest, ImageProvider, ProviderError
from render_assets.services.progress import ProgressPublisher
from render_assets.services.run_context import RenderRun

IMMUTABLE = "public, max-age=31536000, immutable"


class RenderFailed(Exception):
    """A stage failed.

    `permanent`: no attempt can succeed (BullMQ must not retry either). `retry_step`: running the
    same step again may help (a provider hiccup), which is not so when its input is the problem.
    """

    def __init__(self, reason: str, *, permanent: bool, retry_step: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.retry_step = retry_step and not permanent


def prepare_prompt(
    run: RenderRun, database: Database, progress: ProgressPublisher, *, initial_credits: int
) -> BuiltPrompt:
    """Charge the render (only runs that hold a BullMQ claim charge), then build its prompt."""
    with database.session() as session:
        renders.mark_processing(session, run.render_id)
        cost = renders.require(session, run.render_id).credit_cost
    if run.bull is not None:
        try:
            with database.session() as session:
                ledger.charge(
                    session,
                    render_id=run.render_id,
                    organization_id=run.job.organizationId,
                    cost=cost,
                    initial_credits=initial_credits,
                )
        except ledger.InsufficientCredits as error:
            raise RenderFailed(str(error), permanent=True) from None
        progress.publish(run.render_id, run.bull, Stage.CHARGED)
    built = build_prompt(run.job)
    progress.publish(run.render_id, run.bull, Stage.PROMPT_READY)
    return built


def generate(
    run: RenderRun, providers: list[ImageProvider], progress: ProgressPublisher, prompt: BuiltPrompt
) -> GeneratedImage:
    """Ask each provider in turn until one delivers."""
    progress.publish(run.render_id, run.bull, Stage.GENERATING)
    width, height = run.job.settings.size
    request = GenerationRequest(
        prompt=prompt.text,
        negative_prompt=prompt.negative,
        width=width,
        height=height,
        seed=prompt.seed,
        quality=run.job.settings.quality,
        elements=scene_elements(run.job),
    )
    failures: list[ProviderError] = []
    for provider in providers:
        try:
            generated = provider.generate(request)
        except ProviderError as error:
            failures.append(error)
            continue
        progress.publish(run.render_id, run.bull, Stage.GENERATED)
        return generated
    summary = "; ".join(f"{error.provider}: {error}" for error in failures)
    transient = any(error.transient for error in failures)
    raise RenderFailed(f"no provider delivered an image ({summary})", permanent=not transient, retry_step=transient)


def check_quality(run: RenderRun, progress: ProgressPublisher, image: Image.Image) -> QaVerdict:
    verdict = check_image(image, run.job.settings.size)
    if not verdict.passed:
        # The same image would fail again, but another BullMQ attempt draws a new one.
        raise RenderFailed("quality check failed: " + "; ".join(verdict.reasons), permanent=False)
    progress.publish(run.render_id, run.bull, Stage.QUALITY_CHECKED)
    return verdict


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


def _aware(moment: Any) -> Any:
    # SQLite returns naive datetimes for timezone-aware columns; they were written in UTC.
    from datetime import UTC

    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def elapsed(started: float) -> float:
    return round(time.perf_counter() - started, 3)
