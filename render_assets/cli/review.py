"""`render-assets review list|approve|reject`: the manual quality review queue.

render-assets review list [--status pending|approved|rejected|all] [--organization ORG] [--json]
render-assets review approve REVIEW_ID [--by NAME] [--note TEXT]   # deliver the held image
render-assets review reject REVIEW_ID [--by NAME] [--note TEXT]    # fail the render, refund it
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from render_assets.services import review
from render_assets.services.backends import Backends, BackendSettings


@contextmanager
def _backends() -> Iterator[Backends]:
    """The worker's back-ends, from the same variables it reads."""
    backends = BackendSettings.from_environment().open()
    try:
        yield backends
    finally:
        backends.database.dispose()


def cmd_review_list(args: argparse.Namespace) -> int:
    with _backends() as backends:
        items = review.listed(
            backends,
            status=None if args.status == "all" else args.status,
            organization_id=args.organization,
            limit=args.limit,
        )
    if args.json:
        print(json.dumps([item.as_dict() for item in items], indent=2))
        return 0
    for item in items:
        print(f"#{item.id} {item.status} render {item.render_id} ({item.organization_id}) score {item.score:.2f}")
        print(f"    {'; '.join(item.reasons) or 'no reasons recorded'}")
        print(f"    {item.image_url}")
    print(f"{len(items)} review(s)")
    return 0


def _decide(args: argparse.Namespace, action: str) -> int:
    with _backends() as backends:
        try:
            if action == "approve":
                result: Any = review.approve(
                    backends,
                    args.review_id,
                    by=args.by,
                    note=args.note,
                )
                print(f"review {args.review_id} approved: delivered {result['imageUrl']}")
            else:
                reason = review.reject(
                    backends,
                    args.review_id,
                    by=args.by,
                    note=args.note,
                )
                outcome = f"render failed and refunded ({reason})" if reason else "the delivered render is unchanged"
                print(f"review {args.review_id} rejected: {outcome}")
        except review.ReviewError as error:
            print(str(error), file=sys.stderr)
            return 1
    return 0


def cmd_review_approve(args: argparse.Namespace) -> int:
    return _decide(args, "approve")


def cmd_review_reject(args: argparse.Namespace) -> int:
    return _decide(args, "reject")
