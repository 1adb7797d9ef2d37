"""Per-render tokens travel in the query string (EventSource cannot set headers), so the access
log must not print them: this filter masks `token=` in uvicorn's access lines."""

from __future__ import annotations

import logging
import re

_TOKEN = re.compile(r"(?i)([?&]token=)[^&\s]*")
ACCESS_LOGGER = "uvicorn.access"


def redact(text: str) -> str:
    return _TOKEN.sub(r"\1REDACTED", text)


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
