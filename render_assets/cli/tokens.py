"""`render-assets token RENDER_ID [--ttl SECONDS]`: a progress-server token for one render, as
the web app issues them (for operators, scripts and tests; needs RENDER_SSE_SECRET)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from render_assets import config
from render_assets.domain.object_keys import SAFE_ID
from render_assets.web.auth import DEFAULT_TTL_S, MAX_TTL_S, mint_token


def cmd_token(args: argparse.Namespace) -> int:
    secret = config.RENDER_SSE_SECRET.value()
    if not secret:
        print("RENDER_SSE_SECRET is not set: the progress server needs no tokens", file=sys.stderr)
        return 1
    if not SAFE_ID.fullmatch(args.render_id):
        print("renderId must be letters, digits, '-' and '_', up to 64 characters", file=sys.stderr)
        return 1
    if not 1 <= args.ttl <= MAX_TTL_S:
        print(f"--ttl must be between 1 and {MAX_TTL_S} seconds", file=sys.stderr)
        return 1
    print(mint_token(secret, args.render_id, ttl_s=args.ttl))
    return 0


def add_token_command(commands: Any) -> None:
    token = commands.add_parser("token", help="a render's progress-server token (needs RENDER_SSE_SECRET)")
    token.add_argument("render_id")
    token.add_argument("--ttl", type=int, default=DEFAULT_TTL_S, help=f"seconds it is valid (default {DEFAULT_TTL_S})")
    token.set_defaults(run=cmd_token)
