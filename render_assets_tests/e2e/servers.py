"""Servers of a fault test's own, so a crash or a restart never disturbs the machine's shared
Redis and PostgreSQL: a private Redis, a private PostgreSQL cluster, and a TCP server that
accepts connections and never answers (a hung provider)."""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from render_assets_tests.conftest import free_port

POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")
POSTGRES_USER = "postgres"  # the cluster's files must belong to a user that is not root


def _wait_for_port(port: int, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"{what} did not start within {timeout_s:.0f}s")


class PrivateRedis:
    """A Redis of the test's own (the machine's is shared), persisting every write to its AOF as a
    production Redis behind BullMQ should, so that a crash loses no queue state."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                str(self.folder),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for_port(self.port, 10, "private redis-server")

    def crash(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


class PrivatePostgres:
    """A PostgreSQL cluster of the test's own (initdb in a temporary folder owned by `postgres`),
    trust authentication on 127.0.0.1 only. `restart` stops it the hard way, as a crash would."""

    def __init__(self) -> None:
        # Not under pytest's tmp_path: its parents are private to root, and the server runs as postgres.
        self.folder = Path(tempfile.mkdtemp(prefix="render-assets-pg-"))
        shutil.chown(self.folder, POSTGRES_USER, POSTGRES_USER)
        self.data = self.folder / "data"
        self.log = self.folder / "postgres.log"
        self.port = free_port()

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _pg(self, tool: str, *args: str, timeout_s: float = 60) -> None:
        completed = subprocess.run(
            ["runuser", "-u", POSTGRES_USER, "--", str(POSTGRES_BIN / tool), *args],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        if completed.returncode != 0:
            raise AssertionError(f"{tool} {' '.join(args)} failed:\n{completed.stdout}{completed.stderr}")

    def create(self) -> None:
        self._pg("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
        self.start()

    def start(self) -> None:
        # fsync off: only the server is killed, never the machine, so every write has reached the kernel.
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start")

    def stop(self, mode: str = "immediate") -> None:
        """`immediate` aborts every backend without a checkpoint (recovery runs at the next start)."""
        self._pg("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def create_database(self, name: str) -> str:
        self._pg("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
        return self.url(name)

    def remove(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
                self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


@dataclass
class HeldConnection:
    accepted_at: float  # time.monotonic()
    closed_at: float | None = None  # when the client gave up (it sent EOF or reset)
    received: int = 0


class HangingServer:
    """Accepts TCP connections, reads whatever the client sends, and never answers: a provider
    that hangs. Records when each client gave up waiting."""

    def __init__(self) -> None:
        self.connections: list[HeldConnection] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._closed = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HangingServer:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    def held(self) -> list[HeldConnection]:
        with self._lock:
            return list(self.connections)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            held = HeldConnection(accepted_at=time.monotonic())
            with self._lock:
                self.connections.append(held)
            threading.Thread(target=self._hold, args=(client, held), daemon=True).start()

    def _hold(self, client: socket.socket, held: HeldConnection) -> None:
        with client:
            try:
                while chunk := client.recv(65536):
                    held.received += len(chunk)
            except OSError:
                pass
            held.closed_at = time.monotonic()
