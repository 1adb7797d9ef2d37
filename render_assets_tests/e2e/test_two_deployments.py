"""Two deployments on one queue and one app database (a blue/green switch, or an old daemon not yet
stopped): two real daemons, each with its own Dagster storage, share the web app's queue and the
renders database. Measured before claims named their deployment: every render was generated and
delivered twice (60 runs for 30 jobs) and the rows pointed at URLs BullMQ never gave the web app."""

from __future__ import annotations

import statistics
from collections import Counter

import pytest
from dagster import DagsterInstance, RunsFilter

from render_assets.domain.payload import parse_job
from render_assets.domain.queue_contract import job_options
from render_assets.orchestration.sensors.deployment import deployment_id
from render_assets_tests.e2e.conftest import PROJECT_ROOT, RenderStack, build_stack, running
from render_assets_tests.e2e.helpers import audit_is_clean, new_job, query, wait_for

pytestmark = [pytest.mark.e2e]

JOBS = 16  # enqueued at once: both daemons' sensors race to claim them
ENDED = ("SUCCESS", "FAILURE", "CANCELED")
FORKING = PROJECT_ROOT / "dagster.yaml"  # forks its run workers


def render_runs(stack: RenderStack) -> dict[str, str]:
    """Run key → status of every render run in the stack's own Dagster instance."""
    instance = DagsterInstance.from_config(str(stack.home))
    try:
        runs = instance.get_runs(RunsFilter(job_name="render_job"))
        return {run.tags["dagster/run_key"]: run.status.value for run in runs}
    finally:
        instance.dispose()


def deployment_of(stack: RenderStack) -> str:
    instance = DagsterInstance.from_config(str(stack.home))
    try:
        return deployment_id(instance)
    finally:
        instance.dispose()


def test_two_daemons_on_one_queue_and_one_database_render_every_job_once(
    tmp_path_factory: pytest.TempPathFactory, own_database_url: str
) -> None:
    blue = build_stack(tmp_path_factory.mktemp("blue"), own_database_url, dagster_yaml=FORKING)
    green = build_stack(
        tmp_path_factory.mktemp("green"), own_database_url, dagster_yaml=FORKING, queue_name=blue.queue_name
    )
    jobs = [new_job("org-two-deployments") for _ in range(JOBS)]

    with running(blue), running(green):
        events = blue.producer([{"data": data, "opts": job_options(parse_job(data))} for data in jobs], 240)
        # BullMQ hears of a delivery before its run has recorded its end: let the runs end
        # before the daemons stop (stopping them interrupts what still runs).
        for stack in (blue, green):
            wait_for(lambda: all(s in ENDED for s in render_runs(stack).values()), 60, "the runs to end", stack)  # noqa: B023

    assert events[-1]["event"] != "timeout", events[-1]
    delivered = {
        event["returnvalue"]["renderId"]: event["returnvalue"]["imageUrl"]
        for event in events
        if event["event"] == "completed"
    }
    assert sorted(delivered) == sorted(data["renderId"] for data in jobs)

    runs = {name: render_runs(stack) for name, stack in (("blue", blue), ("green", green))}
    deployments = {name: deployment_of(stack) for name, stack in (("blue", blue), ("green", green))}
    all_runs = [run_key for by_key in runs.values() for run_key in by_key]
    assert len(all_runs) == JOBS, {name: len(by_key) for name, by_key in runs.items()}
    assert runs["blue"] and runs["green"], "one daemon claimed every job: the test did not share the queue"
    assert all(status == "SUCCESS" for by_key in runs.values() for status in by_key.values()), runs

    rows = query(blue, "SELECT id, status, image_url, run_key, claimed_by FROM renders")
    assert {row["id"]: row["image_url"] for row in rows} == delivered  # the URLs BullMQ gave the web app
    assert {row["status"] for row in rows} == {"completed"}
    for row in rows:  # each render's run lives in the instance of the deployment that claimed it
        owner = next(name for name, deployment in deployments.items() if deployment == row["claimed_by"])
        assert row["run_key"] in runs[owner], row

    provider_calls = query(blue, "SELECT render_id FROM render_stage_timings WHERE stage = 'raw_render'")
    assert Counter(call["render_id"] for call in provider_calls) == Counter(list(delivered))
    charges = query(blue, "SELECT render_id, kind FROM credit_transactions WHERE render_id IS NOT NULL")
    assert Counter((charge["render_id"], charge["kind"]) for charge in charges) == Counter(
        (render_id, "charge") for render_id in delivered
    )
    audit_is_clean(blue)

    added = {event["jobId"]: event["at"] for event in events if event["event"] == "added"}
    latencies = [(event["at"] - added[event["jobId"]]) / 1000 for event in events if event["event"] == "completed"]
    print(
        f"\n[two deployments] {JOBS} jobs: {len(runs['blue'])} runs on blue, {len(runs['green'])} on green, "
        f"{len(provider_calls)} provider calls, {len(charges)} charges; enqueue → completed "
        f"p50 {statistics.median(latencies):.1f}s, max {max(latencies):.1f}s"
    )
