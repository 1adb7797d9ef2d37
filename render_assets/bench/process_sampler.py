"""CPU time and peak memory of a process session (the daemon, its code server, its run workers),
read from /proc while the benchmark runs.

Method: a thread reads /proc/<pid>/stat of every session member every `period_s` and keeps, per
pid, the last utime+stime it saw (kept after the process ends). The CPU a session spent between
two snapshots is the sum over pids of the growth of that figure. A process's last `period_s`
before it exits is missed, so a short-lived run worker is under-counted by at most one period's
worth of CPU (0.1 s by default); cumulative children times (cutime) are not used because run
workers are reaped by the code server at a time of its choosing. Peak RSS is the kernel's
high-water mark (VmHWM in /proc/<pid>/status), which holds the true peak whenever it is read.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
RUN_WORKER_MARK = "spawn_main"  # Dagster's code server starts run workers with multiprocessing "spawn"


@dataclass
class ProcessRecord:
    pid: int
    command: str
    cpu_s: float = 0.0
    peak_rss_kb: int = 0

    @property
    def is_run_worker(self) -> bool:
        return RUN_WORKER_MARK in self.command


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

    def cpu_by_pid(self) -> dict[int, float]:
        """A snapshot to subtract: CPU seconds per pid as last seen."""
        self.sample()
        with self._lock:
            return {pid: record.cpu_s for pid, record in self.records.items()}

    def cpu_since(self, snapshot: dict[int, float]) -> float:
        now = self.cpu_by_pid()
        return sum(cpu - snapshot.get(pid, 0.0) for pid, cpu in now.items())

    def run_workers_since(self, snapshot: dict[int, float]) -> list[ProcessRecord]:
        """Run workers that appeared after the snapshot."""
        with self._lock:
            return [r for pid, r in self.records.items() if r.is_run_worker and pid not in snapshot]

    def live_run_workers(self) -> int:
        with self._lock:
            records = dict(self.records)
        return sum(1 for pid, record in records.items() if record.is_run_worker and _alive(pid))

    def sample(self) -> None:
        for pid in _members(self.session_id):
            stat = _read(Path(f"/proc/{pid}/stat"))
            if stat is None:
                continue
            fields = stat[stat.rfind(")") + 2 :].split()
            cpu_s = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime
            with self._lock:
                record = self.records.get(pid)
                if record is None:
                    command = (_read(Path(f"/proc/{pid}/cmdline")) or "").replace("\0", " ")
                    record = self.records[pid] = ProcessRecord(pid, command)
                record.cpu_s = max(record.cpu_s, cpu_s)
                if record.is_run_worker:
                    record.peak_rss_kb = max(record.peak_rss_kb, _peak_rss_kb(pid))

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
