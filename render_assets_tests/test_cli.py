"""`render-assets` as an operator uses it, against real Redis and a real database."""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest

from render_assets import cli
from render_assets.adapters.bullmq_queue import BullQueue
from render_assets.cli import arguments, main
from render_assets.persistence.database import Database
from render_assets_tests.bullmq_jobs import bull_job
from render_assets_tests.claimed_renders import claimed_render
from render_assets_tests.conftest import REDIS_URL
from render_assets_tests.payloads import EXAMPLES, web_app_job


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, database_url: str, queue_name: str, tmp_path: Path) -> str:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    monkeypatch.setenv("RENDER_QUEUE_NAME", queue_name)
    monkeypatch.setenv("RENDER_DATA_DIR", str(tmp_path / "data"))
    return queue_name


def test_enqueue_adds_jobs_as_the_web_app_does(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    files = sorted(EXAMPLES.glob("*.json"))
    assert main(["enqueue", *map(str, files)]) == 0
    ids = capsys.readouterr().out.split()
    assert len(ids) == len(files)
    by_tier = {}
    for job_id, path in zip(ids, files, strict=True):
        job = bull_job(env, job_id)
        assert job.name == "render"
        assert job.data == json.loads(path.read_text())
        assert job.opts["attempts"] == 3 and job.opts["backoff"] == {"type": "exponential", "delay": 1000}
        by_tier[job.data["subscriptionTier"]] = job.opts["priority"]
    assert by_tier == {"growth": 1, "pro": 3, "starter": 5}


def test_enqueue_refuses_an_invalid_payload_unless_raw(
    env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = web_app_job()
    bad["settings"]["format"] = "GIF"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    assert main(["enqueue", str(path)]) == 1
    assert "settings.format" in capsys.readouterr().err
    assert main(["enqueue", "--raw", str(path)]) == 0
    assert capsys.readouterr().out.strip()


def test_credits_grant_show_and_status(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["credits", "grant", "org-cli", "25"]) == 0
    assert "balance 125" in capsys.readouterr().out
    assert main(["credits", "show", "org-cli", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["balance"] == 125
    assert [(row["kind"], row["amount"]) for row in shown["transactions"]] == [("grant", 25)]
    assert main(["credits", "show", "org-nobody"]) == 1
    assert main(["status", "no-such-render", "--json"]) == 1
    assert "no render no-such-render" in capsys.readouterr().err


def test_db_upgrade_creates_the_schema(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RENDER_DATA_DIR", str(tmp_path / "fresh"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert main(["db", "upgrade"]) == 0
    assert (tmp_path / "fresh" / "render_assets.db").is_file()
    assert main(["credits", "grant", "org-new", "1"]) == 0


# -- the parser: --help answers without the back-ends' libraries --------------------------------

# Runs `render-assets ARGV` in a fresh interpreter; prints its exit status and every module it imported.
IMPORTS_OF = """
import contextlib, io, json, sys
from render_assets import cli
with contextlib.redirect_stdout(io.StringIO()):
    try:
        status = cli.main(sys.argv[1:])
    except SystemExit as exit:
        status = exit.code
print(json.dumps([status, sorted(sys.modules)]))
"""
BACK_END_LIBRARIES = ("dagster", "sqlalchemy", "redis", "bullmq", "PIL", "starlette", "alembic")


def imports_of(argv: list[str]) -> tuple[int, list[str]]:
    completed = subprocess.run(
        [sys.executable, "-c", IMPORTS_OF, *argv], capture_output=True, text=True, check=True, timeout=60
    )
    status, modules = json.loads(completed.stdout)
    return status, modules


HELP_AND_VERSION = [
    ["--help"],
    ["status", "--help"],
    ["credits", "grant", "-h"],
    ["bench", "--help"],
    ["rerender", "--help"],  # the command that needs Dagster and the code location
    ["--version"],
]


@pytest.mark.parametrize("argv", HELP_AND_VERSION)
def test_help_imports_only_the_parser(argv: list[str]) -> None:
    status, modules = imports_of(argv)
    assert status == 0
    assert [module for module in modules if module.split(".")[0] in BACK_END_LIBRARIES] == []
    assert [module for module in modules if module.startswith("render_assets")] == [
        "render_assets",
        "render_assets.cli",
        "render_assets.cli.arguments",
    ]


def test_version_is_the_installed_distribution(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0
    assert capsys.readouterr().out == f"render-assets {metadata.version('render_assets')}\n"


def runs(parser: argparse.ArgumentParser) -> Iterator[str]:
    """Every command's "module:function", sub-commands included."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in action.choices.values():
                if command.get_default("run"):
                    yield command.get_default("run")
                yield from runs(command)


def test_every_command_names_a_function_that_exists() -> None:
    found = list(runs(cli.parser()))
    assert len(found) == 16
    assert all(callable(cli.command(run)) for run in found)


def test_the_help_states_what_the_commands_use() -> None:
    from render_assets.bench.databases import PROJECT_DATABASE
    from render_assets.bench.scenarios import SCENARIOS
    from render_assets.persistence.quality_reviews import STATUSES
    from render_assets.web.auth import DEFAULT_TTL_S

    assert arguments.BENCH_SCENARIOS == SCENARIOS
    assert arguments.BENCH_PROJECT_DATABASE == PROJECT_DATABASE
    assert arguments.REVIEW_STATUSES == STATUSES
    assert arguments.TOKEN_DEFAULT_TTL_S == DEFAULT_TTL_S


def test_bench_scenarios_are_checked_and_put_in_running_order() -> None:
    assert arguments.scenario_selection("all") == "all"
    assert arguments.scenario_selection("sustained, single_1024") == "single_1024,sustained"
    for wrong in ("single_2048", " , "):
        with pytest.raises(argparse.ArgumentTypeError):
            arguments.scenario_selection(wrong)


# -- an unreachable Redis or database: one line, exit status 1 -----------------------------------

PASSWORD = "hunter2"
DOWN_REDIS = f"redis://:{PASSWORD}@127.0.0.1:1/0"  # nothing listens on port 1
DOWN_DATABASE = f"postgresql://postgres:{PASSWORD}@127.0.0.1:1/render_assets"


def said_once(stderr: str, system: str, variable: str) -> str:
    """The one line said about an unreachable system: named with its variable, without the URL or password."""
    assert stderr.count("\n") == 1, stderr
    assert stderr.startswith(f"render-assets: cannot reach {system} ({variable}): "), stderr
    assert PASSWORD not in stderr and DOWN_REDIS not in stderr and DOWN_DATABASE not in stderr
    return stderr


def console_script(*argv: str) -> subprocess.CompletedProcess[str]:
    """`render-assets ARGV` in a process of its own, with this process's environment: what the
    operator sees, with no logging set up by other tests and asyncio's connections closed at exit."""
    script = "from render_assets import cli; raise SystemExit(cli.main())"
    return subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True, timeout=60)


def test_enqueue_with_redis_down_says_so_in_one_line(env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", DOWN_REDIS)
    completed = console_script("enqueue", str(EXAMPLES / "backyard_pro.json"))
    assert completed.returncode == 1 and completed.stdout == ""
    assert said_once(completed.stderr, "Redis", "REDIS_URL").endswith(": Connection refused\n")


@pytest.mark.parametrize("argv", [["status", "render-x"], ["cancel", "render-x", "--json"], ["credits", "audit"]])
def test_a_command_with_the_database_down_says_so_in_one_line(
    argv: list[str], env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", DOWN_DATABASE)
    assert main(argv) == 1
    said_once(capsys.readouterr().err, "the database", "DATABASE_URL")


def test_cancel_with_redis_down_says_so_in_one_line(
    database: Database, bull: BullQueue, queue_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Claimed: cancelling it settles the render, whose progress event and BullMQ job it cannot
    # reach (warnings with tracebacks, held back), then signals the run, which fails the command.
    render_id, _run_key, _job_id = claimed_render(database, bull)
    monkeypatch.setenv("DATABASE_URL", database.url)
    monkeypatch.setenv("REDIS_URL", DOWN_REDIS)
    monkeypatch.setenv("RENDER_QUEUE_NAME", queue_name)
    completed = console_script("cancel", render_id)
    assert completed.returncode == 1
    said_once(completed.stderr, "Redis", "REDIS_URL")


def test_other_errors_are_not_taken_for_a_system_down(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(FileNotFoundError):
        main(["enqueue", "no-such-file.json"])
    assert capsys.readouterr().err == ""


def test_warnings_about_a_system_down_wait_for_the_end_of_the_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import redis

    from render_assets.cli.held_warnings import HeldWarnings

    def warning(message: str, error: Exception | None) -> None:
        # What a logger with no handler does (pytest's own capture handler would take it first).
        exc_info = (type(error), error, error.__traceback__) if error is not None else None
        logging.lastResort.handle(logging.makeLogRecord({"msg": message, "levelno": 30, "exc_info": exc_info}))

    monkeypatch.setenv("REDIS_URL", DOWN_REDIS)
    down = redis.exceptions.ConnectionError(f"Error 111 connecting to {DOWN_REDIS}")  # should one quote it
    with HeldWarnings():
        warning("could not tell BullMQ yet", down)
        warning("something else", ValueError("kept"))
        assert capsys.readouterr().err.startswith("something else\nValueError: kept")  # said at once
    assert capsys.readouterr().err == (
        "render-assets: could not tell BullMQ yet: cannot reach Redis (REDIS_URL): Error 111 connecting to <url>\n"
    )

    with pytest.raises(redis.exceptions.ConnectionError), HeldWarnings():
        warning("could not tell BullMQ yet", down)
        raise down
    assert capsys.readouterr().err == ""  # main() says it, once
    assert logging.lastResort is not None and not isinstance(logging.lastResort, HeldWarnings)
