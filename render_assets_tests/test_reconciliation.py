"""The reconciler's decisions, with run facts from a stand-in for the Dagster instance and run
liveness in the real Redis."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from render_assets.adapters.bullmq_queue import BullQueue
from render_assets.adapters.run_liveness import Heartbeat, RunLiveness
from render_assets.persistence import renders
from render_assets.persistence.database import Database
from render_assets.persistence.models import RenderStatus, utcnow
from render_assets.services.backends import Backends
from render_assets.services.reconciliation import ReconcilePolicy, RunInfo, RunPhase, reconcile
from render_assets_tests.claimed_renders import DEPLOYMENT, claimed_render, kinds, status
from render_assets_tests.conftest import REDIS_URL


@dataclass
class Runs:
    """What the Dagster instance would say about each run key."""

    by_key: dict[str, RunInfo] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)

    def find(self, run_key: str) -> RunInfo | None:
        return self.by_key.get(run_key)

    def mark_failed(self, run_id: str, reason: str) -> None:
        self.failed.append(run_id)


def liveness() -> RunLiveness:
    return RunLiveness(REDIS_URL, ttl_s=0.5, prefix=f"test-alive-{uuid.uuid4().hex[:8]}:")


def run_reconcile(database: Database, bull: BullQueue, runs: Runs, alive: RunLiveness, **policy: timedelta):  # type: ignore[no-untyped-def]
    return reconcile(
        Backends(database=database, queue=bull),
        runs,
        alive.is_alive,
        deployment=DEPLOYMENT,
        policy=ReconcilePolicy(**policy),
    )


def test_a_run_whose_worker_died_is_failed_and_its_render_settled(database: Database, bull: BullQueue) -> None:
    render_id, run_key, job_id = claimed_render(database, bull, attempts=1)
    started = utcnow() - timedelta(minutes=1)
    runs = Runs({run_key: RunInfo("run-1", RunPhase.RUNNING, "STARTED", started)})

    outcome = run_reconcile(database, bull, runs, liveness())

    assert runs.failed == ["run-1"] and outcome.dead_runs == ["run-1"]
    assert [(lost.render_id, lost.run_id) for lost in outcome.lost] == [(render_id, "run-1")]
    assert status(database, render_id) == RenderStatus.FAILED
    assert kinds(database, render_id) == ["charge", "refund"]
    assert bull.state(job_id) == "failed"


def test_a_dead_run_with_attempts_left_goes_back_to_the_queue(database: Database, bull: BullQueue) -> None:
    render_id, run_key, job_id = claimed_render(database, bull)
    runs = Runs({run_key: RunInfo("run-1", RunPhase.RUNNING, "STARTED", utcnow() - timedelta(minutes=1))})

    run_reconcile(database, bull, runs, liveness())

    assert status(database, render_id) == RenderStatus.RETRYING
    assert bull.state(job_id) == "delayed"
    assert kinds(database, render_id) == ["charge"]


def test_a_live_run_is_left_alone(database: Database, bull: BullQueue) -> None:
    render_id, run_key, job_id = claimed_render(database, bull)
    alive = liveness()
    heartbeat = Heartbeat(lambda: alive.beat("run-1"), interval_s=0.1).start()
    try:
        runs = Runs({run_key: RunInfo("run-1", RunPhase.RUNNING, "STARTED", utcnow() - timedelta(minutes=5))})
        outcome = run_reconcile(database, bull, runs, alive)
    finally:
        heartbeat.stop()

    assert outcome.dead_runs == [] and runs.failed == []
    assert status(database, render_id) == RenderStatus.PROCESSING
    assert bull.state(job_id) == "active"


def test_a_run_just_started_gets_time_for_its_first_heartbeat(database: Database, bull: BullQueue) -> None:
    render_id, run_key, _ = claimed_render(database, bull)
    runs = Runs({run_key: RunInfo("run-1", RunPhase.RUNNING, "STARTED", utcnow())})

    run_reconcile(database, bull, runs, liveness())

    assert status(database, render_id) == RenderStatus.PROCESSING


def test_a_run_that_ended_without_settling_is_settled(database: Database, bull: BullQueue) -> None:
    render_id, run_key, job_id = claimed_render(database, bull, attempts=1)
    runs = Runs({run_key: RunInfo("run-1", RunPhase.ENDED, "FAILURE")})

    run_reconcile(database, bull, runs, liveness())

    assert status(database, render_id) == RenderStatus.FAILED
    with database.session() as session:
        assert "ended (FAILURE) without settling" in (renders.require(session, render_id).error or "")
    assert bull.state(job_id) == "failed"


def test_a_claim_without_a_run_is_lost_only_after_the_grace(database: Database, bull: BullQueue) -> None:
    render_id, _, job_id = claimed_render(database, bull, attempts=1)

    run_reconcile(database, bull, Runs(), liveness(), claim_grace=timedelta(minutes=5))
    assert status(database, render_id) == RenderStatus.PROCESSING

    run_reconcile(database, bull, Runs(), liveness(), claim_grace=timedelta(seconds=0))
    assert status(database, render_id) == RenderStatus.FAILED
    assert bull.state(job_id) == "failed"
    assert kinds(database, render_id) == ["charge", "refund"]


def test_another_deployments_claims_are_left_to_it(database: Database, bull: BullQueue) -> None:
    # Green shares the database; its runs live in its own Dagster instance, which ours cannot see.
    theirs, _, their_job = claimed_render(database, bull, deployment="green", attempts=1)
    ours, _, our_job = claimed_render(database, bull, attempts=1)

    outcome = run_reconcile(database, bull, Runs(), liveness(), claim_grace=timedelta(seconds=0))

    assert [lost.render_id for lost in outcome.lost] == [ours]
    assert (status(database, ours), bull.state(our_job)) == (RenderStatus.FAILED, "failed")
    assert (status(database, theirs), bull.state(their_job)) == (RenderStatus.PROCESSING, "active")
    assert kinds(database, theirs) == ["charge"]


def test_waiting_runs_are_left_alone(database: Database, bull: BullQueue) -> None:
    render_id, run_key, _ = claimed_render(database, bull)
    runs = Runs({run_key: RunInfo("run-1", RunPhase.WAITING, "QUEUED")})

    run_reconcile(database, bull, runs, liveness(), claim_grace=timedelta(seconds=0))

    assert status(database, render_id) == RenderStatus.PROCESSING
