"""Settlement: make the renders row, the ledger, the progress stream and the BullMQ job agree.

`settle(render_id)` is the one place that does it. It is idempotent: the failure hook, the
reconciliation sensor and the review commands may all call it, concurrently or again after a
crash, and each effect happens once (the row is locked while it decides, ledger entries have
unique keys, and the BullMQ job is told only while the row still holds the claim's token).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from render_assets.adapters.bullmq_queue import BullQueue, JobRef
from render_assets.domain.progress import CANCELLED, RETRYING, Progress, Stage
from render_assets.persistence import ledger, renders
from render_assets.persistence.database import Database
from render_assets.persistence.models import RenderStatus
from render_assets.services.backends import Backends

log = logging.getLogger(__name__)

MAX_REASON_CHARS = 500


@dataclass(frozen=True)
class AttemptFailure:
    """An attempt that ended in failure, as its run (or the reconciler, for a dead run) saw it."""

    run_key: str | None  # the failed run's key; a run without one (operator run) changes no state
    reason: str
    permanent: bool = False


@dataclass(frozen=True)
class Cancel:
    """Its customer cancelled the render. The one credit rule: cancelled before a provider returned
    its image, it is refunded in full; after (the provider was paid), the charge stands, unless
    `refund_after_generation` (RENDER_CANCEL_REFUND_AFTER_GENERATION)."""

    refund_after_generation: bool = False


@dataclass(frozen=True)
class Settlement:
    render_id: str
    status: str | None  # the render's status after settling; None for an unknown render
    recorded_failure: bool = False
    cancelled: bool = False  # this call cancelled the render
    refunded: int = 0  # credits given back by this call
    bullmq: str | None = None  # what BullMQ was told by this call: completed, failed or retrying


@dataclass(frozen=True)
class _Announcement:
    ref: JobRef
    status: str
    reason: str
    result: dict[str, Any] | None


def short_reason(reason: str) -> str:
    first_line = (reason.strip().splitlines() or ["render failed"])[0]
    return first_line[:MAX_REASON_CHARS]


def settle(
    backends: Backends,
    render_id: str,
    *,
    failure: AttemptFailure | None = None,
    cancel: Cancel | None = None,
) -> Settlement:
    """`failure`: an attempt ended in failure; `cancel`: its customer cancelled the render (an
    ended render stays as it ended: a delivered one is delivered and charged)."""
    database, queue, progress = backends.database, backends.queue, backends.progress
    with database.session() as session:
        render = renders.lock(session, render_id)
        if render is None:
            return Settlement(render_id, None)
        cancelled = False
        if cancel is not None and render.status in (*RenderStatus.IN_FLIGHT, RenderStatus.IN_REVIEW):
            keep = render.generated_at is not None and not cancel.refund_after_generation
            renders.mark_cancelled(session, render, charged=keep)
            cancelled = True
        recorded = (
            failure is not None
            and failure.run_key is not None
            and failure.run_key == render.run_key
            and render.status in (RenderStatus.CLAIMED, RenderStatus.PROCESSING)
        )
        if recorded and failure is not None:
            final = failure.permanent or renders.is_last_attempt(render)
            renders.mark_failed(session, render_id, reason=short_reason(failure.reason), final=final)
        status = render.status
        refunded_for_good = status == RenderStatus.FAILED or (
            status == RenderStatus.CANCELLED and not render.cancel_charged
        )
        refund = (
            ledger.refund(session, render_id=render_id, reason=render.error or "render failed")
            if refunded_for_good
            else None
        )
        if status == RenderStatus.COMPLETED and render.delivered_via == "bullmq":
            ledger.record_usage(session, render_id=render_id, details={"projectId": render.project_id})
        announcement = _announcement(render)
        percent, error = render.progress, render.error or "render failed"
    refunded = refund.amount if refund is not None and refund.created else 0
    if recorded:
        progress.send(render_id, None, Progress(percent=percent, stage=_failure_stage(status), message=error))
    if cancelled:
        progress.send(render_id, None, Progress(percent=percent, stage=CANCELLED, message=renders.CANCELLED_MESSAGE))
    told = None
    if announcement:
        try:
            told = _tell_bullmq(database, queue, render_id, announcement, percent)
        except Exception:
            # Redis unreachable: the row keeps the claim, and the reconciler tells BullMQ later.
            log.warning("could not tell BullMQ about render %s yet", render_id, exc_info=True)
    if recorded or cancelled or refunded or told:
        log.info("settled render %s: %s, refunded %s, BullMQ %s", render_id, status, refunded, told)
    return Settlement(render_id, status, recorded_failure=recorded, cancelled=cancelled, refunded=refunded, bullmq=told)


def _failure_stage(status: str | None) -> str:
    """`failed` only for good: an attempt BullMQ will retry is `retrying` on BullMQ, the row and SSE."""
    return RETRYING if status == RenderStatus.RETRYING else Stage.FAILED.value


def _announcement(render: Any) -> _Announcement | None:
    """What BullMQ still has to hear about an attempt that has ended, if anything."""
    ended = (RenderStatus.COMPLETED, RenderStatus.FAILED, RenderStatus.RETRYING, RenderStatus.CANCELLED)
    if render.status not in ended or not render.claim_token or not render.bull_job_id:
        return None
    return _Announcement(
        ref=JobRef(render.bull_job_id, render.claim_token),
        status=render.status,
        reason=render.error or "render failed",
        result=render.result,
    )


def _tell_bullmq(
    database: Database, queue: BullQueue, render_id: str, announcement: _Announcement, percent: int
) -> str:
    ref = announcement.ref
    if announcement.status == RenderStatus.COMPLETED:
        queue.complete(ref, announcement.result or {})
        told = "completed"
    elif announcement.status == RenderStatus.CANCELLED:
        # The job may be gone (the web app removed it): then there is nobody left to tell.
        if queue.state(ref.job_id) == "active":
            queue.report_progress(ref, Progress(percent, CANCELLED, renders.CANCELLED_MESSAGE).as_dict())
        told = "cancelled" if queue.fail(ref, CANCELLED, retryable=False) else "gone"
    else:
        stage = _failure_stage(announcement.status)
        queue.report_progress(ref, Progress(percent, stage, announcement.reason).as_dict())
        retry = announcement.status == RenderStatus.RETRYING
        queue.fail(ref, announcement.reason, retryable=retry)
        told = "retrying" if retry else "failed"
    with database.session() as session:
        renders.release_claim(session, render_id, ref.token)
    return told


def operator_run_outcome(database: Database, render_id: str) -> str:
    """What a failed operator re-render left the render with: all it had, in words for the UI.
    (Such a run settles nothing: it charged nothing, holds no claim and moved no progress.)"""
    with database.session() as session:
        render = renders.get(session, render_id)
        if render is None:
            return f"render {render_id} is unknown"
        if render.status == RenderStatus.COMPLETED:
            return f"re-render failed; render {render_id} stays delivered as version {render.current_version or 1}"
        return f"re-render failed; render {render_id} stays {render.status}"
