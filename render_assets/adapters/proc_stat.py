"""Processes as the kernel lists them in /proc: name, state, parent, session, start time and CPU
ticks (Linux only). The run launcher tells a live run worker from a reused pid by its start time;
the benchmark's samplers read every process at up to ten passes a second, so a pass reads one
small file per process (`/proc/<pid>/stat`) and nothing else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


@dataclass(frozen=True)
class ProcStat:
    pid: int
    name: str  # the kernel's `comm`: the executable's name, not the title a server may write over argv
    state: str
    ppid: int
    session: int
    own_ticks: int  # utime + stime
    reaped_ticks: int  # cutime + cstime: the children this process has waited for
    start_ticks: int  # when the process started, in clock ticks since boot

    @property
    def total_ticks(self) -> int:
        return self.own_ticks + self.reaped_ticks


def parse_stat(pid: int, text: str) -> ProcStat:
    # The name is in parentheses and may itself hold spaces or ")": split after the last one.
    name = text[text.find("(") + 1 : text.rfind(")")]
    fields = text[text.rfind(")") + 2 :].split()  # state ppid pgrp session ... (field 3 onwards)
    return ProcStat(
        pid=pid,
        name=name,
        state=fields[0],
        ppid=int(fields[1]),
        session=int(fields[3]),
        own_ticks=int(fields[11]) + int(fields[12]),
        reaped_ticks=int(fields[13]) + int(fields[14]),
        start_ticks=int(fields[19]),
    )


def read_stat(pid: int) -> ProcStat | None:
    text = read_text(PROC / str(pid) / "stat")
    return parse_stat(pid, text) if text else None


def scan() -> dict[int, ProcStat]:
    """Every process readable now, by pid (one that ends while the pass runs is left out)."""
    table = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            stat = read_stat(int(entry.name))
            if stat is not None:
                table[stat.pid] = stat
    return table


def owner_uid(pid: int) -> int | None:
    try:
        return (PROC / str(pid)).stat().st_uid
    except OSError:
        return None


def read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None
