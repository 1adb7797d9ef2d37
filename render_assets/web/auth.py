"""Per-render access tokens that expire: `<expires>.<hex HMAC-SHA256 of "<renderId>:<expires>">`
under `RENDER_SSE_SECRET`, `expires` in Unix seconds.

The web app, which holds the secret, issues a render's token to the browser that asked for the
render; the token opens that render's events and status and nothing else, until it expires, so a
token that leaks (a shared link, a browser history) does not open the render for ever. Tokens
further in the future than `MAX_TTL_S` are refused too: the server, not the issuer alone, bounds
a token's life. `EventSource` cannot set headers, so the token may come as `?token=` as well as
`Authorization: Bearer`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time

from starlette.requests import Request

MAX_TTL_S = 7 * 86400
DEFAULT_TTL_S = 3600
# ASCII digits only (`\d` would take other scripts' digits, which int() accepts), lower-case hex.
_TOKEN = re.compile(r"([0-9]{1,12})\.([0-9a-f]{64})")


def _signature(secret: str, render_id: str, expires: str) -> str:
    # Over the digits as written: "0170…" is not another spelling of "170…".
    message = f"{render_id}:{expires}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def mint_token(secret: str, render_id: str, *, ttl_s: int = DEFAULT_TTL_S, now: float | None = None) -> str:
    """A token for `render_id` valid for `ttl_s` seconds (at most MAX_TTL_S)."""
    if not secret:
        raise ValueError("a token needs RENDER_SSE_SECRET")
    if not 1 <= ttl_s <= MAX_TTL_S:
        raise ValueError(f"a token lives 1 to {MAX_TTL_S} seconds")
    expires = str(int(time.time() if now is None else now) + ttl_s)
    return f"{expires}.{_signature(secret, render_id, expires)}"


def verify_token(secret: str, render_id: str, token: str, *, now: float | None = None) -> bool:
    """Whether `token` is the render's own and still valid; never raises on what a client sent."""
    match = _TOKEN.fullmatch(token)
    if match is None:
        return False
    expires, signature = match[1], match[2]
    moment = time.time() if now is None else now
    # Compare first (constant time), decide after: the answer takes as long for any signature.
    genuine = hmac.compare_digest(signature.encode(), _signature(secret, render_id, expires).encode())
    return genuine and moment < int(expires) <= moment + MAX_TTL_S


def presented_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.query_params.get("token") or None


def may_access(secret: str | None, render_id: str, request: Request) -> bool:
    """Open when no secret is configured; otherwise the render's own unexpired token is required."""
    if not secret:
        return True
    token = presented_token(request)
    return token is not None and verify_token(secret, render_id, token)
