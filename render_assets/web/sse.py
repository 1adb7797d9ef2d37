"""The server-sent event sequence of one render: resume, snapshot, live tail, end.

- A client that sends `Last-Event-ID` (browsers do when they reconnect) gets exactly the entries
  after it, when the stream still holds all of them: no gap, no duplicate.
- Otherwise (a first connection to a stream that was trimmed, an expired or not yet written
  stream, a resume from an entry trimmed away) it first gets a snapshot of the renders row, whose
  id is the stream's last entry id, then the entries after that.
- It ends after a terminal event (`completed`, `failed`, or a re-render's `rerendered`) that
  nothing follows yet, so a client reading the stream after a re-render gets the original
  `completed` and then the `rerendered`. While nothing arrives, it reads Redis and checks the row
  every idle period, so a render whose terminal event never reached the stream (or whose Redis is
  down) still ends for its clients, on the row's outcome after two quiet idle periods: one would
  race the event, which is written a moment after the row.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from redis.exceptions import RedisError
from sse_starlette import ServerSentEvent

from render_assets.adapters.event_stream import entry_id_order
from render_assets.adapters.event_stream_reader import START, EventStreamReader, StreamEntry, StreamWatch
from render_assets.persistence.models import RenderStatus
from render_assets.persistence.progress_events import TERMINAL, WITH_IMAGES, ProgressEvent, RenderState, snapshot_event
from render_assets.web.public_urls import PublicUrls

log = logging.getLogger(__name__)

RECONNECT_MS = 1_000  # tells EventSource how soon to reconnect after a dropped connection


@dataclass(frozen=True)
class Opening:
    cursor: str  # the client gets the stream's entries after this one
    snapshot: ProgressEvent | None = None  # sent first, with the cursor as its id


@dataclass
class EventFeed:
    reader: EventStreamReader
    watch: StreamWatch
    load_state: Callable[[str], Awaitable[RenderState | None]]
    urls: PublicUrls
    idle_s: float
    clients: int = 0

    async def open(self, render_id: str, last_event_id: str | None) -> Opening | None:
        """Where a client starts; None when it resumes after the render's terminal event.

        Runs before the response starts, so a Redis outage can still be answered with an error.
        """
        resume = resume_cursor(last_event_id)
        info = await self.reader.info(render_id)
        if info is not None and info.holds_everything_after(resume or START):
            ended = resume is not None and info.last_event in TERMINAL
            if ended and entry_id_order(resume or START) >= entry_id_order(info.last_id):
                return None
            return Opening(cursor=resume or START)
        # Read the stream's end before the row, so the row is at least as new as the cursor.
        cursor = info.last_id if info is not None else START
        return Opening(cursor=cursor, snapshot=snapshot_event(render_id, await self.load_state(render_id)))

    async def events(self, render_id: str, opening: Opening) -> AsyncIterator[ServerSentEvent]:
        self.clients += 1
        try:
            async for event in self._events(render_id, opening):
                yield event
        except RedisError as error:
            # End the response cleanly: EventSource reconnects with Last-Event-ID, and resumes.
            log.warning("event stream of render %s failed: %s", render_id, type(error).__name__)
        finally:
            self.clients -= 1

    async def _events(self, render_id: str, opening: Opening) -> AsyncIterator[ServerSentEvent]:
        cursor, snapshot = opening.cursor, opening.snapshot
        with self.watch.subscribe(render_id, cursor):
            if snapshot is not None:
                yield self._sse(snapshot.kind, snapshot.data, cursor, retry=True)
                if snapshot.terminal:
                    return
            first = snapshot is None
            caught_up = False  # the first read goes to Redis: the watcher may not have this key yet
            ended = False  # the last entry sent was terminal: end unless more follow it
            quiet_and_ended = 0  # idle periods in a row with nothing new while the row says it ended
            while True:
                changed = self.watch.changed(render_id)  # taken before reading: no lost wake-up
                entries = self.watch.buffered_after(render_id, cursor) if caught_up else None
                if entries is None or (ended and not entries):
                    entries = await self._read(render_id, cursor)  # a terminal event: ask Redis itself
                caught_up = True
                for entry in entries:
                    yield self._entry(entry, retry=first)
                    first = False
                    cursor = entry.id
                    ended = entry.event in TERMINAL
                if entries:
                    quiet_and_ended = 0
                    continue
                if ended:
                    return
                try:
                    await asyncio.wait_for(changed.wait(), timeout=self.idle_s)
                except TimeoutError:
                    caught_up = False  # quiet for a while: the next read asks Redis itself
                    state = await self._ended_state(render_id)
                    quiet_and_ended = quiet_and_ended + 1 if state is not None else 0
                    # The row is written a moment before its terminal event: only a second quiet
                    # period says the event is lost (or Redis unreachable), and the row answers.
                    if state is not None and quiet_and_ended >= 2:
                        outcome = snapshot_event(render_id, state)
                        yield self._sse(outcome.kind, outcome.data, cursor)
                        return

    async def _ended_state(self, render_id: str) -> RenderState | None:
        """The render's row, when it has ended."""
        state = await self.load_state(render_id)
        return state if state is not None and state.status in RenderStatus.ENDED else None

    async def _read(self, render_id: str, cursor: str) -> list[StreamEntry]:
        """Entries after the cursor from Redis; none while Redis is unreachable: the stream stays
        open on keep-alives and the next wake-up or idle period reads again, from the same cursor."""
        try:
            return await self.reader.read_after(render_id, cursor)
        except RedisError as error:
            log.debug("reading the events of render %s failed: %s", render_id, type(error).__name__)
            return []

    def _entry(self, entry: StreamEntry, *, retry: bool) -> ServerSentEvent:
        data = json.loads(entry.data)
        return self._sse(entry.event, data, entry.id, retry=retry)

    def _sse(self, kind: str, data: dict[str, object], event_id: str, *, retry: bool = False) -> ServerSentEvent:
        if kind in WITH_IMAGES:
            data = self.urls.rewrite(data)
        return ServerSentEvent(
            data=json.dumps(data, separators=(",", ":")),
            event=kind,
            id=event_id,
            retry=RECONNECT_MS if retry else None,
        )


def resume_cursor(last_event_id: str | None) -> str | None:
    """The stream entry id a client resumes after; None when it sent none or something else."""
    if not last_event_id:
        return None
    try:
        entry_id_order(last_event_id.strip())
    except ValueError:
        return None
    return last_event_id.strip()
