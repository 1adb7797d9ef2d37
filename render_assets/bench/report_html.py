"""The benchmark's report as one self-contained HTML page: per instance file, its targets met or
not, CPU per job by process role, and each scenario's latency distribution; the instance files
side by side at the top. Inline CSS and SVG only, so the file opens anywhere, offline."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from render_assets.bench.report_svg import cpu_bars, latency_plot

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1100px; }
h2 { border-bottom: 2px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .6em 0 1.2em; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: left; font-size: 14px; }
th { background: #f4f4f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.met { color: #1a7f37; font-weight: 600; }
.not-met { color: #c62828; font-weight: 600; }
.scenarios { display: flex; flex-wrap: wrap; gap: 1.5em; }
.scenario { border: 1px solid #ddd; border-radius: 6px; padding: .6em .9em; }
.scenario h4 { margin: .2em 0 .4em; }
.error { color: #c62828; }
.note { color: #555; font-size: 13px; }
"""
# The figures each scenario card and the side-by-side table show, in this order.
FIGURES = (
    ("jobs", "jobs"),
    ("failed", "failed"),
    ("latency_p50_s", "p50 (s)"),
    ("latency_p95_s", "p95 (s)"),
    ("latency_max_s", "max (s)"),
    ("throughput_jobs_per_min", "jobs/min"),
    ("cpu_s_per_job", "CPU-s/job (all)"),
    ("cpu_s_per_job_stack", "CPU-s/job (Dagster session)"),
    ("overhead_ratio_cpu", "CPU vs baseline (x)"),
    ("run_worker_peak_rss_mb", "run worker peak RSS (MB)"),
)
LATENCY_KEYS = ("latency_p50_s", "latency_p95_s")


def _cell(value: Any) -> str:
    if value is None:
        return '<td class="num">&ndash;</td>'
    if isinstance(value, int | float):
        return f'<td class="num">{value:g}</td>'
    return f"<td>{escape(str(value))}</td>"


def _verdict(met: bool) -> str:
    return '<td class="met">met</td>' if met else '<td class="not-met">not met</td>'


def targets_table(verdicts: list[dict[str, Any]]) -> str:
    if not verdicts:
        return '<p class="note">No target applies to the scenarios that ran.</p>'
    rows = "".join(
        f"<tr><td>{escape(v['target'])}</td>{_cell(v['figure'])}{_verdict(bool(v['met']))}</tr>" for v in verdicts
    )
    return f"<table><tr><th>target</th><th>figure</th><th>verdict</th></tr>{rows}</table>"


def side_by_side(instances: dict[str, dict[str, Any]]) -> str:
    """One row per scenario and instance file: the headline figures, comparable at a glance."""
    names = list(dict.fromkeys(name for section in instances.values() for name in section.get("scenarios", {})))
    header = "".join(f"<th>{escape(label)}</th>" for _, label in FIGURES[:8])
    rows = []
    for name in names:
        for label, section in instances.items():
            figures = section.get("scenarios", {}).get(name)
            if figures is not None:
                cells = "".join(_cell(figures.get(key)) for key, _ in FIGURES[:8])
                rows.append(f"<tr><td>{escape(name)}</td><td>{escape(label)}</td>{cells}</tr>")
    verdicts = []
    for label, section in instances.items():
        targets = section.get("targets", [])
        met = sum(1 for verdict in targets if verdict["met"])
        cell = (
            "<td class='not-met'>the stack failed</td>" if "error" in section else f"<td>{met} of {len(targets)}</td>"
        )
        verdicts.append(f"<tr><td>{escape(label)}</td>{cell}</tr>")
    return (
        f"<table><tr><th>scenario</th><th>instance file</th>{header}</tr>{''.join(rows)}</table>"
        f"<table><tr><th>instance file</th><th>targets met</th></tr>{''.join(verdicts)}</table>"
    )


def scenario_card(name: str, figures: dict[str, Any], verdicts: list[dict[str, Any]]) -> str:
    limits = [
        (f"target {v['key'].split('_')[1]} ≤ {v['limit']:g} s", float(v["limit"]))
        for v in verdicts
        if v.get("scenario") == name and v.get("key") in LATENCY_KEYS
    ]
    plot = latency_plot(
        figures.get("latencies_s") or [], figures.get("latency_p50_s"), figures.get("latency_p95_s"), limits
    )
    rows = "".join(
        f"<tr><th>{escape(label)}</th>{_cell(figures.get(key))}</tr>" for key, label in FIGURES if key in figures
    )
    reasons = figures.get("failed_reasons") or []
    failures = f'<p class="error">failed: {escape("; ".join(map(str, reasons)))}</p>' if reasons else ""
    return f'<div class="scenario"><h4>{escape(name)}</h4>{plot}<table>{rows}</table>{failures}</div>'


def instance_section(label: str, section: dict[str, Any], cpu_scale: float) -> str:
    head = (
        f"<h2>{escape(label)}</h2><p>{escape(str(section.get('dagster_yaml', '')))} · run launcher "
        f"<b>{escape(str(section.get('run_launcher')))}</b> · Dagster storage "
        f"<b>{escape(str(section.get('dagster_storage')))}</b> · project database "
        f"<b>{escape(str(section.get('project_database', '?')))}</b></p>"
    )
    if "error" in section:
        return f'{head}<p class="error">The stack failed: {escape(str(section["error"]))}</p>'
    scenarios: dict[str, dict[str, Any]] = section.get("scenarios", {})
    verdicts: list[dict[str, Any]] = section.get("targets", [])
    rows = [(name, figures.get("cpu_s_per_job_by_role") or {}) for name, figures in scenarios.items()]
    cpu_limits = {
        v["scenario"]: float(v["limit"]) for v in verdicts if v.get("key") == "cpu_s_per_job" and v.get("scenario")
    }
    warmups = "".join(
        f"<li>{escape(name)}: {figures.get('latency_p50_s')} s, {figures.get('cpu_s_per_job')} CPU-s per job</li>"
        for name, figures in section.get("warmup", {}).items()
    )
    cards = "".join(scenario_card(name, figures, verdicts) for name, figures in scenarios.items())
    return (
        f"{head}<h3>Targets</h3>{targets_table(verdicts)}"
        "<h3>CPU per job by process role</h3>"
        f"{cpu_bars(rows, cpu_scale, cpu_limits) if rows else '<p>no scenario ran</p>'}"
        f"<h3>Latency per scenario</h3><div class='scenarios'>{cards}</div>"
        f"<div class='note'>Warm-up jobs (not counted), latency and CPU: <ul>{warmups}</ul></div>"
    )


def render_html(report: dict[str, Any]) -> str:
    instances: dict[str, dict[str, Any]] = report.get("instances", {})
    # One CPU scale for every instance file, so their bars compare by length.
    totals = [
        sum(max(0.0, value) for value in (figures.get("cpu_s_per_job_by_role") or {}).values())
        for section in instances.values()
        for figures in section.get("scenarios", {}).values()
    ]
    cpu_scale = max([*totals, 0.5])
    machine = report.get("machine", {})
    sections = "".join(instance_section(label, section, cpu_scale) for label, section in instances.items())
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>render-assets bench</title><style>{STYLE}</style></head><body>"
        f"<h1>render-assets bench ({escape(str(report.get('mode', '')))})</h1>"
        f"<p class='note'>{escape(str(report.get('started_at', '')))} · {machine.get('cpus')} CPUs · load average "
        f"{machine.get('load_average_at_start')} at start, {machine.get('load_average_at_end')} at end. "
        "Latency is BullMQ's (enqueue to completed). CPU per job counts the daemon's session and the "
        "PostgreSQL and Redis servers, so it holds on an otherwise idle machine only.</p>"
        f"<h2>Side by side</h2>{side_by_side(instances)}{sections}</body></html>"
    )


def write_html(report: dict[str, Any], path: Path) -> Path:
    path.write_text(render_html(report), encoding="utf-8")
    return path
