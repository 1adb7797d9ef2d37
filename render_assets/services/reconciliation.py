"""Catching what no failure hook saw: runs that died, claims that never got a run, and BullMQ
jobs or refunds that a crash left unfinished. Each finding is handed to `settle`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Protocol

from render_assets.persistence import ledger, renders
from render_assets.persistence.models import utcnow
from render_assets.services.backends import Backends
from render_assets.services.settlement import AttemptFailure, Settlement, settle

log = logging.getLogger(__name__)


class RunPhase(StrEnum):
    WAITING = "waiting"  # queued or starting
    RUNNING = "running"
    ENDED = "ended"  # succeeded, failed or canceled


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    phase: RunPhase
    status: str
    started_at: datetime | None = None


class RunLookup(Protocol):
    def find(self, run_key: str) -> RunInfo | None: ...

    def mark_failed(self, run_id: str, reason: str) -> None: ...


@dataclass(frozen=True)
class ReconcilePolicy:
    claim_grace: timedelta = timedelta(seconds=120)  # a claim may wait this long for its run
    heartbeat_grace: timedelta = timedelta(seconds=20)  # a run gets this long to send its first beat


@dataclass(frozen=True)
class LostAttempt:
    """An attempt no failure hook settled, for failure reporting."""

    render_id: str
    run_key: str
    run_id: str | None
    reason: str


@dataclass
class Reconciliation:
    settled: list[Settlement] = field(default_factory=list)
    dead_runs: list[str] = field(default_factory=list)
    lost: list[LostAttempt] = field(default_factory=list)


def reconcile(
    backends: Backends,
    runs: RunLookup,
    is_alive: Callable[[str], bool],
    *,
    deployment: str,
    policy: ReconcilePolicy = ReconcilePolicy(),
    now: datetime | None = None,
) -> Reconciliation:
    """`runs` knows the runs of `deployment`'s Dagster instance, so only that deployment's
    in-flight claims are judged here; another deployment's are its own to settle (or, when it is
    gone, BullMQ's: their locks expire and the stalled check hands the jobs out again). Ended
    attempts BullMQ has not heard of and unrefunded failures are settled whoever claimed them:
    settling those needs no run, and is idempotent."""
    now = now or utcnow()
    outcome = Reconciliation()
    with backends.database.session() as session:
        in_flight = [
            (row.id, row.run_key, _aware(row.claimed_at or row.created_at))
            for row in renders.in_flight(session, deployment)
        ]
        unannounced = [row.id for row in renders.unannounced(session)]
        unrefunded = ledger.charged_failures_without_refund(session)
    for render_id, run_key, claimed_at in in_flight:
        info = runs.find(run_key) if run_key else None
        reason = _lost_attempt(runs, is_alive, info, claimed_at, now, policy, outcome)
        if reason and run_key:
            settled = settle(backends, render_id, failure=AttemptFailure(run_key=run_key, reason=reason))
            outcome.settled.append(settled)
            if settled.recorded_failure:
                outcome.lost.append(LostAttempt(render_id, run_key, info.run_id if info else None, reason))
    for render_id in dict.fromkeys(unannounced + unrefunded):
        outcome.settled.append(settle(backends, render_id))
    return outcome


def _lost_attempt(
    runs: RunLookup,
    is_alive: Callable[[str], bool],
    info: RunInfo | None,
    claimed_at: datetime,
    now: datetime,
    policy: ReconcilePolicy,
    outcome: Reconciliation,
) -> str | None:
    """Why an in-flight attempt is lost, or None while it may still finish."""
    if info is None:
        late = now - claimed_at > policy.claim_grace
        return f"no run was started for the claim within {policy.claim_grace.seconds} s" if late else None
    if info.phase is RunPhase.ENDED:
        return f"run {info.run_id} ended ({info.status}) without settling the render"
    if info.phase is RunPhase.RUNNING and not is_alive(info.run_id):
        started = _aware(info.started_at) if info.started_at else claimed_at
        if now - started > policy.heartbeat_grace:
            reason = f"run {info.run_id} stopped sending heartbeats (its process died)"
            runs.mark_failed(info.run_id, reason)
            outcome.dead_runs.append(info.run_id)
            return reason
    return None


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes for timezone-aware columns; they were written in UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
