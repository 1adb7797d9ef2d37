"""What one run knows about its render: the payload from the renders row and, when the run was
started for a BullMQ claim that is still current, the job to report to."""

from __future__ import annotations

from dataclasses import dataclass

from render_assets.adapters.bullmq_queue import JobRef
from render_assets.domain import renders
from render_assets.domain.database import Database
from render_assets.domain.models import Render
from render_assets.domain.payload import RenderJob


@dataclass(frozen=True)
class RenderRun:
    render_id: str
    job: RenderJob
    bull: JobRef | None  # None: a backfill or UI re-execution, which makes no BullMQ calls

    @property
    def is_operator_run(self) -> bool:
        return self.bull is None


def current_claim(render: Render, run_key: str | None) -> JobRef | None:
    """The BullMQ job a run may act on: only the run started for the render's current claim."""
    if run_key is None or run_key != render.run_key or not render.bull_job_id or not render.claim_token:
        return None
    return JobRef(render.bull_job_id, render.claim_token)


def load_run(database: Database, render_id: str, run_key: str | None) -> RenderRun:
    with database.session() as session:
        row = renders.require(session, render_id)
        job = RenderJob.model_validate(row.payload)
        bull = current_claim(row, run_key)
    return RenderRun(render_id=render_id, job=job, bull=bull)
