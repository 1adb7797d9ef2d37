"""QA scores of recent renders, for the quality-degradation pattern.

The QA score's home is still settling (another change adds it), so this reads it defensively from
every place it can be: the `qa_score` a QA step reported (recorded with its timing, from the
verdict's `score` or its `qa_score`/`score` metadata), the `qa_score` of a failed QA attempt
(from the failure's metadata), and, for delivered renders without either, a score inside
`renders.result` (`metadata.quality.score`, `metadata.quality`, `metadata.qaScore`, `qaScore`,
`quality.score`) or a `renders.qa_score` column should one appear. Scores outside 0..1 are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from render_assets.persistence.models import Render, RenderFailure, RenderStatus, StageTiming, utcnow

RESULT_SCORE_PATHS: tuple[tuple[str, ...], ...] = (
    ("metadata", "quality", "score"),
    ("metadata", "quality"),
    ("metadata", "qaScore"),
    ("qaScore",),
    ("quality", "score"),
)


@dataclass(frozen=True)
class ScoredCheck:
    render_id: str
    at: datetime
    score: float


def as_score(value: Any) -> float | None:
    """A QA score in 0..1, or None for anything else (booleans and out-of-range numbers included)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    score = float(value)
    return score if 0.0 <= score <= 1.0 else None


def score_in_result(result: Mapping[str, Any] | None) -> float | None:
    for path in RESULT_SCORE_PATHS:
        node: Any = result
        for key in path:
            node = node.get(key) if isinstance(node, Mapping) else None
        if (score := as_score(node)) is not None:
            return score
    return None


def recent_quality_scores(session: Session, since: datetime, until: datetime | None = None) -> list[ScoredCheck]:
    """Every QA score recorded between `since` and `until` (default now), oldest first."""
    until = until or utcnow()
    checks = [
        ScoredCheck(render_id, at, score)
        for render_id, at, score in session.execute(
            select(StageTiming.render_id, StageTiming.finished_at, StageTiming.qa_score).where(
                StageTiming.qa_score.is_not(None), StageTiming.finished_at >= since, StageTiming.finished_at <= until
            )
        )
        if score is not None
    ]
    checks += [
        ScoredCheck(render_id, at, score)
        for render_id, at, score in session.execute(
            select(RenderFailure.render_id, RenderFailure.occurred_at, RenderFailure.qa_score).where(
                RenderFailure.qa_score.is_not(None),
                RenderFailure.occurred_at >= since,
                RenderFailure.occurred_at <= until,
            )
        )
        if score is not None
    ]
    checks += _scores_of_delivered(session, since, until, already={check.render_id for check in checks})
    return sorted(checks, key=lambda check: check.at)


def _scores_of_delivered(
    session: Session, since: datetime, until: datetime, already: set[str]
) -> Sequence[ScoredCheck]:
    column = getattr(Render, "qa_score", None)
    rows = session.execute(
        select(Render.id, Render.completed_at, Render.result, *([column] if column is not None else [])).where(
            Render.status == RenderStatus.COMPLETED, Render.completed_at >= since, Render.completed_at <= until
        )
    )
    found = []
    for row in rows:
        if row[0] in already or row[1] is None:
            continue
        score = as_score(row[3]) if column is not None else None
        if score is None:
            score = score_in_result(row[2])
        if score is not None:
            found.append(ScoredCheck(row[0], row[1], score))
    return found
