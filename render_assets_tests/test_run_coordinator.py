"""The run coordinator on a real Dagster instance: a customer's render run starts as it is
submitted, every other run waits in the queue."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Self

import pytest
from dagster import DagsterInstance, DagsterRunStatus, job, op
from dagster import instance_for_test as dagster_test_instance
from dagster._core.launcher import LaunchRunContext, RunLauncher
from dagster._core.remote_origin import RegisteredCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.run_coordinator import SubmitRunContext
from dagster._serdes import ConfigurableClass, ConfigurableClassData

from render_assets.orchestration.instance import RenderRunCoordinator
from render_assets.orchestration.instance.sensor_loop import DAGSTER_SENSOR_LOOP_S, sensor_loop, set_sensor_loop
from render_assets.orchestration.run_identity import BULL_JOB_TAG, PARTITION_TAG, RUN_KEY_TAG
from render_assets.orchestration.sensors.render_jobs import run_slots

LAUNCHED: list[str] = []


class RecordingRunLauncher(RunLauncher, ConfigurableClass):
    """Marks a run started and records it, instead of starting a process."""

    def __init__(self, inst_data: ConfigurableClassData | None = None) -> None:
        self._inst_data = inst_data
        super().__init__()

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return {}

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]) -> Self:
        return cls(inst_data=inst_data)

    def launch_run(self, context: LaunchRunContext) -> None:
        LAUNCHED.append(context.dagster_run.run_id)

    def terminate(self, run_id: str) -> bool:
        return False


@op
def noop() -> None:
    pass


@job
def some_job() -> None:
    noop()


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    LAUNCHED.clear()
    overrides = {
        "run_coordinator": {
            "module": "render_assets.orchestration.instance",
            "class": "RenderRunCoordinator",
            "config": {"max_concurrent_runs": 3},
        },
        "run_launcher": {"module": __name__, "class": "RecordingRunLauncher"},
    }
    with dagster_test_instance(overrides=overrides) as dagster_instance:
        yield dagster_instance


def submitted(instance: DagsterInstance, tags: dict[str, str]) -> DagsterRunStatus:
    # The origin a run from a code location carries (the queue requires one).
    origin = RemoteJobOrigin(
        RemoteRepositoryOrigin(RegisteredCodeLocationOrigin("render_assets"), "__repository__"), "some_job"
    )
    run = instance.create_run_for_job(some_job, tags=tags, remote_job_origin=origin)
    # As the instance's submit_run calls it (minus the check for a code location's origin).
    context = SubmitRunContext(run, workspace=None)  # type: ignore[arg-type]  # the launcher here needs none
    return instance.run_coordinator.submit_run(context).status


def test_a_claimed_render_run_starts_at_once(instance: DagsterInstance) -> None:
    claimed = {PARTITION_TAG: "r-1", RUN_KEY_TAG: "r-1:17:0", BULL_JOB_TAG: "17"}

    status = submitted(instance, claimed)

    assert status == DagsterRunStatus.STARTING
    assert len(LAUNCHED) == 1
    assert run_slots(instance) == 3  # still the run queue's limit that the sensor claims against


@pytest.mark.parametrize(
    "tags",
    [
        {},  # launched from the UI or the API
        {PARTITION_TAG: "r-1"},  # an operator's materialization of one render
        {PARTITION_TAG: "r-1", RUN_KEY_TAG: "r-1:17:0", BULL_JOB_TAG: "17", "dagster/parent_run_id": "abc"},
        {PARTITION_TAG: "r-1", "dagster/backfill": "bf1"},
    ],
    ids=["ui", "materialize", "re-execution", "backfill"],
)
def test_every_other_run_waits_in_the_queue(instance: DagsterInstance, tags: dict[str, str]) -> None:
    assert submitted(instance, tags) == DagsterRunStatus.QUEUED
    assert LAUNCHED == []


def test_the_instance_file_sets_how_often_the_sensor_daemon_loops() -> None:
    overrides = {
        "run_coordinator": {
            "module": "render_assets.orchestration.instance",
            "class": "RenderRunCoordinator",
            "config": {"max_concurrent_runs": 3, "sensor_loop_seconds": 0.5},
        }
    }
    try:
        with dagster_test_instance(overrides=overrides) as dagster_instance:
            assert isinstance(dagster_instance.run_coordinator, RenderRunCoordinator)
            assert sensor_loop() == 0.5
            assert run_slots(dagster_instance) == 3
    finally:
        set_sensor_loop(DAGSTER_SENSOR_LOOP_S)
    with pytest.raises(ValueError, match="sensor_loop_seconds"):
        set_sensor_loop(0)
