"""The progress server's routes.

GET  /                      the demo page (static/)
GET  /examples[/NAME]       the example designs the demo page offers
GET  /examples/images/NAME  a bundled example image (the demo's view of examples.render-assets.invalid)
POST /renders               validate a job and enqueue it on BullMQ, as the web app does
GET  /renders/ID            the render's status (the renders row)
GET  /renders/ID/events     server-sent events of the render's progress
POST /renders/ID/cancel     cancel the render (refunded unless its image was already made)
GET  /healthz, /metrics     Redis and database reachable; Prometheus text
GET  /files/…               local storage (file://), where delivered images are
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread
from anyio import CapacityLimiter
from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import RedisError
from sqlalchemy import text
from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from render_assets.adapters import example_images
from render_assets.adapters.event_stream import StreamKeys
from render_assets.adapters.event_stream_reader import EventStreamReader, StreamWatch
from render_assets.domain.object_keys import SAFE_ID
from render_assets.domain.payload import MAX_PAYLOAD_BYTES, InvalidJob, parse_job
from render_assets.domain.queue_contract import job_options
from render_assets.persistence.database import Database
from render_assets.persistence.progress_events import RenderState, render_state
from render_assets.services import cancellation
from render_assets.services.backends import Backends
from render_assets.services.cancellation import TOO_LATE, CancelOutcome
from render_assets.web import metrics
from render_assets.web.auth import may_access
from render_assets.web.examples import Examples
from render_assets.web.files import files_app
from render_assets.web.public_urls import FILES_MOUNT, PublicUrls, local_storage_root
from render_assets.web.settings import WebSettings
from render_assets.web.sse import EventFeed

log = logging.getLogger(__name__)
T = TypeVar("T")

STATIC = Path(__file__).parent / "static"
HEALTH_TIMEOUT_S = 3.0
# Reads are short (XRANGE, XINFO): a bounded pool makes a crowd of clients queue for a connection
# instead of opening one each; the wait is generous because a busy event loop is slow to hand back.
REDIS_POOL_SIZE = 64
REDIS_POOL_WAIT_S = 30
DATABASE_THREADS = 8


@dataclass
class Runtime:
    settings: WebSettings
    backends: Backends  # what cancel and enqueue act on
    redis: Redis
    watch: StreamWatch
    reader: EventStreamReader
    feed: EventFeed
    urls: PublicUrls
    examples: Examples
    database_threads: CapacityLimiter

    @property
    def database(self) -> Database:
        return self.backends.database

    async def state(self, render_id: str) -> RenderState | None:
        return await _load_state(self.database, self.database_threads, render_id)

    async def in_database_thread(self, function: Callable[[Database], T]) -> T:
        return await anyio.to_thread.run_sync(function, self.database, limiter=self.database_threads)

    def cancel(self, render_id: str) -> CancelOutcome:
        """Cancel a render (blocking: call it in a thread)."""
        return cancellation.cancel(self.backends, render_id, source="api")


def _read_state(database: Database, render_id: str) -> RenderState | None:
    with database.session() as session:
        return render_state(session, render_id)


async def _load_state(database: Database, limiter: CapacityLimiter, render_id: str) -> RenderState | None:
    return await anyio.to_thread.run_sync(_read_state, database, render_id, limiter=limiter)


def _error(status: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers or None)


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _render_id(request: Request, runtime: Runtime) -> str | Response:
    """The path's render id when it is well formed and the request may see it, else the error."""
    render_id = str(request.path_params["render_id"])
    if not SAFE_ID.fullmatch(render_id):  # not `$`: it lets "id\n" by
        return _error(404, "render ids are letters, digits, '-' and '_', up to 64 characters")
    if not may_access(runtime.settings.sse_secret, render_id, request):
        return _unauthorized()
    return render_id


def _unauthorized() -> JSONResponse:
    return _error(401, "a valid token for this render is required", **{"WWW-Authenticate": "Bearer"})


async def render_events(request: Request) -> Response:
    runtime = _runtime(request)
    render_id = _render_id(request, runtime)
    if isinstance(render_id, Response):
        return render_id
    last_event_id = request.headers.get("last-event-id") or request.query_params.get("lastEventId")
    try:
        opening = await runtime.feed.open(render_id, last_event_id)
    except RedisError as error:
        log.warning("event stream of render %s unavailable: %s", render_id, type(error).__name__)
        return _error(503, "progress events are unavailable right now; retry", **{"Retry-After": "2"})
    if opening is None:
        return Response(status_code=204)  # after the terminal event: tells EventSource to stop
    return EventSourceResponse(
        runtime.feed.events(render_id, opening),
        ping=runtime.settings.keepalive_s,
        headers={"Cache-Control": "no-store"},
    )


async def render_status(request: Request) -> Response:
    runtime = _runtime(request)
    render_id = _render_id(request, runtime)
    if isinstance(render_id, Response):
        return render_id
    state = await runtime.state(render_id)
    if state is None:
        return _error(404, f"no render {render_id} (unknown, or still waiting in the queue)")
    status = {
        "renderId": state.render_id,
        "status": state.status,
        "stage": state.stage,
        "progress": state.percent,
        "message": state.message,
        "error": state.error,
        "imageUrl": state.image_url,
        "thumbnailUrl": state.thumbnail_url,
        "result": state.result,
    }
    return JSONResponse(runtime.urls.rewrite(status), headers={"Cache-Control": "no-store"})


async def cancel_render(request: Request) -> Response:
    """Cancel a render (the same per-render token as its status); 200 with the outcome, or 409
    when it had ended already (delivered, and charged, or failed)."""
    runtime = _runtime(request)
    render_id = _render_id(request, runtime)
    if isinstance(render_id, Response):
        return render_id
    outcome = await anyio.to_thread.run_sync(runtime.cancel, render_id)
    return JSONResponse(outcome.as_dict(), status_code=409 if outcome.outcome == TOO_LATE else 200)


async def _body(request: Request, limit: int) -> bytes | None:
    """The request body, or None when it is larger than `limit` (read no further than that)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def create_render(request: Request) -> Response:
    runtime = _runtime(request)
    body = await _body(request, MAX_PAYLOAD_BYTES)
    if body is None:
        return _error(413, f"invalid job payload: larger than {MAX_PAYLOAD_BYTES} bytes")
    try:
        job = parse_job(body)
    except InvalidJob as error:
        return _error(422, str(error))
    # Enqueueing spends the organization's credits: with a secret set, only a holder of the
    # render's token (the web app issues them) may do it.
    if not may_access(runtime.settings.sse_secret, job.renderId, request):
        return _unauthorized()
    job_id = await anyio.to_thread.run_sync(runtime.backends.queue.add, json.loads(body), job_options(job))
    links = {"status": f"/renders/{job.renderId}", "events": f"/renders/{job.renderId}/events"}
    return JSONResponse({"renderId": job.renderId, "jobId": job_id, **links}, status_code=202)


async def list_examples(request: Request) -> Response:
    return JSONResponse(_runtime(request).examples.listing())


async def get_example(request: Request) -> Response:
    payload = _runtime(request).examples.payload(str(request.path_params["name"]))
    if payload is None:
        return _error(404, "no such example")
    return JSONResponse(payload)


async def get_example_image(request: Request) -> Response:
    """A bundled example image: the browser cannot fetch the reserved `.invalid` origin the
    example jobs name, so the demo page maps it here."""
    name = str(request.path_params["name"])
    path = await anyio.to_thread.run_sync(example_images.find, name)
    if path is None:
        return _error(404, "no such example image")
    headers = {"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"}
    return FileResponse(path, media_type=example_images.media_type(name), headers=headers)


def _ping_database(database: Database) -> None:
    with database.session() as session:
        session.execute(text("SELECT 1"))


async def _check(name: str, probe: Any) -> tuple[str, str]:
    try:
        await asyncio.wait_for(probe, timeout=HEALTH_TIMEOUT_S)
    except Exception as error:
        # The class only: messages of connection errors can carry hosts and user names.
        log.warning("health check of %s failed: %s", name, type(error).__name__)
        return name, f"error: {type(error).__name__}"
    return name, "ok"


async def healthz(request: Request) -> Response:
    runtime = _runtime(request)
    checks = dict(
        await asyncio.gather(
            _check("redis", runtime.redis.ping()),
            _check("database", runtime.in_database_thread(_ping_database)),
        )
    )
    healthy = all(value == "ok" for value in checks.values())
    return JSONResponse({"status": "ok" if healthy else "unavailable", **checks}, status_code=200 if healthy else 503)


async def prometheus_metrics(request: Request) -> Response:
    runtime = _runtime(request)
    counts = await runtime.in_database_thread(metrics.database_counts)
    latencies = await runtime.reader.stage_latencies()
    body = metrics.exposition(
        counts, latencies, sse_clients=runtime.feed.clients, watched_streams=runtime.watch.watched
    )
    return Response(body, media_type=metrics.CONTENT_TYPE)


async def index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


async def _no_local_storage(scope: Scope, receive: Receive, send: Send) -> None:
    await _error(404, "images are not in local storage here")(scope, receive, send)


def _files_app(storage_root: Path | None) -> Mount:
    # Delivered images of local storage (web/files.py); with GCS there is nothing to serve here.
    if storage_root is None:
        return Mount(FILES_MOUNT, app=_no_local_storage)
    return Mount(FILES_MOUNT, app=files_app(storage_root), name="files")


def create_app(settings: WebSettings) -> Starlette:
    storage_root = local_storage_root(settings.storage_url)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        runtime = _open_runtime(settings, storage_root)
        runtime.watch.start()
        app.state.runtime = runtime
        try:
            yield
        finally:
            await runtime.watch.stop()
            await runtime.watch.client.aclose()
            await runtime.redis.aclose()
            runtime.database.dispose()

    routes = [
        Route("/", index),
        Route("/examples", list_examples),
        Route("/examples/{name}", get_example),
        Route("/examples/images/{name}", get_example_image),
        Route("/renders", create_render, methods=["POST"]),
        Route("/renders/{render_id}", render_status),
        Route("/renders/{render_id}/events", render_events),
        Route("/renders/{render_id}/cancel", cancel_render, methods=["POST"]),
        Route("/healthz", healthz),
        Route("/metrics", prometheus_metrics),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
        _files_app(storage_root),
    ]
    middleware = []
    if settings.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=["GET", "POST"],
                allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
            )
        )
    return Starlette(routes=routes, lifespan=lifespan, middleware=middleware)


def _open_runtime(settings: WebSettings, storage_root: Path | None) -> Runtime:
    keys = StreamKeys(settings.queue.events_prefix)
    pool = BlockingConnectionPool.from_url(
        settings.queue.redis_url, max_connections=REDIS_POOL_SIZE, timeout=REDIS_POOL_WAIT_S
    )
    redis = Redis(connection_pool=pool)
    watch = StreamWatch(Redis.from_url(settings.queue.redis_url), keys, block_ms=settings.watch_block_ms)
    reader = EventStreamReader(redis, keys)
    backends = settings.backends()
    database = backends.database
    urls = PublicUrls(storage_root)
    # As many threads as the engine has connections: more would only wait for one, and each
    # thread keeps its own stack and malloc arena for the life of the process.
    database_threads = CapacityLimiter(DATABASE_THREADS)
    return Runtime(
        settings=settings,
        backends=backends,
        redis=redis,
        watch=watch,
        reader=reader,
        feed=EventFeed(
            reader, watch, functools.partial(_load_state, database, database_threads), urls, idle_s=settings.keepalive_s
        ),
        urls=urls,
        examples=Examples(settings.examples_dir),
        database_threads=database_threads,
    )
