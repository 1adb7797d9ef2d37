"""Each failure pattern, driven over its threshold and back on a controlled clock: one alert when
it starts, one all-clear when it ends, both stored, sent to Sentry and to a real local webhook."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from dagster import SkipReason, build_sensor_context
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from render_assets.domain.failure_patterns import (
    FailureObservation,
    Observations,
    PatternSettings,
    ScoreObservation,
    evaluate,
)
from render_assets.orchestration.resources import DatabaseResource
from render_assets.orchestration.resources.alerts import FailureAlertsResource
from render_assets.orchestration.sensors.failure_patterns import failure_pattern_sensor
from render_assets.persistence import failure_alerts, failure_records, stage_timings
from render_assets.persistence.database import Database
from render_assets.persistence.failure_records import FailedAttempt
from render_assets.persistence.models import FailureAlert, Render, RenderStatus, utcnow
from render_assets.persistence.stage_timings import StepTry
from render_assets.services.failure_monitor import check_patterns
from render_assets_tests.sentry_capture import captured_sentry

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Receiver:
    """A Slack-compatible webhook on 127.0.0.1 that keeps what it is sent and answers `status`."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                receiver.messages.append(json.loads(self.rfile.read(length)))
                self.send_response(receiver.status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T000/B000/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


def failure(session: Session, at: datetime, failure_class: str, n: int) -> None:
    failure_records.record(
        session,
        FailedAttempt(
            render_id=f"r-{n}",
            run_id=f"run-{failure_class}-{n}",
            stage="raw_render",
            attempt=1,
            failure_class=failure_class,
            provider="google",
            final=True,
            reason="x",
        ),
        at=at,
    )


def delivery(session: Session, at: datetime, n: int) -> None:
    session.add(
        Render(
            id=f"done-{n}",
            organization_id="org",
            project_id="p",
            user_id="u",
            status=RenderStatus.COMPLETED,
            stage="completed",
            progress=100,
            payload={},
            credit_cost=1,
            created_at=at - timedelta(seconds=30),
            updated_at=at,
            completed_at=at,
        )
    )


def scored(session: Session, at: datetime, n: int, score: float = 0.5) -> None:
    stage_timings.record(session, StepTry(f"s-{n}", f"run-s-{n}", "qa_verdict", "success", 0.1, qa_score=score), at=at)


@dataclass(frozen=True)
class Scenario:
    pattern: str
    rows: list[tuple[float, Callable[[Session, datetime, int], None]]]  # (seconds after T0, writer)
    below_at: float  # the threshold is not yet reached
    over_at: float  # it is
    clear_at: float  # the window has passed the rows
    severity: str
    sentry_level: str
    details: dict[str, Any]


def _failures(failure_class: str, count: int, start: float = 1) -> list[tuple[float, Any]]:
    return [(start + n, lambda s, at, n, c=failure_class: failure(s, at, c, n)) for n in range(count)]


SCENARIOS = [
    Scenario(
        "qa_failure_rate",
        # 3 deliveries then 5 QA rejections: 5 of 8 checked (62 %); a provider error does not count as checked.
        [(0.5 + n / 10, lambda s, at, n: delivery(s, at, n)) for n in range(3)]
        + _failures("quality_rejected", 5)
        + _failures("provider_error", 1, start=0.2),
        below_at=4.5,
        over_at=10,
        clear_at=10 + 600,
        severity="high",
        sentry_level="error",
        details={"rejected": 5, "checked": 8},
    ),
    Scenario(
        "repeated_timeouts",
        _failures("provider_timeout", 3),
        below_at=2.5,
        over_at=10,
        clear_at=10 + 300,
        severity="high",
        sentry_level="error",
        details={"timeouts": 3},
    ),
    Scenario(
        "provider_api_errors",
        _failures("provider_rate_limit", 4)
        + _failures("provider_auth", 3, start=5)
        + _failures("provider_quota", 2, start=8)
        + _failures("provider_error", 1, start=10),
        below_at=9.5,
        over_at=20,
        clear_at=20 + 900,
        severity="critical",
        sentry_level="fatal",
        details={"errors": 10, "by_kind": {"rate_limit": 4, "auth": 3, "quota": 2, "other": 1}},
    ),
    Scenario(
        "quality_degradation",
        [(1 + n, lambda s, at, n: scored(s, at, n)) for n in range(10)],
        below_at=9.5,
        over_at=20,
        clear_at=20 + 1800,
        severity="medium",
        sentry_level="warning",
        details={"mean_score": 0.5, "scored": 10},
    ),
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[scenario.pattern for scenario in SCENARIOS])
def test_a_pattern_fires_once_and_clears_once(database: Database, webhook: Receiver, scenario: Scenario) -> None:
    with database.session() as session:
        for n, (offset, write) in enumerate(scenario.rows):
            write(session, T0 + timedelta(seconds=offset), n)
    alerts = FailureAlertsResource(webhook_url=webhook.url, webhook_timeout_s=2.0)

    def check(offset: float) -> list[tuple[str, str]]:
        changes = check_patterns(database, alerts.settings(), alerts.notifiers(), now=T0 + timedelta(seconds=offset))
        return [(change.pattern, change.state) for change in changes]

    with captured_sentry() as sentry:
        assert check(scenario.below_at) == []
        assert check(scenario.over_at) == [(scenario.pattern, "firing")]
        assert check(scenario.over_at + 1) == []  # still active: no second alert
        assert check(scenario.clear_at) == [(scenario.pattern, "cleared")]
        assert check(scenario.clear_at + 1) == []

    with database.session() as session:
        [stored] = session.execute(select(FailureAlert)).scalars().all()
        assert (stored.pattern, stored.severity, stored.state) == (scenario.pattern, scenario.severity, "cleared")
        assert stored.details.items() >= scenario.details.items()
        assert stored.cleared_at is not None and stored.cleared_at > stored.fired_at
    fired, cleared = webhook.messages
    assert f"alert ({scenario.severity}): {scenario.pattern}" in fired["text"]
    assert f"all clear: {scenario.pattern}" in cleared["text"]
    fields = {field["title"]: field["value"] for field in fired["attachments"][0]["fields"]}
    assert (fields["Pattern"], fields["Severity"], fields["State"]) == (scenario.pattern, scenario.severity, "firing")
    events = sentry.events()
    assert [(event["tags"]["alert_state"], event["level"]) for event in events] == [
        ("firing", scenario.sentry_level),
        ("cleared", "info"),
    ]
    assert all(event["tags"]["alert_pattern"] == scenario.pattern for event in events)


def test_an_unreachable_or_failing_webhook_never_stops_the_monitor(
    sqlite_url: str, webhook: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    database = Database(sqlite_url)
    with database.session() as session:
        for n, (offset, write) in enumerate(_failures("provider_timeout", 3)):
            write(session, T0 + timedelta(seconds=offset), n)
    webhook.status = 500
    failing = FailureAlertsResource(webhook_url=webhook.url)
    closed = Receiver()
    closed.close()  # nothing listens on its port any more
    unreachable = FailureAlertsResource(webhook_url=closed.url, webhook_timeout_s=0.5)

    fired = check_patterns(database, failing.settings(), failing.notifiers(), now=T0 + timedelta(seconds=10))
    cleared = check_patterns(database, unreachable.settings(), unreachable.notifiers(), now=T0 + timedelta(seconds=400))

    assert [change.state for change in fired + cleared] == ["firing", "cleared"]
    assert len(webhook.messages) == 1  # it was asked, and answered 500
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert any("HTTP 500" in line for line in warnings)
    assert any("unreachable" in line for line in warnings)
    assert not any("/services/T000" in line for line in warnings)  # the URL is a secret
    database.dispose()


def test_the_sensor_evaluates_the_patterns_against_now(sqlite_url: str, webhook: Receiver, tmp_path: Path) -> None:
    database = Database(sqlite_url)
    with database.session() as session:
        for n in range(3):
            failure(session, utcnow() - timedelta(seconds=10 + n), "provider_timeout", n)
    resources = {
        "database": DatabaseResource(url=sqlite_url),
        "alerts": FailureAlertsResource(webhook_url=webhook.url),
    }
    with build_sensor_context(resources=resources) as context:
        first = failure_pattern_sensor(context)
    with build_sensor_context(resources=resources) as context:
        second = failure_pattern_sensor(context)

    assert isinstance(first, SkipReason) and first.skip_message == "repeated_timeouts firing"
    assert isinstance(second, SkipReason) and second.skip_message == "no failure pattern started or ended"
    assert len(webhook.messages) == 1
    database.dispose()


def test_the_qa_rate_needs_both_the_count_and_the_share() -> None:
    settings = PatternSettings()
    now = T0 + timedelta(seconds=60)
    five_rejections = [FailureObservation(T0, "quality_rejected")] * 5
    diluted = Observations(failures=five_rejections, completions=[T0] * 6)  # 5 of 11
    few = Observations(failures=five_rejections[:4], completions=[])  # 100 %, but only 4
    enough = Observations(failures=five_rejections, completions=[T0] * 5)  # 5 of 10
    assert [s.active for s in evaluate(settings, diluted, now) if s.pattern == "qa_failure_rate"] == [False]
    assert [s.active for s in evaluate(settings, few, now) if s.pattern == "qa_failure_rate"] == [False]
    assert [s.active for s in evaluate(settings, enough, now) if s.pattern == "qa_failure_rate"] == [True]


def test_quality_degradation_averages_only_scored_renders() -> None:
    now = T0 + timedelta(seconds=60)
    good = Observations(quality_scores=[ScoreObservation(T0, 0.7)] * 10, completions=[T0] * 30)
    bad = Observations(quality_scores=[ScoreObservation(T0, 0.59)] * 10)
    few = Observations(quality_scores=[ScoreObservation(T0, 0.1)] * 9)
    status = {
        name: next(s for s in evaluate(PatternSettings(), obs, now) if s.pattern == "quality_degradation")
        for name, obs in (("good", good), ("bad", bad), ("few", few))
    }
    assert (status["good"].active, status["bad"].active, status["few"].active) == (False, True, False)


def test_windows_and_thresholds_are_configurable_and_checked() -> None:
    settings = PatternSettings.from_json('{"repeated_timeouts": {"window_s": 60, "min_count": 2}}')
    now = T0 + timedelta(seconds=30)
    timeouts = Observations(failures=[FailureObservation(T0, "provider_timeout")] * 2)
    assert [s.active for s in evaluate(settings, timeouts, now) if s.pattern == "repeated_timeouts"] == [True]
    assert [s.active for s in evaluate(PatternSettings(), timeouts, now) if s.pattern == "repeated_timeouts"] == [False]
    disabled = PatternSettings.from_json('{"repeated_timeouts": {"enabled": false, "min_count": 1}}')
    assert [s.active for s in evaluate(disabled, timeouts, now) if s.pattern == "repeated_timeouts"] == [False]
    with pytest.raises(ValueError, match=r"FAILURE_PATTERNS: repeated_timeouts\.min_count"):
        PatternSettings.from_json('{"repeated_timeouts": {"min_count": 0}}')
    with pytest.raises(ValueError, match=r"FAILURE_PATTERNS: timeouts: Extra inputs"):
        PatternSettings.from_json('{"timeouts": {}}')
    with pytest.raises(ValueError, match="FAILURE_PATTERNS is not valid JSON"):
        PatternSettings.from_json("{window: 5}")
    with pytest.raises(ValueError, match="SLACK_WEBHOOK_URL must be an http"):
        FailureAlertsResource(webhook_url="ftp://example.com/hook").notifiers()


def test_one_firing_episode_per_pattern_is_enforced_by_the_database(database: Database) -> None:
    with database.session() as session:
        first = failure_alerts.fire(session, pattern="repeated_timeouts", severity="high", details={}, at=T0)
        first_id = first.id
    with pytest.raises(IntegrityError), database.session() as session:
        failure_alerts.fire(session, pattern="repeated_timeouts", severity="high", details={}, at=T0)
    with database.session() as session:
        assert failure_alerts.clear(session, first_id, details={}, at=T0 + timedelta(minutes=5)) is not None
        assert failure_alerts.clear(session, first_id, details={}, at=T0 + timedelta(minutes=6)) is None
        failure_alerts.fire(
            session, pattern="repeated_timeouts", severity="high", details={}, at=T0 + timedelta(hours=1)
        )
    with database.session() as session:
        states = sorted(alert.state for alert in failure_alerts.history(session))
    assert states == ["cleared", "firing"]
