"""The Dagster instance files a benchmark run compares: which ones, what each is called in the
report, and what each configures (run launcher, storage)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from render_assets.bench.stack import PROJECT_ROOT

# Development and production side by side: SQLite storage and Dagster's default launcher, then
# PostgreSQL storage and the forking launcher.
DEFAULT_INSTANCE_FILES = (PROJECT_ROOT / "dagster.yaml", PROJECT_ROOT / "deploy" / "dagster.production.yaml")


def instance_file_list(text: str) -> list[Path]:
    """One --dagster-yaml value: a file or comma-separated files (argparse `type`)."""
    paths = [Path(part.strip()).resolve() for part in text.split(",") if part.strip()]
    missing = [path for path in paths if not path.is_file()]
    if missing or not paths:
        raise argparse.ArgumentTypeError(f"no such instance file: {missing[0] if missing else text!r}")
    return paths


def instance_files(chosen: Sequence[Path] | None) -> list[Path]:
    """The files --dagster-yaml chose (repeated and comma-separated, first mention first), or the defaults."""
    return list(dict.fromkeys(chosen)) if chosen else list(DEFAULT_INSTANCE_FILES)


def instance_labels(paths: Sequence[Path]) -> list[str]:
    """Each file's name in the report: its file name, with parent folders while two would clash
    (dagster.yaml and docker/dagster.yaml)."""
    depth = 1
    while True:
        labels = ["/".join(path.parts[-depth:]) for path in paths]
        if len(set(labels)) == len(labels) or depth >= max(len(path.parts) for path in paths):
            return labels
        depth += 1


def _settings(dagster_yaml: Path) -> dict[str, Any]:
    import yaml

    return dict(yaml.safe_load(dagster_yaml.read_text()) or {})


def run_launcher_of(dagster_yaml: Path) -> str:
    """The run launcher class an instance file configures (Dagster's default when it names none)."""
    launcher = _settings(dagster_yaml).get("run_launcher") or {}
    return str(launcher.get("class", "DefaultRunLauncher"))


def storage_kind(dagster_yaml: Path) -> str:
    """Where the instance keeps runs and events: "postgresql", "mysql" or "sqlite" (Dagster's
    default, under DAGSTER_HOME)."""
    settings = _settings(dagster_yaml)
    # `storage: postgres:`, a `storage: custom:` class over dagster-postgres, or the older separate
    # `run_storage:` / `event_log_storage:` blocks naming their classes: the block says which server.
    blocks = [settings.get(key) for key in ("storage", "run_storage", "event_log_storage")]
    text = " ".join(str(block) for block in blocks if block).lower()
    for kind, mark in (("postgresql", "postgres"), ("mysql", "mysql")):
        if mark in text:
            return kind
    return "sqlite"


def describe(dagster_yaml: Path) -> dict[str, Any]:
    """The report's header of one instance file."""
    return {
        "dagster_yaml": str(dagster_yaml),
        "run_launcher": run_launcher_of(dagster_yaml),
        "dagster_storage": storage_kind(dagster_yaml),
    }
