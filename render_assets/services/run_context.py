"""What one run knows about its render: the payload from the renders row and, when the run was
started for a BullMQ claim that is still current, the job to report to.

Two kinds of run: a customer's (requested by the render sensor for a BullMQ claim) and an
operator's (a backfill, the UI's "Materialize" or a re-execution). An operator run re-renders a
render a customer's job was admitted for, for free: it never charges, refunds, reports progress
to the row or touches BullMQ, and it may not run while the customer's job is still in flight.
"""

from __future__ import annotations

from dataclasses import dataclass

from render_assets.adapters.bullmq_queue import JobRef
from render_assets.domain.payload import RenderJob
from render_assets.persistence import ledger, renders
from render_assets.persistence.database import Database, Session
from render_assets.persistence.models import Render, RenderStatus
from render_assets.services.failures import RenderFailed


@dataclass(frozen=True)
class RenderRun:
    render_id: str
    job: RenderJob
    bull: JobRef | None  # the claim a customer run reports to; None for an operator run or a stale one
    # Why the run must stop rather than deliver what is no longer its to: its attempt was settled
    # by someone else (the reconciler took a stalled heartbeat for a dead run), a newer claim owns
    # the render, or its customer cancelled it. None: the run goes on.
    superseded: str | None = None
    operator: bool = False  # an operator's re-render: no charge, no BullMQ, no progress on the row

    @property
    def is_operator_run(self) -> bool:
        return self.operator

    @property
    def reports_progress(self) -> bool:
        """Progress goes to the row, the event stream and BullMQ for customer runs only: an
        operator's re-render must not move a delivered render's stage (its news is the version)."""
        return not self.operator


def current_claim(render: Render, run_key: str | None) -> JobRef | None:
    """The BullMQ job a run may act on: only the run started for the render's current claim."""
    if run_key is None or run_key != render.run_key or not render.bull_job_id or not render.claim_token:
        return None
    return JobRef(render.bull_job_id, render.claim_token)


def operator_refusal(session: Session, render: Render) -> str | None:
    """Why an operator may not re-render this render now, or None when it may."""
    if render.status in (*RenderStatus.IN_FLIGHT, RenderStatus.IN_REVIEW):
        return (
            f"render {render.id} is {render.status} for its customer's job; "
            "an operator re-render waits until that job has ended"
        )
    if render.status == RenderStatus.CANCELLED:
        return f"render {render.id} was cancelled by its customer: there is nothing to re-render"
    if render.status != RenderStatus.COMPLETED and not ledger.is_charged(session, render.id):
        why = f" ({render.error})" if render.error else ""
        return f"render {render.id} was never admitted{why}: there is nothing to re-render"
    return None


def load_run(database: Database, render_id: str, claim_run_key: str | None, *, operator: bool = False) -> RenderRun:
    """`claim_run_key`: the run key a customer run was requested for; `operator`: the run is an
    operator's (a run key it copied from a customer run is ignored). Raises `RenderFailed`
    (permanent) when an operator may not re-render the render."""
    with database.session() as session:
        row = renders.require(session, render_id)
        job = RenderJob.model_validate(row.payload)
        if operator:
            refusal = operator_refusal(session, row)
            if refusal is not None:
                raise RenderFailed(refusal, permanent=True)
            return RenderRun(render_id=render_id, job=job, bull=None, operator=True)
        bull = current_claim(row, claim_run_key)
        superseded = None
        if row.status == RenderStatus.CANCELLED:
            superseded = f"render {render_id} was cancelled by its customer; stopping"
        elif claim_run_key != row.run_key or row.status in (RenderStatus.RETRYING, RenderStatus.FAILED):
            superseded = "this attempt was already settled, or a newer claim owns the render; stopping"
    return RenderRun(render_id=render_id, job=job, bull=bull, superseded=superseded)
