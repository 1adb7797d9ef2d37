"""Reporting one failed attempt: its class, a row for the failure-pattern monitor, and, when the
render failed for good, one Sentry event (an attempt BullMQ will retry leaves only a breadcrumb).

Runs after settlement, so the renders row already says whether the failure was final.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from render_assets.domain.failure_classes import GENERATION_STAGE, classify, failed_providers, is_provider_failure
from render_assets.observability import sentry
from render_assets.observability.scrubbing import scrub_text, sensitive_strings
from render_assets.persistence import failure_records, renders, stage_timings
from render_assets.persistence.database import Database
from render_assets.persistence.failure_records import FailedAttempt
from render_assets.persistence.models import RenderStatus

log = logging.getLogger(__name__)

MAX_REASON_CHARS = 500


@dataclass(frozen=True)
class StepFailure:
    """What the failure hook knows about a step's final failure."""

    render_id: str
    run_id: str
    run_key: str | None  # None: an operator run (backfill, UI re-execution)
    stage: str
    reason: str
    error_types: tuple[str, ...] = ()  # exception class names, the cause chain included
    explicit_class: str | None = None  # a failure class the raising code named
    qa_score: float | None = None
    unexpected: BaseException | None = None  # an error that was not a stage's own failure


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def payload_sensitive_strings(payload: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The user's own words and links in a payload: prompt texts, text-label notes, image URLs.

    Other annotations hold catalogue vocabulary ("plant", "water"); registering it would blank
    those words out of every failure reason the customer reads.
    """
    if not payload:
        return ()
    prompt = payload.get("prompt") or {}
    annotations = payload.get("annotations") or []
    notes = [item.get("data") for item in annotations if isinstance(item, Mapping) and item.get("type") == "textLabel"]
    found: list[str] = [*_strings(prompt), *_strings(notes)]
    found += [value for key in ("sourceImageUrl", "maskImageUrl") if isinstance(value := payload.get(key), str)]
    return tuple(dict.fromkeys(found))


def _provider(session: Any, failure: StepFailure, failure_class: str) -> str | None:
    if is_provider_failure(failure_class):
        names = failed_providers(failure.reason)
        if names:
            return ",".join(names)[:64]
    return stage_timings.provider_of_run(session, failure.run_id, GENERATION_STAGE)


def report_failure(database: Database, failure: StepFailure) -> FailedAttempt | None:
    """Record a failed attempt and tell Sentry when it was the render's last; None for runs that
    no longer own their render (stale claims) or renders delivered after all."""
    operator = failure.run_key is None  # an operator's re-render: recorded, never final for the render
    with database.session() as session:
        row = renders.get(session, failure.render_id)
        if row is None or row.status == RenderStatus.CANCELLED:
            return None  # a cancelled render's interrupted step is no failure
        if not operator and (row.status == RenderStatus.COMPLETED or row.run_key != failure.run_key):
            return None
        sensitive = payload_sensitive_strings(row.payload)
        failure_class = classify(
            failure.reason, stage=failure.stage, error_types=failure.error_types, explicit=failure.explicit_class
        )
        with sensitive_strings.registered(sensitive):
            reason = scrub_text(failure.reason)[:MAX_REASON_CHARS]
        attempt = FailedAttempt(
            render_id=failure.render_id,
            run_id=failure.run_id,
            stage=failure.stage,
            attempt=None if operator else (row.claim_attempt or 0) + 1,
            failure_class=failure_class.value,
            provider=_provider(session, failure, failure_class),
            final=not operator and row.status == RenderStatus.FAILED,
            reason=reason,
            qa_score=failure.qa_score,
        )
        failure_records.record(session, attempt)
    _tell_sentry(attempt, failure, sensitive)
    log.warning(
        "render %s failed at %s (%s, attempt %s, final=%s)",
        attempt.render_id,
        attempt.stage,
        attempt.failure_class,
        attempt.attempt if attempt.attempt is not None else "operator",
        attempt.final,
    )
    return attempt


def _tell_sentry(attempt: FailedAttempt, failure: StepFailure, sensitive: Iterable[str]) -> None:
    if not attempt.final:
        sentry.add_breadcrumb(
            f"render attempt failed: {attempt.failure_class}",
            category="render.failure",
            data={"renderId": attempt.render_id, "stage": attempt.stage, "attempt": attempt.attempt},
        )
        return
    sentry.capture_render_failure(
        sentry.FailureEvent(
            render_id=attempt.render_id,
            stage=attempt.stage,
            attempt=attempt.attempt,
            provider=attempt.provider,
            failure_class=attempt.failure_class,
            reason=attempt.reason,
            run_id=attempt.run_id,
            final=attempt.final,
        ),
        error=failure.unexpected,
        sensitive=tuple(sensitive),
    )
