"""The reconciliation sensor: settles renders whose runs died or ended unsettled."""

from datetime import UTC, datetime, timedelta

from dagster import (
    DagsterInstance,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunsFilter,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)

from render_assets import config
from render_assets.orchestration.jobs import render_job
from render_assets.orchestration.resources import BlobStorageResource, RenderQueueResource
from render_assets.orchestration.sensors.deployment import deployment_id
from render_assets.services import cancellation
from render_assets.services.failure_reports import StepFailure, report_failure
from render_assets.services.reconciliation import ReconcilePolicy, RunInfo, RunPhase, reconcile

WAITING = {DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING}


class DagsterRuns:
    """Run facts the reconciler needs, from the Dagster instance."""

    def __init__(self, instance: DagsterInstance) -> None:
        self.instance = instance

    def find(self, run_key: str) -> RunInfo | None:
        records = self.instance.get_run_records(
            RunsFilter(job_name=render_job.name, tags={"dagster/run_key": run_key}), limit=1
        )
        if not records:
            return None
        record = records[0]
        status = record.dagster_run.status
        phase = (
            RunPhase.WAITING
            if status in WAITING
            else RunPhase.RUNNING
            if status in (DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING)
            else RunPhase.ENDED
        )
        started = _at(record.start_time) if record.start_time else None
        return RunInfo(record.dagster_run.run_id, phase, status.value, started)

    def mark_failed(self, run_id: str, reason: str) -> None:
        run = self.instance.get_run_by_id(run_id)
        if run is not None and not run.is_finished:
            self.instance.report_run_failed(run, message=reason)


def _at(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


@sensor(
    minimum_interval_seconds=max(1, int(config.number(config.RENDER_RECONCILE_INTERVAL_S))),
    default_status=DefaultSensorStatus.RUNNING,
)
def reconcile_sensor(
    context: SensorEvaluationContext,
    queue: RenderQueueResource,
    storage: BlobStorageResource,
) -> SkipReason:
    """Finds renders that no failure hook settled (killed run workers, lost claims, crashes between
    the ledger and BullMQ) and settles them: refunded once when final, or back to BullMQ while
    attempts remain."""
    backends = queue.backends(storage)
    policy = ReconcilePolicy(claim_grace=timedelta(seconds=config.number(config.RENDER_CLAIM_GRACE_S)))
    outcome = reconcile(
        backends,
        DagsterRuns(context.instance),
        queue.liveness().is_alive,
        deployment=deployment_id(context.instance),
        policy=policy,
    )
    acted = [
        settlement
        for settlement in outcome.settled
        if settlement.recorded_failure or settlement.refunded or settlement.bullmq
    ]
    for settlement in acted:
        context.log.info(f"settled {settlement.render_id}: {settlement.status}, BullMQ {settlement.bullmq}")
    for lost in outcome.lost:  # the failure hook never saw these: report them as it would have
        report_failure(
            backends.database,
            StepFailure(
                render_id=lost.render_id,
                run_id=lost.run_id or "",
                run_key=lost.run_key,
                stage="run",
                reason=lost.reason,
            ),
        )
    removed = cancellation.clean_up(backends)  # what cancelled renders had stored
    if removed:
        context.log.info(f"removed {len(removed)} object(s) of cancelled renders")
    return SkipReason(f"settled {len(acted)} render(s); {len(outcome.dead_runs)} dead run(s) marked failed")
