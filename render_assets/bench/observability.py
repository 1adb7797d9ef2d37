"""What observability costs: the per-step bookkeeping, the scrubber, a failure-pattern check and
`render-assets stats`, on SQLite and (with --postgres-admin) PostgreSQL. Prints figures.

    .venv/bin/python -m render_assets.bench.observability [--postgres-admin postgresql+psycopg2://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import insert

from render_assets.domain.failure_patterns import PatternSettings
from render_assets.migrations import scratch_database, upgrade
from render_assets.observability.scrubbing import scrub_event, scrub_text, sensitive_strings
from render_assets.persistence import renders, stage_timings
from render_assets.persistence.database import Database
from render_assets.persistence.models import Render, RenderFailure, RenderStatus, StageTiming, utcnow
from render_assets.persistence.stage_timings import StepTry
from render_assets.services.failure_monitor import check_patterns
from render_assets.services.failure_reports import payload_sensitive_strings
from render_assets.services.stats import collect, percentile

CLASSES = ("provider_timeout", "provider_rate_limit", "quality_rejected", "provider_error", "storage")
ERROR = (
    "no image provider delivered: google: rate limited (HTTP 429 RESOURCE_EXHAUSTED): Quota exceeded for "
    "aiplatform.googleapis.com/online_prediction_requests_per_base_model with base model: imagen-4.0; "
    "openai: request rejected (HTTP 400): key sk-proj-AbCdEf0123456789xyz, contact jane@example.com"
)


def timed(action: Callable[[], object], repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def show(label: str, samples_ms: list[float]) -> None:
    p50, p95 = percentile(samples_ms, 50), percentile(samples_ms, 95)
    print(f"  {label:<52} p50 {p50:8.3f} ms   p95 {p95:8.3f} ms   (n={len(samples_ms)})")


def bench_scrubber() -> None:
    print("scrubber")
    prompt = "a cozy backyard with a flagstone path and a small pond, for Aunt Matilda"
    event = {
        "message": ERROR,
        "exception": {"values": [{"type": "RenderFailed", "value": ERROR, "stacktrace": {"frames": [{}] * 20}}]},
        "breadcrumbs": {"values": [{"message": f"step {n} finished", "data": {"n": n}} for n in range(50)]},
        "extra": {"reason": ERROR},
        "tags": {"renderId": "render-1", "stage": "raw_render"},
    }
    with sensitive_strings.registered([prompt]):
        show("scrub_text (300-char provider error)", timed(lambda: scrub_text(ERROR), 2000))
        show("scrub_event (failure event, 50 breadcrumbs)", timed(lambda: scrub_event(dict(event)), 500))


def seed(database: Database, count: int) -> None:
    now = utcnow()
    failures, timings = [], []
    for n in range(count):
        at = now - timedelta(seconds=n % 1800)
        failures.append(
            {
                "render_id": f"r{n}",
                "run_id": f"run-{uuid.uuid4().hex}",
                "stage": "raw_render",
                "attempt": 1,
                "failure_class": CLASSES[n % len(CLASSES)],
                "provider": "google",
                "final": True,
                "reason": "x",
                "occurred_at": at,
            }
        )
        timings.append(
            {
                "render_id": f"r{n}",
                "run_id": f"run{n}",
                "stage": "raw_render",
                "outcome": "success",
                "duration_s": 1.0,
                "provider": "local",
                "qa_score": 0.8,
                "finished_at": at,
            }
        )
    with database.session() as session:
        session.execute(insert(RenderFailure), failures)
        session.execute(insert(StageTiming), timings)


def bench_database(label: str, url: str) -> None:
    print(f"database: {label}")
    database = Database(url)
    render_id = f"bench-{uuid.uuid4().hex[:8]}"
    with database.session() as session:
        session.add(
            Render(
                id=render_id,
                organization_id="org",
                project_id="p",
                user_id="u",
                status=RenderStatus.PROCESSING,
                stage="generating",
                progress=30,
                payload={"prompt": {"user": "a pond", "system": "s"}, "annotations": []},
                credit_cost=1,
            )
        )

    def step_bookkeeping() -> None:
        # What `observe_stage` adds to one step: load the payload's strings, write a timing row.
        with database.session() as session:
            row = renders.get(session, render_id)
            payload_sensitive_strings(row.payload if row else None)
        with database.session() as session:
            stage_timings.record(session, StepTry(render_id, "run", "raw_render", "success", 1.0, "local"))

    show("per-step bookkeeping (payload read + timing row)", timed(step_bookkeeping, 200))
    settings = PatternSettings()
    for rows in (1_000, 10_000):
        seed(database, rows - (1_000 if rows > 1_000 else 0))
        now = utcnow()

        def check(now: datetime = now) -> None:
            check_patterns(database, settings, [], now=now)

        def stats(now: datetime = now) -> None:
            with database.session() as session:
                collect(session, now - timedelta(hours=1), now)

        show(f"failure-pattern check, {rows} failures in window", timed(check, 10))
        show(f"stats over the last hour, {rows} failures + timings", timed(stats, 10))
    database.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres-admin", help="an admin URL; a throwaway database is created and dropped")
    args = parser.parse_args()
    bench_scrubber()
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'bench.db'}"
        upgrade(url)
        bench_database("SQLite", url)
    if args.postgres_admin:
        with scratch_database(args.postgres_admin, "render_assets_bench") as url:
            bench_database("PostgreSQL", url)


if __name__ == "__main__":
    main()
