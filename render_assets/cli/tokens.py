"""`render-assets token RENDER_ID [--ttl SECONDS]`: a progress-server token for one render, as
the web app issues them (for operators, scripts and tests; needs RENDER_SSE_SECRET)."""

from __future__ import annotations

import argparse
import sys

from render_assets import config
from render_assets.domain.object_keys import SAFE_ID
from render_assets.web.auth import MAX_TTL_S, mint_token


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
