"""`render-assets`: enqueue jobs as the web app does, inspect renders and credits, migrate."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from render_assets import config
from render_assets.adapters.bullmq_queue import BullQueue
from render_assets.bench.stack_bench import add_bench_command
from render_assets.cli.lineage import add_lineage_commands
from render_assets.cli.review import add_review_command
from render_assets.cli.stats import add_stats_command
from render_assets.cli.tokens import add_token_command
from render_assets.domain.payload import InvalidJob, parse_job
from render_assets.domain.queue_contract import job_options
from render_assets.persistence import ledger, render_versions, renders
from render_assets.persistence.database import Database
from render_assets.services.backends import DatabaseSettings, QueueSettings, database_options, queue_options


def _database() -> Database:
    return DatabaseSettings(**database_options()).open()


def _queue() -> BullQueue:
    return QueueSettings(**queue_options()).open_queue()


def _print(value: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(value, indent=2, default=str))
    else:
        for key, item in value.items():
            print(f"{key}: {item}")


def cmd_enqueue(args: argparse.Namespace) -> int:
    queue = _queue()
    status = 0
    for path in args.files:
        data = json.loads(Path(path).read_text())
        try:
            job = parse_job(data)
        except InvalidJob as error:
            if not args.raw:
                print(f"{path}: {error}", file=sys.stderr)
                status = 1
                continue
            options: dict[str, Any] = {"attempts": 3}
        else:
            options = job_options(job)
        print(queue.add(data, options))
    return status


def cmd_status(args: argparse.Namespace) -> int:
    with _database().session() as session:
        row = renders.get(session, args.render_id)
        if row is None:
            print(f"no render {args.render_id}", file=sys.stderr)
            return 1
        status = {
            "renderId": row.id,
            "status": row.status,
            "stage": row.stage,
            "progress": row.progress,
            "message": row.message,
            "error": row.error,
            "imageUrl": row.image_url,
            "thumbnailUrl": row.thumbnail_url,
            "creditCost": row.credit_cost,
            "bullJobId": row.bull_job_id,
            "attempt": row.claim_attempt,
            "createdAt": row.created_at,
            "completedAt": row.completed_at,
            "result": row.result,
            "version": row.current_version,
            "versions": [
                {
                    "version": version.version,
                    "imageUrl": version.image_url,
                    "thumbnailUrl": version.thumbnail_url,
                    "promptHash": version.prompt_hash,
                    "provider": version.provider,
                    "model": version.model,
                    "deliveredVia": version.delivered_via,
                    "codeVersions": version.code_versions,
                    "runId": version.run_id,
                    "createdAt": version.created_at,
                }
                for version in render_versions.history(session, row.id)
            ],
        }
    _print(status, args.json)
    return 0


def cmd_credits_show(args: argparse.Namespace) -> int:
    with _database().session() as session:
        from render_assets.persistence.models import Organization

        organization = session.get(Organization, args.organization)
        if organization is None:
            print(f"no organization {args.organization}", file=sys.stderr)
            return 1
        shown = {
            "organizationId": organization.id,
            "balance": organization.credit_balance,
            "transactions": [
                {
                    "kind": row.kind,
                    "amount": row.amount,
                    "balanceAfter": row.balance_after,
                    "renderId": row.render_id,
                    "at": row.created_at,
                }
                for row in ledger.history(session, organization.id)
            ],
        }
    _print(shown, args.json)
    return 0


def cmd_credits_grant(args: argparse.Namespace) -> int:
    with _database().session() as session:
        entry = ledger.grant(
            session,
            organization_id=args.organization,
            amount=args.amount,
            initial_credits=int(config.number(config.RENDER_DEFAULT_CREDITS)),
        )
    print(f"{args.organization}: +{entry.amount}, balance {entry.balance_after}")
    return 0


def cmd_credits_audit(args: argparse.Namespace) -> int:
    from render_assets.services.audit import audit

    with _database().session() as session:
        mismatches = audit(session)
    if args.json:
        print(json.dumps({"mismatches": [mismatch.as_dict() for mismatch in mismatches]}, indent=2))
    else:
        for mismatch in mismatches:
            print(f"{mismatch.render_id} ({mismatch.status}): {mismatch.problem}")
        print(f"{len(mismatches)} mismatch(es)")
    return 1 if mismatches else 0


def cmd_cancel(args: argparse.Namespace) -> int:
    from render_assets.services.backends import BackendSettings
    from render_assets.services.cancellation import TOO_LATE, cancel

    outcome = cancel(BackendSettings.from_environment().open(), args.render_id, source="cli")
    _print(outcome.as_dict(), args.json)
    return 1 if outcome.outcome == TOO_LATE else 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from render_assets.migrations import upgrade

    config.data_dir().mkdir(parents=True, exist_ok=True)
    upgrade(config.database_url())
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    # Imported here: the web stack is needed by this command only.
    from render_assets.services.backends import BackendSettings
    from render_assets.web.server import serve
    from render_assets.web.settings import WebSettings

    settings = WebSettings.of(
        BackendSettings.from_environment(),
        sse_secret=config.RENDER_SSE_SECRET.value(),
        keepalive_s=config.number(config.RENDER_SSE_KEEPALIVE_S),
        cors_origins=tuple(
            origin.strip() for origin in (config.RENDER_SSE_CORS_ORIGINS.value() or "").split(",") if origin.strip()
        ),
        examples_dir=Path(args.examples),
    )
    serve(settings, host=args.host, port=args.port)
    return 0


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
