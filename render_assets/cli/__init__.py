"""`render-assets`, the console script: parse with a parser that imports only the standard
library, then import the chosen command's module and run it."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from render_assets.cli.arguments import parser
from render_assets.cli.unreachable import unreachable

__all__ = ["main", "parser"]

Command = Callable[[argparse.Namespace], int]


def command(run: str) -> Command:
    """The function a parsed command names ("module:function"), its module imported now."""
    module, _, name = run.partition(":")
    found: Command = getattr(importlib.import_module(module), name)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(command(args.run)(args))
    except Exception as error:
        # Redis or the database down is the operator's to fix, not a bug: one line, exit status 1.
        said = unreachable(error)
        if said is None:
            raise
        print(f"render-assets: {said}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
