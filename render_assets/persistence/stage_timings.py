"""The `render_stage_timings` table: how long each try of each step took, and what it reported."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from render_assets.persistence.models import StageTiming, utcnow

SUCCESS = "success"
FAILURE = "failure"


@dataclass(frozen=True)
class StepTry:
    render_id: str
    run_id: str
    stage: str
    outcome: str  # SUCCESS | FAILURE
    duration_s: float
    provider: str | None = None
    qa_score: float | None = None


def record(session: Session, step: StepTry, *, at: datetime | None = None) -> None:
    session.add(
        StageTiming(
            render_id=step.render_id,
            run_id=step.run_id,
            stage=step.stage,
            outcome=step.outcome,
            duration_s=step.duration_s,
            provider=step.provider,
            qa_score=step.qa_score,
            finished_at=at or utcnow(),
        )
    )


def provider_of_run(session: Session, run_id: str, stage: str) -> str | None:
    """The provider a run's successful `stage` step reported (the one that made its image)."""
    return session.execute(
        select(StageTiming.provider)
        .where(StageTiming.run_id == run_id, StageTiming.stage == stage, StageTiming.outcome == SUCCESS)
        .order_by(StageTiming.id.desc())
        .limit(1)
    ).scalar_one_or_none()


def between(session: Session, since: datetime, until: datetime) -> list[tuple[str, str, float, str | None]]:
    """(stage, outcome, duration_s, provider) of the step tries in a window: columns, not rows, for speed."""
    rows = session.execute(
        select(StageTiming.stage, StageTiming.outcome, StageTiming.duration_s, StageTiming.provider).where(
            StageTiming.finished_at >= since, StageTiming.finished_at <= until
        )
    )
    return [(stage, outcome, duration_s, provider) for stage, outcome, duration_s, provider in rows]
