"""`render-assets bench` (`make bench`): the real stack under the issue's scenarios, once per
Dagster instance file (by default the project's dagster.yaml, SQLite, beside
deploy/dagster.production.yaml, PostgreSQL), one JSON document out (stdout and a file) and an HTML
page beside it. See README "Benchmark" for what each figure means and how it is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy.exc import OperationalError

from render_assets import config
from render_assets.bench import databases
from render_assets.bench.figures import evaluate_targets
from render_assets.bench.instances import describe, instance_files, instance_labels
from render_assets.bench.progress import log
from render_assets.bench.report_files import write_reports
from render_assets.bench.scenarios import (
    RESOLUTIONS,
    SCENARIOS,
    SUSTAINED_LATENCY_S,
    Sizes,
    stack_scenarios,
    stack_servers,
)
from render_assets.bench.stack import PROJECT_ROOT, BenchStack, StackError, running

DEFAULT_OUT = PROJECT_ROOT / ".data" / "bench"


def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    # The parser checked the names and put them in SCENARIOS's order.
    selected = list(SCENARIOS) if args.scenario == "all" else args.scenario.split(",")
    sizes = Sizes.for_mode(args.quick)
    files = instance_files(args.dagster_yaml)
    report: dict[str, Any] = {
        "mode": "quick" if args.quick else "full",
        "started_at": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "machine": {"cpus": os.cpu_count(), "load_average_at_start": [round(x, 2) for x in os.getloadavg()]},
        "instances": {},
    }
    with tempfile.TemporaryDirectory(prefix="render-bench-") as folder:
        for index, (label, path) in enumerate(zip(instance_labels(files), files, strict=True)):
            root = Path(folder) / f"instance-{index}"
            root.mkdir()
            try:
                report["instances"][label] = run_instance(label, path, root, args, selected, sizes)
            except (StackError, OperationalError) as error:
                # The other instance files still run: a report that says which one failed, and why.
                log(f"{label}: the stack failed: {error}")
                report["instances"][label] = {**describe(path), "error": str(error).splitlines()[0]}
    report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return report


def run_instance(
    label: str, dagster_yaml: Path, root: Path, args: argparse.Namespace, selected: list[str], sizes: Sizes
) -> dict[str, Any]:
    """Every selected scenario under one instance file: its section of the report."""
    from render_assets.migrations import upgrade

    section = describe(dagster_yaml)
    storage = section["dagster_storage"]
    database_url = databases.project_database(storage, args.database_url, root)
    section.update(project_database="postgresql" if databases.is_postgres(database_url) else "sqlite")
    section.update(warmup={}, scenarios={})
    upgrade(database_url)
    groups = [
        (0.0, [name for name in selected if name != "sustained"]),
        (SUSTAINED_LATENCY_S, [name for name in selected if name == "sustained"]),
    ]
    for latency_s, names in groups:
        if not names:
            continue
        # A fresh Dagster storage per stack: the sustained scenario must not find the 100k partitions.
        instance_env = databases.dagster_storage_env(storage, databases.server_url(args.database_url))
        stack = BenchStack(
            root / f"stack-{latency_s:g}",
            args.redis_url,
            database_url,
            latency_s,
            dagster_yaml=dagster_yaml,
            instance_env=instance_env,
        )
        log(
            f"{label}: starting dagster-daemon ({section['run_launcher']}, {storage} storage, "
            f"provider latency {latency_s:g} s) ..."
        )
        servers = stack_servers(stack)
        section["servers_counted"] = [f"{server.role} (pid {server.pid})" for server in servers]
        with running(stack):
            log(f"{label}: stack up; queue {stack.queue_name}; CPU counted too: {section['servers_counted']}")
            warmup, figures = stack_scenarios(label, stack, servers, names, sizes)
            section["warmup"][f"latency_{latency_s:g}s"] = warmup
            section["scenarios"].update(figures)
    baselines: dict[str, Any] = {}
    for resolution in sorted({RESOLUTIONS.get(name, "1024x1024") for name in selected}):
        log(f"{label}: baseline without Dagster at {resolution} ...")
        baselines[resolution] = _baseline(database_url, args.redis_url, resolution, sizes.baseline_jobs)
    section["baseline_without_dagster"] = baselines
    for name, figures in section["scenarios"].items():
        base = baselines.get(RESOLUTIONS.get(name, "1024x1024"), {})
        if figures.get("cpu_s_per_job_stack") and base.get("cpu_s_per_job"):
            # Like with like: the baseline process's own CPU against the daemon session's.
            figures["overhead_ratio_cpu"] = round(figures["cpu_s_per_job_stack"] / base["cpu_s_per_job"], 2)
    section["targets"] = evaluate_targets(section["scenarios"], storage)
    return section


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


def with_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """The command's arguments with the defaults the parser leaves as None: it reads no
    environment, so that `render-assets --help` imports nothing but the standard library."""
    return argparse.Namespace(
        **{
            **vars(args),
            "database_url": args.database_url or config.BENCH_DATABASE_URL.value(),
            "redis_url": args.redis_url or config.REDIS_URL.value(),
            "out": args.out or str(DEFAULT_OUT),
        }
    )


def log_targets(report: dict[str, Any]) -> None:
    for label, section in report["instances"].items():
        if "error" in section:
            log(f"{label}: no figures ({section['error']})")
        for verdict in section.get("targets", []):
            log(f"{label}: {verdict['target']}: {verdict['figure']} {'met' if verdict['met'] else 'NOT met'}")


def cmd_bench(args: argparse.Namespace) -> int:
    args = with_defaults(args)
    report = run_bench(args)
    print(json.dumps(report, indent=2), flush=True)
    log_targets(report)
    json_path, html_path = write_reports(report, Path(args.out))
    log(f"report: {html_path}")
    log(f"report: {json_path}")
    return 1 if any("error" in section for section in report["instances"].values()) else 0
