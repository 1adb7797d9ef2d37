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
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
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


@dataclass
class SessionSampler:
    session_id: int
    period_s: float = 0.1
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
            return Snapshot(total, {pid: record.cpu_s for pid, record in self.records.items()})

    def cpu_since(self, snapshot: Snapshot) -> float:
        return self.sample() - snapshot.session_cpu_s

    def cpu_by_role_since(self, snapshot: Snapshot) -> dict[str, float]:
        """CPU seconds since the snapshot, per role (daemon, code_server, run_worker, ...)."""
        total = self.sample() - snapshot.session_cpu_s
        roles: dict[str, float] = {}
        with self._lock:
            for pid, record in self.records.items():
                roles[record.role] = roles.get(record.role, 0.0) + record.cpu_s - snapshot.by_pid.get(pid, 0.0)
        roles["reaped_unsampled"] = total - sum(roles.values())
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
        for pid in _members(self.session_id):
            stat = _read(Path(f"/proc/{pid}/stat"))
            if stat is None:
                continue
            fields = stat[stat.rfind(")") + 2 :].split()
            own_ticks = int(fields[11]) + int(fields[12])  # utime + stime
            total_ticks += own_ticks + int(fields[13]) + int(fields[14])  # + cutime + cstime
            cpu_s = own_ticks / CLOCK_TICKS
            with self._lock:
                record = self.records.get(pid)
                if record is None:
                    command = _command(pid)
                    record = self.records[pid] = ProcessRecord(pid, command, role_of(command, _command(int(fields[1]))))
                record.cpu_s = max(record.cpu_s, cpu_s)
                if record.is_run_worker:
                    record.peak_rss_kb = max(record.peak_rss_kb, _peak_rss_kb(pid))
        return total_ticks / CLOCK_TICKS

    def _loop(self) -> None:
        while not self._stop.wait(self.period_s):
            self.sample()


def _members(session_id: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _read(entry / "stat")
            if stat is not None:
                fields = stat[stat.rfind(")") + 2 :].split()
                if len(fields) > 3 and int(fields[3]) == session_id:
                    found.append(int(entry.name))
    return found


def _command(pid: int) -> str:
    return (_read(Path(f"/proc/{pid}/cmdline")) or "").replace("\0", " ")


def _peak_rss_kb(pid: int) -> int:
    for line in (_read(Path(f"/proc/{pid}/status")) or "").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _alive(pid: int) -> bool:
    stat = _read(Path(f"/proc/{pid}/stat"))
    return stat is not None and stat[stat.rfind(")") + 2 :].split()[0] != "Z"


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None
