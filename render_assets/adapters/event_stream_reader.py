"""The reading side of the per-render event streams, for the asyncio progress server.

Clients read by their own cursor with plain `XRANGE` (so a resume can have no gap and no
duplicate), and learn that there is something to read from one `StreamWatch` per process: a
single task that blocks in `XREAD` over every watched stream at once, on one connection of its
own, however many browsers watch however many renders.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from render_assets.adapters.event_stream import STAGE_BUCKETS_MS, StreamKeys, entry_id_order

log = logging.getLogger(__name__)

START = "0-0"


@dataclass(frozen=True)
class StreamEntry:
    id: str
    event: str
    data: str


@dataclass(frozen=True)
class StreamInfo:
    length: int
    entries_added: int
    first_id: str
    last_id: str
    max_deleted_id: str
    last_event: str = ""

    def holds_everything_after(self, cursor: str) -> bool:
        """Whether every entry ever appended after `cursor` is still in the stream.

        Trimming drops the oldest entries (all older than `first_id`) and XDEL raises
        `max_deleted_id`; when entries were trimmed and the cursor is older than the first one
        left, Redis cannot tell whether the trimmed ones were newer than the cursor: say no.
        """
        after = entry_id_order(cursor)
        if entry_id_order(self.max_deleted_id) > after:
            return False
        return self.entries_added == self.length or after >= entry_id_order(self.first_id)


@dataclass(frozen=True)
class StageLatency:
    """One stage's latency histogram: cumulative bucket counts by upper bound in seconds."""

    buckets: list[tuple[float, int]]
    count: int
    sum_s: float


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _entry(entry_id: bytes | str, fields: dict[bytes | str, bytes | str]) -> StreamEntry:
    decoded = {_text(key): _text(value) for key, value in fields.items()}
    return StreamEntry(id=_text(entry_id), event=decoded.get("event", ""), data=decoded.get("data", "{}"))


class EventStreamReader:
    def __init__(self, client: Redis, keys: StreamKeys) -> None:
        self.client = client
        self.keys = keys

    async def info(self, render_id: str) -> StreamInfo | None:
        """The stream's extent, or None when it does not exist (never written, or expired)."""
        try:
            raw = await self.client.xinfo_stream(self.keys.stream(render_id))
        except ResponseError as error:
            if "no such key" in str(error).lower():
                return None
            raise
        first, last = raw.get("first-entry"), raw.get("last-entry")
        return StreamInfo(
            length=int(raw["length"]),
            entries_added=int(raw.get("entries-added", raw["length"])),
            first_id=_text(first[0]) if first else START,
            last_id=_text(last[0]) if last else _text(raw.get("last-generated-id", START)),
            max_deleted_id=_text(raw.get("max-deleted-entry-id", START)),
            last_event=_entry(*last).event if last else "",
        )

    async def read_after(self, render_id: str, cursor: str, count: int = 100) -> list[StreamEntry]:
        """Up to `count` entries strictly after `cursor`, oldest first."""
        rows: Any = await self.client.xrange(self.keys.stream(render_id), min=f"({cursor}", max="+", count=count)
        return [_entry(entry_id, fields) for entry_id, fields in rows]

    async def stage_latencies(self) -> dict[str, StageLatency]:
        raw = {_text(key): int(value) for key, value in (await self.client.hgetall(self.keys.stage_latency)).items()}
        stages = {field.split("|", 1)[0] for field in raw}
        latencies = {}
        for stage in sorted(stages):
            buckets = [(bound / 1000, raw.get(f"{stage}|le|{bound}", 0)) for bound in STAGE_BUCKETS_MS]
            latencies[stage] = StageLatency(
                buckets=buckets, count=raw.get(f"{stage}|count", 0), sum_s=raw.get(f"{stage}|sum_ms", 0) / 1000
            )
        return latencies


# Entries each watched stream keeps in memory for its readers: a crowd on one render reads new
# entries from here instead of each sending its own XRANGE.
RECENT_ENTRIES = 256


@dataclass(eq=False)
class _Watched:
    cursor: str  # the watcher has read every entry up to this one
    subscribers: int = 0
    # Replaced at every notification: a waiter that took the current one before it read will see
    # it set by any entry appended after that read.
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    # Every entry after `recent_from` up to `cursor`, oldest first, with its sortable id.
    recent: deque[tuple[tuple[int, int], StreamEntry]] = field(default_factory=deque)
    recent_from: str = ""

    def __post_init__(self) -> None:
        self.recent_from = self.recent_from or self.cursor

    def extend(self, entries: list[StreamEntry]) -> None:
        """Entries read right after `cursor`: keep them, within the bound."""
        for entry in entries:
            self.recent.append((entry_id_order(entry.id), entry))
        while len(self.recent) > RECENT_ENTRIES:
            self.recent_from = self.recent.popleft()[1].id
        self.cursor = entries[-1].id

    def skip_to(self, last_id: str) -> None:
        """Entries read from an older cursor (the key was re-subscribed meanwhile): forget the
        buffer, whose run of entries would have a hole, and only move the cursor on."""
        if entry_id_order(last_id) > entry_id_order(self.cursor):
            self.cursor = last_id
        self.recent.clear()
        self.recent_from = self.cursor

    def after(self, cursor: str) -> list[StreamEntry] | None:
        position = entry_id_order(cursor)
        if not entry_id_order(self.recent_from) <= position <= entry_id_order(self.cursor):
            return None
        return [entry for order, entry in self.recent if order > position]


class StreamWatch:
    """Wakes the readers of a stream when entries arrive, with one blocking XREAD per process."""

    def __init__(self, client: Redis, keys: StreamKeys, *, block_ms: int = 500, error_pause_s: float = 1.0) -> None:
        self.client = client  # a client of its own: XREAD holds its connection for `block_ms`
        self.keys = keys
        self.block_ms = block_ms
        self.error_pause_s = error_pause_s
        self._watched: dict[str, _Watched] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False

    @property
    def watched(self) -> int:
        return len(self._watched)

    @contextlib.contextmanager
    def subscribe(self, render_id: str, cursor: str) -> Iterator[None]:
        """Watch a render's stream from `cursor` (entries after it) while the block runs."""
        key = self.keys.stream(render_id)
        watched = self._watched.get(key)
        if watched is None:
            watched = self._watched[key] = _Watched(cursor=cursor)
        watched.subscribers += 1
        self._wake.set()
        try:
            yield
        finally:
            watched.subscribers -= 1
            if watched.subscribers == 0 and self._watched.get(key) is watched:
                del self._watched[key]

    def changed(self, render_id: str) -> asyncio.Event:
        """The event the next arrival on this render's stream sets (take it before reading)."""
        watched = self._watched.get(self.keys.stream(render_id))
        if watched is None:
            raise LookupError(f"render {render_id} is not subscribed")
        return watched.changed

    def buffered_after(self, render_id: str, cursor: str) -> list[StreamEntry] | None:
        """The entries after `cursor` the watcher has read, when it holds all of them; else None
        (read them from Redis). Empty: nothing new yet, wait for `changed`."""
        watched = self._watched.get(self.keys.stream(render_id))
        return None if watched is None else watched.after(cursor)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="stream-watch")

    async def stop(self) -> None:
        if self._task is None:
            return
        # The flag ends the loop even when the client library swallows the cancellation of a
        # blocking XREAD (seen with redis-py's asyncio client), which would leave it waiting.
        self._stopping = True
        self._wake.set()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._task), timeout=self.block_ms / 1000 + 5)
        self._task = None

    async def _run(self) -> None:
        while not self._stopping:
            if not self._watched:
                self._wake.clear()
                await self._wake.wait()
                continue
            requested = {key: (watched, watched.cursor) for key, watched in self._watched.items()}
            streams: dict[Any, Any] = {key: cursor for key, (_, cursor) in requested.items()}
            try:
                replies: Any = await self.client.xread(streams, count=100, block=self.block_ms)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                # Readers still poll on their keep-alive timer, so a Redis outage only slows them.
                log.warning("watching the event streams failed (%s); retrying", type(error).__name__)
                await asyncio.sleep(self.error_pause_s)
                continue
            for raw_key, rows in replies or []:
                key = _text(raw_key)
                entries = [_entry(entry_id, fields) for entry_id, fields in rows]
                watched = self._watched.get(key)
                if watched is None or not entries:
                    continue
                asked = requested.get(key)
                if asked is not None and asked[0] is watched and asked[1] == watched.cursor:
                    watched.extend(entries)
                else:
                    watched.skip_to(entries[-1].id)
                self._notify(watched)

    def _notify(self, watched: _Watched) -> None:
        previous, watched.changed = watched.changed, asyncio.Event()
        previous.set()
