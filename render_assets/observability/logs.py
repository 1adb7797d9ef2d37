"""Process logs: one JSON object per line when `LOG_FORMAT=json`, and the render on every line of a run.

The render's id, the Dagster run id and the step live in a context variable that the assets'
instrumentation and the failure hook set; a filter on the handler copies them onto every record
logged meanwhile by the project's (and any library's) stdlib loggers. Lines written through
Dagster's `context.log` go to Dagster's own handlers and event log, where the run and step are
part of every entry already.

Every record is scrubbed when it is made (`install_record_scrubbing`, a log record factory), so
no handler sees a secret: not ours, not Dagster's console or event log, not a library's or a
test runner's. Our formatters scrub again, for records made by other means.
"""

from __future__ import annotations

import json
import logging
import numbers
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from render_assets.observability.scrubbing import scrub_text

FORMATS = ("text", "json")
CONTEXT_FIELDS = ("renderId", "runId", "stage")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [render=%(renderId)s stage=%(stage)s] %(message)s"

_log_context: ContextVar[dict[str, str] | None] = ContextVar("render_log_context", default=None)
_HANDLER_MARK = "_render_assets_handler"
_FACTORY_MARK = "_render_assets_scrubbing"
_TRACEBACKS = logging.Formatter()


@contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    """Every line logged inside carries these fields (added to what an outer context set)."""
    merged = {**(_log_context.get() or {}), **{key: value for key, value in fields.items() if value}}
    token = _log_context.set(merged)
    try:
        yield
    finally:
        _log_context.reset(token)


def current_context() -> dict[str, str]:
    return dict(_log_context.get() or {})


class RenderContextFilter(logging.Filter):
    """Copies the current render context onto the record (`-` where no run is in progress)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _log_context.get() or {}
        for key in CONTEXT_FIELDS:
            if not hasattr(record, key):
                setattr(record, key, context.get(key, "-"))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the render context, the error."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": scrub_text(record.getMessage()),
        }
        for key in CONTEXT_FIELDS:
            value = getattr(record, key, None)
            if value and value != "-":
                entry[key] = value
        if record.exc_info:
            entry["error"] = scrub_text(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


class ScrubbingFormatter(logging.Formatter):
    """The plain text format, scrubbed like the JSON one."""

    def format(self, record: logging.LogRecord) -> str:
        return scrub_text(super().format(record))


class StderrHandler(logging.StreamHandler[Any]):
    """Writes to whatever `sys.stderr` is at the time (test runners and daemons swap it)."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def _scrub_args(record: logging.LogRecord) -> bool:
    """Scrub a record's message and arguments one by one, keeping its shape (formatters such as
    uvicorn's access formatter unpack `args`); False when the result would still not be clean."""
    args = record.args
    if not isinstance(record.msg, str) or not isinstance(args, tuple):
        return False
    if not all(isinstance(arg, str | numbers.Number) or arg is None for arg in args):
        return False
    scrubbed_args = tuple(scrub_text(arg) if isinstance(arg, str) else arg for arg in args)
    scrubbed_msg = scrub_text(record.msg)
    try:
        message = scrubbed_msg % scrubbed_args
    except (TypeError, ValueError):
        return False
    if scrub_text(message) != message:  # a secret made of parts (a scheme in msg, its value in args)
        return False
    record.msg, record.args = scrubbed_msg, scrubbed_args
    return True


def scrub_record(record: logging.LogRecord) -> logging.LogRecord:
    """The record without secrets: its message, its traceback and its stack."""
    try:
        message = record.getMessage()
    except Exception:
        return record  # a malformed call: logging reports it when a handler formats the record
    scrubbed = scrub_text(message)
    if scrubbed != message and not _scrub_args(record):
        record.msg, record.args = scrubbed, ()
    if record.exc_info and not record.exc_text:
        # Formatters use a record's cached traceback text: the scrubbed one.
        record.exc_text = scrub_text(_TRACEBACKS.formatException(record.exc_info))
    if record.stack_info:
        record.stack_info = scrub_text(record.stack_info)
    return record


def install_record_scrubbing() -> None:
    """Scrub every log record of the process as it is made (once; a second call does nothing)."""
    current = logging.getLogRecordFactory()
    if getattr(current, _FACTORY_MARK, False):
        return

    def scrubbed_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return scrub_record(current(*args, **kwargs))

    setattr(scrubbed_record, _FACTORY_MARK, True)
    logging.setLogRecordFactory(scrubbed_record)


def configure_logging(log_format: str | None, level: str | None = None) -> None:
    """Install one handler on the root logger (again on a second call: it replaces its own), and
    scrub every record of the process."""
    chosen = (log_format or "text").strip().lower()
    if chosen not in FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {', '.join(FORMATS)}, got {log_format!r}")
    level_name = (level or "INFO").strip().upper()
    if not isinstance(logging.getLevelName(level_name), int):
        raise ValueError(f"LOG_LEVEL must be a logging level such as INFO or DEBUG, got {level!r}")
    install_record_scrubbing()
    handler = StderrHandler()
    handler.setFormatter(JsonFormatter() if chosen == "json" else ScrubbingFormatter(TEXT_FORMAT))
    handler.addFilter(RenderContextFilter())
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for existing in [item for item in root.handlers if getattr(item, _HANDLER_MARK, False)]:
        root.removeHandler(existing)
    root.addHandler(handler)
    logging.getLogger("render_assets").setLevel(level_name)
