"""Runs of cancelled renders, stopped through Dagster: a queued run is canceled before it starts
(the UI shows it CANCELED), and a running one terminated, should its own heartbeat have missed
the cancel signal. The render sensor calls this every tick."""

from datetime import timedelta

from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from render_assets.orchestration.jobs import render_job
from render_assets.orchestration.run_identity import RUN_KEY_TAG
from render_assets.persistence import cancellations, renders
from render_assets.persistence.database import Database
from render_assets.persistence.models import utcnow

RECENT = timedelta(minutes=15)  # a cancelled render's run has long ended or been stopped by then
QUEUED = {DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED}
RUNNING = {DagsterRunStatus.STARTING, DagsterRunStatus.STARTED}


def stop_cancelled_runs(instance: DagsterInstance, database: Database) -> list[str]:
    """Cancel or terminate the unfinished runs of renders cancelled lately; returns their run ids."""
    with database.session() as session:
        run_keys = [
            row.run_key
            for render_id in cancellations.since(session, utcnow() - RECENT)
            if (row := renders.get(session, render_id)) is not None and row.run_key
        ]
    stopped = []
    for run_key in run_keys:
        for record in instance.get_run_records(
            RunsFilter(job_name=render_job.name, tags={RUN_KEY_TAG: run_key}, statuses=[*QUEUED, *RUNNING])
        ):
            run = record.dagster_run
            if run.status in QUEUED:
                instance.report_run_canceled(run, message="its render was cancelled before the run started")
            else:
                instance.run_launcher.terminate(run.run_id)
            stopped.append(run.run_id)
    return stopped
