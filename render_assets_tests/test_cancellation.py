"""Cancelling a render, in-process on real Redis and a real database: before its claim, while
claimed, after its image was made, after delivery; every observer (BullMQ, the row, the event
stream, the ledger, the audit) sees one end, and nothing it stored stays."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from render_assets import cli
from render_assets.adapters.cancel_signals import CancelSignals
from render_assets.adapters.run_liveness import Heartbeat
from render_assets.domain.object_keys import render_folder
from render_assets.persistence import ledger, renders
from render_assets.persistence.models import RenderStatus
from render_assets.services import cancellation
from render_assets.services.audit import audit
from render_assets.services.cancellation import CancelOutcome
from render_assets_tests.bullmq_jobs import bull_job
from render_assets_tests.conftest import REDIS_URL
from render_assets_tests.payloads import web_app_job
from render_assets_tests.stack import InProcessStack, in_process_stack


@pytest.fixture
def stack(sqlite_url: str, queue_name: str, tmp_path: Path) -> Iterator[InProcessStack]:
    with in_process_stack(sqlite_url, queue_name, tmp_path) as stack:
        yield stack


def cancel(stack: InProcessStack, render_id: str, *, refund_after_generation: bool = False) -> CancelOutcome:
    """As the progress server's route and the CLI do."""
    backends = stack.resources["queue"].backends()
    backends.cancel_refund_after_generation = refund_after_generation
    return cancellation.cancel(backends, render_id, source="test")


def events(render_id: str) -> list[tuple[str, dict[str, Any]]]:
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    return [(fields["event"], json.loads(fields["data"])) for _, fields in client.xrange(f"render-events:{render_id}")]


def row(stack: InProcessStack, render_id: str) -> Any:
    with stack.database.session() as session:
        found = renders.require(session, render_id)
        session.expunge(found)
        return found


def test_a_claim_is_published_before_its_run_starts(stack: InProcessStack) -> None:
    data = web_app_job()
    job_id = stack.enqueue(data)

    stack.tick()

    assert bull_job(stack.queue_name, job_id).progress == {"percent": 5, "stage": "claimed", "message": "Job picked up"}
    [(kind, event)] = events(data["renderId"])
    assert (kind, event["stage"], event["percent"], event["status"]) == ("stage", "claimed", 5, "claimed")


def test_cancelled_before_its_claim_the_job_is_dropped_when_claimed(stack: InProcessStack) -> None:
    data = web_app_job()
    assert cancel(stack, data["renderId"]).outcome == cancellation.PENDING
    job_id = stack.enqueue(data)

    assert stack.tick().run_requests == []

    job = bull_job(stack.queue_name, job_id)
    assert (stack.queue.state(job_id), job.failedReason) == ("failed", "cancelled")
    assert row(stack, data["renderId"]).status == RenderStatus.CANCELLED
    assert events(data["renderId"])[-1][0] == "cancelled"
    assert stack.ledger(data["renderId"]) == []


def test_cancelled_while_its_run_waits_nothing_is_charged_and_the_run_stops_at_once(stack: InProcessStack) -> None:
    data = web_app_job()
    job_id = stack.enqueue(data)
    [request] = stack.tick().run_requests or []

    outcome = cancel(stack, data["renderId"])

    assert (outcome.outcome, outcome.status, outcome.charged) == ("cancelled", "cancelled", False)
    job = bull_job(stack.queue_name, job_id)
    assert (stack.queue.state(job_id), job.failedReason, job.progress["stage"]) == ("failed", "cancelled", "cancelled")
    run = stack.execute(request)  # the run starts anyway (it was queued): it stops at its first step
    assert not run.success
    assert not run.asset_materializations_for_node("render_prompt")
    assert stack.ledger(data["renderId"]) == []
    assert [kind for kind, _ in events(data["renderId"])][-1] == "cancelled"
    assert cancel(stack, data["renderId"]).outcome == cancellation.ALREADY_CANCELLED
    with stack.database.session() as session:
        assert audit(session) == []


@pytest.mark.parametrize(("refund_after_generation", "charged"), [(False, True), (True, False)])
def test_cancelled_after_its_image_was_made_the_charge_stands_unless_configured(
    stack: InProcessStack, refund_after_generation: bool, charged: bool
) -> None:
    data = web_app_job()
    stack.enqueue(data)
    stack.tick()
    with stack.database.session() as session:  # its run charged, and the provider returned its image
        renders.mark_processing(session, data["renderId"])
        ledger.charge(
            session, render_id=data["renderId"], organization_id=data["organizationId"], cost=1, initial_credits=100
        )
        renders.mark_generated(session, data["renderId"])

    outcome = cancel(stack, data["renderId"], refund_after_generation=refund_after_generation)

    assert (outcome.outcome, outcome.charged) == ("cancelled", charged)
    assert stack.ledger(data["renderId"]) == ([("charge", -1)] if charged else [("charge", -1), ("refund", 1)])
    with stack.database.session() as session:
        assert audit(session) == []
        renders.require(session, data["renderId"]).cancel_charged = not charged  # the audit knows the rule
        assert [problem.render_id for problem in audit(session)] == [data["renderId"]]


def test_a_delivered_render_cannot_be_cancelled(stack: InProcessStack) -> None:
    data = web_app_job()
    job_id = stack.enqueue(data)
    [delivered] = stack.run_all()
    assert delivered.success

    outcome = cancel(stack, data["renderId"])

    assert (outcome.outcome, outcome.status) == (cancellation.TOO_LATE, "completed")
    assert row(stack, data["renderId"]).status == RenderStatus.COMPLETED
    assert stack.queue.state(job_id) == "completed"
    assert stack.ledger(data["renderId"]) == [("charge", -1)]


def test_what_a_cancelled_render_stored_is_removed(stack: InProcessStack) -> None:
    data = web_app_job()
    stack.enqueue(data)
    stack.tick()
    store = stack.resources["storage"].get()
    folder = render_folder(data["organizationId"], data["projectId"], data["renderId"])
    store.put(f"{folder}/0123456789abcdef-master.png", b"written before the run was stopped", content_type="image/png")
    cancel(stack, data["renderId"])

    backends = stack.resources["queue"].backends(stack.resources["storage"])
    removed = cancellation.clean_up(backends)

    assert removed == [f"{folder}/0123456789abcdef-master.png"] and store.keys_under(folder) == []
    assert cancellation.clean_up(backends) == []  # done once


def test_the_command_line_cancels_and_says_when_it_is_too_late(
    stack: InProcessStack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", stack.database_url)
    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    monkeypatch.setenv("RENDER_QUEUE_NAME", stack.queue_name)
    waiting, delivered = web_app_job(), web_app_job()
    stack.enqueue(delivered)
    stack.run_all()
    stack.enqueue(waiting)
    stack.tick()

    assert cli.main(["cancel", waiting["renderId"], "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["outcome"] == "cancelled"
    assert cli.main(["cancel", delivered["renderId"], "--json"]) == 1
    assert json.loads(capsys.readouterr().out) == {
        "renderId": delivered["renderId"],
        "outcome": "too_late",
        "status": "completed",
        "charged": None,
    }


def test_a_run_heartbeat_waits_on_cancel_signals_and_its_stop_does_not_wait_out_the_pause() -> None:
    signals = CancelSignals(REDIS_URL, prefix=f"test-cancel-{uuid.uuid4().hex[:8]}:")
    cancels: list[bool] = []
    beats: list[float] = []
    heartbeat = Heartbeat(
        lambda: beats.append(time.monotonic()),
        interval_s=30,
        pause=lambda interval_s: cancels.append(signals.wait("render-1", interval_s, run_id="run-1")),
        wake=lambda: signals.wake("run-1"),
    ).start()
    signals.send("render-1")
    deadline = time.monotonic() + 10
    while not cancels and time.monotonic() < deadline:
        time.sleep(0.01)
    assert cancels == [True]  # the cancel arrived within moments, not at the next beat
    assert len(beats) == 2  # the first beat, then one after the interrupted pause

    stopping_at = time.monotonic()
    heartbeat.stop()

    assert time.monotonic() - stopping_at < 5  # woken, not after the 30 s pause
    assert cancels == [True, False]  # the wake-up is no cancel
    assert len(beats) == 2  # and no beat after the stop
