"""The Redis sensor: BullMQ jobs in, one run per claim out."""

from dagster import (
    DagsterInstance,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)
from dagster._core.run_coordinator import QueuedRunCoordinator

from render_assets import config
from render_assets.jobs import render_job
from render_assets.partitions import render_partitions
from render_assets.resources import DatabaseResource, ProvidersResource, RenderQueueResource
from render_assets.sensors.deployment import deployment_id
from render_assets.services import claims

RUN_KEY_TAG = "dagster/run_key"
BUSY_STATUSES = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]


def run_slots(instance: DagsterInstance) -> int:
    """The run queue's limit when the instance has one, else RENDER_MAX_CONCURRENT_RUNS."""
    if isinstance(instance.run_coordinator, QueuedRunCoordinator):
        # The instance's view: `concurrency: runs:` when the instance sets pools, else the coordinator's.
        queue_config = instance.get_concurrency_config().run_queue_config
        if queue_config is not None and queue_config.max_concurrent_runs >= 0:
            return queue_config.max_concurrent_runs
    return int(config.number(config.RENDER_MAX_CONCURRENT_RUNS))


def busy_runs(instance: DagsterInstance) -> int:
    return instance.get_runs_count(RunsFilter(job_name=render_job.name, statuses=BUSY_STATUSES))


def run_exists(instance: DagsterInstance, run_key: str) -> bool:
    return instance.get_runs_count(RunsFilter(job_name=render_job.name, tags={RUN_KEY_TAG: run_key})) > 0


@sensor(
    job=render_job,
    minimum_interval_seconds=max(1, int(config.number(config.RENDER_SENSOR_INTERVAL_S))),
    default_status=DefaultSensorStatus.RUNNING,
)
def render_job_sensor(
    context: SensorEvaluationContext,
    database: DatabaseResource,
    queue: RenderQueueResource,
    providers: ProvidersResource,
) -> SensorResult | SkipReason:
    """Claims as many BullMQ jobs as there are free run slots, so BullMQ's priorities still order
    the backlog, and requests one run per claim (claims left over by a failed tick first)."""
    db, deployment, bull = database.get(), deployment_id(context.instance), queue.get()
    claims.hold_pending_claims(db, bull, deployment)
    leftover = [run for run in claims.pending_runs(db, deployment) if not run_exists(context.instance, run.run_key)]
    free = run_slots(context.instance) - busy_runs(context.instance) - len(leftover)
    outcome = claims.claim_jobs(db, bull, free, deployment=deployment, source_hosts=providers.source_hosts())
    runs = leftover + outcome.runs
    for job_id, reason in outcome.rejected.items():
        context.log.warning(f"BullMQ job {job_id} rejected: {reason}")
    if not runs:
        return SkipReason(f"no claimable jobs ({max(free, 0)} free run slots)")
    return SensorResult(
        run_requests=[
            RunRequest(
                run_key=run.run_key,
                partition_key=run.render_id,
                tags={"render/render_id": run.render_id, "render/bull_job_id": run.bull_job_id},
            )
            for run in runs
        ],
        dynamic_partitions_requests=[render_partitions.build_add_request(sorted({run.render_id for run in runs}))],
    )
