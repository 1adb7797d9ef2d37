"""Waiting out a provider outage instead of failing.

A customer's render that cannot start generating because no provider it may use is available
(every breaker open, or every call of its run failed transiently) goes back to BullMQ, delayed
until the earliest time a provider may be tried again (a breaker's next probe, a Retry-After),
without spending an attempt: it keeps its charge, its priority and its progress, and shows
`waiting_for_provider` with the expected time. It waits at most `max_wait_s` from its first
claim; a hold that would go past that fails the render for good, with the outage's cause in the
reason, and the failure hook refunds it once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from render_assets.domain.progress import WAITING_FOR_PROVIDER, Progress
from render_assets.persistence import renders
from render_assets.persistence.database import Database
from render_assets.persistence.models import utcnow
from render_assets.providers.failover import Outage
from render_assets.services.backends import Backends
from render_assets.services.failure_reports import StepFailure, report_failure
from render_assets.services.failures import RenderFailed
from render_assets.services.run_context import RenderRun

log = logging.getLogger(__name__)

GENERATION_STAGE = "raw_render"


@dataclass(frozen=True)
class Held:
    until: datetime  # when the job is due in BullMQ again
    cause: str  # why the providers are unavailable, provider by provider


def hold_for_providers(
    run: RenderRun,
    backends: Backends,
    outage: Outage,
    *,
    max_wait_s: float,
    run_id: str,
    now: datetime | None = None,
) -> Held:
    """Put the render's BullMQ job back, delayed, for the providers to return; raises
    `RenderFailed` (permanent) when it has waited `max_wait_s` since its first claim already."""
    if run.bull is None:
        raise ValueError("only a customer's run, which holds a BullMQ claim, can wait for providers")
    now = now or utcnow()
    database, queue = backends.database, backends.queue
    with database.session() as session:
        row = renders.require(session, run.render_id)
        first_claim, percent = _aware(row.created_at), row.progress or 0
    waited = (now - first_claim).total_seconds()
    cause = outage.cause()
    if waited >= max_wait_s:
        raise RenderFailed(f"image providers unavailable for {duration(waited)}: {cause}", permanent=True)
    retry_at = datetime.fromtimestamp(outage.retry_at, UTC)
    until = max(min(retry_at, first_claim + timedelta(seconds=max_wait_s)), now + timedelta(seconds=1))
    message = f"Image providers are unavailable; next try at {until:%H:%M:%S} UTC"
    # The stage (row, stream, BullMQ: its call needs our lock), then the job goes back, delayed,
    # its attempt unspent.
    backends.progress.send(
        run.render_id, run.bull, Progress(percent=percent, stage=WAITING_FOR_PROVIDER, message=message)
    )
    with database.session() as session:
        renders.mark_waiting(session, run.render_id, until=until, cause=cause)
    queue.release(run.bull, delay_ms=max(1_000, int((until - utcnow()).total_seconds() * 1000)))
    with database.session() as session:
        renders.release_claim(session, run.render_id, run.bull.token)
    # The provider errors count for the failure patterns (repeated timeouts, API errors).
    report_failure(
        database,
        StepFailure(
            render_id=run.render_id,
            run_id=run_id,
            run_key=_run_key(database, run.render_id),
            stage=GENERATION_STAGE,
            reason=f"waiting for image providers: {cause}",
        ),
    )
    log.warning("render %s waits for image providers until %s: %s", run.render_id, f"{until:%H:%M:%S}", cause)
    return Held(until, cause)


def _run_key(database: Database, render_id: str) -> str | None:
    with database.session() as session:
        row = renders.get(session, render_id)
        return row.run_key if row is not None else None


def duration(seconds: float) -> str:
    """`45 s`, `15 min`, `2 h 5 min`: how long, as a person reads it."""
    if seconds < 90:
        return f"{round(seconds)} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes for timezone-aware columns; they were written in UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
