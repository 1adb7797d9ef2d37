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

    @property
    def latency_s(self) -> float:
        return (self.finished_ms - self.enqueued_ms) / 1000


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
            latency_p50_s=round(percentile(latencies, 0.5), 2),
            latency_p95_s=round(percentile(latencies, 0.95), 2),
            latency_max_s=round(max(latencies), 2),
            span_s=round(span_s, 2),
            throughput_jobs_per_min=round(len(completed) / span_s * 60, 1) if span_s > 0 else None,
        )
    reasons = sorted({job.failed_reason or "?" for job in jobs if job.state != "completed"})
    if reasons:
        figures["failed_reasons"] = reasons[:5]
    return figures


def target(name: str, figure: float | None, limit: float, *, at_most: bool, unit: str) -> dict[str, Any]:
    met = figure is not None and (figure <= limit if at_most else figure >= limit)
    sign = "<=" if at_most else ">="
    return {"target": f"{name} {sign} {limit:g} {unit}", "figure": figure, "met": met}


def evaluate_targets(scenarios: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets for the scenarios that ran."""
    verdicts: list[dict[str, Any]] = []
    one = scenarios.get("single_1024")
    if one:
        verdicts.append(target("single 1024x1024 p50", one.get("latency_p50_s"), 4, at_most=True, unit="s"))
    big = scenarios.get("single_4096")
    if big:
        verdicts.append(target("single 4096x4096 p50", big.get("latency_p50_s"), 6, at_most=True, unit="s"))
    burst = scenarios.get("burst_60")
    if burst:
        verdicts.append(
            target("burst throughput", burst.get("throughput_jobs_per_min"), 60, at_most=False, unit="jobs/min")
        )
        verdicts.append(target("burst CPU per job", burst.get("cpu_s_per_job"), 2, at_most=True, unit="s"))
    sustained = scenarios.get("sustained")
    if sustained:
        verdicts.append(target("sustained p95", sustained.get("latency_p95_s"), 60, at_most=True, unit="s"))
        verdicts.append(target("sustained failures", sustained.get("failed"), 0, at_most=True, unit="jobs"))
    many = scenarios.get("single_1024_100k_partitions")
    if one and many:
        for key, label in (("latency_p50_s", "latency p50"), ("cpu_s_per_job", "CPU per job")):
            if one.get(key) and many.get(key) is not None:
                ratio = round(many[key] / one[key], 2)
                verdicts.append(target(f"{label} with many partitions / empty", ratio, 1.2, at_most=True, unit="x"))
    return verdicts
