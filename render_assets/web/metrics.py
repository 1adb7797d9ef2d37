"""`/metrics` in Prometheus' text format, gathered at scrape time.

- jobs by status: the renders table;
- stage latencies: the histogram the event-stream appends keep in Redis (time spent in each
  progress stage, from entering it to entering the next);
- provider errors: failed attempts whose class is a provider one (the `render_failures` table);
- this server's connected SSE clients and watched streams.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from render_assets.adapters.event_stream_reader import StageLatency
from render_assets.persistence.database import Database
from render_assets.persistence.models import Render, RenderFailure

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True)
class DatabaseCounts:
    renders_by_status: dict[str, int]
    # (provider, failure class) → failed attempts; None when the table is not there (not migrated).
    provider_errors: dict[tuple[str, str], int] | None = field(default=None)


def database_counts(database: Database) -> DatabaseCounts:
    with database.session() as session:
        by_status = {
            str(status): int(count)
            for status, count in session.execute(select(Render.status, func.count()).group_by(Render.status))
        }
    try:
        with database.session() as session:
            rows = session.execute(
                select(RenderFailure.provider, RenderFailure.failure_class, func.count())
                .where(RenderFailure.failure_class.like("provider%"))
                .group_by(RenderFailure.provider, RenderFailure.failure_class)
            )
            errors = {(provider or "unknown", str(kind)): int(count) for provider, kind, count in rows}
    except SQLAlchemyError:
        log.warning("render_failures is not readable (database not migrated?); no provider error metrics")
        errors = None
    return DatabaseCounts(by_status, errors)


class _Families(Collector):
    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def exposition(
    counts: DatabaseCounts, latencies: dict[str, StageLatency], *, sse_clients: int, watched_streams: int
) -> bytes:
    jobs = GaugeMetricFamily("render_jobs", "Renders by status (the renders table)", labels=["status"])
    for status, count in sorted(counts.renders_by_status.items()):
        jobs.add_metric([status], count)
    stages = HistogramMetricFamily(
        "render_stage_duration_seconds", "Time renders spent in each progress stage", labels=["stage"]
    )
    for stage, latency in latencies.items():
        buckets = [(repr(bound), count) for bound, count in latency.buckets] + [("+Inf", latency.count)]
        stages.add_metric([stage], buckets, latency.sum_s)
    families: list[Metric] = [jobs, stages]
    if counts.provider_errors is not None:
        errors = CounterMetricFamily(
            "render_provider_errors", "Failed render attempts caused by a provider", labels=["provider", "kind"]
        )
        for (provider, kind), count in sorted(counts.provider_errors.items()):
            errors.add_metric([provider, kind], count)
        families.append(errors)
    families.append(GaugeMetricFamily("render_sse_clients", "Connected SSE clients", value=sse_clients))
    families.append(GaugeMetricFamily("render_sse_watched_streams", "Event streams watched", value=watched_streams))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return generate_latest(registry)
