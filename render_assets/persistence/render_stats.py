"""Read-only figures over the `renders` table for reports: `render-assets stats` and the
failure-pattern monitor. Counts are grouped in the database: one row per status, not per render."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from render_assets.persistence.models import Render, RenderStatus


class Completion(NamedTuple):
    created_at: datetime | None  # the render's first claim
    completed_at: datetime | None


@dataclass(frozen=True)
class Waiting:
    count: int
    earliest_until: datetime | None  # when the first of them may be tried again


def ended_by_status(session: Session, since: datetime, until: datetime) -> Counter[str]:
    """Renders that ended (completed, failed, cancelled) in the window, counted by status."""
    rows = session.execute(
        select(Render.status, func.count())
        .where(Render.completed_at >= since, Render.completed_at <= until)
        .where(Render.status.in_(RenderStatus.ENDED))
        .group_by(Render.status)
    ).all()
    return Counter(dict(rows))


def in_flight_by_status(session: Session, since: datetime, until: datetime) -> Counter[str]:
    """Renders in flight whose row last changed in the window, counted by status."""
    rows = session.execute(
        select(Render.status, func.count())
        .where(Render.updated_at >= since, Render.updated_at <= until)
        .where(Render.status.in_(RenderStatus.IN_FLIGHT))
        .group_by(Render.status)
    ).all()
    return Counter(dict(rows))


def waiting(session: Session) -> Waiting:
    """Renders back in BullMQ until a provider may be tried again, now (whatever the window)."""
    count, earliest = session.execute(
        select(func.count(), func.min(Render.waiting_until)).where(Render.status == RenderStatus.WAITING)
    ).one()
    return Waiting(int(count), earliest)


def completions(session: Session, since: datetime, until: datetime) -> list[Completion]:
    """When each render delivered in the window was first claimed and when it completed."""
    rows = session.execute(
        select(Render.created_at, Render.completed_at).where(
            Render.status == RenderStatus.COMPLETED, Render.completed_at >= since, Render.completed_at <= until
        )
    )
    return [Completion(created_at, completed_at) for created_at, completed_at in rows]
