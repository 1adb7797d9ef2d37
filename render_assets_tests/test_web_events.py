"""`GET /renders/{id}/events` on a real uvicorn: replay, live tail, resume without gap or
duplicate, snapshots, keep-alives and the end of the stream (real Redis, real database)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
import redis

from render_assets.adapters.event_stream import EventStream
from render_assets.domain.progress import Stage
from render_assets.orchestration.resources import ProvidersResource
from render_assets.persistence import renders
from render_assets.persistence.database import Database
from render_assets.persistence.progress_events import EventKind, ProgressEvent
from render_assets_tests.conftest import REDIS_URL
from render_assets_tests.payloads import web_app_job
from render_assets_tests.progress_server import SseRead, Worker, parse_sse_lines, read_sse, serving, unique_prefix
from render_assets_tests.progress_server import web_settings as make_settings
from render_assets_tests.stack import in_process_stack
from render_assets_tests.tcp_relay import tcp_relay

ALL_STAGES = (Stage.CHARGED, Stage.PROMPT_READY, Stage.GENERATING, Stage.GENERATED, Stage.QUALITY_CHECKED)


@pytest.fixture
def prefix() -> str:
    return unique_prefix()


@pytest.fixture
def db(sqlite_url: str) -> Iterator[Database]:
    database = Database(sqlite_url)
    yield database
    database.dispose()


@pytest.fixture
def server(sqlite_url: str, prefix: str) -> Iterator[str]:
    with serving(make_settings(sqlite_url, prefix)) as base:
        yield base


def stream_ids(prefix: str, render_id: str) -> list[str]:
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    return [entry_id for entry_id, _ in client.xrange(f"{prefix}{render_id}")]


def events_url(base: str, render_id: str) -> str:
    return f"{base}/renders/{render_id}/events"


def wait_for_a_client(base: str, timeout_s: float = 20.0) -> None:
    """Until the server has an event stream open (its `render_sse_clients` gauge), however loaded
    the machine: what these tests do next must reach a client that is already waiting."""
    deadline = time.monotonic() + timeout_s
    while "render_sse_clients 1.0" not in httpx.get(f"{base}/metrics").text:
        if time.monotonic() > deadline:
            raise AssertionError("no client connected to the event stream")
        time.sleep(0.02)


def test_replays_a_finished_render_in_order_and_closes(server: str, db: Database, prefix: str) -> None:
    worker = Worker(db, prefix).claim()
    worker.stage(*ALL_STAGES, Stage.UPLOADED)
    result = worker.complete()

    read = read_sse(events_url(server, worker.render_id))
    assert read.status == 200 and read.ended
    assert [event.id for event in read.events] == stream_ids(prefix, worker.render_id)
    assert [event.event for event in read.events] == ["stage"] * 6 + ["completed"]
    stages = [json.loads(event.data)["stage"] for event in read.events]
    assert stages == [*[stage.value for stage in ALL_STAGES], "uploaded", "completed"]
    completed = json.loads(read.events[-1].data)
    assert completed["imageUrl"] == result["imageUrl"] and completed["thumbnailUrl"] == result["thumbnailUrl"]


def test_a_rerender_reaches_readers_after_the_original_completion(server: str, db: Database, prefix: str) -> None:
    worker = Worker(db, prefix).claim()
    worker.stage(Stage.CHARGED, Stage.UPLOADED)
    worker.complete()
    first = read_sse(events_url(server, worker.render_id))
    rerendered = worker.rerender()

    late = read_sse(events_url(server, worker.render_id))  # a page opened after the re-render
    resumed = read_sse(events_url(server, worker.render_id), headers={"Last-Event-ID": first.events[-1].id})

    assert late.ended and [event.event for event in late.events] == ["stage", "stage", "completed", "rerendered"]
    assert resumed.ended and [event.event for event in resumed.events] == ["rerendered"]
    data = json.loads(resumed.events[0].data)
    assert data["version"] == rerendered["version"] == 2
    assert data["imageUrl"] == data["result"]["imageUrl"] == rerendered["imageUrl"]
    assert read_sse(events_url(server, worker.render_id), headers={"Last-Event-ID": resumed.events[0].id}).status == 204


def test_follows_a_render_live_until_it_fails(server: str, db: Database, prefix: str) -> None:
    worker = Worker(db, prefix).claim()

    def work() -> None:
        wait_for_a_client(server)
        worker.stage(Stage.CHARGED, Stage.GENERATING)
        worker.fail("no provider delivered an image (local: down)", final=False)
        worker.stage(Stage.CHARGED)
        time.sleep(0.2)
        worker.fail("no provider delivered an image (local: down)", final=True)

    thread = threading.Thread(target=work)
    thread.start()
    read = read_sse(events_url(server, worker.render_id))
    thread.join()
    names = [(event.event, json.loads(event.data)["stage"]) for event in read.events]
    # The client connected before any event: it starts with the row (claimed), then goes live.
    assert names == [
        ("stage", "claimed"),
        ("stage", "charged"),
        ("stage", "generating"),
        ("stage", "retrying"),
        ("stage", "charged"),
        ("failed", "failed"),
    ]
    assert json.loads(read.events[0].data)["snapshot"] is True
    assert json.loads(read.events[-1].data)["reason"] == "no provider delivered an image (local: down)"
    assert read.ended


def test_resumes_from_last_event_id_without_gap_or_duplicate(server: str, db: Database, prefix: str) -> None:
    worker = Worker(db, prefix).claim()
    worker.stage(Stage.CHARGED, Stage.PROMPT_READY, Stage.GENERATING)
    first = read_sse(events_url(server, worker.render_id), stop_after=2)
    worker.stage(Stage.GENERATED, Stage.QUALITY_CHECKED, Stage.UPLOADED)  # while disconnected
    worker.complete()
    rest = read_sse(events_url(server, worker.render_id), headers={"Last-Event-ID": str(first.events[-1].id)})
    ids = [event.id for event in first.events + rest.events]
    assert ids == stream_ids(prefix, worker.render_id)
    assert rest.events[-1].event == "completed"
    # The same resume through the query string (for clients that cannot set headers).
    again = read_sse(f"{events_url(server, worker.render_id)}?lastEventId={first.events[-1].id}")
    assert [event.id for event in again.events] == ids[2:]


def test_resuming_after_the_terminal_event_tells_the_browser_to_stop(server: str, db: Database, prefix: str) -> None:
    worker = Worker(db, prefix).claim()
    worker.stage(Stage.CHARGED)
    worker.complete()
    last = stream_ids(prefix, worker.render_id)[-1]
    reply = httpx.get(events_url(server, worker.render_id), headers={"Last-Event-ID": last})
    assert reply.status_code == 204  # EventSource does not reconnect after a 204


def test_a_trimmed_stream_starts_with_a_snapshot_of_the_row(sqlite_url: str, db: Database, prefix: str) -> None:
    worker = Worker(db, prefix).claim()
    worker.stage(Stage.CHARGED, Stage.GENERATING)
    capped = EventStream(REDIS_URL, prefix=prefix, maxlen=5, ttl_s=600)
    for _ in range(250):  # many `progress` events: the stream drops its beginning
        capped.append(worker.render_id, ProgressEvent(EventKind.PROGRESS, {"stage": "generating", "percent": 50}))
    first_kept = stream_ids(prefix, worker.render_id)[0]
    with serving(make_settings(sqlite_url, prefix)) as base:
        fresh = read_sse(events_url(base, worker.render_id), stop_after=1)
        snapshot = fresh.events[0]
        assert json.loads(snapshot.data)["snapshot"] is True
        assert json.loads(snapshot.data)["stage"] == "generating"
        assert snapshot.id == stream_ids(prefix, worker.render_id)[-1]
        # A resume from before what is left cannot be proven complete: snapshot too, then live.
        worker.complete()
        resumed = read_sse(events_url(base, worker.render_id), headers={"Last-Event-ID": "1-0"})
        assert json.loads(resumed.events[0].data)["snapshot"] is True
        assert resumed.events[-1].event == "completed"
        assert first_kept not in [event.id for event in resumed.events]
        # A resume from inside what is left replays exactly the rest.
        inside = read_sse(events_url(base, worker.render_id), headers={"Last-Event-ID": first_kept})
        assert [event.id for event in inside.events] == stream_ids(prefix, worker.render_id)[1:]


def test_a_gone_stream_serves_the_outcome_from_the_row(server: str, db: Database, prefix: str) -> None:
    worker = Worker(db, prefix).claim()
    worker.stage(Stage.CHARGED)
    worker.complete()
    redis.Redis.from_url(REDIS_URL).delete(f"{prefix}{worker.render_id}")  # as if it expired
    read = read_sse(events_url(server, worker.render_id))
    assert [event.event for event in read.events] == ["completed"]
    assert json.loads(read.events[0].data)["imageUrl"].endswith("/master.png")
    assert read.events[0].id == "0-0" and read.ended


def test_an_unknown_render_waits_in_the_queue_then_goes_live(server: str, db: Database, prefix: str) -> None:
    worker = Worker(db, prefix)

    def work() -> None:
        wait_for_a_client(server)
        worker.claim()
        worker.stage(Stage.CHARGED)
        worker.complete()

    thread = threading.Thread(target=work)
    thread.start()
    read = read_sse(events_url(server, worker.render_id))
    thread.join()
    assert [json.loads(event.data)["stage"] for event in read.events] == ["queued", "charged", "completed"]
    assert [event.id for event in read.events][1:] == stream_ids(prefix, worker.render_id)


def test_keepalive_comments_flow_while_nothing_happens(sqlite_url: str, db: Database, prefix: str) -> None:
    worker = Worker(db, prefix).claim()
    worker.stage(Stage.GENERATING)
    read = SseRead()
    with (
        serving(make_settings(sqlite_url, prefix, keepalive_s=0.2)) as base,
        httpx.Client(timeout=5) as client,
        client.stream("GET", events_url(base, worker.render_id)) as reply,
    ):
        started = time.monotonic()
        lines = reply.iter_lines()

        def until_one_second() -> Iterator[str]:
            for line in lines:
                yield line
                if time.monotonic() - started > 1.0:
                    return

        parse_sse_lines(until_one_second(), read)
    assert len(read.events) == 1
    assert sum(comment.startswith("ping") for comment in read.comments) >= 3


def test_the_row_ends_a_stream_that_missed_its_terminal_event(server: str, db: Database, prefix: str) -> None:
    worker = Worker(db, prefix).claim()
    worker.stage(Stage.CHARGED, Stage.UPLOADED)
    with db.session() as session:  # delivered, but the completed event never reached the stream
        renders.mark_completed(
            session, worker.render_id, result={}, image_url="https://cdn/i.png", thumbnail_url="t", prompt_hash="0"
        )
    started = time.monotonic()
    read = read_sse(events_url(server, worker.render_id))
    assert [event.event for event in read.events] == ["stage", "stage", "completed"]
    assert json.loads(read.events[-1].data)["imageUrl"] == "https://cdn/i.png"
    assert read.events[-1].id == read.events[-2].id  # resumable: the position in the stream
    assert time.monotonic() - started < 5  # after two idle periods (1 s each here), not never


def test_a_terminal_event_written_just_after_the_row_reaches_a_waiting_client(
    server: str, db: Database, prefix: str
) -> None:
    worker = Worker(db, prefix).claim()
    with httpx.stream("GET", events_url(server, worker.render_id), timeout=30) as response:
        lines = response.iter_lines()
        wait_for_a_client(server)
        worker.stage(Stage.CHARGED, Stage.UPLOADED)
        with db.session() as session:  # the row says completed a whole idle period before the event
            renders.mark_completed(
                session, worker.render_id, result={}, image_url="https://cdn/i.png", thumbnail_url="t", prompt_hash="0"
            )
        time.sleep(1.2)
        worker.publisher.publish(worker.render_id, None, Stage.COMPLETED)
        read = SseRead()
        parse_sse_lines(lines, read)

    # The stream's own events, in order, not the row's outcome in their place.
    assert [event.event for event in read.events][-3:] == ["stage", "stage", "completed"]
    assert [event.id for event in read.events][-3:] == stream_ids(prefix, worker.render_id)


def test_bad_render_ids_are_refused(server: str) -> None:
    assert httpx.get(f"{server}/renders/not%20an%20id/events").status_code == 404
    assert httpx.get(f"{server}/renders/{'x' * 65}").status_code == 404


@pytest.mark.parametrize("drop_at", ["generating"])
def test_a_real_render_survives_a_dropped_connection(
    sqlite_url: str, queue_name: str, tmp_path: Path, drop_at: str
) -> None:
    """The whole pipeline in-process; the client drops mid-render and resumes with Last-Event-ID."""
    prefix = "render-events:"  # the stack's publisher writes under the default prefix
    data = web_app_job()
    render_id = data["renderId"]
    reads: list[SseRead] = []
    failures: list[BaseException] = []

    def client(base: str) -> None:
        try:
            url = events_url(base, render_id)
            first = SseRead()
            with httpx.Client(timeout=30) as http, http.stream("GET", url) as reply:
                lines = reply.iter_lines()
                while not any(json.loads(event.data)["stage"] == drop_at for event in first.events):
                    assert not first.ended, "the stream ended before the render reached the drop point"
                    parse_sse_lines(lines, first, stop_after=len(first.events) + 1)
            reads.append(first)  # dropped here, in the middle of the render
            deadline = time.monotonic() + 30
            while "generated" not in _stages(prefix, render_id):  # let it move on while we are away
                assert time.monotonic() < deadline, "the render did not move on"
                time.sleep(0.05)
            reads.append(read_sse(url, headers={"Last-Event-ID": str(first.events[-1].id)}, timeout_s=30))
        except BaseException as error:  # reported by the main thread
            failures.append(error)

    with (
        in_process_stack(sqlite_url, queue_name, tmp_path, providers=ProvidersResource(local_latency_s=1.0)) as stack,
        serving(make_settings(sqlite_url, prefix, queue_name=queue_name)) as base,
    ):
        thread = threading.Thread(target=client, args=(base,))
        thread.start()
        stack.enqueue(data)
        [outcome] = stack.run_all()
        thread.join(timeout=60)
        assert outcome.success
    assert not failures, failures
    first, rest = reads
    assert rest.ended and rest.events[-1].event == "completed"
    received = [event.id for event in first.events + rest.events if not json.loads(event.data).get("snapshot")]
    assert received == stream_ids(prefix, render_id)  # no gap, no duplicate
    assert len(set(received)) == len(received)
    assert "generated" in [json.loads(event.data)["stage"] for event in rest.events]


def _stages(prefix: str, render_id: str) -> list[str]:
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    return [json.loads(fields["data"])["stage"] for _, fields in client.xrange(f"{prefix}{render_id}")]


def test_a_redis_outage_delays_events_but_loses_none(sqlite_url: str, db: Database, prefix: str) -> None:
    upstream = urlparse(REDIS_URL)
    worker = Worker(db, prefix).claim()  # the worker writes to Redis directly, around the relay
    worker.stage(Stage.CHARGED)
    with tcp_relay(upstream.hostname or "127.0.0.1", upstream.port or 6379) as relay:
        through_relay = f"redis://127.0.0.1:{relay.port}{upstream.path or '/0'}"
        with serving(make_settings(sqlite_url, prefix, redis_url=through_relay)) as base:
            url = events_url(base, worker.render_id)
            reads: list[SseRead] = []
            reader = threading.Thread(target=lambda: reads.append(read_sse(url, timeout_s=30)))
            reader.start()
            deadline = time.monotonic() + 10
            while _metric(base, "render_sse_clients") < 1:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            relay.cut()  # Redis is gone for the server
            worker.stage(Stage.GENERATING, Stage.GENERATED)  # appended meanwhile
            refused = httpx.get(url)  # a new client cannot start: it is told to retry
            assert refused.status_code == 503 and refused.headers["retry-after"] == "2"
            time.sleep(1.5)  # past an idle period: the open stream stays open, on keep-alives
            assert reader.is_alive()
            relay.restore()
            worker.complete()
            reader.join(timeout=30)
    [read] = reads
    assert read.ended
    assert [json.loads(event.data)["stage"] for event in read.events] == [
        "charged",
        "generating",
        "generated",
        "completed",
    ]
    assert [event.id for event in read.events] == stream_ids(prefix, worker.render_id)  # no gap, no duplicate


def _metric(base: str, name: str) -> float:
    for line in httpx.get(f"{base}/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} is not in /metrics")


def test_shutdown_ends_open_streams_promptly(sqlite_url: str, db: Database, prefix: str) -> None:
    worker = Worker(db, prefix).claim()
    worker.stage(Stage.CHARGED)
    reads: list[SseRead] = []
    with serving(make_settings(sqlite_url, prefix)) as base:
        reader = threading.Thread(target=lambda: reads.append(read_sse(events_url(base, worker.render_id))))
        reader.start()
        deadline = time.monotonic() + 10
        while _metric(base, "render_sse_clients") < 1:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        stopping = time.monotonic()
    reader.join(timeout=10)
    assert time.monotonic() - stopping < 10  # uvicorn, the stream and the watcher all stopped
    [read] = reads
    assert [json.loads(event.data)["stage"] for event in read.events] == ["charged"]
