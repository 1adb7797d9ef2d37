"""`render-assets stats`: outcomes, latency percentiles, provider error rates and credits of a period."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from render_assets.cli import main
from render_assets.persistence import failure_records, ledger, stage_timings
from render_assets.persistence.database import Database
from render_assets.persistence.failure_records import FailedAttempt
from render_assets.persistence.models import CreditTransaction, Render, RenderStatus, utcnow
from render_assets.persistence.stage_timings import StepTry
from render_assets.services.stats import parse_since, percentile


def render(session: Session, render_id: str, status: str, *, created: datetime, done: datetime | None) -> None:
    session.add(
        Render(
            id=render_id,
            organization_id="org-stats",
            project_id="p",
            user_id="u",
            status=status,
            stage=status,
            progress=100 if status == RenderStatus.COMPLETED else 30,
            payload={},
            credit_cost=1,
            created_at=created,
            updated_at=done or created,
            completed_at=done,
        )
    )


def failed(session: Session, n: int, failure_class: str, provider: str | None, at: datetime) -> None:
    failure_records.record(
        session,
        FailedAttempt(f"f-{n}", f"run-f-{n}", "raw_render", 1, failure_class, provider, True, "x"),
        at=at,
    )


def populate(database: Database, now: datetime) -> None:
    recent, old = now - timedelta(minutes=30), now - timedelta(hours=3)
    with database.session() as session:
        render(session, "done-1", RenderStatus.COMPLETED, created=recent - timedelta(seconds=60), done=recent)
        render(session, "done-2", RenderStatus.COMPLETED, created=recent - timedelta(seconds=20), done=recent)
        render(session, "done-old", RenderStatus.COMPLETED, created=old - timedelta(seconds=5), done=old)
        render(session, "failed-1", RenderStatus.FAILED, created=recent, done=recent)
        render(session, "retrying-1", RenderStatus.RETRYING, created=recent, done=None)
        for n, seconds in enumerate((0.1, 0.2, 0.3)):
            stage_timings.record(session, StepTry(f"r{n}", f"run{n}", "render_prompt", "success", seconds), at=recent)
        for n, seconds in enumerate((1.0, 2.0, 3.0)):
            step = StepTry(f"r{n}", f"run{n}", "raw_render", "success", seconds, provider="local")
            stage_timings.record(session, step, at=recent)
        stage_timings.record(session, StepTry("r9", "run9", "raw_render", "failure", 9.0), at=recent)
        stage_timings.record(
            session, StepTry("old", "run-old", "raw_render", "success", 50.0, provider="local"), at=old
        )
        failed(session, 1, "provider_timeout", "google", recent)
        failed(session, 2, "provider_rate_limit", "google,openai", recent)
        failed(session, 3, "quality_rejected", "local", recent)
        failed(session, 4, "provider_timeout", "google", old)
    with database.session() as session:
        ledger.charge(session, render_id="done-1", organization_id="org-stats", cost=4, initial_credits=10)
        ledger.charge(session, render_id="failed-1", organization_id="org-stats", cost=2, initial_credits=10)
        ledger.refund(session, render_id="failed-1", reason="failed")
        for row in session.query(CreditTransaction):
            row.created_at = recent


def test_the_last_hour_by_default(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    database = Database(database_url)
    populate(database, utcnow())
    database.dispose()

    assert main(["stats", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)

    assert stats["renders"] == {
        "completed": 2,
        "failed": 1,
        "cancelled": 0,
        "retrying": 1,
        "in_flight": 0,
        "waiting_for_provider": 0,
        "next_provider_try": None,
    }
    assert stats["failed_attempts"] == {"provider_timeout": 1, "provider_rate_limit": 1, "quality_rejected": 1}
    latency = stats["latency_s"]
    assert latency["render_prompt"] == {"count": 3, "p50": 0.2, "p95": 0.29, "failed_tries": 0}
    assert latency["raw_render"] == {"count": 3, "p50": 2.0, "p95": 2.9, "failed_tries": 1}
    assert latency["end_to_end"] == {"count": 2, "p50": 40.0, "p95": 58.0}
    assert stats["providers"] == {
        "google": {
            "delivered": 0,
            "errors": 2,
            "error_rate": 1.0,
            "errors_by_class": {"provider_timeout": 1, "provider_rate_limit": 1},
        },
        "local": {"delivered": 3, "errors": 0, "error_rate": 0.0, "errors_by_class": {}},
        "openai": {"delivered": 0, "errors": 1, "error_rate": 1.0, "errors_by_class": {"provider_rate_limit": 1}},
    }
    assert stats["credits"] == {"charged": 6, "refunded": 2, "net": 4, "charges": 2, "refunds": 1}


def test_since_takes_a_duration_or_an_iso_time(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    database = Database(sqlite_url)
    now = utcnow()
    populate(database, now)
    database.dispose()

    assert main(["stats", "--json", "--since", "4h"]) == 0
    four_hours = json.loads(capsys.readouterr().out)
    assert four_hours["renders"]["completed"] == 3
    assert four_hours["latency_s"]["raw_render"]["count"] == 4

    since = (now - timedelta(hours=2)).replace(tzinfo=None).isoformat()  # no zone: UTC
    assert main(["stats", "--json", "--since", since]) == 0
    assert json.loads(capsys.readouterr().out)["renders"]["completed"] == 2

    assert main(["stats", "--since", "2h"]) == 0
    text = capsys.readouterr().out
    assert "renders: completed 2, failed 1" in text and "provider google: delivered 0, errors 2" in text


def test_a_bad_since_is_named(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    assert main(["stats", "--since", "yesterday"]) == 2
    assert "--since must be a duration such as 90m, 2h or 1d" in capsys.readouterr().err
    now = datetime(2026, 11, 29, 12, tzinfo=UTC)
    with pytest.raises(ValueError, match="in the future"):
        parse_since("2026-12-01T00:00:00Z", now)
    assert parse_since("90m", now) == now - timedelta(minutes=90)
    assert parse_since("1.5d", now) == now - timedelta(hours=36)
    assert parse_since("2026-11-29T10:00:00+02:00", now) == datetime(2026, 11, 29, 8, tzinfo=UTC)


def test_percentiles_interpolate_between_ranks() -> None:
    assert percentile([], 50) is None
    assert percentile([5.0], 95) == 5.0
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert percentile(list(map(float, range(1, 101))), 95) == pytest.approx(95.05)
