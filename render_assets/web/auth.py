"""Per-render access tokens: hex HMAC-SHA256 of the render id under `RENDER_SSE_SECRET`.

The web app, which holds the secret, issues a render's token to the browser that asked for the
render; the token opens that render's events and status and nothing else. `EventSource` cannot
set headers, so the token may come as `?token=` as well as `Authorization: Bearer`.
"""

from __future__ import annotations

import hashlib
import hmac

from starlette.requests import Request


def render_token(secret: str, render_id: str) -> str:
    return hmac.new(secret.encode(), render_id.encode(), hashlib.sha256).hexdigest()


def presented_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.query_params.get("token") or None


def may_access(secret: str | None, render_id: str, request: Request) -> bool:
    """Open when no secret is configured; otherwise the render's own token is required."""
    if not secret:
        return True
    token = presented_token(request)
    if token is None:
        return False
    return hmac.compare_digest(token.encode(), render_token(secret, render_id).encode())
