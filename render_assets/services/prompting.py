"""Stage 1: charge the render and build its prompt."""

from __future__ import annotations

from render_assets.domain.progress import Stage
from render_assets.domain.prompt import BuiltPrompt, build_prompt
from render_assets.persistence import ledger, renders
from render_assets.services.backends import Backends
from render_assets.services.failures import RenderFailed
from render_assets.services.run_context import RenderRun


def prepare_prompt(run: RenderRun, backends: Backends) -> BuiltPrompt:
    """Charge the render (only runs that hold a BullMQ claim charge), then build its prompt."""
    database, progress = backends.database, backends.progress
    with database.session() as session:
        if not run.is_operator_run:  # an operator's re-render leaves the row's status alone
            renders.mark_processing(session, run.render_id)
        row = renders.require(session, run.render_id)
        # Each BullMQ attempt draws a new seed, so a retry after a failed QA is a new image; an
        # operator's re-render draws the last attempt's, so unchanged inputs give the same image.
        cost, attempt = row.credit_cost, row.claim_attempt or 0
    if run.bull is not None:
        try:
            with database.session() as session:
                ledger.charge(
                    session,
                    render_id=run.render_id,
                    organization_id=run.job.organizationId,
                    cost=cost,
                    initial_credits=backends.initial_credits,
                )
        except ledger.InsufficientCredits as error:
            raise RenderFailed(str(error), permanent=True) from None
        progress.stage(run, Stage.CHARGED)
    built = build_prompt(run.job, attempt=attempt)
    progress.stage(run, Stage.PROMPT_READY)
    return built
