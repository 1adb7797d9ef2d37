"""What live progress costs: the publisher's stream append, and the progress server's fan-out
(`render-assets serve` in its own process, SSE clients on one render). Prints figures.

    .venv/bin/python -m render_assets.bench.progress_events [--clients 1,50,200] [--events 20]

Uses the machine's Redis (REDIS_URL) under a key prefix of its own, and a SQLite file in a
temporary folder; removes its keys when done.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis

from render_assets import config
from render_assets.adapters.bullmq_queue import BullQueue
from render_assets.adapters.event_stream import EventStream
from render_assets.domain.progress import Stage, progress_for
from render_assets.migrations import upgrade
from render_assets.persistence.database import Database
from render_assets.persistence.models import Render, RenderStatus, utcnow
from render_assets.persistence.progress_events import EventKind, ProgressEvent
from render_assets.services.progress import ProgressPublisher


def percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(share / 100 * (len(ordered) - 1)))]


def show(label: str, samples_ms: list[float]) -> None:
    print(
        f"  {label:<44} p50 {percentile(samples_ms, 50):8.3f} ms   p95 {percentile(samples_ms, 95):8.3f} ms"
        f"   max {max(samples_ms):8.3f} ms   (n={len(samples_ms)})"
    )


def _row(database: Database, render_id: str) -> None:
    with database.session() as session:
        session.add(
            Render(
                id=render_id,
                organization_id="org-bench",
                project_id="p",
                user_id="u",
                status=RenderStatus.PROCESSING,
                stage="claimed",
                progress=5,
                payload={},
                credit_cost=1,
                created_at=utcnow(),
            )
        )


def bench_publisher(redis_url: str, prefix: str, database: Database, repeat: int) -> None:
    print("publisher (renders row + stream append; no BullMQ job)")
    queue = BullQueue(redis_url, "bench-unused", 60_000)
    for label, stream in (("row only", None), ("row + event stream", EventStream(redis_url, prefix=prefix))):
        publisher = ProgressPublisher(database, queue, stream)
        samples = []
        for _ in range(repeat):
            render_id = f"bench-{uuid.uuid4().hex[:12]}"
            _row(database, render_id)
            for stage in (Stage.CHARGED, Stage.PROMPT_READY, Stage.GENERATING):
                started = time.perf_counter()
                publisher.send(render_id, None, progress_for(stage))
                samples.append((time.perf_counter() - started) * 1000)
        show(label, samples)
    stream = EventStream(redis_url, prefix=prefix)
    event = ProgressEvent(EventKind.STAGE, {"stage": "generating", "percent": 30})
    samples = []
    for _ in range(repeat * 3):
        started = time.perf_counter()
        stream.append("bench-append", event)
        samples.append((time.perf_counter() - started) * 1000)
    show("stream append alone (Lua: XADD, EXPIRE, histogram)", samples)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def _server(env: dict[str, str]) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    port = _free_port()
    command = [sys.executable, "-m", "render_assets.cli", "serve", "--port", str(port)]
    process = subprocess.Popen(command, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("render-assets serve did not start") from None
                time.sleep(0.1)
        yield port, process
    finally:
        process.terminate()
        process.wait(timeout=15)


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class Arrivals:
    expected: int
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    connected: int = 0
    last: dict[str, float] = field(default_factory=dict)  # event key → when the last client got it
    count: dict[str, int] = field(default_factory=dict)  # event key → clients that got it


async def _client(port: int, path: str, arrivals: Arrivals) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    buffer = b""
    first = True
    while chunk := await reader.read(65536):
        now = time.perf_counter()
        buffer += chunk
        while b"\r\n\r\n" in buffer:
            message, buffer = buffer.split(b"\r\n\r\n", 1)
            for line in message.split(b"\r\n"):
                if line.startswith(b"data: ") and b'"bench":' in line:
                    key = line.split(b'"bench":"', 1)[1].split(b'"', 1)[0].decode()
                    arrivals.last[key] = max(arrivals.last.get(key, 0.0), now)
                    arrivals.count[key] = arrivals.count.get(key, 0) + 1
            if first and b"event: " in message:
                first = False
                arrivals.connected += 1
                if arrivals.connected == arrivals.expected:
                    arrivals.ready.set()
    writer.close()


async def _fanout(port: int, stream: EventStream, render_id: str, clients: int, events: int) -> list[float]:
    arrivals = Arrivals(expected=clients)
    path = f"/renders/{render_id}/events"
    tasks = [asyncio.create_task(_client(port, path, arrivals)) for _ in range(clients)]
    await asyncio.wait_for(arrivals.ready.wait(), timeout=60)
    latencies = []
    for number in range(events):
        key = f"e{number}"
        sent = time.perf_counter()
        await asyncio.to_thread(
            stream.append, render_id, ProgressEvent(EventKind.PROGRESS, {"stage": "generating", "bench": key})
        )
        while arrivals.count.get(key, 0) < clients:
            await asyncio.sleep(0.001)
        latencies.append((arrivals.last[key] - sent) * 1000)  # until the last client has it
        await asyncio.sleep(0.05)
    await asyncio.to_thread(stream.append, render_id, ProgressEvent(EventKind.COMPLETED, {"stage": "completed"}))
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)
    return latencies


def bench_fanout(
    redis_url: str, prefix: str, database_url: str, database: Database, counts: list[int], events: int
) -> None:
    print("fan-out: append → the last of N SSE clients has the event (server in its own process)")
    env = {"REDIS_URL": redis_url, "DATABASE_URL": database_url, "RENDER_EVENTS_PREFIX": prefix}
    stream = EventStream(redis_url, prefix=prefix)
    with _server(env) as (port, process):
        idle = _rss_mib(process.pid)
        print(f"  server RSS idle: {idle:.1f} MiB")
        for clients in counts:
            render_id = f"bench-{uuid.uuid4().hex[:12]}"
            _row(database, render_id)
            latencies = asyncio.run(_fanout(port, stream, render_id, clients, events))
            show(f"{clients} clients", latencies)
            print(f"  server RSS after {clients} clients left: {_rss_mib(process.pid):.1f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="1,50,200", help="comma-separated client counts")
    parser.add_argument("--events", type=int, default=20, help="events per client count")
    parser.add_argument("--repeat", type=int, default=50, help="renders for the publisher figures")
    args = parser.parse_args()
    redis_url = config.REDIS_URL.value() or "redis://127.0.0.1:6379/0"
    prefix = f"bench-events-{uuid.uuid4().hex[:8]}:"
    with tempfile.TemporaryDirectory() as folder:
        database_url = f"sqlite:///{Path(folder) / 'bench.db'}"
        upgrade(database_url)
        database = Database(database_url)
        try:
            bench_publisher(redis_url, prefix, database, args.repeat)
            counts = [int(count) for count in args.clients.split(",") if count.strip()]
            bench_fanout(redis_url, prefix, database_url, database, counts, args.events)
        finally:
            database.dispose()
            client = redis.Redis.from_url(redis_url)
            keys = list(client.scan_iter(f"{prefix}*"))
            if keys:
                client.delete(*keys)


if __name__ == "__main__":
    main()
