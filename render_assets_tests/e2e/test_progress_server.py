"""The progress server as a browser and a crowd see it: `render-assets serve` in its own process,
the render pipeline in this one (sensor tick + run, against the same queue, database and storage).

- Debian's Chromium, headless, driven by Playwright, loads the demo page, submits an example and
  sees the image and its thumbnail arrive through EventSource; then submits the bundled site
  photo with its mask and sees the photo (mask outlined) and the render side by side, the render
  being the delivered master, which is the bundled photo outside the mask.
- 200 concurrent SSE clients on one render all receive its terminal event, and the server's
  memory returns to its baseline once they are gone.
"""

from __future__ import annotations

import asyncio
import io
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import redis
from dagster import RunRequest
from PIL import Image

from render_assets.adapters import example_images
from render_assets.domain.progress import Stage
from render_assets.domain.qa import MASK_KEPT
from render_assets.migrations import upgrade
from render_assets.persistence.database import Database
from render_assets_tests.conftest import REDIS_URL
from render_assets_tests.progress_server import Worker, rss_bytes, server_process
from render_assets_tests.stack import in_process_stack
from render_assets_tests.test_remote_images import raw_render_metadata

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
CLIENTS = 200
EVENT_LOG = "items => items.map(i => i.dataset.event + ':' + i.dataset.stage)"
# Submitted one after the other in one page: a design alone, then a site photo with a mask.
DEMO_EXAMPLES = ("backyard_pro", "backyard_site_photo")
SITE_PHOTO, SITE_MASK = "backyard-site.png", "backyard-site-mask.png"
# The server's RSS after the crowd left may stay a little above the baseline: CPython keeps freed
# arenas and the asyncio/uvicorn buffers it grew. A leak of the clients' state would grow with
# the clients (about 50-100 KB each, 10-20 MB for 200) and with every round; this allows neither.
RSS_TOLERANCE_BYTES = 6 * 1024 * 1024


PREFIX = "render-events:"  # the default: in_process_stack's runs publish under it


@dataclass(frozen=True)
class Served:
    """One `render-assets serve` process for this module's tests (it takes seconds to start)."""

    base: str
    process: subprocess.Popen[bytes]
    database_url: str
    queue_name: str
    folder: Path  # in_process_stack(…, folder) stores images under folder/storage, served at /files


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("progress-server")
    database_url = f"sqlite:///{folder / 'render_assets.db'}"
    upgrade(database_url)
    queue_name = f"test-web-e2e-{uuid.uuid4().hex[:8]}"
    env = {
        "REDIS_URL": REDIS_URL,
        "RENDER_QUEUE_NAME": queue_name,
        "DATABASE_URL": database_url,
        "RENDER_STORAGE_URL": (folder / "storage").as_uri(),
        "RENDER_EVENTS_PREFIX": PREFIX,
        "RENDER_SSE_KEEPALIVE_S": "1",
        "RENDER_SSE_SECRET": "",  # the demo page holds no tokens
    }
    with server_process(env) as (base, process):
        yield Served(base, process, database_url, queue_name, folder)


def _metric(base: str, name: str) -> float:
    for line in httpx.get(f"{base}/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} is not in /metrics")


@dataclass
class ResultSeen:
    """What the page showed once one render was completed."""

    image_size: list[int] = field(default_factory=list)
    thumbnail_width: int = 0
    image_src: str = ""
    events: list[str] = field(default_factory=list)
    bar: float = 0
    before_visible: bool = False
    boxes: dict[str, dict[str, float]] = field(default_factory=dict)  # element id → its box on screen
    before: dict[str, Any] = field(default_factory=dict)  # the photo and its mask overlay, when shown


@dataclass
class PageSeen:
    render_id: queue.Queue[str] = field(default_factory=queue.Queue)
    results: dict[str, ResultSeen] = field(default_factory=dict)  # by example name
    error: BaseException | None = None


BEFORE_FACTS = """() => {
  const photo = document.getElementById('before-image');
  const overlay = document.getElementById('mask-overlay');
  const after = document.getElementById('image');
  return {
    src: photo.getAttribute('src'), size: [photo.naturalWidth, photo.naturalHeight], alt: photo.alt,
    overlaySize: [overlay.width, overlay.height], marked: Number(overlay.dataset.marked),
    afterAlt: after.alt, captions: [...document.querySelectorAll('#result figcaption')].map(c => c.textContent),
  };
}"""


def _result_seen(page: Any) -> ResultSeen:
    seen = ResultSeen(
        image_size=page.evaluate("(i => [i.naturalWidth, i.naturalHeight])(document.getElementById('image'))"),
        thumbnail_width=page.evaluate("document.getElementById('thumbnail').naturalWidth"),
        image_src=page.get_attribute("#image", "src") or "",
        events=page.eval_on_selector_all("#events li", EVENT_LOG),
        bar=page.evaluate("document.getElementById('bar').value"),
        before_visible=page.is_visible("#before-image"),
    )
    for element in ("before-image", "mask-overlay", "image"):
        box = page.locator(f"#{element}").bounding_box() if seen.before_visible or element == "image" else None
        if box is not None:
            seen.boxes[element] = dict(box)
    if seen.before_visible:
        seen.before = page.evaluate(BEFORE_FACTS)
    return seen


def _drive_page(base: str, profile: Path, screenshot: Path, seen: PageSeen) -> None:
    """The person at the browser, in a thread of its own: Playwright's sync API runs an event
    loop in its thread, and the pipeline (BullMQ's asyncio client) needs one of its own."""
    from playwright.sync_api import sync_playwright

    try:
        with sync_playwright() as playwright:
            # Playwright drives the machine's Chromium over the DevTools protocol; it downloads no browser.
            browser = playwright.chromium.launch_persistent_context(
                str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            try:
                page = browser.new_page()
                page.goto(base + "/")
                page.wait_for_selector("#submit:not([disabled])")
                for example in DEMO_EXAMPLES:
                    page.select_option("#example", example)
                    page.click("#submit")
                    page.wait_for_function("document.body.dataset.state === 'watching'", timeout=10_000)
                    seen.render_id.put(page.inner_text("#render-id"))
                    page.wait_for_function("document.body.dataset.state === 'completed'", timeout=45_000)
                    seen.results[example] = _result_seen(page)
                    page.screenshot(path=str(screenshot.with_stem(f"{screenshot.stem}-{example}")), full_page=True)
            finally:
                browser.close()
    except BaseException as error:  # reported by the test's thread
        seen.error = error
        seen.render_id.put("")


def test_the_demo_page_shows_a_render_arriving_live(served: Served) -> None:
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    seen = PageSeen()
    render_ids, metadata = [], {}
    # No provider but `local`, no host allowlisted: the embedded defaults `make run` starts with.
    with in_process_stack(served.database_url, served.queue_name, served.folder) as stack:
        profile, screenshot = served.folder / "chromium-profile", served.folder / "demo.png"
        browser = threading.Thread(target=_drive_page, args=(served.base, profile, screenshot, seen))
        browser.start()
        for example in DEMO_EXAMPLES:
            render_id = seen.render_id.get(timeout=60)
            assert seen.error is None, seen.error
            # The page enqueued the job; the pipeline picks it up as the daemon would.
            requests: list[RunRequest] = []
            deadline = time.monotonic() + 20
            while not requests and time.monotonic() < deadline:
                requests = list(stack.tick().run_requests or [])
            assert [request.partition_key for request in requests] == [render_id]
            result = stack.execute(requests[0])
            assert result.success
            render_ids.append(render_id)
            metadata[example] = raw_render_metadata(result)
        browser.join(timeout=60)
    assert seen.error is None, seen.error
    design = seen.results["backyard_pro"]
    assert design.image_size == [1024, 1024]  # the example's resolution, loaded by the browser
    assert design.thumbnail_width > 0
    assert design.image_src.startswith("/files/renders/")
    assert design.events[-1] == "completed:completed"
    stages = [item.split(":")[1] for item in design.events]
    for stage in ("charged", "prompt_ready", "generating", "generated", "quality_checked", "uploaded"):
        assert stage in stages
    assert design.bar == 100
    assert not design.before_visible  # no site photo: the render alone, as before
    assert metadata["backyard_pro"]["reference_image"] == "none"  # its photo's host is not allowlisted
    _assert_site_photo_compared(served.base, render_ids[1], seen.results["backyard_site_photo"], metadata)


def _assert_site_photo_compared(
    base: str, render_id: str, compared: ResultSeen, metadata: dict[str, dict[str, Any]]
) -> None:
    """Before and after side by side; after is the delivered master, the photo outside the mask."""
    assert compared.events[-1] == "completed:completed" and compared.bar == 100
    assert compared.before_visible
    before, overlay, after = (compared.boxes[element] for element in ("before-image", "mask-overlay", "image"))
    assert abs(before["y"] - after["y"]) < 2 and before["x"] + before["width"] <= after["x"]  # one row
    assert before["width"] > 300 and abs(before["height"] - after["height"]) < 2
    assert abs(overlay["x"] - before["x"] - 1) < 1 and abs(overlay["width"] - (before["width"] - 2)) < 1
    assert compared.before["src"] == f"/examples/images/{SITE_PHOTO}" and compared.before["size"] == [1024, 768]
    assert compared.before["alt"] and compared.before["afterAlt"]
    assert compared.before["captions"][:2] == [
        "Before: the site photo, the area to redesign tinted and outlined",
        "After: the render",
    ]
    photo = np.asarray(Image.open(example_images.EXAMPLE_IMAGES / SITE_PHOTO).convert("RGB"))
    marked = np.asarray(Image.open(example_images.EXAMPLE_IMAGES / SITE_MASK)) >= 128
    assert compared.before["overlaySize"] == [1024, 768] and compared.before["marked"] == int(marked.sum())
    # The image the page shows is the render's delivered master, as its status names it.
    status = httpx.get(f"{base}/renders/{render_id}").json()
    assert status["status"] == "completed" and compared.image_src == status["imageUrl"]
    assert compared.image_size == [1024, 768]
    delivered = Image.open(io.BytesIO(httpx.get(base + compared.image_src).content))
    master = np.asarray(delivered.convert("RGB"))
    assert delivered.format == "PNG" and master.shape == photo.shape
    assert np.array_equal(master[~marked], photo[~marked])  # outside the mask: the photo, pixel for pixel
    assert np.abs(master[marked].astype(int) - photo[marked].astype(int)).mean() > 10  # the bed was redesigned
    facts = metadata["backyard_site_photo"]
    assert (facts["reference_image"], facts["mask"]) == ("blended", "painted")
    assert facts["outside_mask_difference"] < MASK_KEPT[0]
    assert facts["mask_marked_fraction"] == pytest.approx(marked.mean(), abs=0.001)


async def _sse_client(
    port: int, path: str, connected: asyncio.Event, counter: list[int], expected: int = CLIENTS
) -> bytes:
    """A bare HTTP/1.1 SSE client: reads until the server closes the response."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n"
    writer.write(request.encode())
    await writer.drain()
    received = b""
    counted = False
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), timeout=30):
            received += chunk
            if not counted and b"event: " in received:
                counted = True
                counter[0] += 1
                if counter[0] == expected:
                    connected.set()
    finally:
        writer.close()
        await writer.wait_closed()
    return received


async def _crowd(base: str, render_id: str, worker: Worker) -> list[bytes]:
    port = int(base.rsplit(":", 1)[1])
    connected, counter = asyncio.Event(), [0]
    path = f"/renders/{render_id}/events"
    clients = [asyncio.create_task(_sse_client(port, path, connected, counter)) for _ in range(CLIENTS)]
    await asyncio.wait_for(connected.wait(), timeout=30)  # every client has its first event
    assert await asyncio.to_thread(_metric, base, "render_sse_clients") == CLIENTS
    await asyncio.to_thread(worker.stage, Stage.CHARGED, Stage.GENERATING, Stage.GENERATED, Stage.UPLOADED)
    await asyncio.to_thread(worker.complete)
    return await asyncio.wait_for(asyncio.gather(*clients), timeout=30)


async def _settle(base: str) -> None:
    for _ in range(100):
        clients = await asyncio.to_thread(_metric, base, "render_sse_clients")
        watched = await asyncio.to_thread(_metric, base, "render_sse_watched_streams")
        if clients == 0 and watched == 0:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the server still holds clients or watched streams after they left")


def test_two_hundred_clients_all_get_the_end_and_memory_returns(served: Served) -> None:
    database = Database(served.database_url)
    figures = [f"idle: RSS {rss_bytes(served.process.pid) / 2**20:.1f} MiB"]
    rounds: list[int] = []
    render_ids: list[str] = []
    try:
        # Round 0 warms the server up (pools, threads, buffers); the RSS after it is the baseline.
        for round_number in range(3):
            worker = Worker(database, PREFIX).claim()
            render_ids.append(worker.render_id)
            bodies = asyncio.run(_crowd(served.base, worker.render_id, worker))
            asyncio.run(_settle(served.base))
            rounds.append(rss_bytes(served.process.pid))
            figures.append(f"round {round_number}: {CLIENTS} clients, RSS after they left {rounds[-1] / 2**20:.1f} MiB")
            expected = [b"0-0", *(entry_id.encode() for entry_id in _stream_ids(PREFIX, worker.render_id))]
            for body in bodies:
                assert body.count(b"event: completed") == 1
                assert re.findall(rb"^id: (\S+)", body, flags=re.MULTILINE) == expected
        print("\n" + "\n".join(figures))
        for rss in rounds[1:]:
            assert rss - rounds[0] <= RSS_TOLERANCE_BYTES, figures
    finally:
        database.dispose()
        redis.Redis.from_url(REDIS_URL).delete(*(f"{PREFIX}{render_id}" for render_id in render_ids))


def _stream_ids(prefix: str, render_id: str) -> list[str]:
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    return [entry_id for entry_id, _ in client.xrange(f"{prefix}{render_id}")]


def test_sigterm_stops_the_server_with_streams_open(tmp_path: Path) -> None:
    """`make run` stops the server when dagster dev exits: open streams must not hold it up."""
    database_url = f"sqlite:///{tmp_path / 'render_assets.db'}"
    upgrade(database_url)
    database = Database(database_url)
    worker = Worker(database, PREFIX).claim()
    env = {"REDIS_URL": REDIS_URL, "DATABASE_URL": database_url, "RENDER_EVENTS_PREFIX": PREFIX}
    try:
        with server_process(env) as (base, process):
            port = int(base.rsplit(":", 1)[1])

            async def watch_then_stop() -> tuple[bytes, float]:
                connected, counter = asyncio.Event(), [0]
                client = asyncio.create_task(
                    _sse_client(port, f"/renders/{worker.render_id}/events", connected, counter, expected=1)
                )
                await asyncio.wait_for(connected.wait(), timeout=10)
                process.send_signal(signal.SIGTERM)
                started = time.monotonic()
                await asyncio.to_thread(process.wait, 15)
                return await client, time.monotonic() - started

            body, stop_s = asyncio.run(watch_then_stop())
        print(f"\nstopped {stop_s:.2f} s after SIGTERM with a stream open")
        assert b"event: stage" in body
        assert stop_s < 3  # the streams ended at once, not after uvicorn's 5 s graceful timeout
    finally:
        database.dispose()
        redis.Redis.from_url(REDIS_URL).delete(f"{PREFIX}{worker.render_id}")
