"""`render-assets stats [--since 2h|ISO] [--json]`: outcomes, latencies, provider errors, credits."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from render_assets.persistence.models import utcnow
from render_assets.services.backends import DatabaseSettings, database_options
from render_assets.services.stats import collect, parse_since


def cmd_stats(args: argparse.Namespace) -> int:
    now = utcnow()
    try:
        since = parse_since(args.since, now)
    except ValueError as error:
        print(str(error), file=sys.stderr)
        return 2
    database = DatabaseSettings(**database_options()).open()
    try:
        with database.session() as session:
            stats = collect(session, since, now)
    finally:
        database.dispose()
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        print(text_report(stats))
    return 0


def text_report(stats: dict[str, Any]) -> str:
    lines = [f"from {stats['since']} to {stats['until']}"]
    lines.append("renders: " + ", ".join(f"{key} {value}" for key, value in stats["renders"].items()))
    failed = stats["failed_attempts"]
    lines.append("failed attempts: " + (", ".join(f"{key} {value}" for key, value in failed.items()) or "none"))
    lines.append("latency (s):")
    for stage, figures in stats["latency_s"].items():
        lines.append(f"  {stage}: n={figures['count']} p50={figures['p50']} p95={figures['p95']}")
    for name, figures in stats["providers"].items():
        lines.append(
            f"provider {name}: delivered {figures['delivered']}, errors {figures['errors']} "
            f"({figures['error_rate']:.1%})"
        )
    credits = stats["credits"]
    lines.append(f"credits: charged {credits['charged']}, refunded {credits['refunded']}, net {credits['net']}")
    return "\n".join(lines)
