"""Two deployments (two Dagster instances) on one queue and one app database: each claim belongs to
the deployment that made it, so neither re-requests nor settles the other's (issue 16's measured
failure: every render generated and delivered twice)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import instance_for_test

from render_assets.orchestration.sensors.deployment import deployment_id
from render_assets.persistence import renders
from render_assets_tests.payloads import web_app_job
from render_assets_tests.stack import InProcessStack, in_process_stack


@pytest.fixture
def blue(sqlite_url: str, queue_name: str, tmp_path: Path) -> Iterator[InProcessStack]:
    with in_process_stack(sqlite_url, queue_name, tmp_path / "blue", max_concurrent_runs=2) as stack:
        yield stack


@pytest.fixture
def green(sqlite_url: str, queue_name: str, tmp_path: Path) -> Iterator[InProcessStack]:
    with in_process_stack(sqlite_url, queue_name, tmp_path / "green", max_concurrent_runs=2) as stack:
        yield stack


def test_a_claim_whose_run_is_not_started_yet_is_requested_again_by_its_own_deployment_only(
    blue: InProcessStack, green: InProcessStack
) -> None:
    data = web_app_job()
    job_id = blue.enqueue(data)
    # Blue claims the job; its run is not in its instance yet (as when a tick dies after claiming).
    [claimed] = blue.tick().run_requests or []

    assert green.tick().run_requests == []  # green's instance has no such run: still not green's to start

    [again] = blue.tick().run_requests or []
    assert again.run_key == claimed.run_key == f"{data['renderId']}:{job_id}:0"
    with blue.database.session() as session:
        assert renders.require(session, data["renderId"]).claimed_by == blue.deployment


def test_both_deployments_claim_from_one_queue_and_each_starts_only_its_own(
    blue: InProcessStack, green: InProcessStack
) -> None:
    jobs = [web_app_job() for _ in range(4)]
    for data in jobs:
        blue.enqueue(data)

    by_blue = blue.tick(), blue.tick()  # the second tick re-requests the first's claims
    by_green = green.tick(), green.tick()

    blue_renders = {request.partition_key for result in by_blue for request in result.run_requests or []}
    green_renders = {request.partition_key for result in by_green for request in result.run_requests or []}
    assert blue_renders and green_renders
    assert blue_renders.isdisjoint(green_renders)
    assert blue_renders | green_renders == {data["renderId"] for data in jobs}


def test_a_deployment_is_named_by_its_dagster_run_storage(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RENDER_DEPLOYMENT_ID", raising=False)
    with instance_for_test() as one, instance_for_test() as other:
        assert deployment_id(one) == deployment_id(one) == f"dagster:{one.run_storage.get_run_storage_id()}"
        assert deployment_id(one) != deployment_id(other)


def test_a_configured_deployment_id_wins_and_must_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    with instance_for_test() as instance:
        monkeypatch.setenv("RENDER_DEPLOYMENT_ID", "green")
        assert deployment_id(instance) == "green"
        monkeypatch.setenv("RENDER_DEPLOYMENT_ID", "g" * 65)
        with pytest.raises(ValueError, match="RENDER_DEPLOYMENT_ID is 65 characters long; at most 64"):
            deployment_id(instance)
