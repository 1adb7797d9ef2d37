"""BullMQ on Redis, through BullMQ's Python port, in manual-processing mode.

The port is asyncio-only while Dagster code is synchronous, so each call runs on its own short
event loop with its own connection: claims and completions are rare enough (a few per render)
that the connection set-up (about a millisecond on loopback) does not matter.

Job data is whatever the producer wrote, so this module never decodes it: a claim hands it on
as text for `parse_job` to judge, and acting on a job reads only BullMQ's own fields. (The port
decodes data while claiming, after the job moved to active: a job whose data is not JSON, or not
UTF-8, would raise inside the claim and come back after every lock expiry.)
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import redis
import redis.asyncio as redis_async
from bullmq import Job, Queue, UnrecoverableError, Worker

from render_assets.domain.run_keys import RunKey

T = TypeVar("T")

JOB_NAME = "render"


@dataclass(frozen=True)
class ClaimedJob:
    job_id: str
    name: str
    data: str  # the job data exactly as stored (JSON text, unless the producer erred)
    attempts_made: int
    attempts_started: int
    max_attempts: int
    token: str
    enqueued_at_ms: int

    @property
    def redeliveries(self) -> int:
        """How often BullMQ handed this attempt out again after a claim's lock expired (stalled)."""
        return max(0, self.attempts_started - self.attempts_made - 1)

    def run_key(self, render_id: str) -> RunKey:
        return RunKey(render_id, self.job_id, self.attempts_made, self.redeliveries)


@dataclass(frozen=True)
class JobRef:
    """Enough to act on a claimed job from another process: its id and our lock token."""

    job_id: str
    token: str


class BullQueue:
    def __init__(self, redis_url: str, queue_name: str, lock_duration_ms: int, stalled_interval_ms: int = 30_000):
        self.redis_url = redis_url
        self.queue_name = queue_name
        self.lock_duration_ms = lock_duration_ms
        self.stalled_interval_ms = stalled_interval_ms

    def _run(self, make: Callable[[], Awaitable[T]]) -> T:
        return asyncio.run(_as_coroutine(make))

    def _connection(self) -> redis_async.Redis:
        # Bytes that are not UTF-8 become lone surrogates instead of an exception, which
        # `parse_job` refuses as "not UTF-8".
        return redis_async.Redis.from_url(self.redis_url, decode_responses=True, encoding_errors="surrogateescape")

    def _worker(self) -> Worker:
        return Worker(
            self.queue_name,
            None,  # manual processing: no processor
            {
                "connection": self._connection(),
                "autorun": False,
                "lockDuration": self.lock_duration_ms,
                "stalledInterval": self.stalled_interval_ms,
            },
        )

    def _queue(self) -> Queue:
        return Queue(self.queue_name, {"connection": self._connection()})

    def claim(self, max_jobs: int) -> list[ClaimedJob]:
        """Move up to `max_jobs` jobs to active under fresh lock tokens, in BullMQ's priority order.

        Stalled jobs (active with an expired lock, e.g. a claim whose process died) go back to
        waiting first, so they are claimed again rather than lost.
        """

        async def claim() -> list[ClaimedJob]:
            worker = self._worker()
            try:
                await worker.runStalledJobsCheck()
                claimed = []
                for _ in range(max_jobs):
                    token = f"render-assets:{uuid.uuid4().hex}"
                    # What `worker.getNextJob` does, minus decoding the data (see above).
                    raw, job_id, *_ = await worker.backend.moveToActive(token, worker.opts)
                    if not raw:
                        break
                    claimed.append(_claimed(_job(worker, raw, job_id), raw.get("data", ""), token))
                return claimed
            finally:
                await worker.close()

        return self._run(claim) if max_jobs > 0 else []

    def wait_for_work(self, timeout_s: float) -> bool:
        """Block until BullMQ signals a job to take or `timeout_s` passes; True when there may be one.

        BullMQ's producers add a member to the queue's marker (a sorted set) with every job: score
        0 for a job ready now, a due time for a delayed one. Its own workers block on it with
        BZPOPMIN, as this does. A marker is only a hint (another consumer may take the job first),
        so the caller claims after waking and is no worse off when it finds nothing.
        """
        deadline = time.monotonic() + timeout_s
        due_at: float | None = None  # monotonic time a delayed job falls due
        client = redis.Redis.from_url(self.redis_url, socket_timeout=timeout_s + 5)
        try:
            while (remaining := min(deadline, due_at or deadline) - time.monotonic()) > 0:
                popped = client.bzpopmin(self.marker_key, timeout=remaining)
                if popped is None:
                    break
                _key, _member, score = popped
                wait_s = (float(score) - time.time() * 1000) / 1000
                if wait_s <= 0:
                    return True
                due_at = min(due_at or math.inf, time.monotonic() + wait_s)
            return due_at is not None and time.monotonic() >= due_at
        finally:
            client.close()

    @property
    def marker_key(self) -> str:
        return f"bull:{self.queue_name}:marker"

    async def _with_job(self, job_id: str, action: Callable[[Job], Awaitable[T]]) -> T | None:
        queue = self._queue()
        try:
            raw = await queue.backend.getJobData(job_id)
            return await action(_job(queue, raw, job_id)) if raw else None
        finally:
            await queue.close()

    def _finish(self, ref: JobRef, move: Callable[[Job, str], Awaitable[Any]]) -> bool:
        """Finish a job we claimed; False when it is no longer active (someone finished it already)."""

        async def finish(job: Job) -> bool:
            if await job.getState() != "active":
                return False
            try:
                await move(job, ref.token)
            except Exception as error:
                if "Missing lock" not in str(error):
                    raise
                # Our lock lapsed (e.g. a dead run's) while the job stayed active and unclaimed:
                # token "0" tells BullMQ to skip the lock check.
                await move(job, "0")
            return True

        return bool(self._run(lambda: self._with_job(ref.job_id, finish)))

    def complete(self, ref: JobRef, result: dict[str, Any]) -> bool:
        return self._finish(ref, lambda job, token: job.moveToCompleted(result, token))

    def fail(self, ref: JobRef, reason: str, *, retryable: bool) -> bool:
        """Fail the attempt; BullMQ schedules the next one while attempts remain and `retryable`."""
        error: Exception = Exception(reason) if retryable else UnrecoverableError(reason)
        return self._finish(ref, lambda job, token: job.moveToFailed(error, token))

    def extend_lock(self, ref: JobRef) -> bool:
        """Keep our claim: what BullMQ's own workers do for their active jobs."""

        async def extend() -> bool:
            worker = self._worker()
            try:
                return bool(await worker.backend.extendLock(ref.job_id, ref.token, self.lock_duration_ms))
            finally:
                await worker.close()

        return bool(self._run(extend))

    def release(self, ref: JobRef, delay_ms: int = 1_000) -> None:
        """Give a claimed job back without spending an attempt (we could not record the claim)."""
        until = int(time.time() * 1000) + delay_ms
        self._run(lambda: self._with_job(ref.job_id, lambda job: job.moveToDelayed(until, ref.token)))

    def report_progress(self, ref: JobRef, progress: dict[str, Any]) -> None:
        """Publish progress (BullMQ emits it on QueueEvents) and keep our lock alive."""

        async def report() -> None:
            worker = self._worker()
            try:
                await worker.backend.extendLock(ref.job_id, ref.token, self.lock_duration_ms)
                await worker.backend.updateProgress(ref.job_id, progress)
            finally:
                await worker.close()

        self._run(report)

    def add(self, data: dict[str, Any], opts: dict[str, Any]) -> str:
        async def add() -> str:
            queue = self._queue()
            try:
                job = await queue.add(JOB_NAME, data, opts)
                return str(job.id)
            finally:
                await queue.close()

        return self._run(add)

    def promote(self, job_id: str) -> bool:
        """A delayed job due now (a cancelled render's, so the next claim drops it); False when it
        is not delayed (or gone)."""

        async def promote(job: Job) -> bool:
            if await job.getState() != "delayed":
                return False
            await job.promote()
            return True

        return bool(self._run(lambda: self._with_job(job_id, promote)))

    def state(self, job_id: str) -> str | None:
        async def state(job: Job) -> str:
            return str(await job.getState())

        return self._run(lambda: self._with_job(job_id, state))


async def _as_coroutine(make: Callable[[], Awaitable[T]]) -> T:
    return await make()


def _job(queue: Queue | Worker, raw: dict[str, Any], job_id: str) -> Job:
    """The job from its Redis hash, as `Job.fromJSON` reads it, but without its data."""
    return Job.fromJSON(queue, {**raw, "data": "null"}, job_id)


def _claimed(job: Job, data: str, token: str) -> ClaimedJob:
    return ClaimedJob(
        job_id=str(job.id),
        name=str(job.name),
        data=data,
        attempts_made=int(job.attemptsMade or 0),
        attempts_started=int(getattr(job, "attemptsStarted", 0) or 0),
        max_attempts=int(job.opts.get("attempts") or 1),
        token=token,
        enqueued_at_ms=int(job.timestamp or 0),
    )
