"""Settling a failed attempt: the renders row, the ledger, the progress and the BullMQ job agree."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from render_assets.adapters.bullmq_queue import BullQueue
from render_assets.domain import ledger, renders
from render_assets.domain.database import Database
from render_assets.domain.models import RenderStatus
from render_assets.domain.progress import Progress, Stage
from render_assets.services.progress import ProgressPublisher
from render_assets.services.run_context import current_claim

log = logging.getLogger(__name__)

MAX_REASON_CHARS = 500


@dataclass(frozen=True)
class Settlement:
    render_id: str
    final: bool
    refunded: int  # credits given back by this call (0 when none, or an earlier call did)


def short_reason(reason: str) -> str:
    first_line = (reason.strip().splitlines() or ["render failed"])[0]
    return first_line[:MAX_REASON_CHARS]


def settle_failure(
    database: Database,
    queue: BullQueue,
    progress: ProgressPublisher,
    *,
    render_id: str,
    run_key: str | None,
    reason: str,
    permanent: bool,
) -> Settlement | None:
    """Record a failed attempt; when it is the last one, refund the charge (once).

    An attempt is final when retrying cannot help, when BullMQ has no attempts left, or when the
    run holds no BullMQ claim (a backfill or re-execution has nobody to retry it).
    """
    reason = short_reason(reason)
    with database.session() as session:
        render = renders.get(session, render_id)
        if render is None or render.status == RenderStatus.COMPLETED:
            return None  # nothing to settle: unknown render, or delivered before the failure
        if run_key is not None and render.run_key != run_key:
            return None  # a stale run: a newer claim owns this render now
        bull = current_claim(render, run_key)
        final = permanent or bull is None or renders.is_last_attempt(render)
        percent = render.progress
        renders.mark_failed(session, render_id, reason=reason, final=final)
        refund = ledger.refund(session, render_id=render_id, reason=reason) if final else None
    refunded = refund.amount if refund and refund.created else 0
    failed = Progress(percent=percent, stage=Stage.FAILED.value, message=reason)
    progress.send(render_id, None, failed)
    if bull is not None:
        try:
            queue.report_progress(bull, failed.as_dict())
        finally:
            queue.fail(bull, reason, retryable=not final)
    log.info("render %s failed (final=%s, refunded %s): %s", render_id, final, refunded, reason)
    return Settlement(render_id=render_id, final=final, refunded=refunded)
