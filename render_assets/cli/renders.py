"""`render-assets enqueue|status|cancel`: a render from the command line, queued as the web app
queues it, looked at, cancelled."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from render_assets.cli.output import print_record
from render_assets.domain.payload import InvalidJob, parse_job
from render_assets.domain.queue_contract import job_options
from render_assets.persistence import render_versions, renders
from render_assets.services.backends import (
    BackendSettings,
    DatabaseSettings,
    QueueSettings,
    database_options,
    queue_options,
)
from render_assets.services.cancellation import TOO_LATE, cancel


def cmd_enqueue(args: argparse.Namespace) -> int:
    queue = QueueSettings(**queue_options()).open_queue()
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
    with DatabaseSettings(**database_options()).open().session() as session:
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
    print_record(status, args.json)
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    outcome = cancel(BackendSettings.from_environment().open(), args.render_id, source="cli")
    print_record(outcome.as_dict(), args.json)
    return 1 if outcome.outcome == TOO_LATE else 0
