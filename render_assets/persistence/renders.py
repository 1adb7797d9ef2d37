"""The `renders` table: one row per render, holding its payload (the source of truth), its
current BullMQ claim, its progress and its outcome."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.orm import Session

from render_assets.domain.payload import RenderJob
from render_assets.domain.pricing import render_cost
from render_assets.domain.progress import CANCELLED, RETRYING, Progress, Stage, progress_for
from render_assets.persistence import cancellations, render_versions
from render_assets.persistence.models import Render, RenderStatus, utcnow
from render_assets.persistence.render_versions import DeliveredVersion, VersionFacts

CANCELLED_MESSAGE = "Render cancelled"


class ClaimVerdict(StrEnum):
    RUN = "run"  # start (or restart) a run for this claim
    ALREADY_DELIVERED = "already_delivered"  # complete the job with the stored result
    REFUSED = "refused"  # fail the job: the render id is taken by another job or already failed
    CANCELLED = "cancelled"  # fail the job: its customer cancelled the render (reason "cancelled")


@dataclass(frozen=True)
class ClaimDecision:
    verdict: ClaimVerdict
    reason: str = ""
    result: dict[str, Any] | None = None


@dataclass(frozen=True)
class BullClaim:
    job_id: str
    attempt: int
    max_attempts: int
    token: str
    run_key: str
    deployment: str | None = None  # the deployment (Dagster instance) making the claim


def get(session: Session, render_id: str) -> Render | None:
    return session.get(Render, render_id)


def require(session: Session, render_id: str) -> Render:
    render = session.get(Render, render_id)
    if render is None:
        raise LookupError(f"render {render_id} has no row in the renders table")
    return render


def record_claim(session: Session, job: RenderJob, claim: BullClaim) -> ClaimDecision:
    """Record that a BullMQ job for this render is ours now, unless the render id is spoken for."""
    render = session.execute(select(Render).where(Render.id == job.renderId).with_for_update()).scalar_one_or_none()
    if render is None and cancellations.requested(session, job.renderId):
        # Cancelled before its job was claimed: the row says so, and the job is dropped.
        cancelled = _describe_job(Render(id=job.renderId, created_at=utcnow()), job, claim)
        mark_cancelled(session, cancelled, charged=False)
        session.add(cancelled)
        return ClaimDecision(ClaimVerdict.CANCELLED, reason=CANCELLED)
    if render is not None:
        if render.status == RenderStatus.COMPLETED:
            return ClaimDecision(ClaimVerdict.ALREADY_DELIVERED, result=render.result)
        if render.status == RenderStatus.CANCELLED:
            if render.bull_job_id == claim.job_id:  # BullMQ redelivered it before hearing of the cancel
                return ClaimDecision(ClaimVerdict.CANCELLED, reason=CANCELLED)
            reason = f"render {job.renderId} was cancelled; enqueue it under a new renderId to render it"
            return ClaimDecision(ClaimVerdict.REFUSED, reason=reason)
        if render.status == RenderStatus.FAILED and render.bull_job_id == claim.job_id:
            # BullMQ redelivered a job we had already failed for good (it missed the news).
            return ClaimDecision(ClaimVerdict.REFUSED, reason=render.error or "render failed")
        if render.bull_job_id != claim.job_id:
            if render.status == RenderStatus.FAILED:
                reason = f"render {job.renderId} already failed; enqueue it under a new renderId to try again"
            else:
                reason = f"render {job.renderId} is already being processed by job {render.bull_job_id}"
            return ClaimDecision(ClaimVerdict.REFUSED, reason=reason)
    else:
        render = Render(id=job.renderId, created_at=utcnow())
        session.add(render)
    claimed = progress_for(Stage.CLAIMED)
    _describe_job(render, job, claim)
    render.status = RenderStatus.CLAIMED
    render.stage = claimed.stage
    render.progress = max(render.progress or 0, claimed.percent)  # a BullMQ retry resumes the bar
    render.message = claimed.message
    render.claim_token = claim.token
    render.run_key = claim.run_key
    render.claimed_at = utcnow()
    render.waiting_until = None
    render.error = None
    return ClaimDecision(ClaimVerdict.RUN)


def payloads(session: Session, render_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The payloads of those of `render_ids` that have a row."""
    rows = session.execute(select(Render.id, Render.payload).where(Render.id.in_(render_ids)))
    return {render_id: payload for render_id, payload in rows}


def ended_before(session: Session, render_ids: Collection[str], cutoff: datetime) -> set[str]:
    """Those of `render_ids` whose render ended (completed, failed or cancelled) and was first
    claimed before `cutoff`."""
    query = select(Render.id).where(
        Render.id.in_(render_ids), Render.status.in_(RenderStatus.ENDED), Render.created_at < cutoff
    )
    return set(session.execute(query).scalars())


def every_render(session: Session) -> list[Render]:
    """The whole table, for the credit audit: it checks every render, settled or not."""
    return list(session.execute(select(Render)).scalars())


def _describe_job(render: Render, job: RenderJob, claim: BullClaim) -> Render:
    """What a claimed job says of its render: who asked, the payload, the price, the BullMQ job."""
    render.organization_id = job.organizationId
    render.project_id = job.projectId
    render.user_id = job.userId
    render.payload = job.model_dump(mode="json")
    render.credit_cost = render_cost(job.settings)
    render.bull_job_id = claim.job_id
    render.claim_attempt = claim.attempt
    render.max_attempts = claim.max_attempts
    render.claimed_by = claim.deployment
    return render


def mark_generated(session: Session, render_id: str) -> None:
    """A provider returned the render's image (so it was paid): the first time is kept."""
    render = require(session, render_id)
    render.generated_at = render.generated_at or utcnow()


def mark_cancelled(session: Session, render: Render, *, charged: bool) -> None:
    """Its customer cancelled the render (`render` locked by the caller); `charged`: the charge
    stands (the image was made before the cancel)."""
    render.status = RenderStatus.CANCELLED
    render.stage, render.message = CANCELLED, CANCELLED_MESSAGE
    render.error = CANCELLED
    render.cancel_charged = charged
    render.waiting_until = None
    render.completed_at = utcnow()


def claimed_by(deployment: str) -> ColumnElement[bool]:
    """Claims the deployment made, and those made before claims named their deployment."""
    return or_(Render.claimed_by == deployment, Render.claimed_by.is_(None))


def in_flight(session: Session, deployment: str) -> list[Render]:
    """The deployment's renders whose current attempt has not ended: claimed, or being processed."""
    statuses = (RenderStatus.CLAIMED, RenderStatus.PROCESSING)
    query = select(Render).where(Render.status.in_(statuses), claimed_by(deployment))
    return list(session.execute(query).scalars())


def count_in_progress(session: Session) -> int:
    """Renders claimed or processing (not waiting, retrying or settled)."""
    statuses = (RenderStatus.CLAIMED, RenderStatus.PROCESSING)
    return int(
        session.execute(select(func.count()).select_from(Render).where(Render.status.in_(statuses))).scalar_one()
    )


def unannounced(session: Session) -> list[Render]:
    """Renders whose attempt ended but whose BullMQ job has not been told yet (it still holds our claim)."""
    statuses = (RenderStatus.COMPLETED, RenderStatus.FAILED, RenderStatus.RETRYING, RenderStatus.CANCELLED)
    return list(
        session.execute(select(Render).where(Render.status.in_(statuses), Render.claim_token.is_not(None))).scalars()
    )


def lock(session: Session, render_id: str) -> Render | None:
    """The row, locked until the transaction ends, so two settlements of one render take turns."""
    return session.execute(select(Render).where(Render.id == render_id).with_for_update()).scalar_one_or_none()


def release_claim(session: Session, render_id: str, token: str) -> None:
    """BullMQ has been told the attempt's outcome: the claim is spent."""
    session.execute(update(Render).where(Render.id == render_id, Render.claim_token == token).values(claim_token=None))


def pending_claims(session: Session, deployment: str) -> list[Render]:
    """The deployment's claims whose run has not started yet: a tick may have failed before its
    run was created."""
    query = select(Render).where(Render.status == RenderStatus.CLAIMED, claimed_by(deployment))
    return list(session.execute(query).scalars())


def mark_processing(session: Session, render_id: str) -> Render:
    render = require(session, render_id)
    if render.status in (RenderStatus.CLAIMED, RenderStatus.RETRYING, RenderStatus.FAILED):
        render.status = RenderStatus.PROCESSING
        render.started_at = render.started_at or utcnow()
    return render


def record_progress(session: Session, render_id: str, progress: Progress) -> Progress | None:
    """Record a stage; the percent never moves backwards, so a retried attempt resumes where the
    bar stood. Returns the progress as recorded (None for an unknown render)."""
    render = session.execute(select(Render).where(Render.id == render_id).with_for_update()).scalar_one_or_none()
    if render is None:
        return None
    recorded = Progress(max(render.progress or 0, progress.percent), progress.stage, progress.message)
    render.progress, render.stage, render.message = recorded.percent, recorded.stage, recorded.message
    render.updated_at = utcnow()
    return recorded


class StaleClaim(Exception):
    """A run tried to complete a render whose claim it no longer holds."""


def mark_completed(
    session: Session,
    render_id: str,
    *,
    claim_token: str | None = None,
    result: dict[str, Any],
    image_url: str,
    thumbnail_url: str,
    prompt_hash: str,
    image_key: str | None = None,
    facts: VersionFacts | None = None,
) -> DeliveredVersion:
    """Record a delivery as the render's next version. `claim_token`: the delivering run's BullMQ
    claim (None for an operator's run); a claim that is no longer the render's current one cannot
    complete it. An operator's re-render of a delivered render changes only its result and URLs
    (the status, progress and first delivery time stay); one that came out identical changes
    nothing. `image_key`: the master's object name (default: its URL)."""
    render = lock(session, render_id)
    if render is None:
        raise LookupError(f"render {render_id} has no row in the renders table")
    if claim_token is not None and (render.claim_token != claim_token or render.status not in RenderStatus.IN_FLIGHT):
        raise StaleClaim(f"render {render_id} is no longer claimed by this run ({render.status})")
    rerender = claim_token is None and render.status == RenderStatus.COMPLETED
    version = render_versions.record(
        session,
        render,
        result=result,
        image_url=image_url,
        thumbnail_url=thumbnail_url,
        image_key=image_key or image_url,
        prompt_hash=prompt_hash,
        delivered_via="bullmq" if claim_token is not None else "operator",
        facts=facts or VersionFacts(),
    )
    if rerender:
        return version
    done = progress_for(Stage.COMPLETED)
    render.status = RenderStatus.COMPLETED
    render.stage, render.progress, render.message = done.stage, done.percent, done.message
    render.error = None
    # The claim stays until settlement has told BullMQ, so a crash in between is caught up on.
    render.delivered_via = "bullmq" if claim_token is not None else (render.delivered_via or "operator")
    render.completed_at = utcnow()
    return version


def mark_waiting(session: Session, render_id: str, *, until: datetime, cause: str) -> Render:
    """No provider could take the render: it waits in BullMQ until `until`, its attempt unspent
    (the progress publisher records the stage, `waiting_for_provider`)."""
    render = require(session, render_id)
    render.status = RenderStatus.WAITING
    render.error = cause
    render.waiting_until = until
    return render


def is_last_attempt(render: Render) -> bool:
    return (render.claim_attempt or 0) + 1 >= (render.max_attempts or 1)


def mark_failed(session: Session, render_id: str, *, reason: str, final: bool) -> Render:
    """`final`: failed for good (stage `failed`); otherwise BullMQ tries again (stage `retrying`:
    "failed" means for good everywhere, the row included)."""
    render = require(session, render_id)
    render.status = RenderStatus.FAILED if final else RenderStatus.RETRYING
    render.stage = Stage.FAILED.value if final else RETRYING
    render.message = "Render failed" if final else "Attempt failed; retrying"
    render.error = reason
    if final:
        render.completed_at = utcnow()
    return render
