"""`render-assets`: enqueue jobs as the web app does, inspect renders and credits, migrate."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from render_assets.bench.stack_bench import add_bench_command
from render_assets.cli.credits import cmd_credits_audit, cmd_credits_grant, cmd_credits_show
from render_assets.cli.database import cmd_db_upgrade
from render_assets.cli.lineage import add_lineage_commands
from render_assets.cli.renders import cmd_cancel, cmd_enqueue, cmd_status
from render_assets.cli.review import add_review_command
from render_assets.cli.serve import cmd_serve
from render_assets.cli.stats import add_stats_command
from render_assets.cli.tokens import add_token_command


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="render-assets", description=__doc__)
    commands = root.add_subparsers(required=True, metavar="COMMAND")

    enqueue = commands.add_parser("enqueue", help="add render jobs from JSON files, as the web app does")
    enqueue.add_argument("files", nargs="+", metavar="FILE.json")
    enqueue.add_argument("--raw", action="store_true", help="enqueue even payloads that fail validation")
    enqueue.set_defaults(run=cmd_enqueue)

    cancel = commands.add_parser("cancel", help="cancel a render (refunded unless its image was already made)")
    cancel.add_argument("render_id")
    cancel.add_argument("--json", action="store_true")
    cancel.set_defaults(run=cmd_cancel)

    status = commands.add_parser("status", help="a render's status")
    status.add_argument("render_id")
    status.add_argument("--json", action="store_true")
    status.set_defaults(run=cmd_status)

    credits = commands.add_parser("credits", help="organizations' credits").add_subparsers(required=True)
    show = credits.add_parser("show", help="balance and recent transactions")
    show.add_argument("organization")
    show.add_argument("--json", action="store_true")
    show.set_defaults(run=cmd_credits_show)
    grant = credits.add_parser("grant", help="add credits")
    grant.add_argument("organization")
    grant.add_argument("amount", type=int)
    grant.set_defaults(run=cmd_credits_grant)
    audit = credits.add_parser("audit", help="check one charge per delivered render, one refund per failure")
    audit.add_argument("--json", action="store_true")
    audit.set_defaults(run=cmd_credits_audit)

    serve = commands.add_parser("serve", help="the progress server: SSE, status, demo page, health, metrics")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--examples", default="examples", help="folder of example jobs the demo page offers")
    serve.set_defaults(run=cmd_serve)

    add_stats_command(commands)
    add_review_command(commands)
    add_token_command(commands)
    add_bench_command(commands)
    add_lineage_commands(commands)

    database = commands.add_parser("db", help="database schema").add_subparsers(required=True)
    database.add_parser("upgrade", help="apply migrations").set_defaults(run=cmd_db_upgrade)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    raise SystemExit(main())
