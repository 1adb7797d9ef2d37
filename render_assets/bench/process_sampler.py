"""CPU time and peak memory of a process session (the daemon, its code server, its run workers),
read from /proc while the benchmark runs.

Method: the CPU a session spent between two snapshots is exact: the growth of the sum, over its
live members (zombies included), of utime+stime plus cutime+cstime (the CPU of the children each
has reaped), so a process's CPU moves into its parent's figure when it is reaped and is counted
once, up to its last tick. Per process (for the figures per role and per run worker), a thread
reads /proc/<pid>/stat of every member every `period_s` and keeps the last utime+stime it saw;
that misses up to one period of each process's last moments, which the role `reaped_unsampled`
(the exact total minus the sum of the sampled figures) holds. Peak RSS is the kernel's
high-water mark (VmHWM in /proc/<pid>/status), which holds the true peak whenever it is read.

Each process gets a role from its command line: the daemon, the code server, a run worker (a
"spawn" child of the code server under Dagster's default launcher, or a child of the forkserver
under `ForkingRunLauncher`), the forking launcher's template (the forkserver itself), or other.

The PostgreSQL and Redis servers given as `servers` (server_processes.py) are roles of their
own, `postgres_server` and `redis_server`, outside the session's figure.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from render_assets.adapters.proc_stat import CLOCK_TICKS, ProcStat, read_stat, read_text, scan
from render_assets.bench.server_processes import Server, server_cpu_s

RUN_WORKER_MARK = "spawn_main"  # Dagster's code server starts run workers with multiprocessing "spawn"
FORKSERVER_MARK = "multiprocessing.forkserver"  # the template and, forked from it, the run workers
RUN_WORKER = "run_worker"


def role_of(command: str, parent_command: str) -> str:
    if RUN_WORKER_MARK in command or (FORKSERVER_MARK in command and FORKSERVER_MARK in parent_command):
        return RUN_WORKER
    if FORKSERVER_MARK in command:
        return "run_worker_template"
    if "dagster-daemon" in command:
        return "daemon"
    if "api grpc" in command:
        return "code_server"
    return "other"


@dataclass
class ProcessRecord:
    pid: int
    command: str
    role: str = "other"
    cpu_s: float = 0.0
    peak_rss_kb: int = 0

    @property
    def is_run_worker(self) -> bool:
        return self.role == RUN_WORKER


@dataclass(frozen=True)
class Snapshot:
    session_cpu_s: float
    by_pid: dict[int, float]
    servers: dict[Server, float] = field(default_factory=dict)


@dataclass
class SessionSampler:
    session_id: int
    period_s: float = 0.1
    servers: Sequence[Server] = ()
    records: dict[int, ProcessRecord] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="session-sampler", daemon=True)

    def start(self) -> SessionSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def snapshot(self) -> Snapshot:
        """What to subtract later: the session's exact CPU total and the per-process figures."""
        total = self.sample()
        with self._lock:
            by_pid = {pid: record.cpu_s for pid, record in self.records.items()}
        return Snapshot(total, by_pid, self._servers_now())

    def cpu_since(self, snapshot: Snapshot) -> float:
        """The session's CPU seconds since the snapshot (the servers' are `server_cpu_since`)."""
        return self.sample() - snapshot.session_cpu_s

    def server_cpu_since(self, snapshot: Snapshot) -> dict[str, float]:
        """CPU seconds each server role spent since the snapshot."""
        roles: dict[str, float] = {}
        for server, cpu_s in self._servers_now().items():
            # A server that started after the snapshot spent all its CPU since.
            roles[server.role] = roles.get(server.role, 0.0) + cpu_s - snapshot.servers.get(server, 0.0)
        return {role: round(cpu_s, 2) for role, cpu_s in sorted(roles.items())}

    def cpu_by_role_since(self, snapshot: Snapshot) -> dict[str, float]:
        """CPU seconds since the snapshot, per role (daemon, code_server, run_worker, ...)."""
        total = self.sample() - snapshot.session_cpu_s
        roles: dict[str, float] = {}
        with self._lock:
            for pid, record in self.records.items():
                roles[record.role] = roles.get(record.role, 0.0) + record.cpu_s - snapshot.by_pid.get(pid, 0.0)
        roles["reaped_unsampled"] = total - sum(roles.values())
        roles.update(self.server_cpu_since(snapshot))
        return {role: round(cpu_s, 2) for role, cpu_s in sorted(roles.items())}

    def run_workers_since(self, snapshot: Snapshot) -> list[ProcessRecord]:
        """Run workers that appeared after the snapshot."""
        with self._lock:
            return [r for pid, r in self.records.items() if r.is_run_worker and pid not in snapshot.by_pid]

    def live_run_workers(self) -> int:
        with self._lock:
            records = dict(self.records)
        return sum(1 for pid, record in records.items() if record.is_run_worker and _alive(pid))

    def sample(self) -> float:
        """Update the per-process figures; returns the session's exact CPU total now."""
        total_ticks = 0
        for stat in _members(self.session_id):
            total_ticks += stat.total_ticks
            with self._lock:
                record = self.records.get(stat.pid)
                if record is None:
                    command = _command(stat.pid)
                    record = self.records[stat.pid] = ProcessRecord(
                        stat.pid, command, role_of(command, _command(stat.ppid))
                    )
                record.cpu_s = max(record.cpu_s, stat.own_ticks / CLOCK_TICKS)
                if record.is_run_worker:
                    record.peak_rss_kb = max(record.peak_rss_kb, _peak_rss_kb(stat.pid))
        return total_ticks / CLOCK_TICKS

    def _servers_now(self) -> dict[Server, float]:
        if not self.servers:
            return {}
        table = scan()
        figures = {server: server_cpu_s(server, table) for server in self.servers}
        return {server: cpu_s for server, cpu_s in figures.items() if cpu_s is not None}

    def _loop(self) -> None:
        while not self._stop.wait(self.period_s):
            self.sample()


def _members(session_id: int) -> list[ProcStat]:
    return [stat for stat in scan().values() if stat.session == session_id]


def _command(pid: int) -> str:
    return (read_text(Path(f"/proc/{pid}/cmdline")) or "").replace("\0", " ")


def _peak_rss_kb(pid: int) -> int:
    for line in (read_text(Path(f"/proc/{pid}/status")) or "").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _alive(pid: int) -> bool:
    stat = read_stat(pid)
    return stat is not None and stat.state != "Z"
