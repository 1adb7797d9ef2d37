"""Warnings about an unreachable Redis or database, held while a command runs.

A command that fails because Redis or the database is down says so in one line (cli/unreachable.py),
but services log on the way what they tolerated first (a progress event not appended, BullMQ not
told yet), each with its traceback, and that is the same news. The CLI configures no logging, so
those records reach `logging.lastResort`; while a command runs, the handler there holds the ones
whose exception means a system is down and passes every other record on at once, as before. When
the command ends, the held ones are dropped if it failed on the same system, and otherwise said in
one line each.
"""

from __future__ import annotations

import logging
import sys
from types import TracebackType

from render_assets.cli.unreachable import Unreachable, unreachable


class HeldWarnings(logging.Handler):
    """`logging.lastResort` while a command runs (a context manager around the command)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)  # lastResort's own level
        self.passed_to: logging.Handler | None = None
        self.held: list[tuple[str, Unreachable]] = []

    def emit(self, record: logging.LogRecord) -> None:
        error = record.exc_info[1] if record.exc_info else None
        down = unreachable(error) if error is not None else None
        if down is not None:
            self.held.append((record.getMessage(), down))
        elif self.passed_to is not None:
            self.passed_to.handle(record)

    def __enter__(self) -> HeldWarnings:
        self.passed_to, logging.lastResort = logging.lastResort, self
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        logging.lastResort = self.passed_to
        ended_by = unreachable(error) if error is not None else None
        for message, down in self.held:
            if ended_by is None or down.variable != ended_by.variable:
                print(f"render-assets: {message}: {down}", file=sys.stderr)
