"""Where a benchmark run leaves its report: bench-report.json (the document printed on stdout)
and bench-report.html (report_html.py) in one folder, made when missing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from render_assets.bench.report_html import write_html

JSON_NAME = "bench-report.json"
HTML_NAME = "bench-report.html"


def write_reports(report: dict[str, Any], folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    json_path = folder / JSON_NAME
    json_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return json_path, write_html(report, folder / HTML_NAME)
