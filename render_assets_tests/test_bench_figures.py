"""The benchmark's arithmetic: nearest-rank percentiles, throughput from BullMQ timestamps, and
targets marked met or not (the figures themselves come from `make bench`)."""

from __future__ import annotations

from typing import Any

import pytest

from render_assets.bench.figures import FinishedJob, evaluate_targets, latency_figures, percentile


def test_percentiles_are_latencies_some_job_had() -> None:
    values = [float(v) for v in range(1, 21)]
    assert percentile(values, 0.5) == 10.0
    assert percentile(values, 0.95) == 19.0
    assert percentile([7.0], 0.95) == 7.0
    with pytest.raises(ValueError, match="no values"):
        percentile([], 0.5)


def test_latency_and_throughput_come_from_enqueue_and_finish_times() -> None:
    jobs = [
        FinishedJob("1", "completed", enqueued_ms=0, finished_ms=2_000, claimed_ms=40),
        FinishedJob("2", "completed", enqueued_ms=0, finished_ms=30_000, claimed_ms=900),
        FinishedJob("3", "failed", enqueued_ms=0, finished_ms=5_000, failed_reason="quality check failed"),
    ]
    figures = latency_figures(jobs)
    assert figures["completed"] == 2 and figures["failed"] == 1
    assert figures["latency_p50_s"] == 2.0 and figures["latency_max_s"] == 30.0
    assert figures["latencies_s"] == [2.0, 30.0]  # completed jobs only, for the report's plot
    assert figures["throughput_jobs_per_min"] == 4.0  # 2 jobs in 30 s
    assert figures["failed_reasons"] == ["quality check failed"]
    assert (figures["claim_p50_s"], figures["claim_p95_s"]) == (0.04, 0.9)  # enqueue to BullMQ's processedOn


def test_targets_are_marked_with_their_figures() -> None:
    scenarios = {
        "single_1024": {"latency_p50_s": 5.0, "cpu_s_per_job": 4.0, "claim_p50_s": 0.02, "claim_p95_s": 1.5},
        "burst_60": {"throughput_jobs_per_min": 61.0, "cpu_s_per_job": 1.6},
        "sustained": {"latency_p95_s": 40.0, "failed": 1},
        "single_1024_100k_partitions": {"latency_p50_s": 5.5, "cpu_s_per_job": 5.0},
    }
    verdicts = {v["target"]: (v["figure"], v["met"]) for v in evaluate_targets(scenarios)}
    assert verdicts["single 1024x1024 p50 <= 3 s"] == (5.0, False)
    assert verdicts["single 1024x1024 enqueue to claimed p50 <= 0.1 s"] == (0.02, True)
    assert verdicts["single 1024x1024 enqueue to claimed p95 <= 1 s"] == (1.5, False)
    assert verdicts["burst throughput >= 60 jobs/min"] == (61.0, True)
    assert verdicts["burst CPU per job (database servers included) <= 1.5 s"] == (1.6, False)
    assert verdicts["sustained p95 <= 60 s"] == (40.0, True)
    assert verdicts["sustained failures <= 0 jobs"] == (1, False)
    assert verdicts["latency p50 with many partitions / empty <= 1.2 x"] == (1.1, True)
    assert verdicts["CPU per job with many partitions / empty <= 1.2 x"] == (1.25, False)
    assert not any("4096" in name for name in verdicts)  # a scenario that did not run has no verdict


def test_the_single_job_limit_follows_the_instance_files_storage() -> None:
    scenarios = {"single_1024": {"latency_p50_s": 2.5}, "single_4096": {"latency_p50_s": 4.9}}
    production = {v["target"]: v for v in evaluate_targets(scenarios, "postgresql")}
    development = {v["target"]: v for v in evaluate_targets(scenarios, "sqlite")}
    assert production["single 1024x1024 p50 <= 2 s"]["met"] is False
    assert development["single 1024x1024 p50 <= 3 s"]["met"] is True
    for verdicts in (production, development):
        assert verdicts["single 4096x4096 p50 <= 5 s"]["met"] is True
    # Each verdict names the figure it judges, so the report draws its limit on that scenario's plot.
    one = production["single 1024x1024 p50 <= 2 s"]
    assert (one["scenario"], one["key"], one["limit"]) == ("single_1024", "latency_p50_s", 2.0)


def test_a_scenario_without_its_figure_misses_its_target() -> None:
    scenarios: dict[str, dict[str, Any]] = {
        "single_1024": {"latency_p50_s": 1.0, "cpu_s_per_job": 1.0},
        "burst_60": {"jobs": 60, "completed": 0, "failed": 60},  # every job failed: no throughput
        "single_1024_100k_partitions": {"jobs": 2, "completed": 0, "failed": 2},
    }
    verdicts = {v["target"]: (v["figure"], v["met"]) for v in evaluate_targets(scenarios, "postgresql")}
    assert verdicts["burst throughput >= 60 jobs/min"] == (None, False)
    assert verdicts["latency p50 with many partitions / empty <= 1.2 x"] == (None, False)
