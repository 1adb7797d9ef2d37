"""Money and jobs stay exact when processes die: `kill -9` of run workers at several points, a
killed daemon, and a restarted Redis, each against the real daemon, Redis and PostgreSQL."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from render_assets.domain.payload import parse_job
from render_assets.domain.pricing import render_cost
from render_assets_tests.e2e.conftest import RenderStack, build_stack, running
from render_assets_tests.e2e.helpers import (
    FAST_FAILURE_DETECTION,
    Enqueued,
    audit_is_clean,
    bull_states,
    enqueue,
    enqueue_burst,
    ledger,
    row,
    run_id_of,
    settle_burst,
    wait_for,
)
from render_assets_tests.e2e.servers import PrivateRedis

pytestmark = [pytest.mark.e2e]

CRASH_SETTINGS = {**FAST_FAILURE_DETECTION, "LOCAL_PROVIDER_LATENCY_S": "4"}
SETTLE_WITHIN_S = 60


@pytest.fixture(scope="module")
def crash_stack(tmp_path_factory: pytest.TempPathFactory, postgres_url: str) -> Iterator[RenderStack]:
    stack = build_stack(tmp_path_factory.mktemp("crash_stack"), postgres_url, overrides=CRASH_SETTINGS)
    with running(stack):
        yield stack


def kill_run_worker(stack: RenderStack, render_id: str, at_stage: Callable[[dict[str, Any]], bool]) -> float:
    """Wait until the render's row satisfies `at_stage`, then `kill -9` its run worker; returns the time."""
    current = wait_for(lambda: (r := row(stack, render_id)) and at_stage(r) and r, 60, "the stage to kill at", stack)
    run_id = wait_for(lambda: run_id_of(stack, current["run_key"]), 30, "the run", stack)
    pid = wait_for(lambda: stack.run_worker_pid(run_id), 30, "the run worker's first step", stack)
    os.kill(pid, signal.SIGKILL)
    return time.monotonic()


def generating(r: dict[str, Any]) -> bool:
    return r["stage"] == "generating"


def test_kill_during_generation_with_attempts_left_is_delivered_by_a_retry_and_charged_once(
    crash_stack: RenderStack,
) -> None:
    job_id, render_id, data = enqueue(crash_stack, attempts=2)
    killed_at = kill_run_worker(crash_stack, render_id, generating)

    wait_for(lambda: crash_stack.bull_job(job_id)["state"] == "completed", 90, "the retry to deliver", crash_stack)

    print(f"\n[crash] killed in raw_render; delivered by the retry {time.monotonic() - killed_at:.1f}s later")
    cost = render_cost(parse_job(data).settings)
    assert ledger(crash_stack, render_id) == [("charge", -cost)]
    assert crash_stack.bull_job(job_id)["attemptsMade"] == 2
    audit_is_clean(crash_stack)


def test_kill_during_generation_on_the_last_attempt_refunds_once_within_a_minute(crash_stack: RenderStack) -> None:
    job_id, render_id, data = enqueue(crash_stack, attempts=1)
    cost = render_cost(parse_job(data).settings)
    killed_at = kill_run_worker(crash_stack, render_id, generating)

    wait_for(lambda: crash_stack.bull_job(job_id)["state"] == "failed", SETTLE_WITHIN_S, "the refund", crash_stack)

    settled_s = time.monotonic() - killed_at
    print(f"\n[crash] killed in raw_render on the last attempt; settled {settled_s:.1f}s later")
    assert ledger(crash_stack, render_id) == [("charge", -cost), ("refund", cost)]
    # Either the code server saw its run worker die (the run ended FAILURE), or the heartbeat stopped.
    reason = crash_stack.bull_job(job_id)["failedReason"] or ""
    assert "without settling the render" in reason or "stopped sending heartbeats" in reason, reason
    assert row(crash_stack, render_id)["status"] == "failed"
    audit_is_clean(crash_stack)


def test_kill_before_the_charge_charges_nothing(crash_stack: RenderStack) -> None:
    job_id, render_id, _ = enqueue(crash_stack, attempts=1)
    # The run exists but its worker has not charged yet: the row is still `claimed`.
    killed_at = kill_run_worker(
        crash_stack, render_id, lambda r: r["status"] == "claimed" and run_id_of(crash_stack, r["run_key"]) is not None
    )

    wait_for(lambda: crash_stack.bull_job(job_id)["state"] == "failed", SETTLE_WITHIN_S, "the failure", crash_stack)

    print(f"\n[crash] killed before the charge; settled {time.monotonic() - killed_at:.1f}s later")
    assert [kind for kind, _ in ledger(crash_stack, render_id)] in ([], ["charge", "refund"])
    audit_is_clean(crash_stack)


@pytest.mark.infrastructure_fault
def test_killing_the_daemon_with_claims_in_flight_loses_no_job(crash_stack: RenderStack) -> None:
    jobs = enqueue_burst(crash_stack, 5, attempts=2)
    # As soon as anything is claimed, the daemon, its code server and its run workers all die.
    wait_for(
        lambda: any((r := row(crash_stack, job.render_id)) and r["status"] == "claimed" for job in jobs),
        60,
        "a claim",
        crash_stack,
    )
    crash_stack.kill()
    statuses = {job.render_id: (row(crash_stack, job.render_id) or {}).get("status") for job in jobs}
    print(f"\n[crash] daemon killed with renders {statuses}")
    restarted_at = time.time()
    crash_stack.start()

    settle_burst(
        crash_stack, jobs, fault="daemon killed with claims in flight", fault_over_at=restarted_at, timeout_s=150
    )


@pytest.mark.infrastructure_fault
def test_a_redis_crash_during_a_burst_loses_no_job(
    tmp_path_factory: pytest.TempPathFactory, own_database_url: str, private_redis: PrivateRedis
) -> None:
    # A database of its own: crash_stack's reconciler, alive until the module ends, would settle
    # this stack's claims as runs it cannot find.
    stack = build_stack(
        tmp_path_factory.mktemp("redis_crash"),
        own_database_url,
        redis_url=private_redis.url,
        overrides={**CRASH_SETTINGS, "LOCAL_PROVIDER_LATENCY_S": "1"},
    )
    with running(stack):
        jobs: list[Enqueued] = enqueue_burst(stack, 12, attempts=3)

        def completed() -> int:
            return [state["state"] for state in bull_states(stack, [job.job_id for job in jobs]).values()].count(
                "completed"
            )

        wait_for(lambda: completed() >= 3, 120, "the first completions", stack, every_s=0.3)
        private_redis.crash()
        time.sleep(2)  # Redis is down: ticks, heartbeats and progress updates fail meanwhile
        private_redis.start()
        restarted_at = time.time()

        settle_burst(stack, jobs, fault="Redis SIGKILLed mid-burst", fault_over_at=restarted_at, timeout_s=240)
