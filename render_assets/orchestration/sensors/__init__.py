from render_assets.orchestration.sensors.reconcile import reconcile_sensor
from render_assets.orchestration.sensors.render_jobs import render_job_sensor

__all__ = ["reconcile_sensor", "render_job_sensor"]
