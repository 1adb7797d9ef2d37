"""Cancel requests (`render_cancellations`): one per render, kept as a tombstone, so a request
that arrives before the render's job was claimed still drops the job when it is."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from render_assets.persistence.models import Render, RenderCancellation, RenderStatus, utcnow


def request(session: Session, render_id: str, source: str) -> bool:
    """Record a request to cancel; True when it is the first for the render."""
    if session.get(RenderCancellation, render_id) is not None:
        return False
    session.add(RenderCancellation(render_id=render_id, source=source, requested_at=utcnow()))
    session.flush()
    return True


def requested(session: Session, render_id: str) -> bool:
    return session.get(RenderCancellation, render_id) is not None


def since(session: Session, moment: datetime) -> list[str]:
    """Renders cancelled since `moment` (whose runs may still be queued or running)."""
    rows = session.execute(
        select(RenderCancellation.render_id)
        .join(Render, Render.id == RenderCancellation.render_id)
        .where(RenderCancellation.requested_at >= moment, Render.status == RenderStatus.CANCELLED)
    )
    return list(rows.scalars())


def uncleaned(session: Session, limit: int = 100) -> list[Render]:
    """Cancelled renders whose stored objects have not been removed yet."""
    return list(
        session.execute(
            select(Render)
            .join(RenderCancellation, RenderCancellation.render_id == Render.id)
            .where(Render.status == RenderStatus.CANCELLED, RenderCancellation.cleaned_at.is_(None))
            .limit(limit)
        ).scalars()
    )


def mark_cleaned(session: Session, render_id: str) -> None:
    found = session.get(RenderCancellation, render_id)
    if found is not None:
        found.cleaned_at = utcnow()
