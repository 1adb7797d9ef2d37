"""The manual review queue: hold a borderline render, list what waits, approve or reject it.

How a `review` verdict plays out:
- QA keeps the image (PNG, in the render's storage folder), records a pending `quality_reviews`
  row, and puts a customer's render in status `in_review`. Nothing is delivered: the run ends
  successfully with `qa_verdict` and `cdn_image` not materialized, and the BullMQ job completes
  with `{"renderId", "status": "in_review", "reviewId", "imageUrl": null, ...}` so BullMQ neither
  retries nor keeps a lock for a decision that may take hours. The charge stands meanwhile.
- approve: the held image is delivered like any render (variants, renders row completed, usage
  recorded by settlement); BullMQ already has its answer, so no BullMQ call is made.
- reject: the render fails for good, settlement refunds its charge once, and the held image is
  removed (a failed render leaves no objects behind).
An operator re-run (no BullMQ claim) of a render delivered earlier holds only its image: the
delivered render stays as it is, approving delivers the re-run, rejecting refunds nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from PIL import Image

from render_assets.domain import imaging
from render_assets.domain.object_keys import object_key
from render_assets.domain.payload import RenderJob
from render_assets.domain.progress import Progress, Stage
from render_assets.domain.qa import QaVerdict
from render_assets.persistence import perceptual_hashes, quality_reviews, renders
from render_assets.persistence.quality_reviews import APPROVED, IN_REVIEW, PENDING, REJECTED, ReviewError
from render_assets.services import delivery, settlement
from render_assets.services.backends import Backends
from render_assets.services.render_webhooks import RenderWebhooks
from render_assets.services.run_context import RenderRun

log = logging.getLogger(__name__)

__all__ = ["ReviewError", "ReviewItem", "approve", "hold", "listed", "reject"]


@dataclass(frozen=True)
class ReviewItem:
    id: int
    render_id: str
    organization_id: str
    status: str
    score: float
    reasons: list[str]
    image_url: str
    created_at: datetime
    decided_by: str | None
    note: str | None

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "renderId": self.render_id,
            "organizationId": self.organization_id,
            "status": self.status,
            "score": self.score,
            "reasons": self.reasons,
            "imageUrl": self.image_url,
            "createdAt": self.created_at.isoformat(),
            "decidedBy": self.decided_by,
            "note": self.note,
        }


def hold(
    run: RenderRun,
    backends: Backends,
    image: Image.Image,
    verdict: QaVerdict,
    *,
    prompt_hash: str,
) -> int:
    """Keep the image, queue the render for review and, for a customer's job, answer BullMQ."""
    database, storage = backends.database, backends.storage
    job = run.job
    encoded = imaging.encode(image, "PNG")
    key = object_key(
        job.organizationId, job.projectId, job.renderId, content=encoded.data, variant="review", extension="png"
    )
    storage.put(key, encoded.data, content_type="image/png", metadata={"renderId": job.renderId})
    url = storage.url(key)
    with database.session() as session:
        review_id = quality_reviews.hold(
            session,
            render_id=run.render_id,
            organization_id=job.organizationId,
            verdict=verdict,
            image_key=key,
            image_url=url,
            prompt_hash=prompt_hash,
            customer_attempt=run.bull is not None,
        )
        perceptual_hashes.record(
            session, render_id=run.render_id, organization_id=job.organizationId, value=int(verdict.phash, 16)
        )
        result = _held_result(job, review_id, prompt_hash, verdict)
        held = quality_reviews.mark_render_held(session, run.render_id, result)
    backends.progress.stage(run, Stage.QUALITY_CHECKED, message=quality_reviews.HELD_MESSAGE)
    if held and run.bull is not None:
        backends.queue.complete(run.bull, result)
        with database.session() as session:
            renders.release_claim(session, run.render_id, run.bull.token)
    log.info("render %s held for review %s (score %.2f)", run.render_id, review_id, verdict.score)
    return review_id


def _held_result(job: RenderJob, review_id: int, prompt_hash: str, verdict: QaVerdict) -> dict[str, object]:
    return {
        "renderId": job.renderId,
        "status": IN_REVIEW,
        "reviewId": review_id,
        "imageUrl": None,
        "thumbnailUrl": None,
        "promptHash": prompt_hash,
        "metadata": {"width": verdict.width, "height": verdict.height, "format": job.settings.format},
    }


def listed(
    backends: Backends,
    *,
    status: str | None = PENDING,
    organization_id: str | None = None,
    limit: int = 50,
) -> list[ReviewItem]:
    """The queue, oldest first, with image URLs made afresh (signed ones expire)."""
    storage = backends.storage
    with backends.database.session() as session:
        rows = quality_reviews.listed(session, status=status, organization_id=organization_id, limit=limit)
        return [
            ReviewItem(
                id=row.id,
                render_id=row.render_id,
                organization_id=row.organization_id,
                status=row.status,
                score=row.score,
                reasons=list(row.reasons or []),
                image_url=storage.url(row.image_key),
                created_at=row.created_at,
                decided_by=row.decided_by,
                note=row.note,
            )
            for row in rows
        ]


def approve(
    backends: Backends,
    review_id: int,
    *,
    by: str | None = None,
    note: str | None = None,
    webhooks: RenderWebhooks | None = None,
) -> dict[str, object]:
    """Deliver the held image; returns the delivered result. Approving again after a crash
    part-way finishes the delivery. An operator re-run's image becomes the render's next version
    (the web app hears of it as a re-render)."""
    database = backends.database
    with database.session() as session:
        review = quality_reviews.require(session, review_id)
        render = renders.require(session, review.render_id)
        resuming = review.status == APPROVED and render.status == IN_REVIEW
        if review.status != PENDING and not resuming:
            raise ReviewError(f"review {review_id} is already {review.status}")
        if review.customer_attempt and render.status != IN_REVIEW:
            raise ReviewError(f"render {render.id} is {render.status}, not {IN_REVIEW}; nothing to approve")
        if not resuming and not quality_reviews.decide(session, review_id, status=APPROVED, by=by, note=note):
            raise ReviewError(f"review {review_id} was decided by someone else meanwhile")
        job = RenderJob.model_validate(render.payload)
        key, prompt_hash, customer = review.image_key, review.prompt_hash, review.customer_attempt
        held_at = review.created_at
    try:
        try:
            image = imaging.decode(backends.storage.get(key))
        except Exception as error:  # missing or damaged: say so instead of a storage traceback
            raise ReviewError(
                f"the held image of review {review_id} cannot be read ({type(error).__name__}); "
                "reject the review or re-run the render"
            ) from None
        delivered = delivery.deliver(
            RenderRun(render_id=job.renderId, job=job, bull=None, operator=not customer),
            backends,
            image,
            prompt_hash,
            started_at=None if customer else held_at,
            webhooks=webhooks,
        )
    except BaseException:
        with database.session() as session:  # not delivered: the review waits again
            quality_reviews.reopen(session, review_id)
        raise
    if customer:
        with database.session() as session:
            # The customer's job is what delivered it, late: charge stands and usage is recorded.
            renders.require(session, job.renderId).delivered_via = "bullmq"
        settlement.settle(backends, job.renderId)  # the charge stands; usage is recorded
    log.info("review %s approved: render %s delivered", review_id, job.renderId)
    return delivered.result


def reject(
    backends: Backends,
    review_id: int,
    *,
    by: str | None = None,
    note: str | None = None,
) -> str | None:
    """Refuse the held image: a held customer render fails for good and is refunded. Returns the
    render's failure reason (None for an operator review, which changes no render)."""
    reason = "rejected in manual quality review" + (f": {note.strip()}" if note and note.strip() else "")
    reason = reason[: quality_reviews.MAX_NOTE_CHARS]
    with backends.database.session() as session:
        review = quality_reviews.require(session, review_id)
        if not quality_reviews.decide(session, review_id, status=REJECTED, by=by, note=note):
            raise ReviewError(f"review {review_id} is already {review.status}")
        render = renders.require(session, review.render_id)
        failing = render.status == IN_REVIEW
        if failing:
            renders.mark_failed(session, render.id, reason=reason, final=True)
        render_id, key, percent = render.id, review.image_key, render.progress
    if failing:
        settlement.settle(backends, render_id)  # refunded once
        backends.progress.send(render_id, None, Progress(percent=percent, stage=Stage.FAILED.value, message=reason))
    try:
        backends.storage.delete(key)
    except Exception as error:  # the decision stands; a leftover held image is only clutter
        log.warning("could not remove the held image of review %s: %s", review_id, type(error).__name__)
    log.info("review %s rejected (render %s %s)", review_id, render_id, "failed" if failing else "unchanged")
    return reason if failing else None
