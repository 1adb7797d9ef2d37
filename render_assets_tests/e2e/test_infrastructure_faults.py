"""Infrastructure faults mid-burst on the real stack (the Dagster daemon on the project's
workspace, Redis, PostgreSQL, storage, providers through their real clients). Each passes when no
job is lost and the ledger audit is clean (`helpers.settle_burst`), and prints its figures.

The five faults of issue 10, all marked `infrastructure_fault` (`pytest -m infrastructure_fault`):
- PostgreSQL restarted mid-burst, GCS answering 503 for 30 s, a provider hanging: here;
- Redis SIGKILLed mid-burst, the daemon killed with claims in flight: in `test_crashes.py`.

Every stack here has a database of its own (a private PostgreSQL cluster for the restart): a live
stack's reconciler settles the in-flight renders of its database that its Dagster instance does
not know, so stacks must never share one.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from google.cloud import storage

from render_assets.bench.stack import drop_queue
from render_assets_tests.e2e.conftest import RenderStack, build_stack, running
from render_assets_tests.e2e.helpers import (
    FAST_FAILURE_DETECTION,
    Enqueued,
    bull_states,
    enqueue,
    enqueue_burst,
    new_job,
    settle_burst,
    wait_for,
)
from render_assets_tests.e2e.servers import HangingServer, PrivatePostgres, PrivateRedis
from render_assets_tests.fakes.image_apis import FakeImageApis
from render_assets_tests.fakes.providers import OPENAI_TEST_KEY
from render_assets_tests.fault_proxy import NO_ANSWER, FaultProxy, fault_proxy

pytestmark = [pytest.mark.e2e, pytest.mark.infrastructure_fault]

# A lost run is settled within a second of being noticed; heartbeats keep their production pace
# (a run is dead after 15 s of silence): the faults here must not be mistaken for dead runs on a
# loaded machine.
FAULT_SETTINGS = {key: value for key, value in FAST_FAILURE_DETECTION.items() if key != "RENDER_HEARTBEAT_S"}

BURST = 6
POSTGRES_DOWN_S = 5.0
GCS_OUTAGE_S = 30.0
SETTLE_TIMEOUT_S = 300.0  # generous: the machine is shared; a burst of 6 takes under a minute when it is quiet


def states_now(stack: RenderStack, jobs: list[Enqueued]) -> list[str]:
    return [state["state"] for state in bull_states(stack, [job.job_id for job in jobs]).values()]


def mid_burst(stack: RenderStack, jobs: list[Enqueued], delivered: int) -> list[str]:
    """Wait until `delivered` jobs are done and others are being worked on; returns the states."""

    def reached() -> list[str] | None:
        states = states_now(stack, jobs)
        return states if states.count("completed") >= delivered and "active" in states else None

    states: list[str] = wait_for(reached, 180, f"{delivered} deliveries with more in flight", stack, every_s=0.3)
    return states


def test_the_pass_criterion_fails_when_a_job_is_left_waiting(tmp_path: Path, own_database_url: str) -> None:
    stack = build_stack(tmp_path, own_database_url)  # its daemon never starts: nobody takes the job
    try:
        jobs = enqueue_burst(stack, 1, attempts=1)
        with pytest.raises(AssertionError, match=r"\[fault: nobody works\] 1 jobs lost"):
            settle_burst(stack, jobs, fault="nobody works", fault_over_at=None, timeout_s=1.0)
    finally:
        drop_queue(stack.redis_url, stack.queue_name)


# ---- PostgreSQL restarted mid-burst ---------------------------------------------------------------


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    try:
        server.create()
        yield server
    finally:
        server.remove()  # even when the test failed: no cluster is left behind


def test_a_postgresql_restart_mid_burst_loses_no_job(
    tmp_path_factory: pytest.TempPathFactory, private_postgres: PrivatePostgres
) -> None:
    database_url = private_postgres.create_database("render_assets")
    stack = build_stack(
        tmp_path_factory.mktemp("postgres_restart"),
        database_url,
        overrides={**FAULT_SETTINGS, "LOCAL_PROVIDER_LATENCY_S": "1"},
    )
    upgraded = stack.render_assets("db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    with running(stack):
        jobs = enqueue_burst(stack, BURST, attempts=3)
        states = mid_burst(stack, jobs, delivered=2)
        # Immediate: every backend is aborted mid-transaction, as a crashed server would leave them.
        private_postgres.stop("immediate")
        time.sleep(POSTGRES_DOWN_S)
        private_postgres.start()
        restarted_at = time.time()
        print(
            f"\n[fault: PostgreSQL] restarted ({POSTGRES_DOWN_S:.0f}s down) with {states.count('completed')} "
            f"delivered and {states.count('active')} in flight"
        )

        figures = settle_burst(
            stack, jobs, fault="PostgreSQL restarted mid-burst", fault_over_at=restarted_at, timeout_s=SETTLE_TIMEOUT_S
        )

    assert figures.delivered + figures.refunded == BURST
    assert figures.delivered >= 2


# ---- GCS answering 503 for 30 s -------------------------------------------------------------------


@pytest.fixture
def gcs_proxy(gcs_emulator: str) -> Iterator[FaultProxy]:
    with fault_proxy(gcs_emulator) as proxy:
        yield proxy


def delivered_objects(prefix: str, job: Enqueued) -> list[str]:
    """The objects under a render's folder, read from the emulator itself (not through the proxy)."""
    data = job.data
    folder = f"{prefix}/renders/{data['organizationId']}/{data['projectId']}/{data['renderId']}/"
    return sorted(blob.name for blob in storage.Client().list_blobs("renders", prefix=folder))


def test_gcs_answering_503_for_30_seconds_mid_burst_loses_no_job(
    tmp_path_factory: pytest.TempPathFactory, own_database_url: str, gcs_proxy: FaultProxy
) -> None:
    prefix = f"e2e-outage-{uuid.uuid4().hex[:8]}"
    stack = build_stack(
        tmp_path_factory.mktemp("gcs_outage"),
        own_database_url,
        overrides={
            **FAULT_SETTINGS,
            "LOCAL_PROVIDER_LATENCY_S": "1",
            "RENDER_STORAGE_URL": f"gs://renders/{prefix}",
            "STORAGE_EMULATOR_HOST": gcs_proxy.url,
            # RENDER_STORAGE_RETRY_S stays at its production default.
        },
    )
    with running(stack):
        jobs = enqueue_burst(stack, BURST, attempts=3)
        states = mid_burst(stack, jobs, delivered=1)
        outage_ends = gcs_proxy.outage(GCS_OUTAGE_S)
        print(
            f"\n[fault: GCS] 503 to every request for {GCS_OUTAGE_S:.0f}s from now, with "
            f"{states.count('completed')} delivered and {states.count('active')} in flight"
        )
        time.sleep(max(0.0, outage_ends - time.monotonic()))
        over_at = time.time()

        figures = settle_burst(
            stack, jobs, fault="GCS answering 503 for 30 s", fault_over_at=over_at, timeout_s=SETTLE_TIMEOUT_S
        )

    refused = [seen for seen in gcs_proxy.seen if seen.status == 503]
    served_after = [seen.at - outage_ends for seen in gcs_proxy.seen if seen.at >= outage_ends and seen.status < 300]
    print(
        f"[fault: GCS] {len(refused)} requests answered 503 during the outage; {len(served_after)} served after "
        f"it, the first {min(served_after, default=float('nan')):.1f}s after it ended"
    )
    assert refused, "the outage refused no request: nothing was in flight"
    assert all(seen.at < outage_ends + 0.5 for seen in refused)  # none after the window closed
    for job in jobs:
        objects = delivered_objects(prefix, job)
        if figures.outcomes[job.job_id] == "completed":
            assert len(objects) == 3, (job.render_id, objects)  # master, web and thumbnail
        else:
            assert objects == [], (job.render_id, objects)  # a failed render leaves nothing behind
    assert figures.delivered + figures.refunded == BURST


# ---- A provider hanging without answering -----------------------------------------------------------

GOOGLE_TIMEOUT_S = 5.0
OPENAI_TIMEOUT_S = 120.0  # longer than the deadline leaves it: the deadline must cut the call
# The deadline also pays for each SDK's first import in the fresh run process (seconds on a loaded machine).
DEADLINE_S = 40.0
SLACK_S = 12.0  # a loaded machine's scheduling; far below what a hung call would take (120 s, or forever)


@dataclass(frozen=True)
class RunFacts:
    status: str
    raw_render_s: float  # first start of the step to its last success or failure
    run_after_step_s: float  # end of raw_render to the end of the run
    metadata: dict[str, Any]
    worker_pid: int | None


def run_facts(stack: RenderStack, render_id: str) -> RunFacts:
    """What the Dagster event log says about the render's (single) run."""
    from dagster import DagsterEventType, DagsterInstance, RunsFilter

    instance = DagsterInstance.from_config(str(stack.home))
    try:
        [record] = instance.get_run_records(RunsFilter(tags={"render/render_id": render_id}))
        entries = [entry for entry in instance.all_logs(record.dagster_run.run_id) if entry.dagster_event]
    finally:
        instance.dispose()
    raw = [entry for entry in entries if entry.step_key == "raw_render"]
    starts = [e.timestamp for e in raw if e.dagster_event and e.dagster_event.event_type == DagsterEventType.STEP_START]
    ends = [
        e.timestamp
        for e in raw
        if e.dagster_event
        and e.dagster_event.event_type in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE)
    ]
    metadata: dict[str, Any] = {}
    for entry in raw:
        event = entry.dagster_event
        if event is not None and event.event_type == DagsterEventType.ASSET_MATERIALIZATION:
            materialization = event.step_materialization_data.materialization
            metadata = {key: value.value for key, value in materialization.metadata.items()}
    assert record.end_time is not None and starts and ends, (render_id, record.dagster_run.status)
    pids = [entry.dagster_event.pid for entry in raw if entry.dagster_event and entry.dagster_event.pid]
    return RunFacts(
        status=record.dagster_run.status.value,
        raw_render_s=max(ends) - min(starts),
        run_after_step_s=record.end_time - max(ends),
        metadata=metadata,
        worker_pid=pids[-1] if pids else None,
    )


def process_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"  # a zombie has stopped running
    except FileNotFoundError:
        return True


def test_a_hung_provider_times_out_fails_over_or_refunds_within_the_deadline(
    tmp_path_factory: pytest.TempPathFactory, own_database_url: str, private_redis: PrivateRedis
) -> None:
    """Google (the preferred provider) accepts connections and never answers. Jobs fail over to
    OpenAI and are delivered; jobs whose prompt OpenAI also leaves unanswered fail with a refund
    when the deadline cuts the second hung call."""
    # The breakers live in Redis: a private one keeps the opened google breaker away from other tests.
    with FakeImageApis() as fake, fault_proxy(fake.url) as openai:
        hung = HangingServer().start()
        try:
            stack = build_stack(
                tmp_path_factory.mktemp("provider_hang"),
                own_database_url,
                redis_url=private_redis.url,
                overrides={
                    **FAULT_SETTINGS,
                    "RENDER_PROVIDERS": "google,openai",
                    "GOOGLE_CLOUD_PROJECT": "test-project",
                    "GOOGLE_API_ENDPOINT": hung.url,
                    "GOOGLE_IMAGE_TIMEOUT_S": f"{GOOGLE_TIMEOUT_S:g}",
                    "OPENAI_API_KEY": OPENAI_TEST_KEY,
                    "OPENAI_BASE_URL": f"{openai.url}/v1",
                    "OPENAI_IMAGE_TIMEOUT_S": f"{OPENAI_TIMEOUT_S:g}",
                    "RENDER_JOB_DEADLINE_S": f"{DEADLINE_S:g}",
                },
            )
            openai.hang(lambda seen: seen.mentions(BOTH_HANG))
            with running(stack):
                failing_over = [_hang_job(stack, both_hang=False) for _ in range(2)]
                both_hang = [_hang_job(stack, both_hang=True) for _ in range(2)]
                figures = settle_burst(
                    stack,
                    failing_over + both_hang,
                    fault="a provider hangs",
                    fault_over_at=None,
                    timeout_s=SETTLE_TIMEOUT_S,
                )
                _check_hung_calls(stack, hung, openai, failing_over, both_hang, figures.outcomes)
        finally:
            hung.close()


BOTH_HANG = "quokkahang"  # a word of the user prompt that OpenAI's side leaves unanswered too


def _hang_job(stack: RenderStack, *, both_hang: bool) -> Enqueued:
    data = new_job("org-hang", provider="google-imagen")
    if both_hang:
        data["prompt"]["user"] = f"a cozy backyard with a small pond and a {BOTH_HANG} statue"
    return Enqueued(*enqueue(stack, data, attempts=1))


def _check_hung_calls(
    stack: RenderStack,
    hung: HangingServer,
    openai: FaultProxy,
    failing_over: list[Enqueued],
    both_hang: list[Enqueued],
    outcomes: dict[str, str],
) -> None:
    held = hung.held()
    waited = [connection.closed_at - connection.accepted_at for connection in held if connection.closed_at]
    delivered = [run_facts(stack, job.render_id) for job in failing_over]
    refunded = [run_facts(stack, job.render_id) for job in both_hang]
    reasons = [state["failedReason"] or "" for state in bull_states(stack, [job.job_id for job in both_hang]).values()]
    unanswered = [seen for seen in openai.seen if seen.status == NO_ANSWER]
    print(
        f"[fault: provider hang] google held {len(held)} calls, each cut by its {GOOGLE_TIMEOUT_S:g}s timeout "
        f"after {_span(waited)}; failed over to openai: raw_render {_span([f.raw_render_s for f in delivered])}; "
        f"openai hung too: raw_render ended after {_span([f.raw_render_s for f in refunded])} "
        f"(deadline {DEADLINE_S:g}s), the run {_span([f.run_after_step_s for f in refunded])} later; "
        f"reasons {reasons}"
    )
    assert [outcomes[job.job_id] for job in failing_over] == ["completed", "completed"]
    assert [outcomes[job.job_id] for job in both_hang] == ["failed", "failed"]
    # Google: every call hung until its own timeout cut it; the breaker opens after 3 of them.
    assert 3 <= len(held) <= 4, held
    assert len(waited) == len(held), "a hung google connection is still open after its run ended"
    assert all(connection.received > 0 for connection in held)  # the request was sent, then nothing came
    assert all(GOOGLE_TIMEOUT_S - 0.5 <= seconds <= GOOGLE_TIMEOUT_S + SLACK_S for seconds in waited), waited
    # Failed over: OpenAI delivered, its call started before the deadline with its timeout cut to the time left.
    assert [fact.metadata["provider"] for fact in delivered] == ["openai", "openai"]
    assert all(fact.raw_render_s <= DEADLINE_S + SLACK_S for fact in delivered), delivered
    # Both hung: the deadline cut OpenAI's call (its own timeout is 120 s); the run ended right after.
    assert len(unanswered) == 2, openai.seen
    out_of_time = f"no image provider delivered (the {DEADLINE_S:g} s deadline passed)"
    assert all(out_of_time in reason for reason in reasons), reasons
    assert [fact.status for fact in refunded] == ["FAILURE", "FAILURE"]
    assert all(DEADLINE_S - 1 <= fact.raw_render_s <= DEADLINE_S + SLACK_S for fact in refunded), refunded
    assert all(fact.run_after_step_s <= SLACK_S for fact in refunded), refunded
    pids = [fact.worker_pid for fact in refunded if fact.worker_pid is not None]
    assert len(pids) == 2
    wait_for(lambda: all(process_gone(pid) for pid in pids), 20, "the run workers to exit", stack)


def _span(values: list[float]) -> str:
    return f"{min(values):.1f}-{max(values):.1f}s" if values else "(none)"
