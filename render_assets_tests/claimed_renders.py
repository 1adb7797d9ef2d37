"""Renders claimed and charged as the sensor and render_prompt would leave them, for settlement tests."""

from __future__ import annotations

from typing import Any

from render_assets.adapters.bullmq_queue import BullQueue
from render_assets.domain.payload import parse_job
from render_assets.domain.queue_contract import job_options
from render_assets.persistence import ledger, renders
from render_assets.persistence.database import Database
from render_assets.persistence.models import CreditTransaction
from render_assets.services.claims import claim_jobs
from render_assets_tests.payloads import web_app_job

DEPLOYMENT = "deployment-under-test"  # the deployment these tests' claims and reconciler speak for


def claimed_render(
    database: Database, bull: BullQueue, deployment: str = DEPLOYMENT, **options: Any
) -> tuple[str, str, str]:
    """Enqueue a web-app job, claim it for `deployment` and charge it, as the sensor and
    render_prompt would."""
    data = web_app_job()
    opts = {**job_options(parse_job(data)), **options}
    job_id = bull.add(data, opts)
    [run] = claim_jobs(database, bull, 1, deployment=deployment).runs
    with database.session() as session:
        renders.mark_processing(session, run.render_id)
        ledger.charge(session, render_id=run.render_id, organization_id="org-test", cost=1, initial_credits=10)
    return run.render_id, run.run_key, job_id


def kinds(database: Database, render_id: str) -> list[str]:
    with database.session() as session:
        rows = session.query(CreditTransaction).filter_by(render_id=render_id).order_by(CreditTransaction.id)
        return [row.kind for row in rows]


def status(database: Database, render_id: str) -> str:
    with database.session() as session:
        return renders.require(session, render_id).status
