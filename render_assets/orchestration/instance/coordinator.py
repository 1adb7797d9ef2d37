"""`RenderRunCoordinator`: Dagster's run queue, except that a customer's render run starts at once.

The render sensor claims a BullMQ job only for a free run slot: it counts the runs in progress and
the render runs waiting in the queue against the queue's own limit (`sensors/render_jobs.py`). So
queueing the run it requests reserves nothing new; it only waits for the queue daemon's next
dequeue (a loop of at least a second, 0.35-0.76 s measured). This coordinator launches such a run
from the sensor daemon as it is submitted. Every other run (launched from the UI, a backfill, a
re-execution, an operator's re-render) is queued and dequeued under the same limits as before.
Pools still apply to every run: `raw_render` waits for an `image_providers` slot when it starts.

`sensor_loop_seconds` sets how often the sensor daemon (in the same process as the coordinator)
looks for sensors due for a tick; see `sensor_loop.py`.

dagster.yaml:

    run_coordinator:
      module: render_assets.orchestration.instance
      class: RenderRunCoordinator
      config: {max_concurrent_runs: 4, sensor_loop_seconds: 0.5, ...}   # and QueuedRunCoordinator's
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

from dagster import DagsterRun, DagsterRunStatus, Field
from dagster._config.config_schema import UserConfigSchema
from dagster._core.run_coordinator import QueuedRunCoordinator, SubmitRunContext
from dagster._serdes import ConfigurableClassData

from render_assets.orchestration.instance.sensor_loop import DAGSTER_SENSOR_LOOP_S, set_sensor_loop
from render_assets.orchestration.run_identity import BULL_JOB_TAG, RunIdentity


def holds_a_claimed_slot(run: DagsterRun) -> bool:
    """A customer run the render sensor requested for a BullMQ job it claimed."""
    return BULL_JOB_TAG in run.tags and not RunIdentity.of(run).is_operator_run


class RenderRunCoordinator(QueuedRunCoordinator):
    @classmethod
    def config_type(cls) -> UserConfigSchema:
        return {
            **dict(super().config_type()),  # type: ignore[arg-type]
            "sensor_loop_seconds": Field(
                float,
                is_required=False,
                default_value=DAGSTER_SENSOR_LOOP_S,
                description="How often the sensor daemon looks for sensors due for a tick.",
            ),
        }

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]) -> Self:
        set_sensor_loop(float(config_value.get("sensor_loop_seconds", DAGSTER_SENSOR_LOOP_S)))
        return super().from_config_value(inst_data, config_value)

    def submit_run(self, context: SubmitRunContext) -> DagsterRun:
        run = context.dagster_run
        if run.status != DagsterRunStatus.NOT_STARTED or not holds_a_claimed_slot(run):
            return super().submit_run(context)
        self._instance.launch_run(run.run_id, context.workspace)
        launched = self._instance.get_run_by_id(run.run_id)
        if launched is None:
            raise RuntimeError(f"run {run.run_id} vanished while it was launched")
        return launched
