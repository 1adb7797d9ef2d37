"""Telling the web app's webhook (`RENDER_WEBHOOK_URL`) about a re-render, signed and retried.

Each event is an outbox row written with the version it reports; the delivering run makes one
attempt right away and `webhook_sensor` retries with backoff, so a slow or absent receiver never
fails (or holds up) a run. The body is JSON `{event, deliveryId, renderId, version, result}`;
headers carry the event, the delivery id (the same on every retry, for the receiver to drop
repeats) and `X-Render-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from render_assets.adapters.json_webhook import JsonWebhook, WebhookError
from render_assets.persistence import webhook_outbox
from render_assets.persistence.database import Database, Session
from render_assets.persistence.models import utcnow

log = logging.getLogger(__name__)

RERENDERED = "render.rerendered"
SIGNATURE_HEADER = "X-Render-Signature"
EVENT_HEADER = "X-Render-Event"
DELIVERY_HEADER = "X-Render-Delivery"
MAX_ATTEMPTS = 10
FIRST_RETRY_S = 10.0
LONGEST_RETRY_S = 3600.0  # 10 attempts over about 6 hours


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value for a body sent at `timestamp` (Unix seconds)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def retry_delay(attempts: int) -> timedelta:
    """The pause after the `attempts`-th failed attempt: 10 s, 30 s, 90 s, … at most an hour."""
    return timedelta(seconds=min(FIRST_RETRY_S * 3 ** (attempts - 1), LONGEST_RETRY_S))


@dataclass(frozen=True)
class Sent:
    delivered: int = 0
    failed: int = 0
    gave_up: int = 0


class RenderWebhooks:
    def __init__(
        self,
        database: Database,
        webhook: JsonWebhook,
        secret: str,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not secret:
            raise ValueError(
                "RENDER_WEBHOOK_SECRET must be set with RENDER_WEBHOOK_URL: the web app checks the signature"
            )
        self.database = database
        self.webhook = webhook
        self._secret = secret
        self._clock = clock

    def enqueue_rerendered(self, session: Session, render_id: str, version: int, result: dict[str, Any]) -> None:
        """In the transaction that records the version: the event the web app must get."""
        key = f"{RERENDERED}:{render_id}:{version}"
        body = {"event": RERENDERED, "deliveryId": key, "renderId": render_id, "version": version, "result": result}
        webhook_outbox.enqueue(session, key=key, event=RERENDERED, render_id=render_id, body=body, now=utcnow())

    def send_due(self, *, render_id: str | None = None, limit: int = 50) -> Sent:
        """One attempt at every event that is due (of one render, or all); never raises for the
        receiver's sake: a failure schedules the next attempt."""
        now = utcnow()
        with self.database.session() as session:
            ids = webhook_outbox.due(session, now, render_id=render_id, limit=limit)
        delivered = failed = gave_up = 0
        for delivery_id in ids:
            outcome = self._attempt(delivery_id)
            delivered += outcome == "delivered"
            failed += outcome == "failed"
            gave_up += outcome == "gave_up"
        return Sent(delivered, failed, gave_up)

    def _attempt(self, delivery_id: int) -> str | None:
        now = utcnow()
        with self.database.session() as session:
            leased = webhook_outbox.lease(
                session, delivery_id, now, hold=timedelta(seconds=self.webhook.timeout_s + 30)
            )
            if leased is None:
                return None  # taken by another process meanwhile
            event, key, attempts, payload = leased.event, leased.idempotency_key, leased.attempts, leased.body
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        headers = {
            EVENT_HEADER: event,
            DELIVERY_HEADER: key,
            SIGNATURE_HEADER: signature(self._secret, int(self._clock()), body),
        }
        try:
            self.webhook.post_bytes(body, headers)
        except WebhookError as error:
            last = attempts >= MAX_ATTEMPTS
            with self.database.session() as session:
                webhook_outbox.failed(session, delivery_id, str(error), None if last else now + retry_delay(attempts))
            log.warning("webhook %s, attempt %s: %s%s", key, attempts, error, "; giving up" if last else "")
            return "gave_up" if last else "failed"
        with self.database.session() as session:
            webhook_outbox.delivered(session, delivery_id, utcnow())
        log.info("webhook %s delivered (attempt %s)", key, attempts)
        return "delivered"
