"""The image's health check, for every role the one image plays (`python -m render_assets.container_health`).

The role is read from the container's main command (PID 1's command line, after docker-init's
`--` when the container runs with an init): the webserver and the progress server must answer
HTTP (the progress server's /healthz also checks Redis and the database), the code server must
accept connections on its port, and a daemon or a run worker is healthy while it runs (its
process is the container). Standard library only: it runs every 30 s in every container, so it
must cost milliseconds, not an import of Dagster.
"""

from __future__ import annotations

import itertools
import socket
import sys
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

TIMEOUT_S = 4.0
WEBSERVER_PORT = 3000  # dagster-webserver's default
CODE_SERVER_PORT = 4000  # the port the image's default command serves the code location on
PROGRESS_PORT = 8000  # `render-assets serve`'s default


@dataclass(frozen=True)
class Probe:
    kind: str  # "http", "tcp" or "process"
    port: int | None = None
    path: str = "/"


def main_command(cmdline: bytes) -> list[str]:
    """The container's command from /proc/1/cmdline, without an init in front of it."""
    args = [arg.decode(errors="replace") for arg in cmdline.split(b"\0") if arg]
    return args[args.index("--") + 1 :] if "--" in args else args


def probe_for(command: Sequence[str]) -> Probe:
    program, subcommand = (Path(command[0]).name if command else ""), list(command[1:3])
    if program == "dagster-webserver":
        return Probe("http", _port(command, WEBSERVER_PORT), "/server_info")
    if program == "render-assets" and subcommand[:1] == ["serve"]:
        return Probe("http", _port(command, PROGRESS_PORT), "/healthz")
    if program == "dagster" and subcommand in (["code-server", "start"], ["api", "grpc"]):
        return Probe("tcp", _port(command, CODE_SERVER_PORT))
    return Probe("process")


def _port(command: Sequence[str], default: int) -> int:
    for flag, value in itertools.pairwise(command):
        if flag in ("-p", "--port"):
            return int(value)
    for arg in command:
        if arg.startswith("--port="):
            return int(arg.split("=", 1)[1])
    return default


def check(probe: Probe) -> None:
    """Raises OSError when the probe fails."""
    if probe.kind == "http":
        with urllib.request.urlopen(f"http://127.0.0.1:{probe.port}{probe.path}", timeout=TIMEOUT_S) as reply:
            reply.read()
    elif probe.kind == "tcp":
        assert probe.port is not None
        socket.create_connection(("127.0.0.1", probe.port), timeout=TIMEOUT_S).close()


def main() -> int:
    probe = probe_for(main_command(Path("/proc/1/cmdline").read_bytes()))
    try:
        check(probe)
    except OSError as error:
        print(f"unhealthy: {probe.kind} check on port {probe.port} failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
