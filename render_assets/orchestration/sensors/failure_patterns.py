"""The failure-pattern monitor: every FAILURE_MONITOR_INTERVAL_S, evaluate the patterns and
fire or clear their alerts (the logic is in services/failure_monitor.py)."""

from dagster import DefaultSensorStatus, SensorEvaluationContext, SkipReason, sensor

from render_assets import config
from render_assets.orchestration.resources import DatabaseResource
from render_assets.orchestration.resources.alerts import FailureAlertsResource
from render_assets.persistence.models import utcnow
from render_assets.services import failure_monitor


@sensor(
    minimum_interval_seconds=max(1, int(config.number(config.FAILURE_MONITOR_INTERVAL_S))),
    default_status=DefaultSensorStatus.RUNNING,
    description="Fires an alert when a failure pattern starts and an all-clear when it ends.",
)
def failure_pattern_sensor(
    context: SensorEvaluationContext, database: DatabaseResource, alerts: FailureAlertsResource
) -> SkipReason:
    changed = failure_monitor.check_patterns(database.get(), alerts.settings(), alerts.notifiers(), now=utcnow())
    for change in changed:
        context.log.warning(f"failure pattern {change.pattern} {change.state}: {change.message}")
    if not changed:
        return SkipReason("no failure pattern started or ended")
    return SkipReason("; ".join(f"{change.pattern} {change.state}" for change in changed))
