"""`render-assets credits show|grant|audit`: organizations' balances and the ledger's rules."""

from __future__ import annotations

import argparse
import json
import sys

from render_assets.cli.output import print_record
from render_assets.persistence import ledger
from render_assets.persistence.models import Organization
from render_assets.services.audit import audit
from render_assets.services.backends import DatabaseSettings, database_options


def cmd_credits_show(args: argparse.Namespace) -> int:
    with DatabaseSettings(**database_options()).open().session() as session:
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
    print_record(shown, args.json)
    return 0


def cmd_credits_grant(args: argparse.Namespace) -> int:
    settings = DatabaseSettings(**database_options())
    with settings.open().session() as session:
        entry = ledger.grant(
            session,
            organization_id=args.organization,
            amount=args.amount,
            initial_credits=settings.initial_credits,
        )
    print(f"{args.organization}: +{entry.amount}, balance {entry.balance_after}")
    return 0


def cmd_credits_audit(args: argparse.Namespace) -> int:
    with DatabaseSettings(**database_options()).open().session() as session:
        mismatches = audit(session)
    if args.json:
        print(json.dumps({"mismatches": [mismatch.as_dict() for mismatch in mismatches]}, indent=2))
    else:
        for mismatch in mismatches:
            print(f"{mismatch.render_id} ({mismatch.status}): {mismatch.problem}")
        print(f"{len(mismatches)} mismatch(es)")
    return 1 if mismatches else 0
