"""`render-assets stats`: what the worker did in a time window, from the project's own tables.

Outcomes from `renders`, failed attempts by class from `render_failures`, step latencies and
provider calls from `render_stage_timings`, credits from `credit_transactions`. End to end is a
delivered render's time from its first claim to delivery, retries and queueing for a run slot
included.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from render_assets.domain.failure_classes import GENERATION_STAGE, is_provider_failure
from render_assets.persistence import failure_records, ledger, render_stats, stage_timings
from render_assets.persistence.database import Session
from render_assets.persistence.models import RenderStatus
from render_assets.persistence.stage_timings import SUCCESS

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str, now: datetime) -> datetime:
    """`90m`, `2h`, `1d` (before `now`) or an ISO time (UTC when it names no zone)."""
    if match := _DURATION.match(text):
        return now - timedelta(seconds=float(match.group(1)) * _UNIT_S[match.group(2).lower()])
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"--since must be a duration such as 90m, 2h or 1d, or an ISO time such as 2026-11-29T10:00:00Z; "
            f"got {text!r}"
        ) from None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if moment > now:
        raise ValueError(f"--since {text!r} is in the future")
    return moment


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) with linear interpolation between ranks; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(values: Sequence[float]) -> dict[str, Any]:
    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 3)

    return {"count": len(values), "p50": rounded(percentile(values, 50)), "p95": rounded(percentile(values, 95))}


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _outcomes(session: Session, since: datetime, until: datetime) -> dict[str, int | str | None]:
    finished = render_stats.ended_by_status(session, since, until)
    active = render_stats.in_flight_by_status(session, since, until)
    waiting = render_stats.waiting(session)
    return {
        "completed": finished[RenderStatus.COMPLETED],
        "failed": finished[RenderStatus.FAILED],
        "cancelled": finished[RenderStatus.CANCELLED],
        "retrying": active[RenderStatus.RETRYING],
        "in_flight": active[RenderStatus.CLAIMED] + active[RenderStatus.PROCESSING],
        # Now, whatever the window: renders back in BullMQ until a provider may be tried again.
        "waiting_for_provider": waiting.count,
        "next_provider_try": _aware(waiting.earliest_until).isoformat() if waiting.earliest_until is not None else None,
    }


def _end_to_end(session: Session, since: datetime, until: datetime) -> list[float]:
    return [
        (_aware(done) - _aware(start)).total_seconds()
        for start, done in render_stats.completions(session, since, until)
        if start and done
    ]


def _credits(session: Session, since: datetime, until: datetime) -> dict[str, int]:
    rows = ledger.moves_between(session, since, until)
    charges, charged = rows.get("charge", (0, 0))
    refunds, refunded = rows.get("refund", (0, 0))
    return {
        "charged": -int(charged),
        "refunded": int(refunded),
        "net": -int(charged) - int(refunded),
        "charges": int(charges),
        "refunds": int(refunds),
    }


def collect(session: Session, since: datetime, until: datetime) -> dict[str, Any]:
    timings = stage_timings.between(session, since, until)
    failures = failure_records.classes_between(session, since, until)

    per_stage: dict[str, list[float]] = defaultdict(list)
    failed_tries: Counter[str] = Counter()
    calls: Counter[str] = Counter()
    for stage, outcome, duration_s, provider in timings:
        if outcome == SUCCESS:
            per_stage[stage].append(duration_s)
            if stage == GENERATION_STAGE and provider:
                calls[provider] += 1
        else:
            failed_tries[stage] += 1
    latency = {stage: {**summary(values), "failed_tries": failed_tries[stage]} for stage, values in per_stage.items()}
    for stage in failed_tries.keys() - per_stage.keys():
        latency[stage] = {**summary([]), "failed_tries": failed_tries[stage]}
    latency["end_to_end"] = {**summary(_end_to_end(session, since, until))}

    provider_errors: dict[str, Counter[str]] = defaultdict(Counter)
    for _at, failure_class, provider in failures:
        if is_provider_failure(failure_class):
            # A failover that failed lists every provider it tried; each of them erred.
            for name in (provider or "unknown").split(","):
                provider_errors[name][failure_class] += 1
    providers = {}
    for name in sorted(calls.keys() | provider_errors.keys()):
        errors = sum(provider_errors[name].values())
        attempts = calls[name] + errors
        providers[name] = {
            "delivered": calls[name],
            "errors": errors,
            "error_rate": round(errors / attempts, 4) if attempts else 0.0,
            "errors_by_class": dict(provider_errors[name]),
        }
    return {
        "since": since.isoformat(),
        "until": until.isoformat(),
        "renders": _outcomes(session, since, until),
        "failed_attempts": dict(Counter(failure_class for _at, failure_class, _provider in failures)),
        "latency_s": latency,
        "providers": providers,
        "credits": _credits(session, since, until),
    }
