"""What the end-to-end fault tests share: adding jobs as the web app does, reading what BullMQ,
the renders row and the ledger say about them, and the pass criterion of every infrastructure
fault ("no job lost, ledger audit clean") with the figures each fault test prints."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import create_engine, text

from render_assets.adapters.bullmq_queue import BullQueue
from render_assets.domain.payload import parse_job
from render_assets.domain.queue_contract import job_options
from render_assets.persistence.database import driver_url
from render_assets_tests.e2e.conftest import RenderStack
from render_assets_tests.payloads import web_app_job

# Fast failure detection for tests: a heartbeat every second (dead after 3 s without one) and a
# reconciliation tick as often as the sensor daemon loops (5 s).
FAST_FAILURE_DETECTION = {
    "RENDER_HEARTBEAT_S": "1",
    "RENDER_RECONCILE_INTERVAL_S": "1",
    "RENDER_CLAIM_GRACE_S": "30",
}
ENDED = ("completed", "failed")
# BullMQ lists a job that is not done sits in; after a burst every one of them must be empty.
UNFINISHED = ("active", "wait", "delayed", "prioritized", "waiting-children", "paused")


@dataclass(frozen=True)
class Enqueued:
    job_id: str
    render_id: str
    data: dict[str, Any]


def queue_of(stack: RenderStack) -> BullQueue:
    return BullQueue(stack.redis_url, stack.queue_name, lock_duration_ms=60_000)


def new_job(organization_prefix: str = "org-crash", provider: str | None = None) -> dict[str, Any]:
    """A 1024² job of a fresh organization (QA compares renders within an organization)."""
    data = web_app_job(
        organization_id=f"{organization_prefix}-{uuid.uuid4().hex[:8]}", resolution="1024x1024", quality=80
    )
    if provider is not None:
        data["settings"]["provider"] = provider
    return data


def enqueue(stack: RenderStack, data: dict[str, Any] | None = None, **options: Any) -> tuple[str, str, dict[str, Any]]:
    """Add a job with the web app's options (short fixed backoff for test speed); `options` override."""
    data = data if data is not None else new_job()
    opts = {**job_options(parse_job(data)), "backoff": {"type": "fixed", "delay": 200}, **options}
    return queue_of(stack).add(data, opts), data["renderId"], data


def enqueue_burst(stack: RenderStack, count: int, **options: Any) -> list[Enqueued]:
    return [Enqueued(*enqueue(stack, **options)) for _ in range(count)]


def query(stack: RenderStack, sql: str, **params: Any) -> list[dict[str, Any]]:
    engine = create_engine(driver_url(stack.database_url))
    try:
        with engine.connect() as connection:
            return [dict(found) for found in connection.execute(text(sql), params).mappings()]
    finally:
        engine.dispose()


def row(stack: RenderStack, render_id: str) -> dict[str, Any] | None:
    found = query(stack, "SELECT status, stage, run_key, error FROM renders WHERE id = :id", id=render_id)
    return found[0] if found else None


def ledger(stack: RenderStack, render_id: str) -> list[tuple[str, int]]:
    found = query(stack, "SELECT kind, amount FROM credit_transactions WHERE render_id = :id ORDER BY id", id=render_id)
    return [(entry["kind"], entry["amount"]) for entry in found]


def wait_for(
    condition: Callable[[], Any], timeout_s: float, what: str, stack: RenderStack, *, every_s: float = 0.1
) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}\n{stack.log_tail(80)}")


def run_id_of(stack: RenderStack, run_key: str) -> str | None:
    from dagster import DagsterInstance, RunsFilter

    instance = DagsterInstance.from_config(str(stack.home))
    try:
        runs = instance.get_runs(RunsFilter(tags={"dagster/run_key": run_key}), limit=1)
        return runs[0].run_id if runs else None
    finally:
        instance.dispose()


def audit_is_clean(stack: RenderStack) -> None:
    result = stack.render_assets("credits", "audit", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["mismatches"] == []


def bull_states(stack: RenderStack, job_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """What BullMQ holds about each job now, in one connection (BullMQ's Python client, not ours).
    A job BullMQ no longer has maps to state "missing"."""
    from bullmq import Job, Queue

    async def read() -> dict[str, dict[str, Any]]:
        queue = Queue(stack.queue_name, {"connection": stack.redis_url})
        try:
            states: dict[str, dict[str, Any]] = {}
            for job_id in job_ids:
                job = await Job.fromId(queue, job_id)
                if job is None:
                    states[job_id] = {"state": "missing"}
                    continue
                states[job_id] = {
                    "state": str(await job.getState()),
                    "attemptsMade": int(job.attemptsMade or 0),
                    "failedReason": job.failedReason,
                    "timestamp": int(job.timestamp or 0),
                    "finishedOn": int(job.finishedOn or 0),
                }
            return states
        finally:
            await queue.close()

    return asyncio.run(read())


def unfinished_counts(stack: RenderStack) -> dict[str, int]:
    """How many jobs of the stack's queue sit in each list of unfinished work."""
    from bullmq import Queue

    async def read() -> dict[str, int]:
        queue = Queue(stack.queue_name, {"connection": stack.redis_url})
        try:
            counts = await queue.getJobCounts(*UNFINISHED)
            return {kind: int(count) for kind, count in counts.items()}
        finally:
            await queue.close()

    return asyncio.run(read())


@dataclass(frozen=True)
class FaultFigures:
    """The figures every infrastructure fault test reports."""

    fault: str
    tried: int
    delivered: int
    refunded: int  # failed cleanly: refunded, or failed before any charge
    lost: int
    latency_p50_s: float  # enqueue → BullMQ finished
    latency_max_s: float
    first_delivery_s: float | None  # fault over → the first delivery after it
    recovered_s: float | None  # fault over → every job of the burst ended
    outcomes: dict[str, str] = field(default_factory=dict, repr=False)  # BullMQ job id → completed | failed

    def line(self) -> str:
        recovered = ""
        if self.recovered_s is not None:
            first = "none" if self.first_delivery_s is None else f"{self.first_delivery_s:.1f}s"
            recovered = f"; after the fault ended: first delivery {first}, all ended {self.recovered_s:.1f}s"
        return (
            f"[fault: {self.fault}] {self.tried} jobs: {self.delivered} delivered, "
            f"{self.refunded} failed with refund, {self.lost} lost; latency p50 {self.latency_p50_s:.1f}s "
            f"max {self.latency_max_s:.1f}s{recovered}"
        )


def settle_burst(
    stack: RenderStack, jobs: Sequence[Enqueued], *, fault: str, fault_over_at: float | None, timeout_s: float
) -> FaultFigures:
    """The pass criterion of an infrastructure fault: every job ends (completed or failed, none
    stuck active, waiting or delayed, none vanished), a delivered render is charged once, a failed
    one is refunded (or was never charged), the renders rows agree, and the ledger audit is clean.
    `fault_over_at` is the wall-clock time (time.time()) the fault ended, if it did."""
    ids = [job.job_id for job in jobs]

    def ended() -> dict[str, dict[str, Any]] | None:
        states = bull_states(stack, ids)
        return states if all(state["state"] in ENDED for state in states.values()) else None

    try:
        states = wait_for(ended, timeout_s, "every job of the burst to end", stack, every_s=0.5)
    except AssertionError:
        states = bull_states(stack, ids)
        lost = {job.render_id: (states[job.job_id], row(stack, job.render_id)) for job in jobs}
        stuck = {render_id: seen for render_id, seen in lost.items() if seen[0]["state"] not in ENDED}
        raise AssertionError(f"[fault: {fault}] {len(stuck)} jobs lost: {stuck}\n{stack.log_tail(120)}") from None
    outcomes = {job.render_id: states[job.job_id]["state"] for job in jobs}
    for job in jobs:
        kinds = [kind for kind, _ in ledger(stack, job.render_id)]
        status = (row(stack, job.render_id) or {}).get("status")
        if outcomes[job.render_id] == "completed":
            assert (kinds, status) == (["charge"], "completed"), (job, kinds, status)
        else:
            assert kinds in (["charge", "refund"], []) and status == "failed", (job, kinds, status, states[job.job_id])
    assert not any(unfinished_counts(stack).values()), unfinished_counts(stack)
    audit_is_clean(stack)
    latencies = [(state["finishedOn"] - state["timestamp"]) / 1000 for state in states.values()]
    last_end_s = max(state["finishedOn"] for state in states.values()) / 1000
    delivered_after = [
        state["finishedOn"] / 1000 - fault_over_at
        for state in states.values()
        if fault_over_at is not None and state["state"] == "completed" and state["finishedOn"] / 1000 >= fault_over_at
    ]
    figures = FaultFigures(
        fault=fault,
        tried=len(jobs),
        delivered=list(outcomes.values()).count("completed"),
        refunded=list(outcomes.values()).count("failed"),
        lost=0,
        latency_p50_s=statistics.median(latencies),
        latency_max_s=max(latencies),
        first_delivery_s=min(delivered_after, default=None),
        recovered_s=None if fault_over_at is None else max(0.0, last_end_s - fault_over_at),
        outcomes={job.job_id: outcomes[job.render_id] for job in jobs},
    )
    print("\n" + figures.line())
    return figures
