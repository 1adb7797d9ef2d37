"""The webhook outbox (`webhook_deliveries`): an event for the web app is written in the same
transaction as the change it reports, then POSTed until the receiver takes it or the attempts run
out. Each attempt is leased first (a conditional update), so the run that delivered a re-render
and the retry sensor never POST one event at the same time."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from render_assets.persistence.models import WebhookDelivery


def enqueue(session: Session, *, key: str, event: str, render_id: str, body: dict[str, Any], now: datetime) -> bool:
    """Add an event, once per key; returns whether it is new."""
    if session.execute(select(WebhookDelivery.id).where(WebhookDelivery.idempotency_key == key)).first():
        return False
    session.add(
        WebhookDelivery(
            idempotency_key=key, event=event, render_id=render_id, body=body, attempts=0, next_attempt_at=now
        )
    )
    session.flush()
    return True


def due(session: Session, now: datetime, *, render_id: str | None = None, limit: int = 50) -> list[int]:
    """Ids of undelivered events whose next attempt is due, oldest first."""
    query = select(WebhookDelivery.id).where(
        WebhookDelivery.delivered_at.is_(None),
        WebhookDelivery.next_attempt_at.is_not(None),
        WebhookDelivery.next_attempt_at <= now,
    )
    if render_id is not None:
        query = query.where(WebhookDelivery.render_id == render_id)
    return list(session.execute(query.order_by(WebhookDelivery.id).limit(limit)).scalars())


def lease(session: Session, delivery_id: int, now: datetime, hold: timedelta) -> WebhookDelivery | None:
    """Take the next attempt of an event that is due: None when someone else took it or it is done."""
    taken = session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.delivered_at.is_(None),
            WebhookDelivery.next_attempt_at <= now,
        )
        .values(next_attempt_at=now + hold, attempts=WebhookDelivery.attempts + 1)
    )
    if taken.rowcount != 1:  # type: ignore[attr-defined]
        return None
    return session.get(WebhookDelivery, delivery_id)


def delivered(session: Session, delivery_id: int, now: datetime) -> None:
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id)
        .values(delivered_at=now, next_attempt_at=None, last_error=None)
    )


def failed(session: Session, delivery_id: int, error: str, retry_at: datetime | None) -> None:
    """Record a failed attempt; `retry_at` None: no attempt is left."""
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id)
        .values(next_attempt_at=retry_at, last_error=error[:500])
    )
