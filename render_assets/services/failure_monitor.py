"""The failure-pattern monitor: evaluate the patterns, store each alert episode, tell people once.

An alert is stored when its pattern starts (a `firing` row) and updated when it ends (`cleared`);
both transitions are committed before anyone is notified, and a unique index allows one firing
episode per pattern, so overlapping evaluations cannot notify twice. A notifier that fails is
logged and skipped: an unreachable webhook never stops the monitor.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from render_assets.adapters.json_webhook import JsonWebhook
from render_assets.domain.failure_patterns import (
    FailureObservation,
    Observations,
    PatternSettings,
    PatternStatus,
    ScoreObservation,
    changes,
    evaluate,
)
from render_assets.observability import sentry
from render_assets.persistence import failure_alerts, failure_records, render_stats
from render_assets.persistence.database import Database, Session
from render_assets.persistence.quality_scores import recent_quality_scores

log = logging.getLogger(__name__)

FIRING, CLEARED = failure_alerts.FIRING, failure_alerts.CLEARED
SLACK_COLORS = {"critical": "danger", "high": "warning", "medium": "warning", "low": "#439FE0"}


@dataclass(frozen=True)
class AlertChange:
    alert_id: int
    pattern: str
    severity: str
    state: str  # FIRING | CLEARED
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    fired_at: datetime | None = None
    cleared_at: datetime | None = None


Notifier = Callable[[AlertChange], None]


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything here is UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def observations(session: Session, since: datetime, until: datetime) -> Observations:
    failures = [
        FailureObservation(_aware(at), failure_class)
        for at, failure_class, _provider in failure_records.classes_between(session, since, until)
    ]
    completions = [
        _aware(completion.completed_at)
        for completion in render_stats.completions(session, since, until)
        if completion.completed_at is not None
    ]
    scores = [ScoreObservation(_aware(check.at), check.score) for check in recent_quality_scores(session, since, until)]
    return Observations(failures=failures, completions=completions, quality_scores=scores)


def check_patterns(
    database: Database, settings: PatternSettings, notifiers: Sequence[Notifier], *, now: datetime
) -> list[AlertChange]:
    """Evaluate every pattern at `now`; fire the ones that started, clear the ones that ended."""
    with database.session() as session:
        seen = observations(session, now - settings.longest_window(), now)
        firing = {pattern: alert.id for pattern, alert in failure_alerts.firing(session).items()}
    statuses = evaluate(settings, seen, now)
    diff = changes(statuses, set(firing))
    applied = [change for status in diff.start if (change := _fire(database, status, now)) is not None]
    applied += [change for status in diff.end if (change := _clear(database, firing[status.pattern], status, now))]
    for change in applied:
        notify(change, notifiers)
    return applied


def _fire(database: Database, status: PatternStatus, now: datetime) -> AlertChange | None:
    details = {"message": status.message, **status.details}
    alert_id = failure_alerts.fire_once(
        database, pattern=status.pattern, severity=status.severity, details=details, at=now
    )
    if alert_id is None:
        return None  # another evaluation fired this pattern first; it notifies
    return AlertChange(alert_id, status.pattern, status.severity, FIRING, status.message, details, fired_at=now)


def _clear(database: Database, alert_id: int, status: PatternStatus, now: datetime) -> AlertChange | None:
    details = {"message": status.message, **status.details}
    with database.session() as session:
        alert = failure_alerts.clear(session, alert_id, details=details, at=now)
        if alert is None:
            return None
        severity, fired_at = alert.severity, _aware(alert.fired_at)
    message = f"cleared after {int((now - fired_at).total_seconds())} s: {status.message}"
    return AlertChange(alert_id, status.pattern, severity, CLEARED, message, details, fired_at=fired_at, cleared_at=now)


def notify(change: AlertChange, notifiers: Sequence[Notifier]) -> None:
    for notifier in notifiers:
        try:
            notifier(change)
        except Exception as error:
            log.warning("alert %s (%s) not delivered by %s: %s", change.pattern, change.state, notifier, error)


def sentry_notifier(change: AlertChange) -> None:
    sentry.capture_alert(
        pattern=change.pattern,
        severity=change.severity,
        state=change.state,
        message=change.message,
        details=change.details,
    )


def slack_message(change: AlertChange) -> dict[str, Any]:
    """The Slack incoming-webhook format: a headline, and an attachment with the facts."""
    if change.state == FIRING:
        text = f":rotating_light: Render worker alert ({change.severity}): {change.pattern}"
        color = SLACK_COLORS.get(change.severity, "warning")
    else:
        text = f":white_check_mark: Render worker all clear: {change.pattern}"
        color = "good"
    moment = change.cleared_at or change.fired_at
    return {
        "text": text,
        "attachments": [
            {
                "color": color,
                "title": change.message,
                "fields": [
                    {"title": "Pattern", "value": change.pattern, "short": True},
                    {"title": "Severity", "value": change.severity, "short": True},
                    {"title": "State", "value": change.state, "short": True},
                    {"title": "Alert", "value": str(change.alert_id), "short": True},
                    {"title": "Details", "value": _details_text(change.details), "short": False},
                ],
                "ts": int(moment.timestamp()) if moment else None,
            }
        ],
    }


def _details_text(details: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in details.items() if key != "message")


class WebhookNotifier:
    def __init__(self, webhook: JsonWebhook) -> None:
        self.webhook = webhook

    def __call__(self, change: AlertChange) -> None:
        self.webhook.post(slack_message(change))

    def __repr__(self) -> str:
        return repr(self.webhook)
