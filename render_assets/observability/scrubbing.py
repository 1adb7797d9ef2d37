"""Removing secrets and personal data from anything that leaves the process for Sentry or logs.

Three layers: patterns that catch credentials and e-mail addresses in any text; keys whose values
never leave (payload fields such as `prompt` and `annotations`, and anything named like a
password, token or key); and per-run sensitive strings (a render's own prompt text), registered
while the run's steps and its failure report run, since no pattern can recognise free text.

Free text rarely comes back verbatim: a provider quotes the prompt we built from it (cleaned,
quoted), cut at some length, with a key in it already masked. So besides the whole string, any
run of `MIN_SENSITIVE_WORDS` consecutive words of it is replaced, wherever it appears.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

FILTERED = "[Filtered]"
EMAIL = "[email]"
REDACTED = "[redacted]"
MIN_SENSITIVE_CHARS = 4  # shorter strings would blank out ordinary words
MIN_SENSITIVE_WORDS = 4  # a run of this many of a sensitive text's words is the text's (3 is too common)
MAX_DEPTH = 12

_CREDENTIAL_PATTERNS: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = (
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.DOTALL), FILTERED),
    # scheme://user:password@host keeps the user and host, loses the password.
    (re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)([^\s:/@]*):([^\s@/]+)@"), rf"\1\2:{FILTERED}@"),
    (re.compile(r"https://hooks\.slack\.com/[^\s\"'<>]+"), FILTERED),
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9\-._~+/]+=*"), rf"\1 {FILTERED}"),
    (re.compile(r"\b(Basic)\s+[A-Za-z0-9+/]{8,}=*"), rf"\1 {FILTERED}"),
    (
        re.compile(
            r"(?i)\b((?:x-goog-|x-amz-)?(?:api[_-]?key|access[_-]?token|refresh[_-]?token|id[_-]?token|"
            r"client[_-]?secret|token|secret|password|passwd|pwd|key|sig|signature|credential)s?)"
            r"(\"?'?\s*[:=]\s*\"?'?)([^\s&\"',;<>]+)"
        ),
        rf"\1\2{FILTERED}",
    ),
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}"), FILTERED),
    (re.compile(r"\bAIza[0-9A-Za-z_\-]{20,}"), FILTERED),
    (re.compile(r"\bya29\.[0-9A-Za-z_\-.]+"), FILTERED),
    (re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|xox[abposr]-[A-Za-z0-9-]{10,})"), FILTERED),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}"), FILTERED),
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), FILTERED),
    (re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"), EMAIL),
)
_TOKEN_CANDIDATE = re.compile(r"[A-Za-z0-9+/_=-]{32,}")
_WORD = re.compile(r"\w+")
_HEX = re.compile(r"[0-9a-fA-F]{32,}")

# Payload fields: whatever they hold is the user's (prompt text, annotation labels, image URLs).
PAYLOAD_KEYS = frozenset(
    {"prompt", "user", "system", "annotations", "payload", "negativeprompt", "sourceimageurl", "maskimageurl"}
)
# Keys named like credentials: their string values never leave.
SECRET_KEY_PARTS = (
    "password",
    "passwd",
    "secret",
    "token",
    "apikey",
    "authorization",
    "cookie",
    "privatekey",
    "credential",
    "dsn",
    "webhook",
)
# Identifiers Sentry needs intact, though they look like hex tokens.
STRUCTURAL_KEYS = frozenset({"trace_id", "span_id", "parent_span_id", "event_id", "profile_id", "replay_id"})


def _looks_like_token(match: re.Match[str]) -> str:
    candidate = match.group(0)
    if _HEX.fullmatch(candidate):
        return FILTERED
    mixed = (
        any(char.isupper() for char in candidate)
        and any(char.islower() for char in candidate)
        and any(char.isdigit() for char in candidate)
    )
    return FILTERED if mixed else candidate


def _word_runs(text: str) -> set[tuple[str, ...]]:
    words = [word.casefold() for word in _WORD.findall(text)]
    return {tuple(words[i : i + MIN_SENSITIVE_WORDS]) for i in range(len(words) - MIN_SENSITIVE_WORDS + 1)}


class SensitiveStrings:
    """Strings to replace wherever they appear, registered for as long as a run needs them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._pattern: re.Pattern[str] | None = None
        self._runs: frozenset[tuple[str, ...]] = frozenset()

    @staticmethod
    def _variants(value: str) -> set[str]:
        # The text as written, and as it shows inside JSON or a repr.
        value = value.strip()
        return {variant for variant in (value, json.dumps(value)[1:-1], repr(value)[1:-1]) if variant}

    @contextmanager
    def registered(self, values: Iterable[str | None]) -> Iterator[None]:
        added = [
            variant
            for value in values
            if value and len(value.strip()) >= MIN_SENSITIVE_CHARS
            for variant in self._variants(value)
        ]
        with self._lock:
            self._counts.update(added)
            self._rebuild()
        try:
            yield
        finally:
            with self._lock:
                self._counts.subtract(added)
                self._counts = +self._counts
                self._rebuild()

    def _rebuild(self) -> None:
        # Longest first, so a prompt is replaced whole before any shorter string inside it.
        values = sorted(self._counts, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(value) for value in values), re.IGNORECASE) if values else None
        self._runs = frozenset(run for value in values for run in _word_runs(value))

    def replace(self, text: str) -> str:
        pattern, runs = self._pattern, self._runs
        if pattern is not None:
            text = pattern.sub(REDACTED, text)
        return _replace_runs(text, runs) if runs else text


def _replace_runs(text: str, runs: frozenset[tuple[str, ...]]) -> str:
    """`text` with every stretch made of registered word runs replaced (overlapping ones as one)."""
    words = list(_WORD.finditer(text))
    spans: list[list[int]] = []
    for i in range(len(words) - MIN_SENSITIVE_WORDS + 1):
        window = words[i : i + MIN_SENSITIVE_WORDS]
        if tuple(word[0].casefold() for word in window) not in runs:
            continue
        start, end = window[0].start(), window[-1].end()
        if spans and start <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], end)
        else:
            spans.append([start, end])
    for start, end in reversed(spans):
        text = text[:start] + REDACTED + text[end:]
    return text


sensitive_strings = SensitiveStrings()


def scrub_text(text: str) -> str:
    """The text without registered sensitive strings, credentials or e-mail addresses."""
    text = sensitive_strings.replace(text)
    for pattern, replacement in _CREDENTIAL_PATTERNS:
        text = pattern.sub(replacement, text)
    return _TOKEN_CANDIDATE.sub(_looks_like_token, text)


MAX_CHAINED_ERRORS = 16


def scrub_exception(error: BaseException | None) -> None:
    """Scrub the text arguments of an error and of its causes, in place, before Dagster (its event
    log keeps every step error's message) or anything else prints them. An exception whose text
    comes from attributes rather than its arguments keeps it: those are the libraries' own."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen and len(seen) < MAX_CHAINED_ERRORS:
        seen.add(id(error))
        with contextlib.suppress(AttributeError, TypeError):  # an exception type that forbids it
            error.args = tuple(scrub_text(arg) if isinstance(arg, str) else arg for arg in error.args)
        error = error.__cause__ or error.__context__


def _normalized(key: str) -> str:
    return key.lower().replace("_", "").replace("-", "")


def _key_verdict(key: Any) -> str:
    """'drop' (payload field), 'secret' (credential-like name) or 'keep'."""
    if not isinstance(key, str):
        return "keep"
    name = _normalized(key)
    if name in PAYLOAD_KEYS:
        return "drop"
    if any(part in name for part in SECRET_KEY_PARTS):
        return "secret"
    return "keep"


def scrub_value(value: Any, depth: int = 0) -> Any:
    """A copy of a JSON-like value, scrubbed: texts by `scrub_text`, sensitive keys by name."""
    if depth > MAX_DEPTH:
        return FILTERED
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        scrubbed: dict[Any, Any] = {}
        for key, item in value.items():
            verdict = _key_verdict(key)
            if key in STRUCTURAL_KEYS:
                scrubbed[key] = item
            elif verdict == "drop" or (verdict == "secret" and not isinstance(item, int | float | bool | None)):
                scrubbed[key] = FILTERED
            else:
                scrubbed[key] = scrub_value(item, depth + 1)
        return scrubbed
    if isinstance(value, list | tuple):
        return [scrub_value(item, depth + 1) for item in value]
    if isinstance(value, int | float | bool) or value is None:
        return value
    return scrub_text(str(value))


def _scrub_frames(container: dict[str, Any]) -> None:
    frames = (container.get("stacktrace") or {}).get("frames") or []
    for frame in frames:
        frame.pop("vars", None)  # local variables never leave, even if an integration adds them


def scrub_event(event: dict[str, Any], _hint: Any = None) -> dict[str, Any]:
    """Sentry `before_send` / `before_send_transaction`: the event without secrets or personal data."""
    event.pop("user", None)
    for key in ("message", "transaction", "culprit"):
        if isinstance(event.get(key), str):
            event[key] = scrub_text(event[key])
    if isinstance(event.get("logentry"), dict):
        event["logentry"] = scrub_value(event["logentry"])
    for exception in (event.get("exception") or {}).get("values") or []:
        if isinstance(exception.get("value"), str):
            exception["value"] = scrub_text(exception["value"])
        _scrub_frames(exception)
    for thread in (event.get("threads") or {}).get("values") or []:
        _scrub_frames(thread)
    breadcrumbs = event.get("breadcrumbs")
    if isinstance(breadcrumbs, dict) and isinstance(breadcrumbs.get("values"), list):
        breadcrumbs["values"] = [scrub_breadcrumb(crumb) for crumb in breadcrumbs["values"]]
    for key in ("extra", "contexts", "request", "tags"):
        if key in event:
            event[key] = scrub_value(event[key])
    for span in event.get("spans") or []:
        for key in ("description", "data", "tags"):
            if key in span:
                span[key] = scrub_value(span[key])
    return event


def scrub_breadcrumb(crumb: dict[str, Any], _hint: Any = None) -> dict[str, Any]:
    """Sentry `before_breadcrumb`: the breadcrumb's message and data scrubbed."""
    if isinstance(crumb.get("message"), str):
        crumb["message"] = scrub_text(crumb["message"])
    if "data" in crumb:
        crumb["data"] = scrub_value(crumb["data"])
    return crumb
