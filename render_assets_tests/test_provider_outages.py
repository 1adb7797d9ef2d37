"""Provider outages, below the pipeline: the breakers' view of when a provider may be tried
again and why it is down, a failover that says "outage" (and names the cause) only when no
provider can deliver, and how many jobs the sensor may start meanwhile. Real SDK clients
against the fakes (behind a relay that refuses connections), breaker state in real Redis."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from render_assets.persistence import renders
from render_assets.persistence.models import utcnow
from render_assets.providers.base import GenerationRequest
from render_assets.providers.circuit_breaker import route_availability
from render_assets.providers.failover import Failover, FailoverError, FailoverSettings
from render_assets.services.claims import claims_while
from render_assets_tests.bullmq_jobs import bull_job
from render_assets_tests.conftest import REDIS_URL
from render_assets_tests.fakes.blank_provider import BlankProviders
from render_assets_tests.fakes.image_apis import FakeImageApis
from render_assets_tests.fakes.providers import breaker, budget, google, openai, resource
from render_assets_tests.payloads import web_app_job
from render_assets_tests.stack import InProcessStack, in_process_stack
from render_assets_tests.tcp_relay import TcpRelay

FAST = FailoverSettings(backoff_base_s=0.05, backoff_max_s=0.1)


@pytest.fixture
def fake() -> Iterator[FakeImageApis]:
    with FakeImageApis() as apis:
        yield apis


@pytest.fixture
def relay(fake: FakeImageApis) -> Iterator[TcpRelay]:
    """The fake's address, behind a relay that can stop listening."""
    port = int(fake.url.rsplit(":", 1)[1])
    relayed = TcpRelay("127.0.0.1", port).start()
    yield relayed
    relayed.close()


def request() -> GenerationRequest:
    return GenerationRequest(prompt="a courtyard with olive trees", negative_prompt="", width=512, height=512, seed=7)


def attempt(providers: list, prefix: str, run_id: str, **breaker_options: float) -> FailoverError:
    failover = Failover(providers, breaker(prefix, **breaker_options), budget(prefix, run_id), FAST)  # type: ignore[arg-type]
    with pytest.raises(FailoverError) as failed:
        failover.generate(request())
    return failed.value


def test_a_refused_connection_is_an_outage_whose_cause_is_named(
    fake: FakeImageApis, relay: TcpRelay, prefix: str
) -> None:
    relay.refuse()
    down = openai(fake, base_url=f"http://127.0.0.1:{relay.port}/v1")

    first = attempt([down], prefix, "run-1", failures=2, cooldown_s=30)

    assert first.outage is not None and not first.permanent
    assert first.outage.causes == {"openai": "connection refused (APIConnectionError)"}
    assert first.outage.all_open  # two calls (two passes): K=2 opened the breaker
    assert 25 < first.outage.retry_at - time.time() <= 30  # the breaker's next probe
    # The next render skips the open breaker and says why it is open, not only that it is.
    second = attempt([down], prefix, "run-2", failures=2, cooldown_s=30)
    assert (
        second.reason
        == "no image provider delivered: openai: circuit open after connection refused (APIConnectionError)"
    )
    assert second.outage is not None and second.outage.cause() == "openai: connection refused (APIConnectionError)"
    assert fake.calls("openai") == 0


def test_a_503_with_retry_after_is_an_outage_due_when_the_provider_asked(fake: FakeImageApis, prefix: str) -> None:
    fake.fail("openai", "server_error", status=503, retry_after="45")

    failed = attempt([openai(fake)], prefix, "run-1", failures=5)

    assert failed.outage is not None and not failed.outage.all_open  # one call: the breaker stays closed
    assert failed.outage.causes["openai"].startswith("unavailable (HTTP 503)")
    assert 40 < failed.outage.retry_at - time.time() <= 45
    assert fake.calls("openai") == 1  # a Retry-After of 45 s is longer than a run waits between passes


def test_no_outage_while_any_provider_answers_or_refuses_the_content(
    fake: FakeImageApis, relay: TcpRelay, prefix: str
) -> None:
    relay.refuse()
    down = google(fake, api_endpoint=f"http://127.0.0.1:{relay.port}")
    fake.fail("openai", "refuse")  # up, but it refuses this design

    failed = attempt([down, openai(fake)], prefix, "run-1")

    assert failed.outage is None  # waiting would not make a refusal deliver


def test_the_sensor_starts_nothing_while_every_provider_is_down_and_one_probe_when_due(
    fake: FakeImageApis, relay: TcpRelay, prefix: str
) -> None:
    relay.refuse()
    down = openai(fake, base_url=f"http://127.0.0.1:{relay.port}/v1")
    attempt([down], prefix, "run-1", failures=1, cooldown_s=1)
    shared = breaker(prefix, failures=1, cooldown_s=1)

    down_now = route_availability(shared, ["openai"])
    assert not down_now.up and not down_now.probe_due
    assert down_now.cause() == "openai: connection refused (APIConnectionError)"
    assert claims_while(down_now, 4, renders_starting=0) == 0
    time.sleep(1.1)
    due = route_availability(shared, ["openai"])
    assert due.probe_due
    assert claims_while(due, 4, renders_starting=0) == 1  # the probe's render
    assert claims_while(due, 4, renders_starting=1) == 0  # it is on its way already
    shared.record_success("openai")  # the probe delivered
    assert claims_while(route_availability(shared, ["openai"]), 4, renders_starting=1) == 4


# ---- the pipeline: a customer's render waits in BullMQ, attempt unspent --------------------------


def stream_stages(render_id: str) -> list[tuple[str, str]]:
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    entries = client.xrange(f"render-events:{render_id}")
    return [(fields["event"], json.loads(fields["data"])["stage"]) for _, fields in entries]


@pytest.fixture
def stack(
    sqlite_url: str, queue_name: str, tmp_path: Path, fake: FakeImageApis, relay: TcpRelay, prefix: str
) -> Iterator[InProcessStack]:
    providers = resource(
        fake,
        prefix,
        order="openai",
        openai_base_url=f"http://127.0.0.1:{relay.port}/v1",
        breaker_failures=2,
        # Long enough that the checks right after a hold still fall inside the outage on a busy machine.
        breaker_cooldown_s=6.0,
    )
    with in_process_stack(sqlite_url, queue_name, tmp_path, providers=providers) as stack:
        yield stack


def row(stack: InProcessStack, render_id: str) -> Any:
    with stack.database.session() as session:
        found = renders.require(session, render_id)
        session.expunge(found)
        return found


def test_a_render_waits_out_an_outage_in_bullmq_and_is_delivered_when_the_provider_is_back(
    stack: InProcessStack, relay: TcpRelay, fake: FakeImageApis
) -> None:
    relay.refuse()
    data = web_app_job()
    job_id = stack.enqueue(data)

    [held] = stack.run_all()

    assert held.success  # a wait is no failure: the later steps simply did not run
    assert not held.asset_materializations_for_node("raw_render")
    job = bull_job(stack.queue_name, job_id)
    assert (stack.queue.state(job_id), job.attemptsMade) == ("delayed", 0)  # no attempt spent
    assert job.progress["stage"] == "waiting_for_provider"
    assert job.progress["message"].startswith("Image providers are unavailable; next try at ")
    waiting = row(stack, data["renderId"])
    assert (waiting.status, waiting.stage, waiting.claim_token) == ("waiting", "waiting_for_provider", None)
    assert waiting.error == "openai: connection refused (APIConnectionError)"
    assert stack.ledger(data["renderId"]) == [("charge", -1)]  # the charge stays
    assert stack.tick().run_requests == []  # every provider down: nothing is claimed

    relay.restore()
    deadline = time.monotonic() + 20
    while not (requests := stack.tick().run_requests) and time.monotonic() < deadline:
        time.sleep(0.5)  # the job is due, and the breaker's probe, after 6 s
    [delivered] = [stack.execute(request) for request in requests]

    assert delivered.success
    job = bull_job(stack.queue_name, job_id)
    assert stack.queue.state(job_id) == "completed" and job.returnvalue["renderId"] == data["renderId"]
    assert stack.ledger(data["renderId"]) == [("charge", -1)]  # charged once
    stages = stream_stages(data["renderId"])
    assert ("stage", "waiting_for_provider") in stages and stages[-1] == ("completed", "completed")
    assert not [stage for event, stage in stages if event == "failed" or stage == "failed"]
    assert fake.calls("openai") == 1  # refused calls never reached it; the probe delivered


def test_a_render_that_waited_too_long_fails_for_good_with_the_cause_and_is_refunded(
    stack: InProcessStack, relay: TcpRelay
) -> None:
    relay.refuse()
    data = web_app_job()
    job_id = stack.enqueue(data)
    [request] = stack.tick().run_requests or []
    with stack.database.session() as session:  # first claimed 16 minutes ago
        renders.require(session, data["renderId"]).created_at = utcnow() - timedelta(minutes=16)

    failed = stack.execute(request)

    assert not failed.success
    reason = "image providers unavailable for 16 min: openai: connection refused (APIConnectionError)"
    assert stack.queue.state(job_id) == "failed"
    assert bull_job(stack.queue_name, job_id).failedReason == reason  # not retried: waiting was the retry
    assert row(stack, data["renderId"]).status == "failed" and row(stack, data["renderId"]).error == reason
    assert stack.ledger(data["renderId"]) == [("charge", -1), ("refund", 1)]


def test_an_attempt_bullmq_will_retry_never_says_failed(database_url: str, queue_name: str, tmp_path: Path) -> None:
    with in_process_stack(database_url, queue_name, tmp_path, providers=BlankProviders()) as stack:
        data = web_app_job()
        job_id = stack.enqueue(data, attempts=2, backoff={"type": "fixed", "delay": 50})

        stack.run_all()  # QA refuses the blank image: BullMQ will try again

        assert bull_job(stack.queue_name, job_id).progress["stage"] == "retrying"
        assert row(stack, data["renderId"]).stage == "retrying"
        assert ("failed", "failed") not in stream_stages(data["renderId"])
        time.sleep(0.2)
        stack.run_all()  # the last attempt: now it has failed for good
        assert bull_job(stack.queue_name, job_id).progress["stage"] == "failed"
        assert stream_stages(data["renderId"])[-1] == ("failed", "failed")
