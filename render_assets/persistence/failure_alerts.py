"""The `failure_alerts` table: one row per episode of a failure pattern, firing then cleared."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from render_assets.persistence.database import Database
from render_assets.persistence.models import FailureAlert

FIRING = "firing"
CLEARED = "cleared"


def firing(session: Session) -> dict[str, FailureAlert]:
    rows = session.execute(select(FailureAlert).where(FailureAlert.state == FIRING)).scalars()
    return {row.pattern: row for row in rows}


def fire(session: Session, *, pattern: str, severity: str, details: dict[str, Any], at: datetime) -> FailureAlert:
    """A new firing episode; the unique index refuses a second one for the same pattern."""
    alert = FailureAlert(pattern=pattern, severity=severity, state=FIRING, details=details, fired_at=at)
    session.add(alert)
    session.flush()
    return alert


def fire_once(database: Database, *, pattern: str, severity: str, details: dict[str, Any], at: datetime) -> int | None:
    """Fire in a transaction of its own, committed before anyone is told: the new alert's id, or
    None when another evaluation fired the pattern first. It owns the transaction because the
    unique index may refuse the second episode at flush or at commit: either means "taken"."""
    try:
        with database.session() as session:
            return fire(session, pattern=pattern, severity=severity, details=details, at=at).id
    except IntegrityError:
        return None


def clear(session: Session, alert_id: int, *, details: dict[str, Any], at: datetime) -> FailureAlert | None:
    """End a firing episode; None when it is no longer firing (another evaluation cleared it)."""
    alert = session.execute(
        select(FailureAlert).where(FailureAlert.id == alert_id, FailureAlert.state == FIRING).with_for_update()
    ).scalar_one_or_none()
    if alert is None:
        return None
    alert.state = CLEARED
    alert.cleared_at = at
    alert.details = {**alert.details, "at_clear": details}
    return alert


def history(session: Session, limit: int = 50) -> list[FailureAlert]:
    return list(session.execute(select(FailureAlert).order_by(FailureAlert.id.desc()).limit(limit)).scalars())
