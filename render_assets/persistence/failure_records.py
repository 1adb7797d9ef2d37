"""The `render_failures` table: one row per failed attempt, with its failure class."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from render_assets.persistence.models import RenderFailure, utcnow


@dataclass(frozen=True)
class FailedAttempt:
    render_id: str
    run_id: str
    stage: str
    attempt: int | None
    failure_class: str
    provider: str | None
    final: bool
    reason: str
    qa_score: float | None = None


def record(session: Session, failure: FailedAttempt, *, at: datetime | None = None) -> bool:
    """Store a failed attempt once per (run, step); False when it was already stored."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = (
        insert(RenderFailure)
        .values(
            render_id=failure.render_id,
            run_id=failure.run_id,
            stage=failure.stage,
            attempt=failure.attempt,
            failure_class=failure.failure_class,
            provider=failure.provider,
            final=failure.final,
            reason=failure.reason,
            qa_score=failure.qa_score,
            occurred_at=at or utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["run_id", "stage"])
    )
    return bool(getattr(session.execute(statement), "rowcount", 0))


def classes_between(session: Session, since: datetime, until: datetime) -> list[tuple[datetime, str, str | None]]:
    """(occurred_at, failure_class, provider) of the failures in a window: columns, not rows, for speed."""
    rows = session.execute(
        select(RenderFailure.occurred_at, RenderFailure.failure_class, RenderFailure.provider).where(
            RenderFailure.occurred_at >= since, RenderFailure.occurred_at <= until
        )
    )
    return [(at, failure_class, provider) for at, failure_class, provider in rows]


def between(session: Session, since: datetime, until: datetime) -> list[RenderFailure]:
    return list(
        session.execute(
            select(RenderFailure)
            .where(RenderFailure.occurred_at >= since, RenderFailure.occurred_at <= until)
            .order_by(RenderFailure.occurred_at)
        ).scalars()
    )
