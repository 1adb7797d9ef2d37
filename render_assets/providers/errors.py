"""Turning what a provider API answered into a ProviderError of the right kind.

SDK-neutral: each provider module extracts the HTTP status, error code, message and headers
from its own SDK's exception and hands them here, so both follow one rule table."""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Mapping

from render_assets.providers.base import ErrorKind, ProviderError

MAX_MESSAGE_CHARS = 300
# Error bodies can quote keys back ("Incorrect API key provided: sk-...") or carry bearer tokens.
_SECRETS = re.compile(r"(sk-[A-Za-z0-9_\-*]{4,}|AIza[0-9A-Za-z_\-]{10,}|ya29\.[0-9A-Za-z_\-.]+|Bearer\s+\S+)")
TRANSIENT_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
# Error codes (OpenAI `code`, Google `status`) that mean "the content was refused".
REFUSAL_CODES = frozenset({"moderation_blocked", "content_policy_violation", "content_filter"})
# Google answers a prompt its pre-filter refuses with a plain 400 INVALID_ARGUMENT; the text tells.
_GOOGLE_REFUSAL = re.compile(r"responsible ai|sensitive words|usage guidelines", re.IGNORECASE)


def redact(text: str, *secrets: str | None) -> str:
    """The text without anything that looks like a credential, and without the given secrets."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return _SECRETS.sub("***", text)


def short(text: str, *secrets: str | None) -> str:
    one_line = " ".join(redact(text, *secrets).split())
    return one_line[:MAX_MESSAGE_CHARS]


def retry_after_s(headers: Mapping[str, str] | None, *, now: float | None = None) -> float | None:
    """`retry-after-ms`, else `retry-after` (seconds or an HTTP date); None when absent or unreadable."""
    if not headers:
        return None
    lowered = {key.lower(): value for key, value in headers.items()}
    try:
        if "retry-after-ms" in lowered:
            return max(0.0, float(lowered["retry-after-ms"]) / 1000)
        raw = lowered.get("retry-after")
        if raw is None:
            return None
        try:
            return max(0.0, float(raw))
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(raw)
            return max(0.0, parsed.timestamp() - (time.time() if now is None else now))
    except (TypeError, ValueError):
        return None


def from_http(
    provider: str,
    status: int | None,
    *,
    code: str | None = None,
    message: str = "",
    headers: Mapping[str, str] | None = None,
    secrets: tuple[str | None, ...] = (),
) -> ProviderError:
    """The ProviderError for an HTTP error reply."""
    code_text = (code or "").lower()
    detail = short(message, *secrets)
    label = f"HTTP {status}" + (f" {code}" if code else "")
    if code_text in REFUSAL_CODES or (status == 400 and provider == "google" and _GOOGLE_REFUSAL.search(message)):
        return ProviderError(
            f"content refused ({label}): {detail}", provider=provider, kind=ErrorKind.REFUSED, filtered_reason=detail
        )
    if status in (401, 403):
        # Never echo the body: it may quote the key back.
        return ProviderError(f"credentials rejected ({label})", provider=provider, kind=ErrorKind.AUTH)
    if status in TRANSIENT_STATUSES or (status is not None and status >= 500):
        kind_text = "rate limited" if status == 429 else "unavailable"
        return ProviderError(
            f"{kind_text} ({label}): {detail}",
            provider=provider,
            kind=ErrorKind.TRANSIENT,
            retry_after_s=retry_after_s(headers),
        )
    return ProviderError(f"request rejected ({label}): {detail}", provider=provider, kind=ErrorKind.INVALID)


def timed_out(provider: str, *, after_send: bool) -> ProviderError:
    """A call that got no reply in time. After the request was sent the provider may still
    generate (and bill) the image, so the job must not ask it again."""
    what = "timed out waiting for the reply" if after_send else "timed out connecting"
    return ProviderError(what, provider=provider, kind=ErrorKind.TRANSIENT, may_have_billed=after_send)


def unreachable(provider: str, error: BaseException) -> ProviderError:
    """No connection: refused, reset, or the name did not resolve (the cause a person needs)."""
    return ProviderError(
        f"{_connection_problem(error)} ({type(error).__name__})", provider=provider, kind=ErrorKind.TRANSIENT
    )


def _connection_problem(error: BaseException) -> str:
    """What went wrong, from the error and its causes (SDKs wrap the socket's error twice or thrice)."""
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in seen and len(seen) < 8:
        seen.append(current)
        current = (
            current.__cause__
            or current.__context__
            or next((arg for arg in getattr(current, "args", ()) if isinstance(arg, BaseException)), None)
        )
    text = " ".join(f"{type(item).__name__} {item}" for item in seen).lower()
    for needle, problem in (
        ("connectionrefused", "connection refused"),
        ("connection refused", "connection refused"),
        ("connectionreset", "connection reset"),
        ("connection reset", "connection reset"),
        ("name or service not known", "name not resolved"),
        ("nodename nor servname", "name not resolved"),
        ("temporary failure in name resolution", "name not resolved"),
    ):
        if needle in text:
            return problem
    return "connection failed"


def malformed(provider: str, what: str) -> ProviderError:
    """A 200 reply we cannot use: the image was probably generated and billed."""
    return ProviderError(f"malformed reply: {what}", provider=provider, kind=ErrorKind.TRANSIENT, may_have_billed=True)


def refused(provider: str, reason: str) -> ProviderError:
    return ProviderError(
        f"content refused: {reason}", provider=provider, kind=ErrorKind.REFUSED, filtered_reason=reason
    )
