"""The benchmark's outputs a person reads: the HTML page beside the JSON report (every scenario,
every target met or not, charts inline), and the command line that picks the instance files."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from render_assets.bench.figures import evaluate_targets
from render_assets.bench.instances import DEFAULT_INSTANCE_FILES, instance_files, instance_labels
from render_assets.bench.report_files import write_reports
from render_assets.bench.report_svg import cpu_bars, latency_plot, nice_ticks
from render_assets.cli import parser


def _scenarios(p50: float) -> dict[str, dict[str, Any]]:
    roles = {"daemon": 0.1, "code_server": 0.05, "run_worker": 0.6, "postgres_server": 0.3, "redis_server": 0.05}
    one = {"jobs": 3, "failed": 0, "latencies_s": [p50 - 0.2, p50, p50 + 0.4], "latency_p50_s": p50}
    return {
        "single_1024": {**one, "latency_p95_s": p50 + 0.4, "cpu_s_per_job": 1.1, "cpu_s_per_job_by_role": roles},
        "burst_60": {
            "jobs": 4,
            "failed": 1,
            "failed_reasons": ["quality check failed"],
            "latencies_s": [3.0, 5.0, 8.0],
            "latency_p50_s": 5.0,
            "latency_p95_s": 8.0,
            "throughput_jobs_per_min": 70.0,
            "cpu_s_per_job": 1.7,
            "cpu_s_per_job_by_role": {**roles, "run_worker": 1.2},
        },
    }


def synthetic_report() -> dict[str, Any]:
    instances: dict[str, Any] = {}
    for label, storage, p50 in (("dagster.yaml", "sqlite", 2.5), ("dagster.production.yaml", "postgresql", 2.5)):
        scenarios = _scenarios(p50)
        instances[label] = {
            "dagster_yaml": f"/x/{label}",
            "run_launcher": "ForkingRunLauncher",
            "dagster_storage": storage,
            "project_database": storage,
            "warmup": {"latency_0s": {"latency_p50_s": 4.0, "cpu_s_per_job": 3.0}},
            "scenarios": scenarios,
            "targets": evaluate_targets(scenarios, storage),
        }
    instances["broken.yaml"] = {"dagster_yaml": "/x/broken.yaml", "error": "dagster-daemon exited with 1 <oops>"}
    return {"mode": "quick", "machine": {"cpus": 2}, "instances": instances}


def test_the_html_report_shows_every_scenario_and_target(tmp_path: Path) -> None:
    report = synthetic_report()
    json_path, html_path = write_reports(report, tmp_path / "out")
    assert json.loads(json_path.read_text()) == report
    page = html_path.read_text()
    assert page.count("<svg") >= 5  # per instance: CPU bars, a latency plot per scenario
    for name in ("single_1024", "burst_60"):
        assert name in page
    for section in report["instances"].values():
        for verdict in section.get("targets", []):
            verdict_cell = '<td class="met">met</td>' if verdict["met"] else '<td class="not-met">not met</td>'
            assert re.search(
                re.escape(verdict["target"].replace(">", "&gt;").replace("<", "&lt;"))
                + r".*?"
                + re.escape(verdict_cell),
                page,
            )
    # The same p50 meets the development limit (3 s) and misses production's (2 s).
    assert "single 1024x1024 p50 &lt;= 3 s" in page and "single 1024x1024 p50 &lt;= 2 s" in page
    assert "postgres_server" in page and "redis_server" in page  # the database server's CPU is drawn
    assert "&lt;oops&gt;" in page  # a failed instance file says why, escaped
    # Self-contained: no script, nothing fetched.
    assert "<script" not in page and "http://" not in page and "https://" not in page


def test_a_scenario_without_completed_jobs_still_draws() -> None:
    assert "no job completed" in latency_plot([], None, None)
    plot = latency_plot([1.0, 2.0, 9.0], 2.0, 9.0, [("target p50 ≤ 2 s", 2.0)])
    assert plot.count("<circle") == 3 and "p95 9 s" in plot and "target p50" in plot
    bars = cpu_bars([("burst_60", {"run_worker": 1.0, "reaped_unsampled": -0.01})], 1.0, {"burst_60": 1.5})
    assert "reaped_unsampled" not in bars  # a share rounded below zero is not drawn
    assert nice_ticks(7.3) == [0, 2, 4, 6, 8]


def test_dagster_yaml_repeats_and_takes_commas(tmp_path: Path) -> None:
    files = []
    for name in ("a.yaml", "b.yaml", "c.yaml"):
        files.append(tmp_path / name)
        files[-1].write_text("telemetry:\n  enabled: false\n")
    a, b, c = (str(path) for path in files)
    args = parser().parse_args(["bench", "--dagster-yaml", a, "--dagster-yaml", f"{b},{c}", "--dagster-yaml", a])
    assert instance_files(args.dagster_yaml) == files  # in order, each once
    assert instance_files(parser().parse_args(["bench"]).dagster_yaml) == list(DEFAULT_INSTANCE_FILES)
    assert parser().parse_args(["bench", "--out", str(tmp_path)]).out == str(tmp_path)
    with pytest.raises(SystemExit):
        parser().parse_args(["bench", "--dagster-yaml", str(tmp_path / "missing.yaml")])


def test_instance_files_are_named_so_none_clash() -> None:
    paths = [Path("/p/dagster.yaml"), Path("/p/deploy/dagster.production.yaml")]
    assert instance_labels(paths) == ["dagster.yaml", "dagster.production.yaml"]
    clash = [Path("/p/dagster.yaml"), Path("/p/deploy/docker/dagster.yaml")]
    assert instance_labels(clash) == ["p/dagster.yaml", "docker/dagster.yaml"]
