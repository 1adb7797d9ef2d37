"""Cancelling a render, by whichever route the web app takes: the progress server's
`POST /renders/ID/cancel`, `render-assets cancel`, or removing the job from BullMQ while it is
claimed (a run's heartbeat notices the job is gone).

A cancel is recorded first (a tombstone, so one that arrives before the job is claimed drops the
job at its claim), then settled (`settle(cancel=…)`: the renders row, the credit rule, the event
stream and BullMQ agree), then signalled to the run rendering it, which stops (terminated
through Dagster). A render that has ended stays as it ended: a delivered one is delivered and
charged; cancelling it again changes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from render_assets.adapters.bullmq_queue import BullQueue
from render_assets.domain.object_keys import render_folder
from render_assets.persistence import cancellations, quality_reviews, renders
from render_assets.persistence.models import RenderStatus
from render_assets.services import delivery
from render_assets.services.backends import Backends
from render_assets.services.settlement import Cancel, settle

log = logging.getLogger(__name__)

CANCELLED = "cancelled"  # the render was cancelled now
TOO_LATE = "too_late"  # it had ended: delivered (and charged) or failed
ALREADY_CANCELLED = "already_cancelled"
PENDING = "pending"  # not claimed yet: its job is dropped when it is


@dataclass(frozen=True)
class CancelOutcome:
    render_id: str
    outcome: str
    status: str | None  # the render's status now (None: no row yet)
    charged: bool | None = None  # a cancelled render's charge stands (its image had been made)

    def as_dict(self) -> dict[str, object]:
        return {"renderId": self.render_id, "outcome": self.outcome, "status": self.status, "charged": self.charged}


def cancel(backends: Backends, render_id: str, *, source: str) -> CancelOutcome:
    """Cancel a render now; idempotent, whoever calls and however often. Refunded unless its image
    was made already (`Backends.cancel_refund_after_generation` refunds those too)."""
    database = backends.database
    with database.session() as session:
        cancellations.request(session, render_id, source)
        row = renders.get(session, render_id)
        before = row.status if row is not None else None
    if before is None:
        log.info("render %s cancelled (%s) before its job was claimed: dropped when it is", render_id, source)
        return CancelOutcome(render_id, PENDING, None)
    if before in (RenderStatus.COMPLETED, RenderStatus.FAILED):
        return CancelOutcome(render_id, TOO_LATE, before)
    settled = settle(backends, render_id, cancel=Cancel(backends.cancel_refund_after_generation))
    with database.session() as session:
        row = renders.require(session, render_id)
        status, charged, bull_job_id = row.status, row.cancel_charged, row.bull_job_id
    if not settled.cancelled:
        outcome = ALREADY_CANCELLED if status == RenderStatus.CANCELLED else TOO_LATE
        return CancelOutcome(render_id, outcome, status, charged if status == RenderStatus.CANCELLED else None)
    if backends.cancel_signals is not None:
        backends.cancel_signals.send(render_id)  # a run on it stops; one not started yet stops at its first step
    if before in (RenderStatus.RETRYING, RenderStatus.WAITING) and bull_job_id:
        # Delayed in BullMQ, claimed by nobody: due now, so the next claim fails it "cancelled".
        _promote_quietly(backends.queue, bull_job_id)
    log.info("render %s cancelled (%s); charge %s", render_id, source, "stands" if charged else "refunded")
    return CancelOutcome(render_id, CANCELLED, status, charged)


def _promote_quietly(queue: BullQueue, job_id: str) -> None:
    try:
        queue.promote(job_id)
    except Exception:  # the next due time brings it back all the same
        log.warning("could not make job %s due now", job_id, exc_info=True)


def clean_up(backends: Backends) -> list[str]:
    """Remove what cancelled renders had stored (delivery variants a run wrote before it was
    stopped, a held review image): nothing of a cancelled render stays. Returns the keys removed.
    A key that cannot be removed is left, and the render tried again on the next call."""
    database, storage = backends.database, backends.storage
    with database.session() as session:
        cancelled = [(row.id, row.organization_id, row.project_id) for row in cancellations.uncleaned(session)]
    removed: list[str] = []
    for render_id, organization_id, project_id in cancelled:
        keys = storage.keys_under(render_folder(organization_id, project_id, render_id))
        gone = delivery.remove_quietly(storage, keys)
        removed += gone
        if len(gone) == len(keys):
            with database.session() as session:
                cancellations.mark_cleaned(session, render_id)
                quality_reviews.cancel_pending(session, render_id)
    return removed
