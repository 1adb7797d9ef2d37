"""Failure patterns worth waking someone for, as pure functions of recent observations.

Each pattern looks at its own window ending at `now` and is either active or not; the monitor
fires an alert when a pattern becomes active and clears it when it stops being active, so a
pattern that stays active for an hour raises one alert, not one per evaluation.

Windows and thresholds are configurable with `FAILURE_PATTERNS`, a JSON object that overrides
any field, e.g. `{"repeated_timeouts": {"window_s": 600, "min_count": 5}}`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from render_assets.domain.failure_classes import BEFORE_QA, PROVIDER_API_ERROR_KINDS, FailureClass

Severity = Literal["low", "medium", "high", "critical"]

QA_FAILURE_RATE = "qa_failure_rate"
REPEATED_TIMEOUTS = "repeated_timeouts"
PROVIDER_API_ERRORS = "provider_api_errors"
QUALITY_DEGRADATION = "quality_degradation"


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    window_s: float = Field(gt=0)
    severity: Severity


class QaFailureRateRule(_Rule):
    """QA rejected at least `min_failures` attempts, and at least `min_rate` of those it checked."""

    window_s: float = Field(default=600, gt=0)
    min_failures: int = Field(default=5, ge=1)
    min_rate: float = Field(default=0.5, gt=0, le=1)
    severity: Severity = "high"


class RepeatedTimeoutsRule(_Rule):
    window_s: float = Field(default=300, gt=0)
    min_count: int = Field(default=3, ge=1)
    severity: Severity = "high"


class ProviderApiErrorsRule(_Rule):
    """Rate limits, auth, quota and other provider API errors together (the split is in the details)."""

    window_s: float = Field(default=900, gt=0)
    min_count: int = Field(default=10, ge=1)
    severity: Severity = "critical"


class QualityDegradationRule(_Rule):
    """The mean QA score of at least `min_renders` scored checks fell below `max_mean_score`."""

    window_s: float = Field(default=1800, gt=0)
    min_renders: int = Field(default=10, ge=1)
    max_mean_score: float = Field(default=0.6, gt=0, le=1)
    severity: Severity = "medium"


class PatternSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    qa_failure_rate: QaFailureRateRule = QaFailureRateRule()
    repeated_timeouts: RepeatedTimeoutsRule = RepeatedTimeoutsRule()
    provider_api_errors: ProviderApiErrorsRule = ProviderApiErrorsRule()
    quality_degradation: QualityDegradationRule = QualityDegradationRule()

    @classmethod
    def from_json(cls, text: str | None, *, source: str = "FAILURE_PATTERNS") -> PatternSettings:
        """The defaults overridden by a JSON object; a clear error names the bad field."""
        if not text or not text.strip():
            return cls()
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{source} is not valid JSON: {error.msg} at position {error.pos}") from None
        try:
            return cls.model_validate(raw)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in item['loc']) or '(top level)'}: {item['msg']}"
                for item in error.errors()
            )
            raise ValueError(f"{source}: {problems}") from None

    def longest_window(self) -> timedelta:
        rules: list[_Rule] = [self.qa_failure_rate, self.repeated_timeouts, self.provider_api_errors]
        rules.append(self.quality_degradation)
        return timedelta(seconds=max(rule.window_s for rule in rules))


@dataclass(frozen=True)
class FailureObservation:
    at: datetime
    failure_class: str


@dataclass(frozen=True)
class ScoreObservation:
    at: datetime
    score: float


@dataclass(frozen=True)
class Observations:
    """What happened recently: failed attempts, delivered renders and QA scores."""

    failures: Sequence[FailureObservation] = ()
    completions: Sequence[datetime] = ()
    quality_scores: Sequence[ScoreObservation] = ()


@dataclass(frozen=True)
class PatternStatus:
    pattern: str
    severity: str
    active: bool
    message: str
    details: dict[str, Any] = field(default_factory=dict)


def _in_window(moments: Sequence[datetime], now: datetime, window_s: float) -> int:
    start = now - timedelta(seconds=window_s)
    return sum(1 for at in moments if start < at <= now)


def _failures(observations: Observations, now: datetime, window_s: float) -> list[str]:
    start = now - timedelta(seconds=window_s)
    return [item.failure_class for item in observations.failures if start < item.at <= now]


def qa_failure_rate(rule: QaFailureRateRule, observations: Observations, now: datetime) -> PatternStatus:
    classes = _failures(observations, now, rule.window_s)
    rejected = sum(1 for name in classes if name == FailureClass.QUALITY_REJECTED)
    # The rate is over attempts QA looked at: deliveries plus failures at or after QA.
    reached_qa = sum(1 for name in classes if name not in BEFORE_QA)
    reached_qa += _in_window(observations.completions, now, rule.window_s)
    rate = rejected / reached_qa if reached_qa else 0.0
    active = rejected >= rule.min_failures and rate >= rule.min_rate
    return PatternStatus(
        QA_FAILURE_RATE,
        rule.severity,
        active,
        f"QA rejected {rejected} of {reached_qa} checked renders ({rate:.0%}) in {rule.window_s:g} s",
        {
            "rejected": rejected,
            "checked": reached_qa,
            "rate": round(rate, 4),
            "window_s": rule.window_s,
            "threshold": {"min_failures": rule.min_failures, "min_rate": rule.min_rate},
        },
    )


def repeated_timeouts(rule: RepeatedTimeoutsRule, observations: Observations, now: datetime) -> PatternStatus:
    count = sum(1 for name in _failures(observations, now, rule.window_s) if name == FailureClass.PROVIDER_TIMEOUT)
    return PatternStatus(
        REPEATED_TIMEOUTS,
        rule.severity,
        count >= rule.min_count,
        f"{count} provider timeouts in {rule.window_s:g} s",
        {"timeouts": count, "window_s": rule.window_s, "threshold": {"min_count": rule.min_count}},
    )


def provider_api_errors(rule: ProviderApiErrorsRule, observations: Observations, now: datetime) -> PatternStatus:
    kinds = Counter(
        PROVIDER_API_ERROR_KINDS[name]  # type: ignore[index]  # a StrEnum key matches its plain string
        for name in _failures(observations, now, rule.window_s)
        if name in PROVIDER_API_ERROR_KINDS
    )
    count = sum(kinds.values())
    split = {kind: kinds.get(kind, 0) for kind in ("rate_limit", "auth", "quota", "other")}
    worst = max(split, key=lambda kind: split[kind]) if count else None
    return PatternStatus(
        PROVIDER_API_ERRORS,
        rule.severity,
        count >= rule.min_count,
        f"{count} provider API errors in {rule.window_s:g} s" + (f", mostly {worst}" if worst else ""),
        {"errors": count, "by_kind": split, "window_s": rule.window_s, "threshold": {"min_count": rule.min_count}},
    )


def quality_degradation(rule: QualityDegradationRule, observations: Observations, now: datetime) -> PatternStatus:
    # The mean is over renders that have a score (the old worker divided by all renders).
    start = now - timedelta(seconds=rule.window_s)
    scores = [item.score for item in observations.quality_scores if start < item.at <= now]
    mean = sum(scores) / len(scores) if scores else None
    active = mean is not None and len(scores) >= rule.min_renders and mean < rule.max_mean_score
    shown = "n/a" if mean is None else f"{mean:.2f}"
    return PatternStatus(
        QUALITY_DEGRADATION,
        rule.severity,
        active,
        f"mean QA score {shown} over {len(scores)} scored renders in {rule.window_s:g} s",
        {
            "mean_score": None if mean is None else round(mean, 4),
            "scored": len(scores),
            "window_s": rule.window_s,
            "threshold": {"min_renders": rule.min_renders, "max_mean_score": rule.max_mean_score},
        },
    )


def evaluate(settings: PatternSettings, observations: Observations, now: datetime) -> list[PatternStatus]:
    """The state of every pattern at `now`; a disabled pattern is never active (so it clears)."""
    statuses = [
        qa_failure_rate(settings.qa_failure_rate, observations, now),
        repeated_timeouts(settings.repeated_timeouts, observations, now),
        provider_api_errors(settings.provider_api_errors, observations, now),
        quality_degradation(settings.quality_degradation, observations, now),
    ]
    enabled = {
        QA_FAILURE_RATE: settings.qa_failure_rate.enabled,
        REPEATED_TIMEOUTS: settings.repeated_timeouts.enabled,
        PROVIDER_API_ERRORS: settings.provider_api_errors.enabled,
        QUALITY_DEGRADATION: settings.quality_degradation.enabled,
    }
    return [
        status if enabled[status.pattern] else PatternStatus(status.pattern, status.severity, False, "disabled")
        for status in statuses
    ]


@dataclass(frozen=True)
class Changes:
    start: list[PatternStatus]
    end: list[PatternStatus]


def changes(statuses: Sequence[PatternStatus], firing: set[str]) -> Changes:
    """Which patterns just started (active, not firing) and which just ended (firing, not active)."""
    return Changes(
        start=[status for status in statuses if status.active and status.pattern not in firing],
        end=[status for status in statuses if not status.active and status.pattern in firing],
    )
