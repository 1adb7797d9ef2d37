from render_assets.sensors.render_jobs import render_job_sensor

__all__ = ["render_job_sensor"]
