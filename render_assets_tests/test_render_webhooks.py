"""The web app's webhook for re-renders: signed bodies, retries with backoff, one delivery per
event, and a receiver that is down never failing anything."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from render_assets.adapters.json_webhook import JsonWebhook
from render_assets.persistence import webhook_outbox
from render_assets.persistence.database import Database
from render_assets.persistence.models import WebhookDelivery, utcnow
from render_assets.services.render_webhooks import MAX_ATTEMPTS, RenderWebhooks, retry_delay, signature
from render_assets_tests.webhook_inbox import WebhookInbox

SECRET = "webhook-secret-for-tests"
RESULT = {"renderId": "r1", "imageUrl": "https://cdn.example/r1/abc-master.png", "thumbnailUrl": "t"}


def webhooks(database: Database, url: str) -> RenderWebhooks:
    return RenderWebhooks(
        database, JsonWebhook(url, timeout_s=2, source="RENDER_WEBHOOK_URL"), SECRET, clock=lambda: 1_700_000_000
    )


def enqueue(database: Database, sender: RenderWebhooks, version: int = 2) -> None:
    with database.session() as session:
        sender.enqueue_rerendered(session, "r1", version, RESULT)


def row(database: Database) -> WebhookDelivery:
    with database.session() as session:
        found = session.execute(select(WebhookDelivery)).scalar_one()
        session.expunge(found)
        return found


def test_a_rerender_is_posted_once_signed_so_the_web_app_can_check_it(database: Database, inbox: WebhookInbox) -> None:
    sender = webhooks(database, inbox.url)
    enqueue(database, sender)
    enqueue(database, sender)  # the same version again (a retried step): still one event

    assert sender.send_due().delivered == 1
    assert sender.send_due().delivered == 0  # nothing left to send

    [received] = inbox.received
    body = json.loads(received.body)
    assert body == {
        "event": "render.rerendered",
        "deliveryId": "render.rerendered:r1:2",
        "renderId": "r1",
        "version": 2,
        "result": RESULT,
    }
    assert received.headers["x-render-event"] == "render.rerendered"
    assert received.headers["x-render-delivery"] == "render.rerendered:r1:2"
    # What the Node side computes: HMAC-SHA256(secret, "<t>.<raw body>"), hex.
    timestamp, digest = (part.split("=", 1)[1] for part in received.headers["x-render-signature"].split(","))
    expected = hmac.new(SECRET.encode(), f"{timestamp}.{received.body}".encode(), hashlib.sha256).hexdigest()
    assert timestamp == "1700000000" and hmac.compare_digest(digest, expected)
    assert row(database).delivered_at is not None


def test_a_receiver_that_fails_gets_the_event_again_after_a_backoff(database: Database) -> None:
    inbox = WebhookInbox(statuses=[503, 500])
    try:
        sender = webhooks(database, inbox.url)
        enqueue(database, sender)

        first = sender.send_due()
        assert (first.delivered, first.failed) == (0, 1)
        failed = row(database)
        assert failed.attempts == 1 and failed.last_error == "RENDER_WEBHOOK_URL answered HTTP 503"
        assert failed.next_attempt_at is not None
        assert sender.send_due().failed == 0  # not due yet: nothing is sent before the backoff ends

        with database.session() as session:  # the backoff has passed
            session.get(WebhookDelivery, failed.id).next_attempt_at = utcnow()  # type: ignore[union-attr]
        assert sender.send_due().failed == 1
        with database.session() as session:
            session.get(WebhookDelivery, failed.id).next_attempt_at = utcnow()  # type: ignore[union-attr]
        assert sender.send_due().delivered == 1
        assert len(inbox.received) == 3
        assert len({request.headers["x-render-delivery"] for request in inbox.received}) == 1  # one event
        assert row(database).attempts == 3
    finally:
        inbox.close()


def test_an_unreachable_receiver_never_raises_and_is_given_up_after_the_last_attempt(database: Database) -> None:
    sender = webhooks(database, "http://127.0.0.1:9/hook")  # nothing listens on the discard port
    enqueue(database, sender)
    for _ in range(MAX_ATTEMPTS - 1):
        assert sender.send_due().failed == 1
        with database.session() as session:
            session.execute(select(WebhookDelivery)).scalar_one().next_attempt_at = utcnow()
    assert sender.send_due().gave_up == 1
    given_up = row(database)
    assert given_up.attempts == MAX_ATTEMPTS and given_up.next_attempt_at is None and given_up.delivered_at is None
    assert given_up.last_error == "RENDER_WEBHOOK_URL unreachable (URLError)"
    assert "127.0.0.1:9" not in (given_up.last_error or "")  # the URL is a secret


def test_an_attempt_is_leased_so_two_senders_never_post_one_event_together(database: Database) -> None:
    enqueue(database, webhooks(database, "http://127.0.0.1:9/hook"))
    now = utcnow()
    with database.session() as session:
        [delivery_id] = webhook_outbox.due(session, now)
        assert webhook_outbox.lease(session, delivery_id, now, timedelta(seconds=35)) is not None
    with database.session() as session:
        assert webhook_outbox.lease(session, delivery_id, now, timedelta(seconds=35)) is None
        assert webhook_outbox.due(session, now) == []


def test_retries_back_off_to_an_hour() -> None:
    assert [retry_delay(attempt).total_seconds() for attempt in (1, 2, 3, 4)] == [10, 30, 90, 270]
    assert retry_delay(9).total_seconds() == 3600


def test_the_signature_covers_time_and_body() -> None:
    body = b'{"renderId":"r1"}'
    assert signature(SECRET, 1, body) != signature(SECRET, 2, body)
    assert signature(SECRET, 1, body) != signature(SECRET, 1, body + b" ")
    assert signature(SECRET, 1, body).startswith("t=1,v1=")


def test_a_webhook_without_a_secret_is_refused_at_load() -> None:
    from render_assets.orchestration.resources.database import DatabaseResource
    from render_assets.orchestration.resources.webhooks import WebhooksResource

    with pytest.raises(ValueError, match="RENDER_WEBHOOK_URL is set without RENDER_WEBHOOK_SECRET"):
        WebhooksResource(url="https://app.example/hook", database=DatabaseResource(url="sqlite://"))
    assert WebhooksResource(database=DatabaseResource(url="sqlite://")).get() is None


def test_the_readme_check_for_the_web_app_accepts_our_signature_and_refuses_a_forgery(tmp_path: Path) -> None:
    """The Node snippet the README gives the web app, run by Node against bodies we signed."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    snippet = next(block for block in re.findall(r"```js\n(.*?)```", readme, re.S) if "verifyRenderWebhook" in block)
    body = json.dumps({"event": "render.rerendered", "renderId": "r1", "version": 2}, separators=(",", ":"))
    now = int(time.time())
    cases = {
        "signed": (body, signature(SECRET, now, body.encode())),
        "tampered": (body.replace('"version":2', '"version":3'), signature(SECRET, now, body.encode())),
        "other secret": (body, signature("not-the-secret", now, body.encode())),
        "stale": (body, signature(SECRET, now - 3600, body.encode())),
        "garbage": (body, "t=abc,v1=zz"),
    }
    script = tmp_path / "verify.mjs"
    script.write_text(
        snippet
        + "\nconst [cases, secret] = [JSON.parse(process.argv[2]), process.argv[3]];\n"
        + "const out = {};\n"
        + "for (const [name, [raw, header]] of Object.entries(cases)) {\n"
        + "  out[name] = verifyRenderWebhook(Buffer.from(raw), header, secret);\n"
        + "}\n"
        + "console.log(JSON.stringify(out));\n"
    )
    verdicts = subprocess.run(
        ["node", str(script), json.dumps(cases), SECRET], capture_output=True, text=True, check=True
    )
    assert json.loads(verdicts.stdout) == {
        "signed": True,
        "tampered": False,
        "other secret": False,
        "stale": False,
        "garbage": False,
    }
