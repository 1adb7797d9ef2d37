"""Why a render attempt failed, as one word operators can group, count and alert on.

The class comes from what the failure path knows: the step that failed, the reason text the
stages write ("insufficient credits: …", "no provider delivered an image (google: rate limited
(HTTP 429) …)", "quality check failed: …") and, when present, an explicit `failure_class` the
raising code attached. Text rules are ordered from the most to the least actionable, so a
failover that met an auth error and a rate limit is filed under auth.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import StrEnum


class FailureClass(StrEnum):
    INSUFFICIENT_CREDITS = "insufficient_credits"
    INVALID_PAYLOAD = "invalid_payload"
    PROVIDER_AUTH = "provider_auth"
    PROVIDER_QUOTA = "provider_quota"
    PROVIDER_RATE_LIMIT = "provider_rate_limit"
    PROVIDER_TIMEOUT = "provider_timeout"
    PROVIDER_REFUSAL = "provider_refusal"
    PROVIDER_ERROR = "provider_error"  # any other provider failure: 5xx, malformed reply, bad request
    QUALITY_REJECTED = "quality_rejected"
    STORAGE = "storage"
    INTERNAL = "internal"


# The classes the "provider API errors" pattern counts, with the kind each one reports as.
PROVIDER_API_ERROR_KINDS: dict[FailureClass, str] = {
    FailureClass.PROVIDER_RATE_LIMIT: "rate_limit",
    FailureClass.PROVIDER_AUTH: "auth",
    FailureClass.PROVIDER_QUOTA: "quota",
    FailureClass.PROVIDER_ERROR: "other",
}
# Failures that happen before an image reaches QA: they say nothing about the QA failure rate.
BEFORE_QA: frozenset[FailureClass] = frozenset(
    {
        FailureClass.INSUFFICIENT_CREDITS,
        FailureClass.INVALID_PAYLOAD,
        FailureClass.PROVIDER_AUTH,
        FailureClass.PROVIDER_QUOTA,
        FailureClass.PROVIDER_RATE_LIMIT,
        FailureClass.PROVIDER_TIMEOUT,
        FailureClass.PROVIDER_REFUSAL,
        FailureClass.PROVIDER_ERROR,
    }
)

GENERATION_STAGE = "raw_render"
QA_STAGE = "qa_verdict"
DELIVERY_STAGE = "cdn_image"


def _any(*words: str) -> re.Pattern[str]:
    return re.compile("|".join(words), re.IGNORECASE)


# Ordered: the first provider rule that matches wins.
_PROVIDER_RULES: tuple[tuple[FailureClass, re.Pattern[str]], ...] = (
    (
        FailureClass.PROVIDER_AUTH,
        _any(
            r"credentials rejected",
            r"unauthori[sz]ed",
            r"unauthenticated",
            r"authenticat",
            r"permission denied",
            r"http 40[13]\b",
            r"\b40[13] (unauthorized|forbidden)",
            r"(invalid|incorrect) api key",
            r"defaultcredentialserror",
        ),
    ),
    (FailureClass.PROVIDER_QUOTA, _any(r"quota", r"resource_exhausted", r"resource exhausted", r"billing")),
    (
        FailureClass.PROVIDER_RATE_LIMIT,
        _any(r"rate.?limit", r"http 429\b", r"\b429\b", r"too many requests"),
    ),
    (FailureClass.PROVIDER_TIMEOUT, _any(r"timed out", r"time.?out", r"deadline")),
    (
        FailureClass.PROVIDER_REFUSAL,
        _any(
            r"content refused",
            r"moderation",
            r"content.?policy",
            r"content.?filter",
            r"safety",
            r"(?<!connection )refus",
        ),
    ),
)
_CREDITS = _any(r"insufficient credits")
_PAYLOAD = _any(r"invalid (job )?payload")
_QUALITY = _any(r"quality check failed", r"\bqa\b.*fail")
_PROVIDER = _any(r"provider")
_STORAGE = _any(r"storage", r"\bstor(e|ing)\b", r"bucket", r"upload", r"\bblob\b", r"\bgcs\b")
# Delivery talks to storage; its I/O trouble is storage trouble even when the text does not say so.
_DELIVERY_IO = _any(r"timed out", r"timeout", r"connection", r"oserror", r"directory", r"permission", r"no such file")
# The providers a failed generation names: "image provider google is misconfigured (…)", or a
# failover's summary "no image provider delivered: google: rate limited …; openai: timed out …".
_PROVIDER_NAMED = re.compile(r"\bimage provider ([A-Za-z][\w.-]{0,31}) (?:is|rejected)\b")
_PROVIDER_LISTED = re.compile(r"(?:^|[(;:])\s*([A-Za-z][\w.-]{0,31}): ")
_NOT_PROVIDERS = frozenset({"http", "error", "errors", "reason", "code", "message", "detail", "status", "details"})


def classify(
    reason: str,
    *,
    stage: str | None = None,
    error_types: Iterable[str] = (),
    explicit: str | None = None,
) -> FailureClass:
    """The class of a failed attempt.

    `reason`: the failure's text; `stage`: the step key; `error_types`: names of the exception
    classes involved (e.g. "APITimeoutError"), which catch SDK errors that escaped unwrapped;
    `explicit`: a class the raising code named, used when it is a known one.
    """
    if explicit:
        try:
            return FailureClass(explicit)
        except ValueError:
            pass
    text = " ".join([reason, *error_types])
    if _CREDITS.search(text):
        return FailureClass.INSUFFICIENT_CREDITS
    if _PAYLOAD.search(text):
        return FailureClass.INVALID_PAYLOAD
    if stage == QA_STAGE or _QUALITY.search(text):
        return FailureClass.QUALITY_REJECTED
    if stage == GENERATION_STAGE or _PROVIDER.search(text):
        for failure_class, pattern in _PROVIDER_RULES:
            if pattern.search(text):
                return failure_class
        return FailureClass.PROVIDER_ERROR
    if _STORAGE.search(text) or (stage == DELIVERY_STAGE and _DELIVERY_IO.search(text)):
        return FailureClass.STORAGE
    return FailureClass.INTERNAL


def failed_providers(reason: str) -> list[str]:
    """The provider names a failed generation's reason mentions, in order, without repeats."""
    names: list[str] = []
    for name in [*_PROVIDER_NAMED.findall(reason), *_PROVIDER_LISTED.findall(reason)]:
        if name.lower() not in _NOT_PROVIDERS and name not in names:
            names.append(name)
    return names


def is_provider_failure(failure_class: FailureClass | str) -> bool:
    return str(failure_class).startswith("provider_")
