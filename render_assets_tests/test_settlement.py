"""settle(): idempotent, concurrent-safe settlement against real Redis (BullMQ) and both databases."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from render_assets.adapters.bullmq_queue import BullQueue
from render_assets.persistence import ledger, renders
from render_assets.persistence.database import Database
from render_assets.persistence.models import CreditTransaction, RenderStatus, UsageRecord
from render_assets.services.audit import audit
from render_assets.services.backends import Backends
from render_assets.services.settlement import AttemptFailure, settle
from render_assets_tests.claimed_renders import claimed_render, kinds, status
from render_assets_tests.conftest import REDIS_URL


def test_a_failed_attempt_with_attempts_left_goes_back_to_bullmq_without_refund(
    database: Database, bull: BullQueue
) -> None:
    render_id, run_key, job_id = claimed_render(database, bull)

    settled = settle(Backends(database=database, queue=bull), render_id, failure=AttemptFailure(run_key, "boom"))

    assert (settled.status, settled.bullmq, settled.refunded) == (RenderStatus.RETRYING, "retrying", 0)
    assert bull.state(job_id) == "delayed"
    assert kinds(database, render_id) == ["charge"]


def test_the_last_attempt_refunds_once_however_often_it_is_settled(database: Database, bull: BullQueue) -> None:
    render_id, run_key, job_id = claimed_render(database, bull, attempts=1)
    backends = Backends(database=database, queue=bull)

    first = settle(backends, render_id, failure=AttemptFailure(run_key, "provider exploded"))
    again = [settle(backends, render_id, failure=AttemptFailure(run_key, "again")) for _ in range(3)]

    assert (first.status, first.bullmq, first.refunded) == (RenderStatus.FAILED, "failed", 1)
    assert all((s.recorded_failure, s.refunded, s.bullmq) == (False, 0, None) for s in again)
    assert bull.state(job_id) == "failed"
    assert kinds(database, render_id) == ["charge", "refund"]
    with database.session() as session:
        assert renders.require(session, render_id).error == "provider exploded"
        assert audit(session) == []


def test_a_permanent_failure_is_final_although_attempts_remain(database: Database, bull: BullQueue) -> None:
    render_id, run_key, job_id = claimed_render(database, bull)
    failure = AttemptFailure(run_key, "invalid request", permanent=True)

    assert settle(Backends(database=database, queue=bull), render_id, failure=failure).bullmq == "failed"
    assert bull.state(job_id) == "failed"
    assert kinds(database, render_id) == ["charge", "refund"]


def test_a_stale_run_or_an_operator_run_changes_nothing(database: Database, bull: BullQueue) -> None:
    render_id, _run_key, job_id = claimed_render(database, bull)
    backends = Backends(database=database, queue=bull)

    for stale_key in ("someone-else:1:0", None):
        settled = settle(backends, render_id, failure=AttemptFailure(stale_key, "old news"))
        assert (settled.recorded_failure, settled.bullmq) == (False, None)
    assert status(database, render_id) == RenderStatus.PROCESSING
    assert bull.state(job_id) == "active"


def test_settling_fails_the_job_even_after_its_lock_lapsed(database: Database, queue_name: str) -> None:
    short_lock = BullQueue(REDIS_URL, queue_name, lock_duration_ms=200)
    render_id, run_key, job_id = claimed_render(database, short_lock, attempts=1)
    time.sleep(0.4)  # the run died: nobody renewed the lock

    settled = settle(
        Backends(database=database, queue=short_lock),
        render_id,
        failure=AttemptFailure(run_key, "run died"),
    )

    assert settled.bullmq == "failed"
    assert short_lock.state(job_id) == "failed"


def test_a_delivery_that_crashed_before_telling_bullmq_is_completed_with_its_result(
    database: Database, bull: BullQueue
) -> None:
    render_id, _run_key, job_id = claimed_render(database, bull)
    result = {"renderId": render_id, "imageUrl": "https://cdn.example/x.png"}
    with database.session() as session:
        token = renders.require(session, render_id).claim_token
        renders.mark_completed(
            session, render_id, claim_token=token, result=result, image_url="u", thumbnail_url="t", prompt_hash="h"
        )
    # ...the process dies here; the reconciler later finds the claim unannounced.
    with database.session() as session:
        assert [row.id for row in renders.unannounced(session)] == [render_id]

    settled = settle(Backends(database=database, queue=bull), render_id)

    assert settled.bullmq == "completed"
    assert bull.state(job_id) == "completed"
    assert settle(Backends(database=database, queue=bull), render_id).bullmq is None
    with database.session() as session, pytest.raises(renders.StaleClaim):  # the claim is spent
        renders.mark_completed(
            session, render_id, claim_token=token, result=result, image_url="u", thumbnail_url="t", prompt_hash="h"
        )
    with database.session() as session:
        assert renders.unannounced(session) == []
        assert session.query(UsageRecord).filter_by(render_id=render_id).count() == 1
        assert audit(session) == []


def test_fifty_concurrent_settlements_refund_once(postgres_url: str, bull: BullQueue) -> None:
    database = Database(postgres_url)
    render_id, run_key, job_id = claimed_render(database, bull, attempts=1)
    backends = Backends(database=database, queue=bull)

    def settle_once(_: int) -> int:
        return settle(backends, render_id, failure=AttemptFailure(run_key, "lost")).refunded

    with ThreadPoolExecutor(max_workers=50) as pool:
        refunded = list(pool.map(settle_once, range(50)))

    assert sorted(refunded) == [0] * 49 + [1]
    assert kinds(database, render_id) == ["charge", "refund"]
    assert bull.state(job_id) == "failed"
    database.dispose()


@pytest.mark.parametrize("delivered_via", ["bullmq", "operator"])
def test_the_audit_flags_a_customer_delivery_that_was_refunded(
    database: Database, bull: BullQueue, delivered_via: str
) -> None:
    render_id, run_key, _job_id = claimed_render(database, bull, attempts=1)
    settle(Backends(database=database, queue=bull), render_id, failure=AttemptFailure(run_key, "x"))
    with database.session() as session:
        assert audit(session) == []
        row = renders.require(session, render_id)
        row.status, row.delivered_via = RenderStatus.COMPLETED, delivered_via  # delivered after the refund
    with database.session() as session:
        problems = [mismatch.problem for mismatch in audit(session)]
    if delivered_via == "bullmq":
        assert problems == ["delivered to the customer but charged 0 instead of 1"]
    else:
        assert problems == []  # an operator's re-render is free


def test_the_audit_command_lists_mismatches_and_exits_1(
    database: Database, bull: BullQueue, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from render_assets.cli import main

    failed_id, _run_key, _job_id = claimed_render(database, bull, attempts=1)
    with database.session() as session:
        renders.mark_failed(session, failed_id, reason="crashed before the refund", final=True)
        ledger.ensure_organization(session, "org-other", 5)
        session.add(  # a refund nobody charged for
            CreditTransaction(
                organization_id="org-other",
                render_id="ghost",
                kind="refund",
                amount=2,
                balance_after=7,
                idempotency_key="refund:ghost",
            )
        )
    monkeypatch.setenv("DATABASE_URL", database.url)

    assert main(["credits", "audit", "--json"]) == 1
    found = {row["render_id"]: row["problem"] for row in json.loads(capsys.readouterr().out)["mismatches"]}
    assert found == {failed_id: "not delivered to the customer but charged 1", "ghost": "refund without a charge"}

    settle(Backends(database=database, queue=bull), failed_id)  # the reconciler's catch-up refunds it
    with database.session() as session:
        session.query(CreditTransaction).filter_by(render_id="ghost").delete()
    assert main(["credits", "audit"]) == 0
    assert "0 mismatch(es)" in capsys.readouterr().out
