"""The `renders` table on SQLite and PostgreSQL: claims, refusals, progress and failure states."""

from __future__ import annotations

from typing import Any

import pytest

from render_assets.domain.payload import RenderJob, parse_job
from render_assets.domain.progress import Stage, progress_for
from render_assets.persistence import renders
from render_assets.persistence.database import Database
from render_assets.persistence.models import Render, RenderStatus
from render_assets_tests.payloads import web_app_job

RESULT: dict[str, Any] = {"imageUrl": "https://cdn.test/r.png", "thumbnailUrl": "https://cdn.test/t.jpg"}


def _job(render_id: str = "render-1", **overrides: Any) -> RenderJob:
    return parse_job(web_app_job(render_id=render_id, **overrides))


def _claim(job_id: str = "job-1", attempt: int = 0, deployment: str | None = "blue") -> renders.BullClaim:
    return renders.BullClaim(
        job_id=job_id,
        attempt=attempt,
        max_attempts=3,
        token=f"token-{job_id}-{attempt}",
        run_key=f"{job_id}:{attempt}",
        deployment=deployment,
    )


def _record(db: Database, job: RenderJob, claim: renders.BullClaim) -> renders.ClaimDecision:
    with db.session() as session:
        return renders.record_claim(session, job, claim)


def _row(db: Database, render_id: str = "render-1") -> Render:
    with db.session() as session:
        return renders.require(session, render_id)


def _set_status(db: Database, status: str, render_id: str = "render-1") -> None:
    with db.session() as session:
        if status == RenderStatus.PROCESSING:
            renders.mark_processing(session, render_id)
        elif status == RenderStatus.RETRYING:
            renders.mark_failed(session, render_id, reason="attempt failed", final=False)
        elif status == RenderStatus.FAILED:
            renders.mark_failed(session, render_id, reason="gave up", final=True)
        elif status == RenderStatus.COMPLETED:
            renders.mark_completed(
                session, render_id, result=RESULT, image_url="i", thumbnail_url="t", prompt_hash="a" * 64
            )


def test_claim_of_a_new_render_creates_its_row(database: Database) -> None:
    job = _job(resolution="4096x2160", quality=80)
    assert _record(database, job, _claim()) == renders.ClaimDecision(renders.ClaimVerdict.RUN)
    row = _row(database)
    assert (row.status, row.stage, row.progress, row.message) == ("claimed", "claimed", 5, "Job picked up")
    assert row.payload == job.model_dump(mode="json")
    assert parse_job(row.payload) == job
    assert row.credit_cost == 5  # above 2048x2048 (1 + 1 + 2) and quality above 75 (+1)
    assert (row.organization_id, row.project_id, row.user_id) == ("org-test", job.projectId, job.userId)
    assert (row.bull_job_id, row.claim_attempt, row.max_attempts) == ("job-1", 0, 3)
    assert (row.claim_token, row.run_key) == ("token-job-1-0", "job-1:0")
    assert row.created_at is not None and row.completed_at is None and row.error is None


@pytest.mark.parametrize("status", [RenderStatus.CLAIMED, RenderStatus.PROCESSING, RenderStatus.RETRYING])
def test_same_job_new_attempt_reclaims(database: Database, status: str) -> None:
    _record(database, _job(), _claim(attempt=0))
    _set_status(database, status)
    decision = _record(database, _job(), _claim(attempt=1))
    assert decision.verdict == renders.ClaimVerdict.RUN
    row = _row(database)
    assert (row.status, row.progress, row.error) == ("claimed", 5, None)
    assert (row.claim_attempt, row.claim_token, row.run_key) == (1, "token-job-1-1", "job-1:1")


@pytest.mark.parametrize("status", [RenderStatus.CLAIMED, RenderStatus.PROCESSING, RenderStatus.RETRYING])
def test_another_job_for_an_in_flight_render_is_refused(database: Database, status: str) -> None:
    _record(database, _job(), _claim("job-1"))
    _set_status(database, status)
    before = _row(database)
    decision = _record(database, _job(quality=99), _claim("job-2"))
    assert decision.verdict == renders.ClaimVerdict.REFUSED
    assert decision.reason == "render render-1 is already being processed by job job-1"
    row = _row(database)
    assert (row.bull_job_id, row.status, row.claim_token, row.run_key) == (
        "job-1",
        status,
        before.claim_token,
        "job-1:0",
    )
    assert row.payload["settings"]["quality"] == 60


def test_completed_render_is_already_delivered(database: Database) -> None:
    _record(database, _job(), _claim("job-1"))
    _set_status(database, RenderStatus.COMPLETED)
    for claim in (_claim("job-1", attempt=1), _claim("job-2")):
        decision = _record(database, _job(), claim)
        assert decision.verdict == renders.ClaimVerdict.ALREADY_DELIVERED
        assert decision.result == RESULT
    row = _row(database)
    assert (row.status, row.progress, row.bull_job_id) == ("completed", 100, "job-1")


def test_failed_render_refuses_another_job(database: Database) -> None:
    _record(database, _job(), _claim("job-1"))
    _set_status(database, RenderStatus.FAILED)
    decision = _record(database, _job(), _claim("job-2"))
    assert decision.verdict == renders.ClaimVerdict.REFUSED
    assert "render render-1 already failed" in decision.reason
    assert "new renderId" in decision.reason
    assert _row(database).status == "failed"


def test_progress_never_moves_backwards(database: Database) -> None:
    _record(database, _job(), _claim())
    with database.session() as session:
        assert renders.record_progress(session, "render-1", progress_for(Stage.GENERATED)) == progress_for(
            Stage.GENERATED
        )
    with database.session() as session:  # a retried attempt charges again: the stage moves, the bar holds
        recorded = renders.record_progress(session, "render-1", progress_for(Stage.CHARGED))
    assert recorded is not None and (recorded.percent, recorded.stage) == (70, "charged")
    row = _row(database)
    assert (row.progress, row.stage, row.message) == (70, "charged", "Credits reserved")
    with database.session() as session:
        renders.record_progress(session, "render-1", progress_for(Stage.UPLOADED))
    assert (_row(database).progress, _row(database).stage) == (95, "uploaded")
    _record(database, _job(), _claim(attempt=1))  # BullMQ's next attempt resumes the bar too
    assert _row(database).progress == 95


def test_progress_of_an_unknown_render_moves_nothing(database: Database) -> None:
    with database.session() as session:
        assert renders.record_progress(session, "render-nobody", progress_for(Stage.CHARGED)) is None


def test_pending_claims_lists_only_claimed_rows(database: Database) -> None:
    statuses = {
        "r-claimed-a": RenderStatus.CLAIMED,
        "r-claimed-b": RenderStatus.CLAIMED,
        "r-processing": RenderStatus.PROCESSING,
        "r-retrying": RenderStatus.RETRYING,
        "r-failed": RenderStatus.FAILED,
        "r-completed": RenderStatus.COMPLETED,
    }
    for render_id, status in statuses.items():
        _record(database, _job(render_id), _claim(f"job-{render_id}"))
        _set_status(database, status, render_id)
    with database.session() as session:
        assert sorted(row.id for row in renders.pending_claims(session, "blue")) == ["r-claimed-a", "r-claimed-b"]


def test_a_deployment_sees_its_own_claims_and_those_made_before_claims_named_one(database: Database) -> None:
    claimed_by = {"r-blue": "blue", "r-green": "green", "r-legacy": None}
    for render_id, deployment in claimed_by.items():
        _record(database, _job(render_id), _claim(f"job-{render_id}", deployment=deployment))
    _set_status(database, RenderStatus.PROCESSING, "r-green")
    with database.session() as session:
        assert renders.require(session, "r-green").claimed_by == "green"
        assert sorted(row.id for row in renders.pending_claims(session, "blue")) == ["r-blue", "r-legacy"]
        assert sorted(row.id for row in renders.pending_claims(session, "green")) == ["r-legacy"]
        assert sorted(row.id for row in renders.in_flight(session, "green")) == ["r-green", "r-legacy"]
        assert sorted(row.id for row in renders.in_flight(session, "blue")) == ["r-blue", "r-legacy"]


def test_a_new_claim_of_the_job_moves_it_to_the_claiming_deployment(database: Database) -> None:
    _record(database, _job(), _claim("job-1", deployment="blue"))
    # BullMQ handed the job out again (blue's lock expired) and green claimed it.
    assert _record(database, _job(), _claim("job-1", deployment="green")).verdict is renders.ClaimVerdict.RUN
    with database.session() as session:
        assert renders.pending_claims(session, "blue") == []
        assert [row.claimed_by for row in renders.pending_claims(session, "green")] == ["green"]


def test_mark_failed_not_final_is_retrying(database: Database) -> None:
    _record(database, _job(), _claim())
    with database.session() as session:
        renders.mark_processing(session, "render-1")
        renders.record_progress(session, "render-1", progress_for(Stage.GENERATING))
    with database.session() as session:
        renders.mark_failed(session, "render-1", reason="provider timed out", final=False)
    row = _row(database)
    assert (row.status, row.stage, row.error) == ("retrying", "retrying", "provider timed out")  # failed means for good
    assert row.message == "Attempt failed; retrying"
    assert row.progress == 30  # kept, so the bar does not jump back
    # The claim is kept until settlement has told BullMQ; then it is released.
    assert row.claim_token == "token-job-1-0" and row.completed_at is None
    assert row.started_at is not None
    with database.session() as session:
        assert [render.id for render in renders.unannounced(session)] == ["render-1"]
        renders.release_claim(session, "render-1", "token-job-1-0")
    assert _row(database).claim_token is None


def test_mark_failed_final_is_failed_with_completed_at(database: Database) -> None:
    _record(database, _job(), _claim())
    with database.session() as session:
        renders.mark_failed(session, "render-1", reason="content policy", final=True)
    row = _row(database)
    assert (row.status, row.error, row.message) == ("failed", "content policy", "Render failed")
    assert row.completed_at is not None and row.claim_token == "token-job-1-0"
    with database.session() as session:
        renders.release_claim(session, "render-1", "another token")  # only the claim's own token releases it
    assert _row(database).claim_token == "token-job-1-0"


def test_unknown_render_cannot_be_marked(database: Database) -> None:
    with pytest.raises(LookupError, match="render-nobody"), database.session() as session:
        renders.mark_failed(session, "render-nobody", reason="x", final=True)
    with database.session() as session:
        assert renders.get(session, "render-nobody") is None


@pytest.mark.parametrize(("attempt", "last"), [(0, False), (1, False), (2, True)])
def test_is_last_attempt(database: Database, attempt: int, last: bool) -> None:
    _record(database, _job(), _claim(attempt=attempt))
    assert renders.is_last_attempt(_row(database)) is last
