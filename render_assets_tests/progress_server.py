"""Helpers for the progress server's tests: a real uvicorn serving the app, an SSE reader that
speaks the wire format, and a worker's side of progress (rows and events, as the stages write them)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from sse_starlette.sse import AppStatus

from render_assets.adapters.bullmq_queue import BullQueue
from render_assets.adapters.event_stream import EventStream
from render_assets.domain.payload import parse_job
from render_assets.domain.progress import Progress, Stage
from render_assets.persistence import renders
from render_assets.persistence.database import Database
from render_assets.persistence.renders import BullClaim
from render_assets.services.backends import QueueSettings
from render_assets.services.progress import ProgressPublisher
from render_assets.web.app import create_app
from render_assets.web.settings import WebSettings
from render_assets_tests.conftest import REDIS_URL, free_port
from render_assets_tests.payloads import EXAMPLES, web_app_job


def unique_prefix() -> str:
    return f"test-events-{uuid.uuid4().hex[:10]}:"


@dataclass
class SseEvent:
    event: str
    data: str
    id: str | None


@dataclass
class SseRead:
    events: list[SseEvent] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    status: int = 0
    ended: bool = False  # the server closed the stream
    dropped: bool = False  # the connection broke off mid-response


def parse_sse_lines(lines: Iterator[str], read: SseRead, *, stop_after: int | None = None) -> None:
    """Dispatch events as the EventSource spec says: fields until a blank line."""
    event, data, event_id = "message", [], None
    for line in lines:
        if line == "":
            if data:
                read.events.append(SseEvent(event=event, data="\n".join(data), id=event_id))
                if stop_after is not None and len(read.events) >= stop_after:
                    return
            event, data, event_id = "message", [], None
            continue
        if line.startswith(":"):
            read.comments.append(line[1:].strip())
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            event_id = value
    read.ended = True


def read_sse(
    url: str,
    *,
    headers: dict[str, str] | None = None,
    stop_after: int | None = None,
    timeout_s: float = 20.0,
) -> SseRead:
    """Read a render's events until the server closes the stream or `stop_after` events came;
    gives up after `timeout_s` in all (keep-alives arrive every second), `ended` False then."""
    read = SseRead()
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=httpx.Timeout(timeout_s)) as client, client.stream("GET", url, headers=headers) as reply:
        read.status = reply.status_code
        if reply.status_code == 200:
            try:
                parse_sse_lines(_until(reply.iter_lines(), deadline), read, stop_after=stop_after)
            except httpx.RemoteProtocolError:
                read.dropped = True  # closed mid-response (a server shutting down)
            read.ended = read.ended and time.monotonic() < deadline
    return read


def _until(lines: Iterator[str], deadline: float) -> Iterator[str]:
    for line in lines:
        if time.monotonic() > deadline:
            raise TimeoutError("the event stream did not end in time")
        yield line


@contextmanager
def serving(settings: WebSettings, *, log_level: str = "warning") -> Iterator[str]:
    """The app on a real uvicorn, in a thread of this process; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level=log_level)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the progress server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        # Signals tell sse-starlette that uvicorn is stopping; a server in a thread gets none.
        AppStatus.should_exit = True
        server.should_exit = True
        thread.join(timeout=15)
        AppStatus.should_exit = False
        if thread.is_alive():
            raise RuntimeError("the progress server did not shut down within 15 s")


def web_settings(
    database_url: str, prefix: str, *, redis_url: str = REDIS_URL, queue_name: str | None = None, **overrides: Any
) -> WebSettings:
    queue = QueueSettings(
        redis_url=redis_url, queue_name=queue_name or f"test-web-{uuid.uuid4().hex[:10]}", events_prefix=prefix
    )
    options: dict[str, Any] = {"keepalive_s": 1.0, "watch_block_ms": 200, **overrides}
    return WebSettings(queue=queue, database_url=database_url, **options)


class Worker:
    """The worker's side of one render's progress: its row, and events through the real publisher."""

    def __init__(self, database: Database, prefix: str, render_id: str | None = None) -> None:
        self.database = database
        self.events = EventStream(REDIS_URL, prefix=prefix, ttl_s=600)
        self.publisher = ProgressPublisher(database, BullQueue(REDIS_URL, "unused", 60_000), self.events)
        self.render_id = render_id or f"render-{uuid.uuid4().hex[:12]}"

    def claim(self) -> Worker:
        job = parse_job(web_app_job(render_id=self.render_id))
        claim = BullClaim(job_id="1", attempt=0, max_attempts=3, token="t", run_key=f"{self.render_id}:1:0")
        with self.database.session() as session:
            renders.record_claim(session, job, claim)
            renders.mark_processing(session, self.render_id)
        return self

    def stage(self, *stages: Stage) -> None:
        for stage in stages:
            self.publisher.publish(self.render_id, None, stage)

    def _delivered(self, name: str) -> tuple[dict[str, Any], int]:
        result = {
            "renderId": self.render_id,
            "imageUrl": f"https://cdn.example.com/{self.render_id}/{name}master.png",
            "thumbnailUrl": f"https://cdn.example.com/{self.render_id}/{name}thumbnail.webp",
        }
        with self.database.session() as session:
            version = renders.mark_completed(
                session,
                self.render_id,
                result=result,
                image_url=result["imageUrl"],
                thumbnail_url=result["thumbnailUrl"],
                prompt_hash="0" * 64,
            )
        return result, version.version

    def complete(self) -> dict[str, Any]:
        result, _ = self._delivered("")
        self.publisher.publish(self.render_id, None, Stage.COMPLETED)
        return result

    def rerender(self) -> dict[str, Any]:
        """An operator's re-render delivered new objects: the next version, announced on the stream."""
        result, version = self._delivered(f"{uuid.uuid4().hex[:6]}-")
        self.publisher.rerendered(self.render_id, version, result)
        return {**result, "version": version}

    def fail(self, reason: str, *, final: bool) -> None:
        with self.database.session() as session:
            percent = renders.require(session, self.render_id).progress
            renders.mark_failed(session, self.render_id, reason=reason, final=final)
        self.publisher.send(self.render_id, None, Progress(percent=percent, stage=Stage.FAILED.value, message=reason))


@contextmanager
def server_process(env: dict[str, str]) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`render-assets serve` as its own process (as `make run` starts it); yields (base URL, process)."""
    port = free_port()
    command = [str(Path(sys.executable).parent / "render-assets"), "serve", "--port", str(port)]
    command += ["--examples", str(EXAMPLES)]
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_healthy(base, process, log)
            yield base, process
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_healthy(base: str, process: subprocess.Popen[bytes], log: Any) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            log.seek(0)
            raise RuntimeError(f"render-assets serve did not come up:\n{log.read().decode(errors='replace')}")
        time.sleep(0.1)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")
