"""The benchmark's scenarios on one running stack: enqueue on a schedule through BullMQ, wait for
every job to end, and figure latency, throughput and CPU per job (the database servers' included).

Scenarios: one 1024x1024 job (repeated, one at a time), one 4096x4096 job, a burst of 60 jobs,
the single job again after 100,000 partitions were added to the instance, and 20 jobs a minute for
5 minutes with 13 s of simulated provider latency (on a stack of its own: the local provider has
one latency knob). Each stack first runs one job that is not counted (`warmup`).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from render_assets.bench.figures import FinishedJob, latency_figures
from render_assets.bench.jobs import bench_job, web_app_options
from render_assets.bench.process_sampler import SessionSampler
from render_assets.bench.progress import Progress, log
from render_assets.bench.server_processes import SERVER_NAMES, Server, servers_in_use
from render_assets.bench.stack import BenchStack

SUSTAINED_LATENCY_S = 13.0  # 8 s generation + 5 s upscale, as one latency of the local provider
PARTITIONS_BATCH = 10_000
SCENARIOS = ("single_1024", "single_4096", "burst_60", "single_1024_100k_partitions", "sustained")
# Which baseline (the pipeline without Dagster) each scenario compares with.
RESOLUTIONS = {"single_4096": "4096x4096"}


@dataclass(frozen=True)
class Sizes:
    single_repeats: int
    big_repeats: int
    burst: int
    sustained_per_min: int
    sustained_minutes: float
    partitions: int
    baseline_jobs: int

    @classmethod
    def for_mode(cls, quick: bool) -> Sizes:
        if quick:
            return cls(2, 1, 10, 20, 1.0, 5_000, 1)
        return cls(5, 3, 60, 20, 5.0, 100_000, 3)


# (seconds after the scenario's start, job payload)
Schedule = list[tuple[float, dict[str, Any]]]


def schedule(count: int, resolution: str, every_s: float = 0.0) -> Schedule:
    return [(index * every_s, bench_job(resolution)) for index in range(count)]


async def drive(
    redis_url: str, queue_name: str, plan: Schedule, timeout_s: float, progress: Progress
) -> list[FinishedJob]:
    """Enqueue on schedule through BullMQ (the web app's job name and options) and collect each
    job's BullMQ timestamps when it ends."""
    from bullmq import Job, Queue

    from render_assets.adapters.bullmq_queue import JOB_NAME

    queue = Queue(queue_name, {"connection": redis_url})
    started = time.monotonic()
    pending: list[str] = []
    finished: dict[str, FinishedJob] = {}
    upcoming = list(plan)
    try:
        while (upcoming or pending) and time.monotonic() - started < timeout_s:
            while upcoming and upcoming[0][0] <= time.monotonic() - started:
                _, data = upcoming.pop(0)
                pending.append(str((await queue.add(JOB_NAME, data, web_app_options(data))).id))
            for job_id in list(pending):
                job = await Job.fromId(queue, job_id)
                if job is None or not job.finishedOn:
                    continue
                state = str(await job.getState())
                if state in ("completed", "failed"):
                    finished[job_id] = FinishedJob(
                        job_id, state, job.timestamp, job.finishedOn, job.failedReason, job.processedOn or None
                    )
                    pending.remove(job_id)
                    progress.job_finished(state == "completed")
            progress.tick()
            await asyncio.sleep(0.1)
    finally:
        await queue.close()
    lost = [FinishedJob(job_id, "timed_out", 0, 0, f"not finished after {timeout_s:.0f}s") for job_id in pending]
    for _ in lost:
        progress.job_finished(False)
    return list(finished.values()) + lost


def _wait_for_workers(sampler: SessionSampler, timeout_s: float = 60) -> None:
    # A run goes on after BullMQ hears (end events, teardown, exit); its CPU belongs to the job.
    deadline = time.monotonic() + timeout_s
    time.sleep(0.3)
    while sampler.live_run_workers() and time.monotonic() < deadline:
        time.sleep(0.1)


def run_scenario(
    label: str, stack: BenchStack, sampler: SessionSampler, plans: list[Schedule], timeout_s: float
) -> dict[str, Any]:
    """Each schedule in turn (one after the other finished); figures over all of them."""
    load_before = os.getloadavg()
    snapshot = sampler.snapshot()
    jobs: list[FinishedJob] = []
    with Progress(label, sum(len(plan) for plan in plans)) as progress:
        for plan in plans:
            jobs += asyncio.run(drive(stack.redis_url, stack.queue_name, plan, timeout_s, progress))
            _wait_for_workers(sampler)
    by_role = sampler.cpu_by_role_since(snapshot)
    servers_s = sum(cpu_s for role, cpu_s in by_role.items() if role in SERVER_NAMES)
    cpu_s = sum(by_role.values())
    workers = sampler.run_workers_since(snapshot)
    figures = latency_figures(jobs)

    def per_job(seconds: float) -> float | None:
        return round(seconds / len(jobs), 2) if jobs else None

    figures.update(
        cpu_s_total=round(cpu_s, 2),
        # Everything the jobs cost: the daemon's session and the PostgreSQL and Redis servers.
        cpu_s_per_job=per_job(cpu_s),
        # The daemon's session alone: what the pipeline without Dagster (the baseline) compares with.
        cpu_s_per_job_stack=per_job(cpu_s - servers_s),
        cpu_s_per_job_by_role={role: per_job(cpu) for role, cpu in by_role.items()} if jobs else None,
        run_workers=len(workers),
        run_worker_cpu_s_mean=round(sum(w.cpu_s for w in workers) / len(workers), 2) if workers else None,
        run_worker_peak_rss_mb=round(max(w.peak_rss_kb for w in workers) / 1024, 1) if workers else None,
        load_average_before=[round(x, 2) for x in load_before],
        load_average_after=[round(x, 2) for x in os.getloadavg()],
    )
    if all(len(plan) == 1 for plan in plans):
        # Jobs ran one at a time: throughput would only restate the latency.
        figures.pop("throughput_jobs_per_min", None)
    return figures


def add_partitions(label: str, stack: BenchStack, count: int) -> dict[str, Any]:
    from dagster import DagsterInstance

    instance = DagsterInstance.from_config(str(stack.home))
    started = time.perf_counter()
    try:
        with Progress(label, count, unit="partitions") as progress:
            for first in range(0, count, PARTITIONS_BATCH):
                keys = [f"bench-old-{index:07d}" for index in range(first, min(count, first + PARTITIONS_BATCH))]
                instance.add_dynamic_partitions("render_jobs", keys)
                progress.advance(len(keys))
        total = len(instance.get_dynamic_partitions("render_jobs"))
    finally:
        instance.dispose()
    return {"partitions_added": count, "partitions_total": total, "add_s": round(time.perf_counter() - started, 1)}


def stack_servers(stack: BenchStack) -> list[Server]:
    """The PostgreSQL servers (project database, Dagster storage) and the Redis the stack uses."""
    urls = [stack.database_url, stack.instance_env.get("DAGSTER_PG_URL", "")]
    return servers_in_use([url for url in urls if url.startswith("postgres")], stack.redis_url)


def stack_scenarios(
    instance: str, stack: BenchStack, servers: list[Server], selected: list[str], sizes: Sizes
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(the warm-up job's figures, each scenario's figures) on one running stack, the CPU of
    `servers` counted with the daemon session's."""
    results: dict[str, dict[str, Any]] = {}
    sampler = SessionSampler(stack.session_id, servers=servers).start()

    def run(name: str, plans: list[Schedule], timeout_s: float) -> dict[str, Any]:
        return run_scenario(f"{instance} {name}", stack, sampler, plans, timeout_s)

    try:
        # One job first, not counted: a long-running daemon is warm (the code server has loaded the
        # code; a forking launcher's template has imported it), and each launcher warms differently.
        warmup = run("warm-up", [schedule(1, "1024x1024")], 240)
        log(f"{instance} warm-up job: {json.dumps(_brief(warmup))}")
        single = [schedule(1, "1024x1024") for _ in range(sizes.single_repeats)]
        sustained_jobs = int(sizes.sustained_per_min * sizes.sustained_minutes)
        plans: dict[str, Callable[[], dict[str, Any]]] = {
            "single_1024": lambda: run("single_1024", single, 120),
            "single_4096": lambda: run(
                "single_4096", [schedule(1, "4096x4096") for _ in range(sizes.big_repeats)], 180
            ),
            "burst_60": lambda: run("burst_60", [schedule(sizes.burst, "1024x1024")], 900),
            "single_1024_100k_partitions": lambda: {
                **add_partitions(f"{instance} adding partitions", stack, sizes.partitions),
                **run(
                    "single_1024_100k_partitions",
                    [schedule(1, "1024x1024") for _ in range(sizes.single_repeats)],
                    120,
                ),
            },
            "sustained": lambda: run(
                "sustained",
                [schedule(sustained_jobs, "1024x1024", every_s=60 / sizes.sustained_per_min)],
                sizes.sustained_minutes * 60 + 600,
            ),
        }
        for name in selected:
            log(f"{instance} scenario {name} ...")
            results[name] = plans[name]()
            log(f"{instance} scenario {name}: {json.dumps(_brief(results[name]))}")
    finally:
        sampler.stop()
    return warmup, results


def _brief(figures: dict[str, Any]) -> dict[str, Any]:
    # The log line leaves out each job's latency: the report files have them.
    return {key: value for key, value in figures.items() if key != "latencies_s"}
