"""The PostgreSQL and Redis servers the stack uses, found in /proc, and the CPU they spent.

Every job writes to both (Dagster's storage and the project database on PostgreSQL, BullMQ and
the event stream on Redis), so the benchmark counts their CPU with the stack's. Each server names
its own process: PostgreSQL the backend serving a connection (`pg_backend_pid()`, whose parent is
the postmaster), Redis its `process_id`; another server on the machine (a test's) is not counted.
A server is that root process and the children it started under the same user with the same
executable (PostgreSQL's backends and background workers). The figure is exact like the
session's: the live members' own CPU plus what each has reaped, and the postmaster reaps every
backend that ends, so a connection that came and went between two readings still counts. A
server serves whoever connects, so the benchmark wants an otherwise idle machine.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from render_assets.adapters.proc_stat import CLOCK_TICKS, ProcStat, owner_uid, read_stat, scan

# role -> executable names (the kernel's `comm`: PostgreSQL rewrites its backends' titles, not it)
SERVER_NAMES: dict[str, tuple[str, ...]] = {
    "postgres_server": ("postgres", "postmaster"),
    "redis_server": ("redis-server",),
}


@dataclass(frozen=True)
class Server:
    role: str
    pid: int  # the root process
    uid: int


def _server(role: str, pid: int) -> Server | None:
    """The server whose root is `pid`, when this machine runs it (not so for a remote server or
    one in a container's own pid namespace)."""
    stat, uid = read_stat(pid), owner_uid(pid)
    if stat is None or uid is None or stat.name not in SERVER_NAMES[role]:
        return None
    return Server(role, pid, uid)


def postgres_server(url: str) -> Server | None:
    from sqlalchemy import create_engine, text

    from render_assets.persistence.database import driver_url

    engine = create_engine(driver_url(url))
    try:
        with engine.connect() as connection:
            backend = int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())
            # Its parent while the connection is open: a backend that ended has no parent to ask.
            stat = read_stat(backend)
    finally:
        engine.dispose()
    return _server("postgres_server", stat.ppid) if stat is not None else None


def redis_server(url: str) -> Server | None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        return _server("redis_server", int(client.info("server")["process_id"]))
    finally:
        client.close()


def servers_in_use(postgres_urls: Iterable[str], redis_url: str) -> list[Server]:
    """The servers behind these URLs that run on this machine, each once."""
    found = [postgres_server(url) for url in dict.fromkeys(postgres_urls)] + [redis_server(redis_url)]
    return sorted({server for server in found if server is not None}, key=lambda server: (server.role, server.pid))


def server_members(server: Server, table: dict[int, ProcStat]) -> list[int]:
    """The root and the children it started as the same user, with the same executable."""
    names = SERVER_NAMES[server.role]
    children = [
        stat.pid
        for stat in table.values()
        if stat.ppid == server.pid and stat.name in names and owner_uid(stat.pid) == server.uid
    ]
    return [server.pid, *children] if server.pid in table else []


def server_cpu_s(server: Server, table: dict[int, ProcStat] | None = None) -> float | None:
    """CPU seconds the server has spent since it started (None once its root is gone).

    The members are read afresh, children first and the root last: a child that ends meanwhile is
    then either read or already in the root's reaped figure, never missed, so the figure only grows.
    """
    table = scan() if table is None else table
    members = server_members(server, table)
    if not members:
        return None
    children = (read_stat(pid) for pid in members[1:])
    ticks = sum(stat.total_ticks for stat in children if stat is not None)
    root = read_stat(server.pid)
    return None if root is None else (ticks + root.total_ticks) / CLOCK_TICKS
