"""What one run knows about its render: the payload from the renders row and, when the run was
started for a BullMQ claim that is still current, the job to report to."""

from __future__ import annotations

from dataclasses import dataclass

from render_assets.adapters.bullmq_queue import JobRef
from render_assets.domain import renders
from render_assets.domain.database import Database
from render_assets.domain.models import Render, RenderStatus
from render_assets.domain.payload import RenderJob


@dataclass(frozen=True)
class RenderRun:
    render_id: str
    job: RenderJob
    bull: JobRef | None  # None: a backfill or UI re-execution, which makes no BullMQ calls
    # The run's own attempt was settled as failed by someone else (the reconciler took a stalled
    # heartbeat for a dead run): the run must stop rather than deliver what is no longer its to.
    superseded: bool = False

    @property
    def is_operator_run(self) -> bool:
        return self.bull is None


def current_claim(render: Render, run_key: str | None) -> JobRef | None:
    """The BullMQ job a run may act on: only the run started for the render's current claim."""
    if run_key is None or run_key != render.run_key or not render.bull_job_id or not render.claim_token:
        return None
    return JobRef(render.bull_job_id, render.claim_token)


def load_run(database: Database, render_id: str, run_key: str | None, *, reexecution: bool = False) -> RenderRun:
    """`reexecution`: an operator re-ran the run from the UI (it carries the original's run key)."""
    with database.session() as session:
        row = renders.require(session, render_id)
        job = RenderJob.model_validate(row.payload)
        bull = current_claim(row, run_key)
        settled = row.status in (RenderStatus.RETRYING, RenderStatus.FAILED)
        superseded = not reexecution and run_key is not None and run_key == row.run_key and settled
    return RenderRun(render_id=render_id, job=job, bull=bull, superseded=superseded)
