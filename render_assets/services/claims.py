"""Claiming BullMQ jobs for runs: validate, record the claim, and say which runs to start.

A claim is written to the renders row before any run is requested, so a sensor tick that fails
after claiming loses nothing: the next tick finds the row still `claimed` and requests the same
run key again (Dagster starts one run per key). A job whose claim cannot be recorded is handed
back to BullMQ; one whose process dies first is returned by BullMQ's stalled-job check when its
lock expires.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from render_assets.adapters.bullmq_queue import JOB_NAME, BullQueue, ClaimedJob, JobRef
from render_assets.domain.payload import InvalidJob, RenderJob, parse_job
from render_assets.domain.progress import CANCELLED, Progress
from render_assets.domain.url_policy import HostAllowlist, job_url_problems
from render_assets.persistence import renders
from render_assets.persistence.database import Database
from render_assets.persistence.renders import BullClaim, ClaimVerdict
from render_assets.providers.circuit_breaker import RouteAvailability
from render_assets.services.progress import ProgressPublisher

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunToStart:
    render_id: str
    run_key: str
    bull_job_id: str
    job: RenderJob


@dataclass
class TickOutcome:
    runs: list[RunToStart] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)  # BullMQ job id → reason
    handed_back: list[str] = field(default_factory=list)

    def merged_after(self, earlier: TickOutcome) -> TickOutcome:
        """This claim's outcome with an earlier one of the same tick."""
        return TickOutcome(
            runs=earlier.runs + self.runs,
            rejected={**earlier.rejected, **self.rejected},
            handed_back=earlier.handed_back + self.handed_back,
        )


def pending_runs(database: Database, deployment: str) -> list[RunToStart]:
    """The deployment's own claims still waiting for a run. Another deployment's are not ours to
    start: its Dagster storage, not ours, knows whether their runs exist."""
    with database.session() as session:
        return [
            RunToStart(
                render_id=row.id,
                run_key=row.run_key,
                bull_job_id=row.bull_job_id,
                job=RenderJob.model_validate(row.payload),
            )
            for row in renders.pending_claims(session, deployment)
            if row.run_key and row.bull_job_id
        ]


def claims_while(availability: RouteAvailability, free: int, *, renders_starting: int) -> int:
    """How many jobs to claim with `free` run slots, given the providers: all of them while a
    provider is up; none while every provider is down, so the backlog waits in BullMQ; and one
    once a probe is due and no other render is on its way to make it (its call decides)."""
    if availability.up:
        return free
    if availability.probe_due and renders_starting == 0:
        return min(free, 1)
    return 0


def starting(database: Database) -> int:
    """Renders claimed or processing: runs that may be about to call a provider."""
    with database.session() as session:
        return renders.count_in_progress(session)


def hold_pending_claims(database: Database, queue: BullQueue, deployment: str) -> int:
    """Renew the BullMQ locks of the deployment's claims whose runs have not started yet; returns
    how many still held. A run's own heartbeat renews its claim once it runs, but a run may take
    longer than a lock to start (a container or pod started, an image pulled, a busy host): until
    then its deployment holds the claim, or BullMQ's stalled check would hand the job out again
    and a second run would render it."""
    with database.session() as session:
        held = [
            JobRef(row.bull_job_id, row.claim_token)
            for row in renders.pending_claims(session, deployment)
            if row.bull_job_id and row.claim_token
        ]
    return sum(queue.extend_lock(ref) for ref in held)


def claim_jobs(
    database: Database,
    queue: BullQueue,
    max_jobs: int,
    *,
    deployment: str,
    source_hosts: HostAllowlist | None = None,
    progress: ProgressPublisher | None = None,
) -> TickOutcome:
    """`deployment`: who claims (recorded on each claim). `source_hosts`: when source photos are
    fetched, a job whose image URLs the allowlist refuses is rejected here, before anything is
    charged (so is a bad bundled example image URL, allowlist or not). `progress`: publishes each
    claim (`claimed`, 5) as soon as it is recorded."""
    outcome = TickOutcome()
    for claimed in queue.claim(max_jobs):
        ref = JobRef(claimed.job_id, claimed.token)
        try:
            _admit(database, queue, claimed, ref, outcome, deployment, source_hosts, progress)
        except Exception:
            # Could not record the claim (database down?): give the job back without spending
            # an attempt. If even that fails, the lock expires and BullMQ returns the job.
            log.exception("could not record the claim of job %s; handing it back", claimed.job_id)
            try:
                queue.release(ref)
                outcome.handed_back.append(claimed.job_id)
            except Exception:
                log.exception("could not hand job %s back; its lock will expire", claimed.job_id)
    return outcome


def claim_arriving(
    database: Database,
    queue: BullQueue,
    max_jobs: int,
    *,
    wait_until: float,
    deployment: str,
    source_hosts: HostAllowlist | None = None,
    progress: ProgressPublisher | None = None,
) -> TickOutcome:
    """`claim_jobs`, and when that finds nothing to start while there is room to claim, waits on
    BullMQ until `wait_until` (a `time.monotonic()` time) and claims the jobs as they arrive."""

    def claim() -> TickOutcome:
        return claim_jobs(
            database, queue, max_jobs, deployment=deployment, source_hosts=source_hosts, progress=progress
        )

    outcome = claim()
    while not outcome.runs and max_jobs > 0 and queue.wait_for_work(wait_until - time.monotonic()):
        outcome = claim().merged_after(outcome)
    return outcome


def _admit(
    database: Database,
    queue: BullQueue,
    claimed: ClaimedJob,
    ref: JobRef,
    outcome: TickOutcome,
    deployment: str,
    source_hosts: HostAllowlist | None = None,
    progress: ProgressPublisher | None = None,
) -> None:
    if claimed.name != JOB_NAME:
        _reject(queue, ref, outcome, f"unknown job name (this worker handles {JOB_NAME!r} jobs only)")
        return
    try:
        job = parse_job(claimed.data)
    except InvalidJob as error:
        _reject(queue, ref, outcome, str(error))
        return
    # With no host allowlisted, only a bundled example's URLs are checked: nothing else is fetched.
    url_problems = job_url_problems(job, source_hosts or HostAllowlist())
    if url_problems:
        _reject(queue, ref, outcome, "invalid job payload: " + "; ".join(url_problems))
        return
    run_key = str(claimed.run_key(job.renderId))
    claim = BullClaim(
        job_id=claimed.job_id,
        attempt=claimed.attempts_made,
        max_attempts=claimed.max_attempts,
        token=claimed.token,
        run_key=run_key,
        deployment=deployment,
    )
    with database.session() as session:
        decision = renders.record_claim(session, job, claim)
    if decision.verdict is ClaimVerdict.RUN:
        outcome.runs.append(RunToStart(render_id=job.renderId, run_key=run_key, bull_job_id=claimed.job_id, job=job))
        if progress is not None:  # "picked up" reaches the web app before the run starts
            progress.claimed(job.renderId, ref)
    elif decision.verdict is ClaimVerdict.ALREADY_DELIVERED:
        queue.complete(ref, decision.result or {})
    elif decision.verdict is ClaimVerdict.CANCELLED:
        # Cancelled before its claim (or BullMQ redelivered a job we cancelled): dropped, no run.
        if progress is not None:
            progress.send(job.renderId, None, Progress(0, CANCELLED, renders.CANCELLED_MESSAGE))
        _reject(queue, ref, outcome, decision.reason)
    else:
        _reject(queue, ref, outcome, decision.reason)


def _reject(queue: BullQueue, ref: JobRef, outcome: TickOutcome, reason: str) -> None:
    queue.fail(ref, reason, retryable=False)
    outcome.rejected[ref.job_id] = reason
    log.warning("rejected job %s: %s", ref.job_id, reason)
