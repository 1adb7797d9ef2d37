"""Progress events: what the publisher appends to a render's Redis stream (real Redis, real
database), and how the stream tells a complete replay from one with a gap."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
import redis
from redis.asyncio import Redis

from render_assets.adapters.bullmq_queue import BullQueue
from render_assets.adapters.event_stream import STAGE_BUCKETS_MS, EventStream, StreamKeys, entry_id_order
from render_assets.adapters.event_stream_reader import (
    RECENT_ENTRIES,
    EventStreamReader,
    StreamEntry,
    StreamInfo,
    StreamWatch,
    _Watched,
)
from render_assets.domain.progress import Progress, Stage, progress_for
from render_assets.persistence import renders
from render_assets.persistence.database import Database
from render_assets.persistence.models import RenderStatus
from render_assets.persistence.progress_events import EventKind, ProgressEvent, RenderState, event_for, snapshot_event
from render_assets.services.progress import ProgressPublisher
from render_assets_tests.conftest import REDIS_URL
from render_assets_tests.progress_server import Worker, unique_prefix


def entries(prefix: str, render_id: str) -> list[tuple[str, dict[str, str]]]:
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    return [(entry_id, fields) for entry_id, fields in client.xrange(f"{prefix}{render_id}")]


def state(status: str, stage: str = "generating", **fields: Any) -> RenderState:
    defaults: dict[str, Any] = {
        "percent": 30,
        "message": "m",
        "error": None,
        "image_url": None,
        "thumbnail_url": None,
        "result": None,
    }
    return RenderState(render_id="r1", status=status, stage=stage, **{**defaults, **fields})


# -- the vocabulary ------------------------------------------------------------------------------


def test_a_new_stage_is_a_stage_event_and_a_repeated_one_a_progress_event() -> None:
    before = state(RenderStatus.PROCESSING, stage="prompt_ready")
    assert event_for("r1", progress_for(Stage.GENERATING), before=before).kind is EventKind.STAGE
    within = Progress(percent=50, stage="generating", message="halfway")
    event = event_for("r1", within, before=state(RenderStatus.PROCESSING, stage="generating"))
    assert event.kind is EventKind.PROGRESS
    assert event.data == {
        "renderId": "r1",
        "stage": "generating",
        "percent": 50,
        "message": "halfway",
        "status": "processing",
    }


def test_completed_carries_the_urls_the_row_holds() -> None:
    done = state(
        RenderStatus.COMPLETED,
        stage="completed",
        image_url="https://cdn/x.png",
        thumbnail_url="https://cdn/x.webp",
        result={"imageUrl": "https://cdn/x.png"},
    )
    event = event_for("r1", progress_for(Stage.COMPLETED), before=done)
    assert event.kind is EventKind.COMPLETED and event.terminal
    assert event.data["imageUrl"] == "https://cdn/x.png"
    assert event.data["thumbnailUrl"] == "https://cdn/x.webp"
    assert event.data["percent"] == 100


def test_a_final_failure_is_terminal_and_a_retried_one_is_not() -> None:
    failed = Progress(percent=30, stage="failed", message="no provider delivered an image")
    final = event_for("r1", failed, before=state(RenderStatus.FAILED, stage="failed"))
    assert final.kind is EventKind.FAILED and final.terminal
    assert final.data["reason"] == "no provider delivered an image"
    retried = event_for("r1", failed, before=state(RenderStatus.RETRYING, stage="failed"))
    assert retried.kind is EventKind.STAGE and not retried.terminal
    assert retried.data["stage"] == "retrying"
    assert retried.data["reason"] == "no provider delivered an image"


def test_snapshots_follow_the_row() -> None:
    queued = snapshot_event("r1", None)
    assert (queued.kind, queued.data["stage"], queued.data["snapshot"]) == (EventKind.STAGE, "queued", True)
    running = snapshot_event("r1", state(RenderStatus.PROCESSING))
    assert (running.kind, running.data["percent"]) == (EventKind.STAGE, 30)
    done = snapshot_event("r1", state(RenderStatus.COMPLETED, stage="completed", image_url="u", thumbnail_url="t"))
    assert done.kind is EventKind.COMPLETED and done.data["imageUrl"] == "u"
    failed = snapshot_event("r1", state(RenderStatus.FAILED, stage="failed", error="insufficient credits"))
    assert failed.kind is EventKind.FAILED and failed.data["reason"] == "insufficient credits"
    retrying = snapshot_event("r1", state(RenderStatus.RETRYING, stage="failed", error="timeout"))
    assert (retrying.kind, retrying.data["stage"]) == (EventKind.STAGE, "retrying")


# -- the stream ----------------------------------------------------------------------------------


def test_the_publisher_writes_row_stream_and_event_names(database: Database) -> None:
    prefix = unique_prefix()
    worker = Worker(database, prefix).claim()
    worker.stage(Stage.CHARGED, Stage.PROMPT_READY, Stage.GENERATING)
    worker.publisher.send(worker.render_id, None, Progress(percent=50, stage="generating", message="halfway"))
    worker.stage(Stage.GENERATED, Stage.QUALITY_CHECKED, Stage.UPLOADED)
    result = worker.complete()

    stream = entries(prefix, worker.render_id)
    kinds = [(fields["event"], json.loads(fields["data"])["stage"]) for _, fields in stream]
    assert kinds == [
        ("stage", "charged"),
        ("stage", "prompt_ready"),
        ("stage", "generating"),
        ("progress", "generating"),
        ("stage", "generated"),
        ("stage", "quality_checked"),
        ("stage", "uploaded"),
        ("completed", "completed"),
    ]
    completed = json.loads(stream[-1][1]["data"])
    assert completed["imageUrl"] == result["imageUrl"]
    assert completed["thumbnailUrl"] == result["thumbnailUrl"]
    percents = [json.loads(fields["data"])["percent"] for _, fields in stream]
    assert percents == sorted(percents)
    with database.session() as session:
        assert renders.require(session, worker.render_id).progress == 100


def test_a_final_failure_ends_the_stream_with_its_reason(database: Database) -> None:
    prefix = unique_prefix()
    worker = Worker(database, prefix).claim()
    worker.stage(Stage.CHARGED, Stage.GENERATING)
    worker.fail("no provider delivered an image (local: boom)", final=False)
    worker.stage(Stage.CHARGED)
    worker.fail("no provider delivered an image (local: boom)", final=True)
    stream = [(fields["event"], json.loads(fields["data"])) for _, fields in entries(prefix, worker.render_id)]
    assert [(event, data["stage"]) for event, data in stream] == [
        ("stage", "charged"),
        ("stage", "generating"),
        ("stage", "retrying"),
        ("stage", "charged"),
        ("failed", "failed"),
    ]
    assert stream[-1][1]["reason"] == "no provider delivered an image (local: boom)"


def test_streams_are_capped_and_expire() -> None:
    prefix = unique_prefix()
    stream = EventStream(REDIS_URL, prefix=prefix, maxlen=10, ttl_s=120)
    event = ProgressEvent(EventKind.PROGRESS, {"stage": "generating", "percent": 40})
    for _ in range(350):
        stream.append("capped", event)
    client = redis.Redis.from_url(REDIS_URL)
    key = f"{prefix}capped"
    # MAXLEN ~ trims whole nodes (100 entries each): far fewer than 350 stay, never fewer than 10.
    assert 10 <= client.xlen(key) <= 110
    assert 0 < client.ttl(key) <= 120
    client.delete(key, f"{prefix}@stage-latency")


def test_bad_stream_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="RENDER_EVENTS_MAXLEN"):
        EventStream(REDIS_URL, maxlen=0)
    with pytest.raises(ValueError, match="RENDER_EVENTS_TTL_S"):
        EventStream(REDIS_URL, ttl_s=0)
    with pytest.raises(ValueError, match="RENDER_EVENTS_PREFIX"):
        StreamKeys("")
    with pytest.raises(ValueError, match="not a stream entry id"):
        entry_id_order("12-x")


def test_stage_latency_histogram_counts_time_spent_in_each_stage() -> None:
    prefix = unique_prefix()
    stream = EventStream(REDIS_URL, prefix=prefix)
    for stage, pause_s in (("charged", 0.0), ("generating", 0.3), ("generated", 0.0)):
        time.sleep(pause_s)
        stream.append("timed", ProgressEvent(EventKind.STAGE, {"stage": stage}))
    # A `progress` event within a stage does not restart the stage's clock.
    stream.append("timed", ProgressEvent(EventKind.PROGRESS, {"stage": "generated"}))
    time.sleep(0.12)
    stream.append("timed", ProgressEvent(EventKind.STAGE, {"stage": "uploaded"}))

    async def read() -> Any:
        client = Redis.from_url(REDIS_URL)
        try:
            return await EventStreamReader(client, StreamKeys(prefix)).stage_latencies()
        finally:
            await client.aclose()

    latencies = asyncio.run(read())
    assert set(latencies) == {"charged", "generating", "generated"}
    charged = latencies["charged"]
    assert charged.count == 1 and charged.sum_s >= 0.3
    assert dict(charged.buckets)[0.25] == 0 and dict(charged.buckets)[0.5] == 1
    generated = latencies["generated"]
    assert generated.count == 1 and generated.sum_s >= 0.12
    assert len(charged.buckets) == len(STAGE_BUCKETS_MS)
    redis.Redis.from_url(REDIS_URL).delete(f"{prefix}timed", f"{prefix}@stage-latency")


def info(**fields: Any) -> StreamInfo:
    base: dict[str, Any] = {
        "length": 5,
        "entries_added": 5,
        "first_id": "100-0",
        "last_id": "500-0",
        "max_deleted_id": "0-0",
    }
    return StreamInfo(**{**base, **fields})


def test_a_stream_tells_whether_it_holds_everything_after_a_cursor() -> None:
    assert info().holds_everything_after("0-0")
    assert info().holds_everything_after("300-0")
    trimmed = info(entries_added=300)
    assert not trimmed.holds_everything_after("0-0")  # the beginning is gone
    assert not trimmed.holds_everything_after("99-5")  # older than what is left: cannot tell
    assert trimmed.holds_everything_after("100-0")
    assert trimmed.holds_everything_after("450-0")
    deleted = info(max_deleted_id="350-0")  # XDEL of an entry newer than the cursor
    assert not deleted.holds_everything_after("300-0")
    assert deleted.holds_everything_after("350-0")


def test_a_broken_stream_does_not_stop_the_row_or_the_job(database: Database, caplog: Any) -> None:
    # Nothing listens on port 1: the append fails; the row still moves and the error is logged.
    dead = EventStream("redis://127.0.0.1:1/0", prefix=unique_prefix())
    worker = Worker(database, unique_prefix()).claim()
    publisher = ProgressPublisher(database, BullQueue(REDIS_URL, "unused", 60_000), dead)
    publisher.publish(worker.render_id, None, Stage.GENERATING)
    with database.session() as session:
        assert renders.require(session, worker.render_id).stage == "generating"
    assert "could not append progress" in caplog.text


def test_without_a_stream_the_publisher_writes_only_the_row(database: Database) -> None:
    worker = Worker(database, unique_prefix()).claim()
    ProgressPublisher(database, BullQueue(REDIS_URL, "unused", 60_000)).publish(
        worker.render_id, None, Stage.GENERATING
    )
    assert entries(worker.events.keys.prefix, worker.render_id) == []


def test_entry_ids_order_numerically() -> None:
    assert entry_id_order("9-0") < entry_id_order("10-0") < entry_id_order("10-1")


# -- the watcher ---------------------------------------------------------------------------------


def test_the_watcher_wakes_readers_and_keeps_new_entries_for_them() -> None:
    prefix = unique_prefix()
    stream = EventStream(REDIS_URL, prefix=prefix)
    event = ProgressEvent(EventKind.STAGE, {"stage": "charged"})

    async def scenario() -> None:
        client = Redis.from_url(REDIS_URL)
        watch = StreamWatch(client, StreamKeys(prefix), block_ms=100)
        watch.start()
        try:
            with watch.subscribe("w1", "0-0"):
                assert watch.watched == 1
                changed = watch.changed("w1")
                assert watch.buffered_after("w1", "0-0") == []  # nothing yet: wait
                first = await asyncio.to_thread(stream.append, "w1", event)
                await asyncio.wait_for(changed.wait(), timeout=5)
                [entry] = watch.buffered_after("w1", "0-0") or []
                assert (entry.id, entry.event) == (first, "stage")
                assert watch.buffered_after("w1", first) == []
                assert watch.buffered_after("w1", "99999999999999-0") is None  # ahead of the watcher
                with watch.subscribe("w1", "0-0"):  # a second reader shares the key
                    assert watch.watched == 1
            assert watch.watched == 0  # the last reader left: the key is no longer watched
            with pytest.raises(LookupError):
                watch.changed("w1")
        finally:
            await watch.stop()
            await client.aclose()

    asyncio.run(scenario())
    redis.Redis.from_url(REDIS_URL).delete(f"{prefix}w1", f"{prefix}@stage-latency")


def test_the_watchers_buffer_is_bounded_and_never_has_holes() -> None:
    watched = _Watched(cursor="0-0")
    entries = [StreamEntry(id=f"{n}-0", event="progress", data="{}") for n in range(1, RECENT_ENTRIES + 51)]
    watched.extend(entries[:10])
    assert [entry.id for entry in watched.after("5-0") or []] == [f"{n}-0" for n in range(6, 11)]
    watched.extend(entries[10:])
    assert len(watched.recent) == RECENT_ENTRIES
    assert watched.after("0-0") is None  # its first entries were dropped: read those from Redis
    assert watched.after("50-0") == entries[50:]
    watched.skip_to("400-0")  # read from an older cursor: the run would have a hole
    assert watched.after("300-0") is None and watched.after("400-0") == []
