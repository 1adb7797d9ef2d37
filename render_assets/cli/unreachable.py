"""An unreachable Redis or database, said in one line: what is down, which variable points at it,
and why, never the URL itself (it may hold a password).

Standard library only: an error class counts only if its library is already imported, since a
command that never imported redis cannot have raised its errors, and classifying an error must
not import a library the command did not need.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Unreachable:
    system: str  # "Redis", "the database"
    variable: str  # the setting that points at it
    reason: str  # the library's or the operating system's words, without the URL or password

    def __str__(self) -> str:
        return f"cannot reach {self.system} ({self.variable}): {self.reason}"


def unreachable(error: BaseException) -> Unreachable | None:
    """What `error` says is down, when it means Redis or the database could not be reached."""
    if isinstance(error, _loaded("redis.exceptions", "ConnectionError", "TimeoutError")):
        return _said("Redis", "REDIS_URL", _os_reason(error) or _first_line(error))
    if isinstance(error, _loaded("sqlalchemy.exc", "OperationalError", "InterfaceError")) and _connecting(error):
        return _said("the database", "DATABASE_URL", _first_line(getattr(error, "orig", None) or error))
    return None


def _loaded(module: str, *names: str) -> tuple[type[BaseException], ...]:
    imported = sys.modules.get(module)
    return tuple(getattr(imported, name) for name in names) if imported is not None else ()


def _connecting(error: BaseException) -> bool:
    # SQLAlchemy gives no statement for a failure to connect, and marks a connection lost
    # mid-statement as invalidated; an OperationalError with a statement and a live connection
    # (SQLite's "no such table", a lock timeout) is a problem of its own, kept as it was.
    return getattr(error, "statement", None) is None or bool(getattr(error, "connection_invalidated", False))


def _os_reason(error: BaseException) -> str | None:
    """The operating system's words (e.g. "Connection refused") from the error's causes, if any."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror:
            # asyncio words a refused connection "Connect call failed ('host', port)": the errno's
            # own name says it plainly. (getaddrinfo's errors are negative: their text is kept.)
            return os.strerror(seen.errno) if seen.errno and seen.errno > 0 else seen.strerror
        seen = seen.__cause__ or seen.__context__
    return None


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0].strip() if lines else type(error).__name__


def _said(system: str, variable: str, reason: str) -> Unreachable:
    return Unreachable(system, variable, _redacted(reason, os.environ.get(variable)))


def _redacted(text: str, url: str | None) -> str:
    """`text` without the URL or its password, should a library ever quote them."""
    if not url:
        return text
    text = text.replace(url, "<url>")
    try:
        password = urlsplit(url).password
    except ValueError:  # not a URL at all: nothing more to find in it
        return text
    return text.replace(password, "***") if password else text
