"""Per-render tokens travel in the query string (EventSource cannot set headers), so the access
log must not print them: this filter masks the value of every `token` parameter in uvicorn's
access lines, however its name is spelled (`TOKEN=`, or percent-encoded as `tok%65n=`, which the
server decodes to `token` too)."""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote_plus

# A query string: after `?` up to whitespace or a closing quote (access lines quote the request).
_QUERY = re.compile(r"\?([^\s\"']*)")
REDACTED = "REDACTED"
ACCESS_LOGGER = "uvicorn.access"


def _redact_query(match: re.Match[str]) -> str:
    pairs = []
    for pair in match[1].split("&"):
        name, separator, _value = pair.partition("=")
        if separator and unquote_plus(name).strip().lower() == "token":
            pair = f"{name}={REDACTED}"
        pairs.append(pair)
    return "?" + "&".join(pairs)


def redact(text: str) -> str:
    return _QUERY.sub(_redact_query, text)


class RedactTokens(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(arg) if isinstance(arg, str) else arg for arg in record.args)
        record.msg = redact(record.msg) if isinstance(record.msg, str) else record.msg
        return True


def install() -> None:
    logger = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(existing, RedactTokens) for existing in logger.filters):
        logger.addFilter(RedactTokens())
