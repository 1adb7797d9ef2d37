"""The retention sensor removes the Dagster partitions of old settled renders and nothing else:
renders rows and the ledger stay, recent and unsettled renders keep their partitions."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from dagster import DagsterInstance, SensorResult, SkipReason, build_sensor_context, instance_for_test
from sqlalchemy import func, select

from render_assets.domain.payload import parse_job
from render_assets.orchestration.partitions import render_partitions
from render_assets.orchestration.resources import DatabaseResource
from render_assets.orchestration.sensors.retention import render_retention_sensor
from render_assets.persistence import ledger, renders
from render_assets.persistence.database import Database
from render_assets.persistence.models import CreditTransaction, Render, RenderStatus, utcnow
from render_assets.persistence.renders import BullClaim
from render_assets.services import retention
from render_assets_tests.payloads import web_app_job

PARTITIONS = "render_jobs"


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    with instance_for_test() as test_instance:
        yield test_instance


def add_render(database: Database, render_id: str, status: str, age_days: float) -> None:
    job = parse_job(web_app_job(render_id=render_id, organization_id=f"org-{render_id}"))
    claim = BullClaim(job_id=f"job-{render_id}", attempt=0, max_attempts=3, token="t", run_key=f"{render_id}:1:0")
    with database.session() as session:
        renders.record_claim(session, job, claim)
        ledger.charge(session, render_id=render_id, organization_id=job.organizationId, cost=1, initial_credits=10)
        row = renders.require(session, render_id)
        row.status = status
        row.created_at = utcnow() - timedelta(days=age_days)


def tick(instance: DagsterInstance, database_url: str) -> SensorResult | SkipReason:
    """One evaluation, its partition deletions applied as the daemon applies them."""
    with build_sensor_context(instance=instance, resources={"database": DatabaseResource(url=database_url)}) as context:
        result = render_retention_sensor(context)
    assert isinstance(result, SensorResult | SkipReason)
    if isinstance(result, SensorResult):
        for request in result.dynamic_partitions_requests or []:
            for key in request.partition_keys or []:
                instance.delete_dynamic_partition(PARTITIONS, key)
    return result


def test_removes_only_old_settled_renders_and_keeps_rows_and_ledger(
    instance: DagsterInstance, database: Database, database_url: str
) -> None:
    cases = {
        "old-completed": (RenderStatus.COMPLETED, 31),
        "old-failed": (RenderStatus.FAILED, 45),
        "recent-completed": (RenderStatus.COMPLETED, 29),
        "old-processing": (RenderStatus.PROCESSING, 60),
        "old-in-review": (RenderStatus.IN_REVIEW, 60),
    }
    for render_id, (status, age_days) in cases.items():
        add_render(database, render_id, status, age_days)
    instance.add_dynamic_partitions(PARTITIONS, [*cases, "operator-partition"])

    result = tick(instance, database_url)

    assert isinstance(result, SensorResult)
    assert sorted(instance.get_dynamic_partitions(PARTITIONS)) == [
        "old-in-review",
        "old-processing",
        "operator-partition",
        "recent-completed",
    ]
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(Render)) == len(cases)
        charged = session.scalars(select(CreditTransaction.render_id).where(CreditTransaction.kind == "charge"))
        assert sorted(charged) == sorted(cases)
    assert isinstance(tick(instance, database_url), SkipReason)  # nothing left to remove


def test_the_age_comes_from_render_retention_days(
    instance: DagsterInstance, database: Database, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_render(database, "week-old", RenderStatus.COMPLETED, 8)
    instance.add_dynamic_partitions(PARTITIONS, ["week-old"])
    assert isinstance(tick(instance, database_url), SkipReason)

    monkeypatch.setenv("RENDER_RETENTION_DAYS", "7")
    tick(instance, database_url)

    assert instance.get_dynamic_partitions(PARTITIONS) == []


def test_a_non_positive_or_malformed_age_is_refused_by_name(
    instance: DagsterInstance, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    instance.add_dynamic_partitions(PARTITIONS, ["anything"])
    monkeypatch.setenv("RENDER_RETENTION_DAYS", "0")
    with pytest.raises(Exception, match="RENDER_RETENTION_DAYS must be positive"):
        tick(instance, database_url)
    monkeypatch.setenv("RENDER_RETENTION_DAYS", "thirty")
    with pytest.raises(Exception, match="RENDER_RETENTION_DAYS='thirty' is not a number"):
        tick(instance, database_url)
    assert instance.get_dynamic_partitions(PARTITIONS) == ["anything"]


def test_lookups_are_chunked_and_the_limit_holds(database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retention, "LOOKUP_CHUNK", 2)
    for index in range(5):
        add_render(database, f"old-{index}", RenderStatus.COMPLETED, 40)
    keys = ["unknown", *(f"old-{index}" for index in range(5))]

    everything = retention.expired_partitions(database, keys, now=utcnow(), retention_days=30, limit=100)
    limited = retention.expired_partitions(database, keys, now=utcnow(), retention_days=30, limit=3)

    assert everything == [f"old-{index}" for index in range(5)]
    assert limited == ["old-0", "old-1", "old-2"]
    assert render_partitions.name == PARTITIONS
