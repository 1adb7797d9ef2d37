"""`render-assets bench` (`make bench`): the real stack under the issue's scenarios, one JSON
document out. See README "Benchmark" for what each figure means and how it is measured.

Scenarios: one 1024x1024 job (repeated, one at a time), one 4096x4096 job, a burst of 60 jobs,
20 jobs a minute for 5 minutes with 13 s of simulated provider latency (8 s generation + 5 s
upscale: the local provider has one latency knob), and the single job again after 100,000
partitions were added to the instance. Each stack first runs one job that is not counted (see
`warmup` in the report). `--dagster-yaml` picks the instance file, so the same scenarios run under
Dagster's default run launcher (the project's dagster.yaml) and the forking one
(deploy/dagster.forking.yaml); figures carry CPU per job by process role.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from render_assets import config
from render_assets.bench.figures import FinishedJob, evaluate_targets, latency_figures
from render_assets.bench.jobs import bench_job, web_app_options
from render_assets.bench.process_sampler import SessionSampler
from render_assets.bench.stack import PROJECT_ROOT, BenchStack, running

SUSTAINED_LATENCY_S = 13.0  # 8 s generation + 5 s upscale, as one latency of the local provider
PARTITIONS_BATCH = 10_000
SCENARIOS = ("single_1024", "single_4096", "burst_60", "single_1024_100k_partitions", "sustained")


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


def _schedule(count: int, resolution: str, every_s: float = 0.0) -> Schedule:
    return [(index * every_s, bench_job(resolution)) for index in range(count)]


async def _drive(redis_url: str, queue_name: str, schedule: Schedule, timeout_s: float) -> list[FinishedJob]:
    """Enqueue on schedule through BullMQ (the web app's job name and options) and collect each
    job's BullMQ timestamps when it ends."""
    from bullmq import Job, Queue

    from render_assets.adapters.bullmq_queue import JOB_NAME

    queue = Queue(queue_name, {"connection": redis_url})
    started = time.monotonic()
    pending: list[str] = []
    finished: dict[str, FinishedJob] = {}
    upcoming = list(schedule)
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
                    finished[job_id] = FinishedJob(job_id, state, job.timestamp, job.finishedOn, job.failedReason)
                    pending.remove(job_id)
            await asyncio.sleep(0.1)
    finally:
        await queue.close()
    lost = [FinishedJob(job_id, "timed_out", 0, 0, f"not finished after {timeout_s:.0f}s") for job_id in pending]
    return list(finished.values()) + lost


def _wait_for_workers(sampler: SessionSampler, timeout_s: float = 60) -> None:
    # A run goes on after BullMQ hears (end events, teardown, exit); its CPU belongs to the job.
    deadline = time.monotonic() + timeout_s
    time.sleep(0.3)
    while sampler.live_run_workers() and time.monotonic() < deadline:
        time.sleep(0.1)


def _run_scenario(
    stack: BenchStack, sampler: SessionSampler, schedules: list[Schedule], timeout_s: float
) -> dict[str, Any]:
    """Each schedule in turn (one after the other finished); figures over all of them."""
    load_before = os.getloadavg()
    snapshot = sampler.snapshot()
    jobs: list[FinishedJob] = []
    for schedule in schedules:
        jobs += asyncio.run(_drive(stack.redis_url, stack.queue_name, schedule, timeout_s))
        _wait_for_workers(sampler)
    cpu_s = sampler.cpu_since(snapshot)
    by_role = sampler.cpu_by_role_since(snapshot)
    workers = sampler.run_workers_since(snapshot)
    figures = latency_figures(jobs)
    figures.update(
        cpu_s_total=round(cpu_s, 2),
        cpu_s_per_job=round(cpu_s / len(jobs), 2) if jobs else None,
        cpu_s_per_job_by_role={role: round(cpu / len(jobs), 2) for role, cpu in by_role.items()} if jobs else None,
        run_workers=len(workers),
        run_worker_cpu_s_mean=round(sum(w.cpu_s for w in workers) / len(workers), 2) if workers else None,
        run_worker_peak_rss_mb=round(max(w.peak_rss_kb for w in workers) / 1024, 1) if workers else None,
        load_average_before=[round(x, 2) for x in load_before],
        load_average_after=[round(x, 2) for x in os.getloadavg()],
    )
    if all(len(schedule) == 1 for schedule in schedules):
        # Jobs ran one at a time: throughput would only restate the latency.
        figures.pop("throughput_jobs_per_min", None)
    return figures


def _add_partitions(stack: BenchStack, count: int) -> dict[str, Any]:
    from dagster import DagsterInstance

    instance = DagsterInstance.from_config(str(stack.home))
    started = time.perf_counter()
    try:
        for first in range(0, count, PARTITIONS_BATCH):
            keys = [f"bench-old-{index:07d}" for index in range(first, min(count, first + PARTITIONS_BATCH))]
            instance.add_dynamic_partitions("render_jobs", keys)
        total = len(instance.get_dynamic_partitions("render_jobs"))
    finally:
        instance.dispose()
    return {"partitions_added": count, "partitions_total": total, "add_s": round(time.perf_counter() - started, 1)}


def _baseline(database_url: str, redis_url: str, resolution: str, count: int) -> dict[str, Any]:
    completed = subprocess.run(
        [
            *(sys.executable, "-m", "render_assets.bench.baseline"),
            *("--resolution", resolution, "--count", str(count)),
            *("--database-url", database_url, "--redis-url", redis_url),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        return {"error": completed.stderr.strip().splitlines()[-1] if completed.stderr.strip() else "failed"}
    return dict(json.loads(completed.stdout.strip().splitlines()[-1]))


def _stack_scenarios(
    stack: BenchStack, selected: list[str], sizes: Sizes, log: Callable[[str], None]
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(the warm-up job's figures, each scenario's figures)."""
    results: dict[str, dict[str, Any]] = {}
    sampler = SessionSampler(stack.session_id).start()
    try:
        # One job first, not counted: a long-running daemon is warm (the code server has loaded the
        # code; a forking launcher's template has imported it), and each launcher warms differently.
        warmup = _run_scenario(stack, sampler, [_schedule(1, "1024x1024")], 240)
        log(f"warm-up job: {json.dumps(warmup)}")
        plans: dict[str, Callable[[], dict[str, Any]]] = {
            "single_1024": lambda: _run_scenario(
                stack, sampler, [_schedule(1, "1024x1024") for _ in range(sizes.single_repeats)], 120
            ),
            "single_4096": lambda: _run_scenario(
                stack, sampler, [_schedule(1, "4096x4096") for _ in range(sizes.big_repeats)], 180
            ),
            "burst_60": lambda: _run_scenario(stack, sampler, [_schedule(sizes.burst, "1024x1024")], 900),
            "single_1024_100k_partitions": lambda: {
                **_add_partitions(stack, sizes.partitions),
                **_run_scenario(stack, sampler, [_schedule(1, "1024x1024") for _ in range(sizes.single_repeats)], 120),
            },
            "sustained": lambda: _run_scenario(
                stack,
                sampler,
                [
                    _schedule(
                        int(sizes.sustained_per_min * sizes.sustained_minutes),
                        "1024x1024",
                        every_s=60 / sizes.sustained_per_min,
                    )
                ],
                sizes.sustained_minutes * 60 + 600,
            ),
        }
        for name in selected:
            log(f"scenario {name} ...")
            results[name] = plans[name]()
            log(f"scenario {name}: {json.dumps(results[name])}")
    finally:
        sampler.stop()
    return warmup, results


def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    selected = list(SCENARIOS) if args.scenario == "all" else scenario_list(args.scenario)
    sizes = Sizes.for_mode(args.quick)

    def log(line: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)

    dagster_yaml = Path(args.dagster_yaml).resolve()
    report: dict[str, Any] = {
        "mode": "quick" if args.quick else "full",
        "machine": {"cpus": os.cpu_count(), "load_average_at_start": [round(x, 2) for x in os.getloadavg()]},
        "dagster_yaml": str(dagster_yaml),
        "run_launcher": run_launcher_of(dagster_yaml),
        "warmup": {},
        "scenarios": {},
    }
    with tempfile.TemporaryDirectory(prefix="render-bench-") as folder:
        root = Path(folder)
        database_url = args.database_url or f"sqlite:///{root / 'render_assets.db'}"
        report["database"] = "postgresql" if database_url.startswith("postgres") else "sqlite"
        from render_assets.migrations import upgrade

        upgrade(database_url)
        groups = [
            (0.0, [name for name in selected if name != "sustained"]),
            (SUSTAINED_LATENCY_S, [name for name in selected if name == "sustained"]),
        ]
        for latency_s, names in groups:
            if not names:
                continue
            stack = BenchStack(
                root / f"stack-{latency_s:g}", args.redis_url, database_url, latency_s, dagster_yaml=dagster_yaml
            )
            log(f"starting dagster-daemon (provider latency {latency_s:g} s, {report['run_launcher']}) ...")
            with running(stack):
                log(f"stack up; queue {stack.queue_name}")
                warmup, figures = _stack_scenarios(stack, names, sizes, log)
                report["warmup"][f"latency_{latency_s:g}s"] = warmup
                report["scenarios"].update(figures)
        resolutions = {"single_4096": "4096x4096"}
        for resolution in sorted({resolutions.get(name, "1024x1024") for name in selected}):
            log(f"baseline without Dagster at {resolution} ...")
            report.setdefault("baseline_without_dagster", {})[resolution] = _baseline(
                database_url, args.redis_url, resolution, sizes.baseline_jobs
            )
    for name, figures in report["scenarios"].items():
        base = report.get("baseline_without_dagster", {}).get(resolutions.get(name, "1024x1024"), {})
        if figures.get("cpu_s_per_job") and base.get("cpu_s_per_job"):
            figures["overhead_ratio_cpu"] = round(figures["cpu_s_per_job"] / base["cpu_s_per_job"], 2)
    report["targets"] = evaluate_targets(report["scenarios"])
    report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return report


def run_launcher_of(dagster_yaml: Path) -> str:
    """The run launcher class an instance file configures (Dagster's default when it names none)."""
    import yaml

    settings = yaml.safe_load(dagster_yaml.read_text()) or {}
    launcher = settings.get("run_launcher") or {}
    return str(launcher.get("class", "DefaultRunLauncher"))


def cmd_bench(args: argparse.Namespace) -> int:
    report = run_bench(args)
    print(json.dumps(report, indent=2))
    return 0


def scenario_list(text: str) -> list[str]:
    """`all` or comma-separated scenario names, run in the benchmark's own order."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown scenario {unknown[0] if unknown else text!r}; known: all, {', '.join(SCENARIOS)}"
        )
    return [name for name in SCENARIOS if name in names]


def add_bench_command(commands: Any) -> None:
    bench = commands.add_parser("bench", help="latency, throughput and CPU of the real stack (prints JSON)")
    bench.add_argument(
        "--scenario",
        type=lambda text: text if text == "all" else ",".join(scenario_list(text)),
        default="all",
        help=f"all (default) or comma-separated: {', '.join(SCENARIOS)}",
    )
    bench.add_argument("--quick", action="store_true", help="small counts and durations: a smoke run")
    bench.add_argument(
        "--database-url",
        default=config.BENCH_DATABASE_URL.value(),
        help="the project database (PostgreSQL); default BENCH_DATABASE_URL, else a temporary SQLite file",
    )
    bench.add_argument("--redis-url", default=config.REDIS_URL.value())
    bench.add_argument(
        "--dagster-yaml",
        default=str(PROJECT_ROOT / "dagster.yaml"),
        help="the Dagster instance file for the stack (default: the project's dagster.yaml; "
        "deploy/dagster.forking.yaml for the forking run launcher)",
    )
    bench.set_defaults(run=cmd_bench)
