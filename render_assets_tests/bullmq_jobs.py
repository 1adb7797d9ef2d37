"""Reading a BullMQ job as the web app would see it, with BullMQ's own Python client."""

from __future__ import annotations

import asyncio

from bullmq import Job, Queue

from render_assets_tests.conftest import REDIS_URL


def bull_job(queue_name: str, job_id: str, redis_url: str = REDIS_URL) -> Job:
    async def fetch() -> Job:
        queue = Queue(queue_name, {"connection": redis_url})
        try:
            job = await Job.fromId(queue, job_id)
            assert job is not None, f"BullMQ has no job {job_id} on {queue_name}"
            return job
        finally:
            await queue.close()

    return asyncio.run(fetch())
