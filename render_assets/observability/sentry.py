"""Sentry, when `SENTRY_DSN` is set: one event per failed render, one per alert, a transaction per step.

Events come only from explicit captures here: the logging integration records breadcrumbs but
never turns a log line into an event, and the integrations that would trace Redis, SQL or HTTP
clients (and attach their arguments, payloads included) stay off. Every event, transaction and
breadcrumb passes the scrubber. Nothing imports `sentry_sdk` until a DSN is configured, so an
unconfigured worker pays nothing for it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

from render_assets.observability.scrubbing import scrub_breadcrumb, scrub_event, scrub_text, sensitive_strings

log = logging.getLogger(__name__)

ALERT_LEVELS = {"low": "info", "medium": "warning", "high": "error", "critical": "fatal"}

_lock = threading.Lock()
_enabled = False


@dataclass(frozen=True)
class FailureEvent:
    """What Sentry gets about a failed render: no payload, only what operators group and filter by."""

    render_id: str
    stage: str
    attempt: int | None
    provider: str | None
    failure_class: str
    reason: str
    run_id: str
    final: bool


def is_enabled() -> bool:
    return _enabled


def init_sentry(
    dsn: str | None,
    *,
    environment: str | None = None,
    traces_sample_rate: float = 1.0,
    release: str | None = None,
    transport: Any = None,
    force: bool = False,
) -> bool:
    """Start Sentry once per process; without a DSN do nothing. Returns whether Sentry is on.

    `force` re-initialises (tests pass their own in-process `transport`).
    """
    global _enabled
    if not dsn:
        return False
    with _lock:
        if _enabled and not force:
            return True
        import sentry_sdk
        from sentry_sdk.integrations.atexit import AtexitIntegration
        from sentry_sdk.integrations.dedupe import DedupeIntegration
        from sentry_sdk.integrations.logging import LoggingIntegration
        from sentry_sdk.utils import BadDsn

        try:
            sentry_sdk.init(
                dsn=dsn,
                environment=environment,
                release=release,
                traces_sample_rate=traces_sample_rate,
                include_local_variables=False,
                send_default_pii=False,
                max_request_body_size="never",
                # Only the integrations listed: breadcrumbs from log lines (never events), dedupe,
                # and a flush at exit so the last failure of a run process is not lost.
                default_integrations=False,
                auto_enabling_integrations=False,
                integrations=[
                    LoggingIntegration(level=logging.INFO, event_level=None, sentry_logs_level=None),
                    DedupeIntegration(),
                    AtexitIntegration(),
                ],
                before_send=cast(Any, scrub_event),
                before_send_transaction=cast(Any, scrub_event),
                before_breadcrumb=cast(Any, scrub_breadcrumb),
                transport=transport,
            )
        except BadDsn:
            # Never echo the DSN: it carries the project's key.
            raise ValueError("SENTRY_DSN is not a valid Sentry DSN (expected https://<key>@<host>/<project>)") from None
        _enabled = True
    return True


def shutdown_sentry(timeout_s: float = 2.0) -> None:
    """Flush and stop Sentry (tests, and processes that exit without atexit)."""
    global _enabled
    with _lock:
        if not _enabled:
            return
        import sentry_sdk

        sentry_sdk.flush(timeout=timeout_s)
        sentry_sdk.get_client().close(timeout=timeout_s)  # a closed client drops whatever comes later
        _enabled = False


def _tag(value: object) -> str:
    return "none" if value is None else str(value)[:200]


def capture_render_failure(
    failure: FailureEvent, *, error: BaseException | None = None, sensitive: tuple[str, ...] = ()
) -> str | None:
    """One event for a failed render, grouped by its failure class; returns the event id.

    An unexpected error (not a stage's own failure) is sent as an exception, for its stack trace;
    a stage's failure as a message, since its reason is the whole story.
    """
    if not _enabled:
        return None
    import sentry_sdk

    with sensitive_strings.registered(sensitive), sentry_sdk.new_scope() as scope:
        scope.set_level("error")
        scope.fingerprint = ["render-failure", failure.failure_class]
        scope.set_tag("renderId", _tag(failure.render_id))
        scope.set_tag("stage", _tag(failure.stage))
        scope.set_tag("attempt", _tag(failure.attempt if failure.attempt is not None else "operator"))
        scope.set_tag("provider", _tag(failure.provider))
        scope.set_tag("failure_class", failure.failure_class)
        scope.set_tag("final", str(failure.final).lower())
        scope.set_context("render", {"run_id": failure.run_id, "reason": scrub_text(failure.reason)})
        if error is not None:
            return sentry_sdk.capture_exception(error)
        return sentry_sdk.capture_message(f"render failed: {failure.failure_class}: {failure.reason}")


def add_breadcrumb(message: str, *, category: str, data: Mapping[str, Any] | None = None) -> None:
    if not _enabled:
        return
    import sentry_sdk

    sentry_sdk.add_breadcrumb(message=message, category=category, level="info", data=dict(data or {}))


def capture_alert(*, pattern: str, severity: str, state: str, message: str, details: Mapping[str, Any]) -> str | None:
    """An alert starting (level by severity) or clearing (info), grouped per pattern and state."""
    if not _enabled:
        return None
    import sentry_sdk

    with sentry_sdk.new_scope() as scope:
        scope.fingerprint = ["failure-alert", pattern, state]
        scope.set_tag("alert_pattern", pattern)
        scope.set_tag("alert_severity", severity)
        scope.set_tag("alert_state", state)
        scope.set_context("alert", dict(details))
        level = ALERT_LEVELS.get(severity, "warning") if state == "firing" else "info"
        prefix = "failure pattern" if state == "firing" else "failure pattern cleared"
        return sentry_sdk.capture_message(f"{prefix}: {pattern}: {message}", level=level)  # type: ignore[arg-type]


def _trace_id(run_id: str) -> str | None:
    # A Dagster run id is a UUID: its 32 hex digits make a valid trace id, so a run's steps share a trace.
    digits = run_id.replace("-", "").lower()
    return digits if len(digits) == 32 and all(char in "0123456789abcdef" for char in digits) else None


@contextmanager
def stage_transaction(stage: str, *, render_id: str, run_id: str, attempt: int | None, step_try: int) -> Iterator[None]:
    """A performance transaction around one step, in the run's trace; nothing when Sentry is off."""
    if not _enabled:
        yield
        return
    import sentry_sdk
    from sentry_sdk.tracing import Transaction

    transaction = sentry_sdk.start_transaction(
        Transaction(op="render.stage", name=f"render/{stage}", source="task", trace_id=_trace_id(run_id))
    )
    transaction.set_tag("renderId", render_id)
    transaction.set_tag("stage", stage)
    transaction.set_tag("attempt", _tag(attempt if attempt is not None else "operator"))
    transaction.set_tag("step_try", str(step_try))
    with transaction, transaction.start_child(op="render.stage.compute", name=stage) as span:
        try:
            yield
        except BaseException:
            span.set_status("internal_error")
            transaction.set_status("internal_error")
            raise
        transaction.set_status("ok")
