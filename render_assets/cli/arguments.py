"""Every `render-assets` command: its arguments, its help, and where its code is.

Standard library only, so `--help` (the root's or a command's) answers at once: a command's
module, with SQLAlchemy, Redis, Dagster or the code location behind it, is imported when that
command runs (`run` is "module:function"; `render_assets.cli.main` resolves it). The few facts
the help states about that code are repeated here, and test_cli.py checks they still agree.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, NoReturn, TypeAlias

DESCRIPTION = "`render-assets`: enqueue jobs as the web app does, inspect renders and credits, migrate."
DISTRIBUTION = "render_assets"  # pyproject.toml's [project] name
REVIEW_STATUSES = ("pending", "approved", "rejected")  # persistence/quality_reviews.py: STATUSES
TOKEN_DEFAULT_TTL_S = 3600  # web/auth.py: DEFAULT_TTL_S
# bench/scenarios.py: SCENARIOS, in the order they run; bench/databases.py: PROJECT_DATABASE.
BENCH_SCENARIOS = ("single_1024", "single_4096", "burst_60", "single_1024_100k_partitions", "sustained")
BENCH_PROJECT_DATABASE = "render_bench"

# A string: argparse's class is generic to type checkers only.
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="render-assets", description=DESCRIPTION)
    root.add_argument("--version", action=Version, help="print the installed version and exit")
    commands = root.add_subparsers(required=True, metavar="COMMAND")
    _add_render_commands(commands)
    _add_credits_commands(commands)
    _add_serve_command(commands)
    _add_stats_command(commands)
    _add_review_commands(commands)
    _add_token_command(commands)
    _add_bench_command(commands)
    _add_lineage_commands(commands)
    _add_database_commands(commands)
    return root


class Version(argparse.Action):
    """`--version`: argparse's own action needs the text when the parser is built, and reading
    the package's metadata would slow every command; this reads it only when asked."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> NoReturn:
        from importlib import metadata

        try:
            version = metadata.version(DISTRIBUTION)
        except metadata.PackageNotFoundError:  # a source tree on sys.path, never installed
            version = "(not installed)"
        print(f"{parser.prog} {version}")
        parser.exit()


def _command(
    commands: Commands, name: str, run: str, help_text: str, *, long_running: bool = False
) -> argparse.ArgumentParser:
    """A command whose code is `run` ("module:function"), imported only when it runs. A
    long-running one (a server) has its warnings said as they happen, not when it ends."""
    command = commands.add_parser(name, help=help_text)
    command.set_defaults(run=run, long_running=long_running)
    return command


def _add_render_commands(commands: Commands) -> None:
    module = "render_assets.cli.renders"
    enqueue = _command(
        commands, "enqueue", f"{module}:cmd_enqueue", "add render jobs from JSON files, as the web app does"
    )
    enqueue.add_argument("files", nargs="+", metavar="FILE.json")
    enqueue.add_argument("--raw", action="store_true", help="enqueue even payloads that fail validation")

    cancel = _command(
        commands, "cancel", f"{module}:cmd_cancel", "cancel a render (refunded unless its image was already made)"
    )
    cancel.add_argument("render_id")
    cancel.add_argument("--json", action="store_true")

    status = _command(commands, "status", f"{module}:cmd_status", "a render's status")
    status.add_argument("render_id")
    status.add_argument("--json", action="store_true")


def _add_credits_commands(commands: Commands) -> None:
    module = "render_assets.cli.credits"
    group = commands.add_parser("credits", help="organizations' credits").add_subparsers(required=True)
    show = _command(group, "show", f"{module}:cmd_credits_show", "balance and recent transactions")
    show.add_argument("organization")
    show.add_argument("--json", action="store_true")
    grant = _command(group, "grant", f"{module}:cmd_credits_grant", "add credits")
    grant.add_argument("organization")
    grant.add_argument("amount", type=int)
    audit = _command(
        group, "audit", f"{module}:cmd_credits_audit", "check one charge per delivered render, one refund per failure"
    )
    audit.add_argument("--json", action="store_true")


def _add_serve_command(commands: Commands) -> None:
    serve = _command(
        commands,
        "serve",
        "render_assets.cli.serve:cmd_serve",
        "the progress server: SSE, status, demo page, health, metrics",
        long_running=True,
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--examples", default="examples", help="folder of example jobs the demo page offers")


def _add_stats_command(commands: Commands) -> None:
    stats = _command(
        commands,
        "stats",
        "render_assets.cli.stats:cmd_stats",
        "outcomes, step latencies, provider errors and credits of a period",
    )
    stats.add_argument("--since", default="1h", help="a duration such as 90m, 2h, 1d, or an ISO time (default 1h)")
    stats.add_argument("--json", action="store_true")


def _add_review_commands(commands: Commands) -> None:
    module = "render_assets.cli.review"
    group = commands.add_parser("review", help="the manual quality review queue").add_subparsers(required=True)
    listing = _command(group, "list", f"{module}:cmd_review_list", "reviews, oldest first")
    listing.add_argument("--status", choices=[*REVIEW_STATUSES, "all"], default="pending")
    listing.add_argument("--organization", help="only this organization's reviews")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--json", action="store_true")
    for name, help_text in (
        ("approve", "deliver the held render"),
        ("reject", "fail the held render and refund its credits"),
    ):
        decision = _command(group, name, f"{module}:cmd_review_{name}", help_text)
        decision.add_argument("review_id", type=int, metavar="REVIEW_ID")
        decision.add_argument("--by", help="who decided (recorded with the review)")
        decision.add_argument("--note", help="why (recorded; a rejection's note becomes the render's error)")


def _add_token_command(commands: Commands) -> None:
    token = _command(
        commands,
        "token",
        "render_assets.cli.tokens:cmd_token",
        "a render's progress-server token (needs RENDER_SSE_SECRET)",
    )
    token.add_argument("render_id")
    token.add_argument(
        "--ttl",
        type=int,
        default=TOKEN_DEFAULT_TTL_S,
        help=f"seconds it is valid (default {TOKEN_DEFAULT_TTL_S})",
    )


def _add_bench_command(commands: Commands) -> None:
    # Defaults read from the environment (REDIS_URL, BENCH_DATABASE_URL) and the output folder
    # are filled in by the command itself: None here means "the default".
    bench = _command(
        commands,
        "bench",
        "render_assets.bench.stack_bench:cmd_bench",
        "latency, throughput and CPU of the real stack (prints JSON)",
    )
    bench.add_argument(
        "--scenario",
        type=scenario_selection,
        default="all",
        help=f"all (default) or comma-separated: {', '.join(BENCH_SCENARIOS)}",
    )
    bench.add_argument("--quick", action="store_true", help="small counts and durations: a smoke run")
    bench.add_argument(
        "--database-url",
        help="the project database (PostgreSQL) for every instance file; default BENCH_DATABASE_URL, else "
        f"a {BENCH_PROJECT_DATABASE} database beside a PostgreSQL Dagster storage, a temporary SQLite file "
        "beside a SQLite one",
    )
    bench.add_argument("--redis-url")
    bench.add_argument(
        "--dagster-yaml",
        type=_instance_files,
        action="extend",
        help="a Dagster instance file to run the scenarios under; repeat it or separate files with commas "
        "(default: dagster.yaml and deploy/dagster.production.yaml)",
    )
    bench.add_argument("--out", help="folder for bench-report.json and bench-report.html (default .data/bench)")


def scenario_selection(text: str) -> str:
    """`all`, or comma-separated scenario names put in the benchmark's running order."""
    if text == "all":
        return text
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in BENCH_SCENARIOS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown scenario {unknown[0] if unknown else text!r}; known: all, {', '.join(BENCH_SCENARIOS)}"
        )
    return ",".join(name for name in BENCH_SCENARIOS if name in names)


def _instance_files(text: str) -> list[Path]:
    # The check lives with the bench's instance files (a module of the standard library only).
    from render_assets.bench.instances import instance_file_list

    return instance_file_list(text)


def _add_lineage_commands(commands: Commands) -> None:
    module = "render_assets.cli.lineage"
    renders = commands.add_parser("renders", help="delivered renders as Dagster's lineage sees them")
    group = renders.add_subparsers(required=True, metavar="COMMAND")
    stale = _command(group, "stale", f"{module}:cmd_stale", "delivered renders Dagster reports stale, with the causes")
    stale.add_argument("--org", help="only this organization's renders")
    stale.add_argument("--json", action="store_true")

    rerender = _command(
        commands,
        "rerender",
        f"{module}:cmd_rerender",
        "re-render renders in one Dagster backfill (free for the customer; the web app is told)",
    )
    rerender.add_argument("render_ids", nargs="*", metavar="RENDER_ID")
    rerender.add_argument("--stale", action="store_true", help="every stale delivered render, from its stale asset")
    rerender.add_argument("--org", help="only this organization's renders")
    rerender.add_argument("--wait", action="store_true", help="wait for the backfill and print what it did")
    rerender.add_argument("--timeout", type=float, default=3600.0, help="seconds --wait waits (default 3600)")
    rerender.add_argument("--json", action="store_true")


def _add_database_commands(commands: Commands) -> None:
    group = commands.add_parser("db", help="database schema").add_subparsers(required=True)
    _command(group, "upgrade", "render_assets.cli.database:cmd_db_upgrade", "apply migrations")
