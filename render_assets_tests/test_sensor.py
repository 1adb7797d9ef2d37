"""The queue sensor against real Redis (BullMQ) and a real database."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from render_assets.persistence import ledger, renders
from render_assets.persistence.models import RenderStatus
from render_assets.services import claims
from render_assets_tests.payloads import web_app_job
from render_assets_tests.stack import InProcessStack, in_process_stack


@pytest.fixture
def stack(sqlite_url: str, queue_name: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    with in_process_stack(sqlite_url, queue_name, tmp_path) as stack:
        yield stack


def test_one_run_per_claim_with_run_key_and_partition(stack: InProcessStack) -> None:
    data = web_app_job()
    job_id = stack.enqueue(data)

    result = stack.tick()

    assert [request.run_key for request in result.run_requests or []] == [f"{data['renderId']}:{job_id}:0"]
    request = (result.run_requests or [])[0]
    assert request.partition_key == data["renderId"]
    assert request.tags["render/bull_job_id"] == job_id
    assert stack.instance.get_dynamic_partitions("render_jobs") == [data["renderId"]]
    assert stack.queue.state(job_id) == "active"
    with stack.database.session() as session:
        row = renders.require(session, data["renderId"])
        assert (row.status, row.bull_job_id, row.claim_attempt, row.max_attempts) == ("claimed", job_id, 0, 3)
        assert row.payload["renderId"] == data["renderId"]


def test_invalid_job_fails_at_once_with_the_field_and_the_next_job_still_runs(stack: InProcessStack) -> None:
    bad = web_app_job()
    bad["settings"]["resolution"] = "9000x9000"
    bad_id = stack.enqueue(bad, web_app=False, attempts=3)
    good = web_app_job()
    stack.enqueue(good, web_app=False, attempts=3)

    result = stack.tick()

    assert [request.partition_key for request in result.run_requests or []] == [good["renderId"]]
    assert stack.queue.state(bad_id) == "failed"  # not retried, although attempts remain
    with stack.database.session() as session:
        assert renders.get(session, bad["renderId"]) is None
        assert not ledger.is_charged(session, bad["renderId"])


def test_wrong_job_name_is_refused(stack: InProcessStack) -> None:
    import asyncio

    from bullmq import Queue

    async def add_other() -> str:
        queue = Queue(stack.queue_name, {"connection": stack.queue.redis_url})
        job = await queue.add("thumbnail", web_app_job(), {})
        await queue.close()
        return str(job.id)

    job_id = asyncio.run(add_other())
    assert not stack.tick().run_requests
    assert stack.queue.state(job_id) == "failed"


def test_claims_no_more_jobs_than_free_run_slots(sqlite_url: str, queue_name: str, tmp_path: Path) -> None:
    with in_process_stack(sqlite_url, queue_name, tmp_path, max_concurrent_runs=2) as stack:
        _claims_in_priority_order_up_to_the_limit(stack)


def _claims_in_priority_order_up_to_the_limit(stack: InProcessStack) -> None:
    ids = [stack.enqueue(web_app_job(tier="starter")) for _ in range(3)]
    urgent = stack.enqueue(web_app_job(tier="growth"))

    first = stack.tick()

    # BullMQ's priority decides: the growth job first, then the oldest starter job.
    assert [request.tags["render/bull_job_id"] for request in first.run_requests or []] == [urgent, ids[0]]
    assert [stack.queue.state(job_id) for job_id in ids] == ["active", "prioritized", "prioritized"]
    # Both slots are taken by claims whose runs have not been created yet: nothing more is claimed.
    second = stack.tick()
    assert {request.tags["render/bull_job_id"] for request in second.run_requests or []} == {urgent, ids[0]}
    assert [stack.queue.state(job_id) for job_id in ids] == ["active", "prioritized", "prioritized"]


def test_a_tick_that_fails_after_claiming_loses_nothing(stack: InProcessStack, monkeypatch: pytest.MonkeyPatch) -> None:
    data = web_app_job()
    job_id = stack.enqueue(data)
    from render_assets.orchestration.sensors import render_jobs

    def broken(_keys: object) -> object:
        raise RuntimeError("tick dies after claiming")

    with monkeypatch.context() as patch:
        patch.setattr(render_jobs.render_partitions, "build_add_request", broken)
        with pytest.raises(RuntimeError):
            stack.tick()
    assert stack.queue.state(job_id) == "active"

    retried = stack.tick()

    assert [request.run_key for request in retried.run_requests or []] == [f"{data['renderId']}:{job_id}:0"]
    assert stack.instance.get_dynamic_partitions("render_jobs") == [data["renderId"]]


def test_a_claim_that_cannot_be_recorded_goes_back_to_the_queue(
    stack: InProcessStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = web_app_job()
    job_id = stack.enqueue(data)

    def database_down(*_args: object, **_kwargs: object) -> object:
        raise ConnectionError("database unavailable")

    with monkeypatch.context() as patch:
        patch.setattr(renders, "record_claim", database_down)
        assert not stack.tick().run_requests
    assert stack.queue.state(job_id) == "delayed"  # handed back without spending an attempt

    time.sleep(1.2)
    result = stack.tick()
    assert [request.partition_key for request in result.run_requests or []] == [data["renderId"]]
    assert (result.run_requests or [])[0].run_key.startswith(f"{data['renderId']}:{job_id}:0")


def test_a_claim_whose_process_died_returns_after_its_lock_expires(stack: InProcessStack) -> None:
    from render_assets.adapters.bullmq_queue import BullQueue
    from render_assets_tests.conftest import REDIS_URL

    job_id = stack.enqueue(web_app_job())
    short_lock = BullQueue(REDIS_URL, stack.queue_name, lock_duration_ms=300, stalled_interval_ms=200)
    assert [claimed.job_id for claimed in short_lock.claim(1)] == [job_id]  # ...and the claimer dies here

    deadline = time.monotonic() + 10
    reclaimed = []
    while not reclaimed and time.monotonic() < deadline:
        time.sleep(0.3)
        reclaimed = short_lock.claim(1)
    assert [claimed.job_id for claimed in reclaimed] == [job_id]
    assert str(reclaimed[0].run_key("r")) != f"r:{job_id}:0"  # a redelivery gets a run key of its own


def test_a_deployment_holds_its_claims_until_their_runs_start(stack: InProcessStack) -> None:
    from render_assets.adapters.bullmq_queue import BullQueue
    from render_assets_tests.conftest import REDIS_URL

    held_job, dropped_job = stack.enqueue(web_app_job()), stack.enqueue(web_app_job())
    short_lock = BullQueue(REDIS_URL, stack.queue_name, lock_duration_ms=500, stalled_interval_ms=200)
    claims.claim_jobs(stack.database, short_lock, 1, deployment=stack.deployment)  # its run is slow to start
    claims.claim_jobs(stack.database, short_lock, 1, deployment="a-deployment-gone-for-good")

    handed_out_again = []
    deadline = time.monotonic() + 3  # six lock durations
    while time.monotonic() < deadline:
        assert claims.hold_pending_claims(stack.database, short_lock, stack.deployment) == 1
        # What every tick does next: BullMQ's stalled check, then claims.
        handed_out_again += [claimed.job_id for claimed in short_lock.claim(1)]
        time.sleep(0.2)

    assert held_job not in handed_out_again
    assert dropped_job in handed_out_again  # nobody held that claim


def test_a_second_job_for_a_render_in_flight_is_refused(stack: InProcessStack) -> None:
    data = web_app_job()
    first = stack.enqueue(data)
    stack.tick()
    duplicate = stack.enqueue(data)

    result = stack.tick()

    # Only the first job's claim (its run not created yet) is requested again.
    assert [request.tags["render/bull_job_id"] for request in result.run_requests or []] == [first]
    assert stack.queue.state(duplicate) == "failed"


def test_pending_runs_lists_claims_without_runs(stack: InProcessStack) -> None:
    data = web_app_job()
    stack.enqueue(data)
    stack.tick()
    assert [run.render_id for run in claims.pending_runs(stack.database, stack.deployment)] == [data["renderId"]]
    with stack.database.session() as session:
        renders.mark_processing(session, data["renderId"])
        assert renders.require(session, data["renderId"]).status == RenderStatus.PROCESSING
    assert claims.pending_runs(stack.database, stack.deployment) == []


def _enqueue_later(stack: InProcessStack, delay_s: float, **options: Any) -> threading.Thread:
    thread = threading.Thread(target=lambda: (time.sleep(delay_s), stack.enqueue(web_app_job(), **options)))
    thread.start()
    return thread


def test_an_idle_tick_claims_a_job_as_it_is_enqueued(stack: InProcessStack) -> None:
    stack.claim_wait_s = 4.0
    producer = _enqueue_later(stack, 0.3)
    started = time.monotonic()

    result = stack.tick()

    elapsed = time.monotonic() - started
    producer.join()
    assert len(result.run_requests or []) == 1
    assert elapsed < 2.5, f"the tick waited {elapsed:.1f}s: it should wake when the job arrives"


def test_an_idle_tick_with_nothing_to_claim_ends_when_its_wait_does(stack: InProcessStack) -> None:
    stack.claim_wait_s = 1.0
    started = time.monotonic()

    result = stack.tick()

    assert not result.run_requests
    assert 0.9 <= time.monotonic() - started < 3.0


def test_a_waiting_tick_claims_a_delayed_job_when_it_falls_due(stack: InProcessStack) -> None:
    stack.claim_wait_s = 4.0
    job_id = stack.enqueue(web_app_job(), delay=1_000)
    started = time.monotonic()

    result = stack.tick()

    elapsed = time.monotonic() - started
    assert [request.tags["render/bull_job_id"] for request in result.run_requests or []] == [job_id]
    assert 0.8 <= elapsed < 3.5


def test_a_tick_without_free_run_slots_does_not_wait(sqlite_url: str, queue_name: str, tmp_path: Path) -> None:
    with in_process_stack(sqlite_url, queue_name, tmp_path, max_concurrent_runs=1, claim_wait_s=4.0) as stack:
        stack.enqueue(web_app_job())
        assert len(stack.tick().run_requests or []) == 1  # the one slot, taken by a claim
        started = time.monotonic()

        assert len(stack.tick().run_requests or []) == 1  # the same claim again; nothing new waited for
        assert time.monotonic() - started < 2.0


def test_waiting_for_work_wakes_on_a_new_job_and_times_out_without_one(stack: InProcessStack) -> None:
    started = time.monotonic()
    assert not stack.queue.wait_for_work(0.5)
    assert time.monotonic() - started >= 0.45
    producer = _enqueue_later(stack, 0.2)
    assert stack.queue.wait_for_work(5.0)
    producer.join()
