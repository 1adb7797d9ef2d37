"""Figures of a scenario from BullMQ's own timestamps, and the issue's targets, met or not."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FinishedJob:
    job_id: str
    state: str  # "completed" or "failed"
    enqueued_ms: int  # BullMQ job.timestamp
    finished_ms: int  # BullMQ job.finishedOn
    failed_reason: str | None = None
    claimed_ms: int | None = None  # BullMQ job.processedOn: when the sensor moved it to active

    @property
    def latency_s(self) -> float:
        return (self.finished_ms - self.enqueued_ms) / 1000

    @property
    def claim_s(self) -> float | None:
        return None if self.claimed_ms is None else (self.claimed_ms - self.enqueued_ms) / 1000


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile (no interpolation: every figure is a latency some job had)."""
    if not values:
        raise ValueError("no values to take a percentile of")
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


def latency_figures(jobs: Sequence[FinishedJob]) -> dict[str, Any]:
    completed = [job for job in jobs if job.state == "completed"]
    figures: dict[str, Any] = {"jobs": len(jobs), "completed": len(completed), "failed": len(jobs) - len(completed)}
    if completed:
        latencies = [job.latency_s for job in completed]
        span_s = (max(job.finished_ms for job in completed) - min(job.enqueued_ms for job in jobs)) / 1000
        figures.update(
            latencies_s=sorted(round(latency, 2) for latency in latencies),  # the report draws their distribution
            latency_p50_s=round(percentile(latencies, 0.5), 2),
            latency_p95_s=round(percentile(latencies, 0.95), 2),
            latency_max_s=round(max(latencies), 2),
            span_s=round(span_s, 2),
            throughput_jobs_per_min=round(len(completed) / span_s * 60, 1) if span_s > 0 else None,
        )
        claims = [claim for job in completed if (claim := job.claim_s) is not None]
        if claims:  # enqueue to claimed: the sensor's share of the latency
            figures.update(
                claim_p50_s=round(percentile(claims, 0.5), 3), claim_p95_s=round(percentile(claims, 0.95), 3)
            )
    reasons = sorted({job.failed_reason or "?" for job in jobs if job.state != "completed"})
    if reasons:
        figures["failed_reasons"] = reasons[:5]
    return figures


# The single 1024x1024 job's p50 limit, by the instance's Dagster storage: PostgreSQL is the
# production instance (deploy/dagster.production.yaml); SQLite is the development one (the
# project's dagster.yaml), where every run's events queue behind one writer.
SINGLE_1024_P50_LIMIT_S = {"postgresql": 2.0}
SINGLE_1024_P50_DEFAULT_LIMIT_S = 3.0
SINGLE_4096_P50_LIMIT_S = 5.0
CLAIM_P50_LIMIT_S, CLAIM_P95_LIMIT_S = 0.1, 1.0  # a job on an idle worker is claimed as it arrives
BURST_MIN_JOBS_PER_MIN = 60.0
BURST_MAX_CPU_S_PER_JOB = 1.5  # the database and Redis servers' CPU included
SUSTAINED_MAX_P95_S = 60.0
PARTITIONS_MAX_RATIO = 1.2  # with 100k partitions, within 20 % of the empty instance


def target(
    name: str, figure: float | None, limit: float, *, at_most: bool, unit: str, scenario: str = "", key: str = ""
) -> dict[str, Any]:
    """One verdict; `scenario` and `key` say which figure it judges (the report draws the limit there)."""
    met = figure is not None and (figure <= limit if at_most else figure >= limit)
    sign = "<=" if at_most else ">="
    return {
        "target": f"{name} {sign} {limit:g} {unit}",
        "figure": figure,
        "met": met,
        "scenario": scenario,
        "key": key,
        "limit": limit,
    }


def evaluate_targets(scenarios: dict[str, dict[str, Any]], dagster_storage: str = "sqlite") -> list[dict[str, Any]]:
    """The issue's targets for the scenarios that ran under one instance file, whose Dagster
    storage ("postgresql" or "sqlite") sets the single job's latency limit."""
    verdicts: list[dict[str, Any]] = []

    def judge(scenario: str, key: str, name: str, limit: float, unit: str, *, at_most: bool = True) -> None:
        if scenario in scenarios:
            figure = scenarios[scenario].get(key)
            verdicts.append(target(name, figure, limit, at_most=at_most, unit=unit, scenario=scenario, key=key))

    single_limit = SINGLE_1024_P50_LIMIT_S.get(dagster_storage, SINGLE_1024_P50_DEFAULT_LIMIT_S)
    judge("single_1024", "latency_p50_s", "single 1024x1024 p50", single_limit, "s")
    judge("single_1024", "claim_p50_s", "single 1024x1024 enqueue to claimed p50", CLAIM_P50_LIMIT_S, "s")
    judge("single_1024", "claim_p95_s", "single 1024x1024 enqueue to claimed p95", CLAIM_P95_LIMIT_S, "s")
    judge("single_4096", "latency_p50_s", "single 4096x4096 p50", SINGLE_4096_P50_LIMIT_S, "s")
    judge("burst_60", "throughput_jobs_per_min", "burst throughput", BURST_MIN_JOBS_PER_MIN, "jobs/min", at_most=False)
    judge("burst_60", "cpu_s_per_job", "burst CPU per job (database servers included)", BURST_MAX_CPU_S_PER_JOB, "s")
    judge("sustained", "latency_p95_s", "sustained p95", SUSTAINED_MAX_P95_S, "s")
    judge("sustained", "failed", "sustained failures", 0, "jobs")
    empty, many = scenarios.get("single_1024"), scenarios.get("single_1024_100k_partitions")
    if empty and many:
        for key, label in (("latency_p50_s", "latency p50"), ("cpu_s_per_job", "CPU per job")):
            ratio = round(many[key] / empty[key], 2) if empty.get(key) and many.get(key) is not None else None
            verdicts.append(
                target(
                    f"{label} with many partitions / empty",
                    ratio,
                    PARTITIONS_MAX_RATIO,
                    at_most=True,
                    unit="x",
                    scenario="single_1024_100k_partitions",
                    key=f"{key}_ratio",
                )
            )
    return verdicts
