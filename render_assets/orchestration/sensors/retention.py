"""The retention sensor: drops the partitions of settled renders older than RENDER_RETENTION_DAYS,
so the partition list (which the UI and every partition lookup read) stays the size of recent
work. Rows, ledger, images and materializations stay."""

from dagster import DefaultSensorStatus, SensorEvaluationContext, SensorResult, SkipReason, sensor

from render_assets import config
from render_assets.orchestration.partitions import render_partitions
from render_assets.orchestration.resources import DatabaseResource
from render_assets.persistence.models import utcnow
from render_assets.services.retention import expired_partitions

RETENTION_INTERVAL_S = 3600  # ages are counted in days: once an hour is plenty
MAX_REMOVED_PER_TICK = 10_000  # bounds one tick's work; a backlog drains over a few ticks


@sensor(minimum_interval_seconds=RETENTION_INTERVAL_S, default_status=DefaultSensorStatus.RUNNING)
def render_retention_sensor(context: SensorEvaluationContext, database: DatabaseResource) -> SensorResult | SkipReason:
    """Removes partitions of completed or failed renders older than RENDER_RETENTION_DAYS."""
    assert render_partitions.name is not None
    keys = context.instance.get_dynamic_partitions(render_partitions.name)
    expired = expired_partitions(
        database.get(),
        keys,
        now=utcnow(),
        retention_days=config.number(config.RENDER_RETENTION_DAYS),
        limit=MAX_REMOVED_PER_TICK,
    )
    if not expired:
        return SkipReason(f"no render partition past retention ({len(keys)} partitions)")
    context.log.info(f"removing {len(expired)} render partitions past retention")
    return SensorResult(dynamic_partitions_requests=[render_partitions.build_delete_request(expired)])
