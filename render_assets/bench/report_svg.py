"""The report's two charts as inline SVG (no script, no library, nothing fetched): each scenario's
latency distribution, and CPU per job stacked by process role."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

# Process roles in stacking order (the run's own work first, the shared servers last), and colours.
ROLE_COLOURS = {
    "run_worker": "#4e79a7",
    "run_worker_template": "#a0cbe8",
    "code_server": "#f28e2b",
    "daemon": "#e15759",
    "other": "#bab0ac",
    "reaped_unsampled": "#d4a6c8",
    "postgres_server": "#59a14f",
    "redis_server": "#b6992d",
}
FALLBACK_COLOUR = "#79706e"
FONT = 'font-family="system-ui, sans-serif" font-size="11"'


def nice_ticks(top: float, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least `top` (steps of 1, 2 or 5 times a power of ten)."""
    top = top if top > 0 else 1.0
    raw = top / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    return [round(step * index, 10) for index in range(math.ceil(top / step - 1e-9) + 1)]


def _num(value: float) -> str:
    return f"{value:.1f}" if value != int(value) else f"{value:.0f}"


def latency_plot(
    latencies_s: Sequence[float],
    p50: float | None,
    p95: float | None,
    limits: Sequence[tuple[str, float]] = (),
    width: int = 440,
    height: int = 220,
) -> str:
    """Share of jobs done within each latency (a step line through every job's latency), p50 and
    p95 dashed, each target's limit in red."""
    if not latencies_s:
        return f'<svg width="{width}" height="40" {FONT}><text x="4" y="24">no job completed</text></svg>'
    left, right, top, bottom = 44, 12, 12, 34
    ordered = sorted(latencies_s)
    ticks = nice_ticks(max([ordered[-1], *(limit for _, limit in limits)]) * 1.05)
    x_max = ticks[-1]
    plot_w, plot_h = width - left - right, height - top - bottom

    def x(value: float) -> float:
        return left + plot_w * value / x_max

    def y(share: float) -> float:
        return top + plot_h * (1 - share)

    parts = [f'<svg width="{width}" height="{height}" {FONT} role="img">']
    parts.append(f"<title>latency of {len(ordered)} jobs</title>")
    for tick in ticks:
        parts.append(f'<line x1="{x(tick):.1f}" y1="{top}" x2="{x(tick):.1f}" y2="{top + plot_h}" stroke="#eee"/>')
        parts.append(f'<text x="{x(tick):.1f}" y="{top + plot_h + 14}" text-anchor="middle">{_num(tick)}</text>')
    for share in (0, 0.5, 1):
        parts.append(f'<text x="{left - 4}" y="{y(share) + 4:.1f}" text-anchor="end">{share:.0%}</text>')
    parts.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 4}" text-anchor="middle">'
        "latency, enqueue to completed (s)</text>"
    )
    parts.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>')
    path = [f"M{x(ordered[0]):.1f},{y(0):.1f}"]
    for index, value in enumerate(ordered, start=1):
        path.append(f"H{x(value):.1f}V{y(index / len(ordered)):.1f}")
    path.append(f"H{x(x_max):.1f}")
    parts.append(f'<path d="{"".join(path)}" fill="none" stroke="#4e79a7" stroke-width="2"/>')
    for index, value in enumerate(ordered, start=1):
        parts.append(
            f'<circle cx="{x(value):.1f}" cy="{y(index / len(ordered)):.1f}" r="2" fill="#4e79a7">'
            f"<title>{value:g} s</title></circle>"
        )
    for label, mark, offset in (("p50", p50, 12), ("p95", p95, 24)):
        if mark is not None:
            parts.append(
                f'<line x1="{x(mark):.1f}" y1="{top}" x2="{x(mark):.1f}" y2="{top + plot_h}" '
                'stroke="#333" stroke-dasharray="4 3"/>'
            )
            # Right of the line, or left of it in the plot's right third (the text would run out).
            anchor = (
                f'x="{x(mark) - 3:.1f}" text-anchor="end"'
                if x(mark) > left + plot_w * 0.7
                else f'x="{x(mark) + 3:.1f}"'
            )
            parts.append(f'<text {anchor} y="{top + plot_h - offset}">{label} {mark:g} s</text>')
    for row, (label, limit) in enumerate(limits):
        parts.append(f'<line x1="{x(limit):.1f}" y1="{top}" x2="{x(limit):.1f}" y2="{top + plot_h}" stroke="#d62728"/>')
        parts.append(
            f'<text x="{x(limit) - 3:.1f}" y="{top + 12 + 12 * row}" text-anchor="end" fill="#d62728">'
            f"{escape(label)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def cpu_bars(
    rows: Sequence[tuple[str, dict[str, float]]],
    scale_max: float,
    limits: dict[str, float] | None = None,
    width: int = 620,
) -> str:
    """One bar per row (a scenario): CPU seconds per job, stacked by process role, the total at
    its end; a red mark where a row has a CPU target; a legend of the roles drawn."""
    limits = limits or {}
    label_w, bar_w, row_h = 200, width - 200 - 70, 22
    ticks = nice_ticks(scale_max)
    x_max = ticks[-1]
    roles = [role for role in ROLE_COLOURS if any(parts.get(role, 0) > 0 for _, parts in rows)]
    roles += sorted({role for _, parts in rows for role in parts if role not in ROLE_COLOURS})
    legend_rows = math.ceil(len(roles) / 4)
    height = 20 + row_h * len(rows) + 20 + 16 * legend_rows

    def x(value: float) -> float:
        return label_w + bar_w * value / x_max

    parts = [f'<svg width="{width}" height="{height}" {FONT} role="img">']
    parts.append("<title>CPU seconds per job by process role</title>")
    for tick in ticks:
        parts.append(
            f'<line x1="{x(tick):.1f}" y1="14" x2="{x(tick):.1f}" y2="{14 + row_h * len(rows)}" stroke="#eee"/>'
        )
        parts.append(f'<text x="{x(tick):.1f}" y="10" text-anchor="middle">{_num(tick)} s</text>')
    for row, (name, by_role) in enumerate(rows):
        top = 16 + row * row_h
        parts.append(f'<text x="{label_w - 6}" y="{top + 13}" text-anchor="end">{escape(name)}</text>')
        start = 0.0
        for role in roles:
            value = max(0.0, by_role.get(role, 0.0))  # a role's share can round below zero
            if value <= 0:
                continue
            colour = ROLE_COLOURS.get(role, FALLBACK_COLOUR)
            parts.append(
                f'<rect x="{x(start):.1f}" y="{top}" width="{x(start + value) - x(start):.1f}" height="{row_h - 6}" '
                f'fill="{colour}"><title>{escape(role)}: {value:g} s per job</title></rect>'
            )
            start += value
        parts.append(f'<text x="{x(start) + 4:.1f}" y="{top + 13}">{start:.2f} s</text>')
        if name in limits:
            mark = x(limits[name])
            parts.append(
                f'<line x1="{mark:.1f}" y1="{top - 2}" x2="{mark:.1f}" y2="{top + row_h - 4}" stroke="#d62728" '
                f'stroke-width="2"><title>target: at most {limits[name]:g} s per job</title></line>'
            )
    legend_top = 20 + row_h * len(rows) + 8
    for index, role in enumerate(roles):
        lx, ly = 10 + (index % 4) * 150, legend_top + (index // 4) * 16
        colour = ROLE_COLOURS.get(role, FALLBACK_COLOUR)
        parts.append(f'<rect x="{lx}" y="{ly}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{lx + 14}" y="{ly + 9}">{escape(role)}</text>')
    parts.append("</svg>")
    return "".join(parts)
