"""`render-assets`, the console script: parse with a parser that imports only the standard
library, then import the chosen command's module and run it."""

from __future__ import annotations

import argparse
import importlib
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
    args = parser().parse_args(argv)
    return int(command(args.run)(args))


if __name__ == "__main__":
    raise SystemExit(main())
