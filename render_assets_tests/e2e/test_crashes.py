"""Money and jobs stay exact when processes die: `kill -9` of run workers at several points, a
killed daemon, and a restarted Redis, each against the real daemon, Redis and PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from render_assets.adapters.bullmq_queue import BullQueue
from render_assets.domain.payload import parse_job
from render_assets.domain.pricing import render_cost
from render_assets.domain.queue_contract import job_options
from render_assets_tests.e2e.conftest import RenderStack, build_stack, running
from render_assets_tests.payloads import web_app_job

pytestmark = [pytest.mark.e2e]

# Fast failure detection for the test: a heartbeat every second (dead after 3 s without one) and
# a reconciliation tick as often as the sensor daemon loops (5 s).
CRASH_SETTINGS = {
    "LOCAL_PROVIDER_LATENCY_S": "4",
    "RENDER_HEARTBEAT_S": "1",
    "RENDER_RECONCILE_INTERVAL_S": "1",
    "RENDER_CLAIM_GRACE_S": "30",
}
SETTLE_WITHIN_S = 60


@pytest.fixture(scope="module")
def crash_stack(tmp_path_factory: pytest.TempPathFactory, postgres_url: str) -> Iterator[RenderStack]:
    stack = build_stack(tmp_path_factory.mktemp("crash_stack"), postgres_url, overrides=CRASH_SETTINGS)
    with running(stack):
        yield stack


def queue_of(stack: RenderStack) -> BullQueue:
    return BullQueue(stack.redis_url, stack.queue_name, lock_duration_ms=60_000)


def enqueue(stack: RenderStack, **options: Any) -> tuple[str, str, dict[str, Any]]:
    data = web_app_job(organization_id=f"org-crash-{uuid.uuid4().hex[:8]}", resolution="1024x1024", quality=80)
    opts = {**job_options(parse_job(data)), "backoff": {"type": "fixed", "delay": 200}, **options}
    return queue_of(stack).add(data, opts), data["renderId"], data


def row(stack: RenderStack, render_id: str) -> dict[str, Any] | None:
    engine = create_engine(stack.database_url.replace("postgresql://", "postgresql+psycopg2://", 1))
    try:
        with engine.connect() as connection:
            found = (
                connection.execute(
                    text("SELECT status, stage, run_key, error FROM renders WHERE id = :id"), {"id": render_id}
                )
                .mappings()
                .first()
            )
            return dict(found) if found else None
    finally:
        engine.dispose()


def ledger(stack: RenderStack, render_id: str) -> list[tuple[str, int]]:
    engine = create_engine(stack.database_url.replace("postgresql://", "postgresql+psycopg2://", 1))
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT kind, amount FROM credit_transactions WHERE render_id = :id ORDER BY id"),
                {"id": render_id},
            )
            return [(kind, amount) for kind, amount in rows]
    finally:
        engine.dispose()


def wait_for(condition: Callable[[], Any], timeout_s: float, what: str, stack: RenderStack) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}\n{stack.log_tail(80)}")


def run_id_of(stack: RenderStack, run_key: str) -> str | None:
    from dagster import DagsterInstance, RunsFilter

    instance = DagsterInstance.from_config(str(stack.home))
    try:
        runs = instance.get_runs(RunsFilter(tags={"dagster/run_key": run_key}), limit=1)
        return runs[0].run_id if runs else None
    finally:
        instance.dispose()


def kill_run_worker(stack: RenderStack, render_id: str, at_stage: Callable[[dict[str, Any]], bool]) -> float:
    """Wait until the render's row satisfies `at_stage`, then `kill -9` its run worker; returns the time."""
    current = wait_for(lambda: (r := row(stack, render_id)) and at_stage(r) and r, 60, "the stage to kill at", stack)
    run_id = wait_for(lambda: run_id_of(stack, current["run_key"]), 30, "the run", stack)
    pid = wait_for(lambda: stack.run_worker_pid(run_id), 30, "the run worker's first step", stack)
    os.kill(pid, signal.SIGKILL)
    return time.monotonic()


def audit_is_clean(stack: RenderStack) -> None:
    result = stack.render_assets("credits", "audit", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["mismatches"] == []


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


def test_killing_the_daemon_with_claims_in_flight_loses_no_job(crash_stack: RenderStack) -> None:
    jobs = [enqueue(crash_stack, attempts=2) for _ in range(5)]
    # As soon as anything is claimed, the daemon, its code server and its run workers all die.
    wait_for(
        lambda: any((r := row(crash_stack, render_id)) and r["status"] == "claimed" for _, render_id, _ in jobs),
        60,
        "a claim",
        crash_stack,
    )
    crash_stack.kill()
    statuses = {render_id: (row(crash_stack, render_id) or {}).get("status") for _, render_id, _ in jobs}
    print(f"\n[crash] daemon killed with renders {statuses}")
    crash_stack.start()

    def ended(job_id: str) -> bool:
        return crash_stack.bull_job(job_id)["state"] in ("completed", "failed")

    for job_id, _render_id, _data in jobs:
        wait_for(lambda job_id=job_id: ended(job_id), 150, f"job {job_id} to end", crash_stack)
    outcomes = {render_id: crash_stack.bull_job(job_id)["state"] for job_id, render_id, _ in jobs}
    print(f"[crash] after the restart: {outcomes}")
    for _job_id, render_id, _data in jobs:
        kinds = [kind for kind, _ in ledger(crash_stack, render_id)]
        assert kinds == (["charge"] if outcomes[render_id] == "completed" else ["charge", "refund"]) or kinds == []
    audit_is_clean(crash_stack)


class PrivateRedis:
    """A Redis of the test's own (the machine's is shared), persisting every write to its AOF as a
    production Redis behind BullMQ should, so that a crash loses no queue state."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                str(self.folder),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise AssertionError("private redis-server did not start")

    def crash(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    if server.process is not None and server.process.poll() is None:
        server.process.terminate()
        server.process.wait(timeout=10)


def test_a_redis_crash_during_a_burst_loses_no_job(
    tmp_path_factory: pytest.TempPathFactory, postgres_url: str, private_redis: PrivateRedis
) -> None:
    stack = build_stack(
        tmp_path_factory.mktemp("redis_crash"),
        postgres_url,
        redis_url=private_redis.url,
        overrides={**CRASH_SETTINGS, "LOCAL_PROVIDER_LATENCY_S": "1"},
    )
    with running(stack):
        jobs = [enqueue(stack, attempts=3) for _ in range(20)]
        wait_for(
            lambda: sum(stack.bull_job(job_id)["state"] == "completed" for job_id, _, _ in jobs) >= 3,
            120,
            "the first completions",
            stack,
        )
        private_redis.crash()
        time.sleep(2)  # Redis is down: ticks, heartbeats and progress updates fail meanwhile
        private_redis.start()

        def all_ended() -> bool:
            return all(stack.bull_job(job_id)["state"] in ("completed", "failed") for job_id, _, _ in jobs)

        try:
            wait_for(all_ended, 240, "every job to end", stack)
        except AssertionError:
            states = {render_id: (stack.bull_job(job_id), row(stack, render_id)) for job_id, render_id, _ in jobs}
            raise AssertionError(f"jobs did not all end: {states}") from None
        outcomes = [stack.bull_job(job_id)["state"] for job_id, _, _ in jobs]
        print(
            f"\n[redis crash] 20 jobs: {outcomes.count('completed')} completed, "
            f"{outcomes.count('failed')} failed, 0 lost"
        )
        for (job_id, render_id, _), outcome in zip(jobs, outcomes, strict=True):
            kinds = [kind for kind, _ in ledger(stack, render_id)]
            assert kinds == (["charge"] if outcome == "completed" else ["charge", "refund"]), (job_id, kinds)
        audit_is_clean(stack)
