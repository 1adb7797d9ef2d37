"""`render-assets`, the console script: parse with a parser that imports only the standard
library, then import the chosen command's module and run it."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
from collections.abc import Callable, Sequence

from render_assets.cli.arguments import parser

__all__ = ["main", "parser"]

Command = Callable[[argparse.Namespace], int]


def command(run: str) -> Command:
    """The function a parsed command names ("module:function"), its module imported now."""
    module, _, name = run.partition(":")
    found: Command = getattr(importlib.import_module(module), name)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)  # --help and --version end here, with the parser alone imported
    # Imported once a command runs (logging and dataclasses are a fifth of --help's time).
    from render_assets.cli.held_warnings import HeldWarnings
    from render_assets.cli.unreachable import unreachable

    run = command(args.run)
    # A server's warnings are said as they happen: it may run for days.
    held = contextlib.nullcontext() if args.long_running else HeldWarnings()
    try:
        with held:
            return int(run(args))
    except Exception as error:
        # Redis or the database down is the operator's to fix, not a bug: one line, exit status 1.
        down = unreachable(error)
        if down is None:
            raise
        print(f"render-assets: {down}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
