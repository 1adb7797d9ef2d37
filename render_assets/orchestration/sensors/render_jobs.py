"""The Redis sensor: BullMQ jobs in, one run per claim out."""

import time
from datetime import UTC, datetime

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
from render_assets.domain.prompt import prompt_rules
from render_assets.orchestration import lineage
from render_assets.orchestration.jobs import render_job
from render_assets.orchestration.partitions import render_partitions
from render_assets.orchestration.resources import ProvidersResource, RenderQueueResource
from render_assets.orchestration.run_identity import BULL_JOB_TAG, RUN_KEY_TAG, RunIdentity, RunKind
from render_assets.orchestration.sensors.cancelled_runs import stop_cancelled_runs
from render_assets.orchestration.sensors.deployment import deployment_id
from render_assets.services import claims

IN_PROGRESS = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED]
WAITING = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED]
PRIORITY_TAG = "dagster/priority"
# Dagster's run queue starts higher priorities first: customers' runs before operators' re-renders
# (`render-assets rerender` gives its backfill a negative one), and by subscription tier, as the
# web app's BullMQ priorities order the backlog.
TIER_PRIORITY = {"growth": 30, "pro": 20, "starter": 10}


def run_slots(instance: DagsterInstance) -> int:
    """The run queue's limit when the instance has one, else RENDER_MAX_CONCURRENT_RUNS."""
    if isinstance(instance.run_coordinator, QueuedRunCoordinator):
        # The instance's view: `concurrency: runs:` when the instance sets pools, else the coordinator's.
        queue_config = instance.get_concurrency_config().run_queue_config
        if queue_config is not None and queue_config.max_concurrent_runs >= 0:
            return queue_config.max_concurrent_runs
    return int(config.number(config.RENDER_MAX_CONCURRENT_RUNS))


def busy_runs(instance: DagsterInstance) -> int:
    """Run slots taken or promised: every run in progress (a customer's or an operator's) and every
    render run waiting in Dagster's queue. An operator's backfill waiting behind them is not
    counted: customers' runs start first, so it never holds back a claim."""
    return instance.get_runs_count(RunsFilter(statuses=IN_PROGRESS)) + instance.get_runs_count(
        RunsFilter(job_name=render_job.name, statuses=WAITING)
    )


def run_exists(instance: DagsterInstance, run_key: str) -> bool:
    return instance.get_runs_count(RunsFilter(job_name=render_job.name, tags={RUN_KEY_TAG: run_key})) > 0


def _run_request(run: claims.RunToStart) -> RunRequest:
    job = run.job
    identity = RunIdentity(run.render_id, RunKind.CUSTOMER, run.run_key)
    tags = {
        **identity.tags(organization_id=job.organizationId, project_id=job.projectId, tier=job.subscriptionTier),
        BULL_JOB_TAG: run.bull_job_id,
        PRIORITY_TAG: str(TIER_PRIORITY.get(job.subscriptionTier, 0)),
    }
    return RunRequest(run_key=run.run_key, partition_key=run.render_id, tags=tags)


@sensor(
    job=render_job,
    minimum_interval_seconds=max(1, int(config.number(config.RENDER_SENSOR_INTERVAL_S))),
    default_status=DefaultSensorStatus.RUNNING,
)
def render_job_sensor(
    context: SensorEvaluationContext,
    queue: RenderQueueResource,
    providers: ProvidersResource,
) -> SensorResult | SkipReason:
    """Claims as many BullMQ jobs as there are free run slots, so BullMQ's priorities still order
    the backlog, and requests one run per claim (claims left over by a failed tick first). With
    nothing to claim, the tick waits on BullMQ for up to `queue.claim_wait_s` and claims what
    arrives, so a job on an idle worker is claimed as it is enqueued rather than at the next tick.
    Each render's prompt rules are observed before its run starts, so its lineage has a start."""
    deadline = time.monotonic() + queue.claim_wait_s
    backends, deployment = queue.backends(), deployment_id(context.instance)
    db, bull = backends.database, backends.queue
    for run_id in stop_cancelled_runs(context.instance, db):
        context.log.info(f"stopped run {run_id}: its render was cancelled")
    claims.hold_pending_claims(db, bull, deployment)
    leftover = [run for run in claims.pending_runs(db, deployment) if not run_exists(context.instance, run.run_key)]
    free = run_slots(context.instance) - busy_runs(context.instance) - len(leftover)
    availability = providers.availability()
    wanted = claims.claims_while(availability, free, renders_starting=claims.starting(db))
    # Only an idle tick waits: one with runs to request returns them at once.
    outcome = claims.claim_arriving(
        db,
        bull,
        wanted,
        wait_until=time.monotonic() if leftover else deadline,
        deployment=deployment,
        source_hosts=providers.source_hosts(),
        progress=backends.progress,
    )
    runs = leftover + outcome.runs
    for job_id, reason in outcome.rejected.items():
        context.log.warning(f"BullMQ job {job_id} rejected: {reason}")
    if not runs:
        if not availability.up:
            until = datetime.fromtimestamp(availability.retry_at, UTC)
            return SkipReason(
                f"every image provider is down ({availability.cause()}); jobs wait in BullMQ until {until:%H:%M:%S} UTC"
            )
        return SkipReason(f"no claimable jobs ({max(free, 0)} free run slots)")
    # Recorded before the partitions and runs (the daemon handles a result's parts in that order).
    observations = lineage.changed_rules(context.instance, {run.render_id: prompt_rules(run.job) for run in runs})
    return SensorResult(
        run_requests=[_run_request(run) for run in runs],
        dynamic_partitions_requests=[render_partitions.build_add_request(sorted({run.render_id for run in runs}))],
        asset_events=observations,
    )
